package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/sandbox"
	"github.com/certsync/certsync/service/store"
)

// opsHarness serves the sandbox's demo connections with re-registration on
// a SQLite store.
func opsHarness(t *testing.T) (*harness, *sandbox.Sandbox) {
	t.Helper()
	return opsHarnessSettle(t, 2*time.Second)
}

// opsHarnessSettle is opsHarness with the given settle window.
func opsHarnessSettle(t *testing.T, settle time.Duration) (*harness, *sandbox.Sandbox) {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(t.TempDir())
	must(t, err)
	st, err := store.Open(context.Background(), "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	h := newHarnessFull(t, conns, inventory.Options{ProbeTimeout: 5 * time.Second}, func(inv *inventory.Inventory) service.Options {
		m := reregister.New(reregister.Options{Store: st, Inventory: inv, SettleWindow: settle, ProbeInterval: 200 * time.Millisecond})
		t.Cleanup(m.Close)
		return service.Options{Operations: m}
	})
	return h, sb
}

func (h *harness) compare(t *testing.T, conn string) *certsyncv1.CompareFingerprintsResponse {
	t.Helper()
	r, err := h.client.CompareFingerprints(ctx(t), &certsyncv1.CompareFingerprintsRequest{Name: conn})
	must(t, err)
	return r
}

func (h *harness) probe(t *testing.T, conn string) certsyncv1.ProbeOutcome {
	t.Helper()
	r, err := h.client.ProbeScimAuth(ctx(t), &certsyncv1.ProbeScimAuthRequest{Name: conn})
	must(t, err)
	return r.GetOutcome()
}

func (h *harness) reregister(t *testing.T, req *certsyncv1.ReregisterCertificateRequest) *certsyncv1.Operation {
	t.Helper()
	r, err := h.client.ReregisterCertificate(ctx(t), req)
	must(t, err)
	return r.GetOperation()
}

func (h *harness) wait(t *testing.T, name string) *certsyncv1.Operation {
	t.Helper()
	r, err := h.client.WaitOperation(ctx(t), &certsyncv1.WaitOperationRequest{Name: name, Timeout: durationpb.New(8 * time.Second)})
	must(t, err)
	if !r.GetOperation().GetDone() {
		t.Fatalf("%s not done: %v", name, r.GetOperation())
	}
	return r.GetOperation()
}

func TestReregisterFixesWhatItCan(t *testing.T) {
	h, sb := opsHarness(t)
	S := certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED
	tests := []struct {
		conn  string
		state certsyncv1.OperationState
		probe certsyncv1.ProbeOutcome
	}{
		{"demo-desync", S, certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED},
		{"demo-mismatch", S, certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED},
		{"demo-permission", S, certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED},
		{"demo-stuck", certsyncv1.OperationState_OPERATION_STATE_FAILED, certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE},
		{"demo-company-id", certsyncv1.OperationState_OPERATION_STATE_FAILED, certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE},
	}
	for _, tt := range tests {
		t.Run(tt.conn, func(t *testing.T) {
			cmp := h.compare(t, tt.conn)
			op := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: tt.conn, Etag: cmp.GetEtag(), Reason: "CHG-1234"})
			if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_RUNNING || op.GetReason() != "CHG-1234" || !strings.HasPrefix(op.GetName(), "operations/") {
				t.Fatalf("started: %v", op)
			}
			op = h.wait(t, op.GetName())
			if op.GetState() != tt.state {
				t.Fatalf("state %v, want %v: %s %v", op.GetState(), tt.state, op.GetSummary(), op.GetSteps())
			}
			if got := h.probe(t, tt.conn); got != tt.probe {
				t.Errorf("probe after: %v, want %v", got, tt.probe)
			}
			if after := h.compare(t, tt.conn); after.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH {
				t.Errorf("compare after: %v", after.GetResult())
			}
			state := sb.State().Connections[tt.conn]
			if len(state.Mappings) != 1 || state.Mappings[0].SHA256 != state.IPSActiveSHA256 {
				t.Errorf("sandbox holds %d mappings: %+v", len(state.Mappings), state.Mappings)
			}
			if tt.state == certsyncv1.OperationState_OPERATION_STATE_FAILED {
				if op.GetError().GetReason() != "PROBE_FAILED" || op.GetFinalProbe().GetErrorCode() != "AUTH0032" {
					t.Errorf("failed with %v, final probe %v", op.GetError(), op.GetFinalProbe())
				}
			}
			if tt.conn == "demo-permission" && state.Mappings[0].IntegrationName != "Identity Provisioning Service" {
				t.Errorf("uploaded with integration name %q", state.Mappings[0].IntegrationName)
			}
		})
	}
}

