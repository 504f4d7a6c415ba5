package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// fakeRuns plays each operation through a script of states: every
// WaitOperation call moves it one state on (the last one stays).
type fakeRuns struct {
	certsyncv1.UnimplementedCertSyncServiceServer

	mu      sync.Mutex
	scripts map[string][]*certsyncv1.Operation // connection id -> states
	at      map[string]int
	waits   int
}

func (f *fakeRuns) current(name string) (*certsyncv1.Operation, bool) {
	id := strings.TrimPrefix(name, "operations/")
	s, ok := f.scripts[id]
	if !ok {
		return nil, false
	}
	return s[min(f.at[id], len(s)-1)], true
}

func (f *fakeRuns) ReregisterCertificate(_ context.Context, req *certsyncv1.ReregisterCertificateRequest) (*certsyncv1.ReregisterCertificateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op, ok := f.current(strings.TrimPrefix(req.GetName(), "connections/"))
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s not found", req.GetName())
	}
	return &certsyncv1.ReregisterCertificateResponse{Operation: op}, nil
}

func (f *fakeRuns) GetOperation(_ context.Context, req *certsyncv1.GetOperationRequest) (*certsyncv1.GetOperationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op, ok := f.current(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s not found", req.GetName())
	}
	return &certsyncv1.GetOperationResponse{Operation: op}, nil
}

func (f *fakeRuns) WaitOperation(ctx context.Context, req *certsyncv1.WaitOperationRequest) (*certsyncv1.WaitOperationResponse, error) {
	select {
	case <-time.After(min(req.GetTimeout().AsDuration(), 10*time.Millisecond)):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	f.at[strings.TrimPrefix(req.GetName(), "operations/")]++
	op, ok := f.current(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s not found", req.GetName())
	}
	return &certsyncv1.WaitOperationResponse{Operation: op}, nil
}

func fakeOp(id string, state certsyncv1.OperationState, steps ...*certsyncv1.OperationStep) *certsyncv1.Operation {
	done := state != certsyncv1.OperationState_OPERATION_STATE_RUNNING && state != certsyncv1.OperationState_OPERATION_STATE_PENDING_APPROVAL
	return &certsyncv1.Operation{Name: "operations/" + id, Connection: "connections/" + id, State: state, Done: done, Steps: steps}
}

// TestWaitExitStatus: after --wait, a script learns from the exit status
// how the operation stands, as it does from the gate's: 0 succeeded, 1 it
// ended otherwise, 2 not done (still running when --wait-timeout passed, or
// waiting for a person, which --wait does not sit out). Without --wait, 0
// means only that the server answered.
func TestWaitExitStatus(t *testing.T) {
	const (
		running  = certsyncv1.OperationState_OPERATION_STATE_RUNNING
		pending  = certsyncv1.OperationState_OPERATION_STATE_PENDING_APPROVAL
		ok       = certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED
		failed   = certsyncv1.OperationState_OPERATION_STATE_FAILED
		rolled   = certsyncv1.OperationState_OPERATION_STATE_ROLLED_BACK
		canceled = certsyncv1.OperationState_OPERATION_STATE_CANCELLED
	)
	awaiting := &certsyncv1.OperationStep{Kind: certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING, State: certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION,
		Instruction: &certsyncv1.ManualInstruction{Text: "delete the mapping in Security Center"}}
	f := &fakeRuns{at: map[string]int{}, scripts: map[string][]*certsyncv1.Operation{
		"good":     {fakeOp("good", running), fakeOp("good", running), fakeOp("good", ok)},
		"bad":      {fakeOp("bad", running), fakeOp("bad", failed)},
		"undone":   {fakeOp("undone", running), fakeOp("undone", rolled)},
		"stopped":  {fakeOp("stopped", canceled)},
		"forever":  {fakeOp("forever", running)},
		"person":   {fakeOp("person", running), fakeOp("person", running, awaiting), fakeOp("person", ok)},
		"approval": {fakeOp("approval", pending), fakeOp("approval", ok)},
	}}
	addr := serveFake(t, f)

	for _, tc := range []struct {
		args      []string
		code      int
		wantState string
	}{
		{[]string{"reregister", "good", "--wait"}, 0, "SUCCEEDED"},
		{[]string{"reregister", "bad", "--wait", "-o", "json"}, 1, "OPERATION_STATE_FAILED"},
		{[]string{"reregister", "undone", "--wait"}, 1, "ROLLED_BACK"},
		{[]string{"reregister", "stopped", "--wait"}, 1, "CANCELLED"},
		{[]string{"reregister", "forever", "--wait", "--wait-timeout", "300ms"}, 2, "RUNNING"},
		{[]string{"reregister", "person", "--wait"}, 2, "delete the mapping in Security Center"},
		{[]string{"reregister", "approval", "--wait"}, 2, "PENDING_APPROVAL"},
		{[]string{"operation", "bad"}, 0, "FAILED"},
		{[]string{"operation", "bad", "--wait"}, 1, "FAILED"},
	} {
		out, errOut, code := ctl(t, "", append(tc.args, "--addr", addr)...)
		if code != tc.code || !strings.Contains(out, tc.wantState) {
			t.Errorf("%s: exit %d, want %d; output lacks %q?\n%s%s", strings.Join(tc.args, " "), code, tc.code, tc.wantState, out, errOut)
		}
	}
	// The person's step ended the wait where it began; nobody sat it out.
	f.mu.Lock()
	at := f.at["person"]
	f.mu.Unlock()
	if at != 1 {
		t.Errorf("--wait went on %d states past a step waiting for a person", at-1)
	}
	if _, errOut, code := ctl(t, "", "operation", "nope", "--wait", "--addr", addr); code != 3 || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown operation: exit %d %s", code, errOut)
	}
}
