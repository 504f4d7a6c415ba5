package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// fakeGate answers CheckGate with a fixed decision and keeps the requests.
type fakeGate struct {
	certsyncv1.UnimplementedCertSyncServiceServer
	decision certsyncv1.GateDecision
	mu       sync.Mutex
	reqs     []*certsyncv1.CheckGateRequest
}

func (f *fakeGate) CheckGate(_ context.Context, req *certsyncv1.CheckGateRequest) (*certsyncv1.CheckGateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, proto.Clone(req).(*certsyncv1.CheckGateRequest))
	return &certsyncv1.CheckGateResponse{Connection: req.GetName(), Decision: f.decision}, nil
}

func (f *fakeGate) last() *certsyncv1.CheckGateRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

// TestGateMaxAgeAndExitCodes: --max-age 0s asks for fresh evidence (it is
// not the same as leaving the flag out, which takes the server's default),
// and each decision has its exit status.
func TestGateMaxAgeAndExitCodes(t *testing.T) {
	f := &fakeGate{decision: certsyncv1.GateDecision_GATE_DECISION_ALLOW}
	addr := serveFake(t, f)

	tests := []struct {
		args []string
		want *time.Duration
	}{
		{nil, nil},
		{[]string{"--max-age", "0s"}, ptr(time.Duration(0))},
		{[]string{"--max-age", "5m"}, ptr(5 * time.Minute)},
	}
	for _, tt := range tests {
		_, errOut, code := ctl(t, "", append([]string{"gate", "demo", "--addr", addr}, tt.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errOut)
		}
		got := f.last().GetMaxEvidenceAge()
		switch {
		case tt.want == nil && got != nil:
			t.Errorf("%v: sent max_evidence_age %v, want none (the server's default)", tt.args, got.AsDuration())
		case tt.want != nil && (got == nil || got.AsDuration() != *tt.want):
			t.Errorf("%v: sent max_evidence_age %v, want %v", tt.args, got, *tt.want)
		}
	}
	if _, errOut, code := ctl(t, "", "gate", "demo", "--addr", addr, "--max-age", "-5s"); code != exitNoAnswer {
		t.Errorf("a negative --max-age: exit %d, want %d: %s", code, exitNoAnswer, errOut)
	}
	for decision, want := range map[certsyncv1.GateDecision]int{
		certsyncv1.GateDecision_GATE_DECISION_ALLOW:        0,
		certsyncv1.GateDecision_GATE_DECISION_DENY:         1,
		certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE: 2,
	} {
		f.mu.Lock()
		f.decision = decision
		f.mu.Unlock()
		if _, _, code := ctl(t, "", "gate", "demo", "--addr", addr); code != want {
			t.Errorf("%v: exit %d, want %d", decision, code, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