func TestReregisterRefusals(t *testing.T) {
	h, sb := opsHarness(t)
	const conn = "demo-desync"
	before := sb.State().Connections[conn].Counters

	// A stale etag: FAILED_PRECONDITION with a PreconditionFailure.
	_, err := h.client.ReregisterCertificate(ctx(t), &certsyncv1.ReregisterCertificateRequest{Name: conn, Etag: "0123456789abcdef"})
	st := status.Convert(err)
	var pf *errdetails.PreconditionFailure
	for _, d := range st.Details() {
		if p, ok := d.(*errdetails.PreconditionFailure); ok {
			pf = p
		}
	}
	if st.Code() != codes.FailedPrecondition || pf == nil || pf.GetViolations()[0].GetType() != "ETAG" {
		t.Fatalf("stale etag: %v %v", st.Code(), st.Details())
	}

	// validate_only runs every check and changes nothing.
	op := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: conn, ValidateOnly: true})
	if !op.GetDone() || op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED || !op.GetValidateOnly() {
		t.Fatalf("validate_only: %v", op)
	}
	after := sb.State().Connections[conn].Counters
	if after.Delete != before.Delete || after.Upload != before.Upload {
		t.Fatalf("validate_only changed SF: %+v -> %+v", before, after)
	}

	// The same request_id twice gives one operation.
	a := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: conn, RequestId: "job-42"})
	b := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: conn, RequestId: "job-42"})
	if a.GetName() != b.GetName() {
		t.Fatalf("request_id twice: %s and %s", a.GetName(), b.GetName())
	}
	h.wait(t, a.GetName())
	if n := sb.State().Connections[conn].Counters.Upload - before.Upload; n != 1 {
		t.Errorf("uploads = %d, want 1", n)
	}

	// A running operation makes a second request ABORTED naming it.
	must(t, sb.InjectFault(sandbox.Fault{Connection: "demo-mismatch", Operation: "upload", Delay: 2 * time.Second}))
	first := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: "demo-mismatch"})
	_, err = h.client.ReregisterCertificate(ctx(t), &certsyncv1.ReregisterCertificateRequest{Name: "demo-mismatch"})
	if st := status.Convert(err); st.Code() != codes.Aborted || !strings.Contains(st.Message(), first.GetName()) {
		t.Fatalf("second request: %v %s", st.Code(), st.Message())
	}
	// Cancelling during the upload does not separate it from its delete.
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, err := h.client.GetOperation(ctx(t), &certsyncv1.GetOperationRequest{Name: first.GetName()})
		must(t, err)
		if stepOf(r.GetOperation(), certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE).GetState() == certsyncv1.StepState_STEP_STATE_RUNNING {
			break
		}
		if time.Now().After(deadline) || r.GetOperation().GetDone() {
			t.Fatalf("the upload never started: %v", r.GetOperation())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = h.client.CancelOperation(ctx(t), &certsyncv1.CancelOperationRequest{Name: first.GetName(), Reason: "test"})
	must(t, err)
	done := h.wait(t, first.GetName())
	if done.GetState() != certsyncv1.OperationState_OPERATION_STATE_CANCELLED {
		t.Errorf("cancelled during the upload: %v, want CANCELLED once the upload is done", done.GetState())
	}
	state := sb.State().Connections["demo-mismatch"]
	if len(state.Mappings) != 1 || state.Mappings[0].SHA256 != state.IPSActiveSHA256 {
		t.Errorf("after cancel during upload: %v, mappings %+v", done.GetState(), state.Mappings)
	}

	// Listing, filtered by connection.
	list, err := h.client.ListOperations(ctx(t), &certsyncv1.ListOperationsRequest{Connection: "connections/" + conn})
	must(t, err)
	if len(list.GetOperations()) != 2 {
		t.Errorf("operations of %s: %d, want 2 (dry run and job-42)", conn, len(list.GetOperations()))
	}
	for _, op := range list.GetOperations() {
		if op.GetConnection() != "connections/"+conn {
			t.Errorf("filtered list has %s", op.GetConnection())
		}
	}

	_, err = h.client.GetOperation(ctx(t), &certsyncv1.GetOperationRequest{Name: "operations/doesnotexist"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown operation: %v", err)
	}
}

func TestCancelBeforeDelete(t *testing.T) {
	h, sb := opsHarness(t)
	const conn = "demo-desync"
	// Slow the read-back of the plan so that the cancel lands before the
	// delete... the delete is the first side effect, so delay it instead.
	must(t, sb.InjectFault(sandbox.Fault{Connection: conn, Operation: "delete", Delay: 1500 * time.Millisecond}))
	op := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: conn})
	_, err := h.client.CancelOperation(ctx(t), &certsyncv1.CancelOperationRequest{Name: op.GetName(), Reason: "changed my mind"})
	must(t, err)
	done := h.wait(t, op.GetName())
	// The delete was already on its way: the operation goes on to upload,
	// and the connection keeps exactly one mapping.
	state := sb.State().Connections[conn]
	if len(state.Mappings) != 1 {
		t.Fatalf("%v: %d mappings", done.GetState(), len(state.Mappings))
	}
}

func TestRefusedUploadRestoresTheMapping(t *testing.T) {
	h, sb := opsHarness(t)
	const conn = "demo-mismatch"
	before := sb.State().Connections[conn].Mappings
	// SF refuses the upload (a 400 is not retried); the restore then goes
	// through.
	must(t, sb.InjectFault(sandbox.Fault{Connection: conn, Operation: "upload", Status: 400}))
	op := h.wait(t, h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: conn}).GetName())
	if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_ROLLED_BACK || op.GetError().GetReason() != "UPLOAD_REFUSED" {
		t.Fatalf("state %v error %v", op.GetState(), op.GetError())
	}
	var restore certsyncv1.StepState
	for _, s := range op.GetSteps() {
		if s.GetKind() == certsyncv1.StepKind_STEP_KIND_RESTORE_MAPPING {
			restore = s.GetState()
		}
	}
	if restore != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
		t.Errorf("restore step %v", restore)
	}
	after := sb.State().Connections[conn].Mappings
	if len(after) != 1 || after[0].SHA256 != before[0].SHA256 || after[0].ConfigurationName != before[0].ConfigurationName || after[0].LoginName != before[0].LoginName {
		t.Errorf("mapping not restored: before %+v after %+v", before, after)
	}
}

func TestListOperationsBadToken(t *testing.T) {
	h, _ := opsHarness(t)
	_, err := h.client.ListOperations(ctx(t), &certsyncv1.ListOperationsRequest{PageToken: "garbage"})
	if code, reason, fields := errorInfo(t, err); code != codes.InvalidArgument || reason != "INVALID_PAGE_TOKEN" || strings.Join(fields, ",") != "page_token" {
		t.Fatalf("got %v %s %v", code, reason, fields)
	}
}

func TestEscalationBundleForStuckConnection(t *testing.T) {
	h, _ := opsHarness(t)
	const conn = "demo-stuck"
	op := h.wait(t, h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: conn, Reason: "CHG-9"}).GetName())
	if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_FAILED {
		t.Fatalf("re-registration: %v", op.GetState())
	}
	r, err := h.client.GetEscalationBundle(ctx(t), &certsyncv1.GetEscalationBundleRequest{Name: conn})
	must(t, err)
	b := r.GetBundle()
	if b.GetSupportComponent() != "LOD-SF-PLT-IAS" || b.GetCompanyId() == "" || b.GetSfUrl() == "" || b.GetSourceCertificate().GetSha256Fingerprint() == "" {
		t.Errorf("bundle: %v", b)
	}
	if len(b.GetTargetMappings()) != 1 || b.GetTargetMappings()[0].GetCertificate().GetSha256Fingerprint() != b.GetSourceCertificate().GetSha256Fingerprint() {
		t.Errorf("mappings: %v", b.GetTargetMappings())
	}
	if len(b.GetProbes()) != 1 || b.GetProbes()[0].GetResult().GetErrorCode() != "AUTH0032" || !strings.Contains(b.GetProbes()[0].GetErrorBody(), "AUTH0032") ||
		!strings.HasPrefix(b.GetProbes()[0].GetRequestLine(), "GET https://") {
		t.Errorf("probe transcript: %v", b.GetProbes())
	}
	if len(b.GetOperations()) != 1 || b.GetOperations()[0].GetName() != op.GetName() {
		t.Errorf("operations: %v", b.GetOperations())
	}
	kbas := strings.Join(b.GetKbaReferences(), ",")
	for _, k := range []string{"KBA 3505973", "KBA 3333286"} {
		if !strings.Contains(kbas, k) {
			t.Errorf("KBAs %s lack %s", kbas, k)
		}
	}
	if s := b.String(); strings.Contains(s, "PRIVATE KEY") || strings.Contains(strings.ToLower(s), "bearer") {
		t.Error("the bundle carries a secret")
	}
}

// TestCancelWhileProbing: once IPS's certificate is uploaded, a cancel only
// stops the probing; the operation says so rather than go on probing to a
// FAILED end.
func TestCancelWhileProbing(t *testing.T) {
	h, _ := opsHarnessSettle(t, time.Minute) // demo-stuck never authenticates
	op := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: "demo-stuck"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := h.client.GetOperation(ctx(t), &certsyncv1.GetOperationRequest{Name: op.GetName()})
		must(t, err)
		if st := stepOf(r.GetOperation(), certsyncv1.StepKind_STEP_KIND_PROBE); st.GetState() == certsyncv1.StepState_STEP_STATE_RUNNING {
			break
		}
		if time.Now().After(deadline) || r.GetOperation().GetDone() {
			t.Fatalf("never probed: %v", r.GetOperation())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := h.client.CancelOperation(ctx(t), &certsyncv1.CancelOperationRequest{Name: op.GetName(), Reason: "escalating instead"})
	must(t, err)
	if !strings.Contains(c.GetOperation().GetSummary(), "cancel requested") {
		t.Errorf("cancel answered with summary %q", c.GetOperation().GetSummary())
	}
	done := h.wait(t, op.GetName())
	if done.GetState() != certsyncv1.OperationState_OPERATION_STATE_CANCELLED ||
		stepOf(done, certsyncv1.StepKind_STEP_KIND_PROBE).GetState() != certsyncv1.StepState_STEP_STATE_SKIPPED ||
		stepOf(done, certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE).GetState() != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
		t.Fatalf("after the cancel: %v %v", done.GetState(), done.GetSteps())
	}
}
