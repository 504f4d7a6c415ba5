package service_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/sandbox"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// manualHarness serves the sandbox's demo connections, with the ones named
// switched to the manual registry driver. hands holds, per manual
// connection, what a person's hands in SF's Security Center can do: the
// sandbox's registry, which certsync itself no longer reaches for them.
type manualHarness struct {
	*harness
	sb    *sandbox.Sandbox
	hands map[string]registry.Driver
	st    store.Store
}

func newManualHarness(t *testing.T, stepTimeout time.Duration, edit func(*config.Connection), manual ...string) *manualHarness {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(t.TempDir())
	must(t, err)
	mh := &manualHarness{sb: sb, hands: map[string]registry.Driver{}}
	for i := range conns {
		c := &conns[i]
		for _, id := range manual {
			if c.ID != id {
				continue
			}
			pool := x509.NewCertPool()
			pemCA, err := os.ReadFile(c.Registry.CAFile)
			must(t, err)
			pool.AppendCertsFromPEM(pemCA)
			d, err := registry.NewHTTP(registry.HTTPConfig{BaseURL: c.Registry.URL, TokenFile: c.Registry.TokenFile, RootCAs: pool})
			must(t, err)
			mh.hands[id] = d
			c.Registry = config.Registry{Driver: "manual", IntegrationName: c.Registry.IntegrationName,
				ConfigurationName: c.Registry.ConfigurationName, LoginName: c.Registry.LoginName}
			if edit != nil {
				edit(c)
			}
		}
	}
	st, err := store.Open(context.Background(), "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	mh.st = st
	mh.harness = newHarnessFull(t, conns, inventory.Options{ProbeTimeout: 5 * time.Second, Store: st}, func(inv *inventory.Inventory) service.Options {
		var g *gate.Gate
		m := reregister.New(reregister.Options{Store: st, Inventory: inv, SettleWindow: 2 * time.Second, ProbeInterval: 200 * time.Millisecond,
			ManualStepTimeout: stepTimeout, JobPollInterval: 100 * time.Millisecond,
			// As certsyncd wires it: an ended operation drops the gate's evidence.
			OnFinish: func(id, _ string) { g.Invalidate(id) }})
		t.Cleanup(m.Close)
		g = gate.New(gate.Options{Inventory: inv, Operations: m, Jobs: &ipsjobs.Tracker{Store: st}})
		t.Cleanup(g.Close)
		return service.Options{Operations: m, Gate: g, Store: st}
	})
	return mh
}

// until polls the operation until cond holds.
func (h *manualHarness) until(t *testing.T, name string, what string, cond func(*certsyncv1.Operation) bool) *certsyncv1.Operation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := h.client.GetOperation(ctx(t), &certsyncv1.GetOperationRequest{Name: name})
		must(t, err)
		if cond(r.GetOperation()) {
			return r.GetOperation()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never %s: %v", name, what, r.GetOperation())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stepOf(op *certsyncv1.Operation, k certsyncv1.StepKind) *certsyncv1.OperationStep {
	for _, s := range op.GetSteps() {
		if s.GetKind() == k {
			return s
		}
	}
	return nil
}

func awaitingStep(k certsyncv1.StepKind) func(*certsyncv1.Operation) bool {
	return func(op *certsyncv1.Operation) bool {
		s := stepOf(op, k)
		return s != nil && s.GetState() == certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION
	}
}

func (h *manualHarness) confirm(t *testing.T, name string, k certsyncv1.StepKind, fingerprint string) (*certsyncv1.Operation, error) {
	t.Helper()
	r, err := h.client.ConfirmOperationStep(ctx(t), &certsyncv1.ConfirmOperationStepRequest{Name: name, Step: k, Note: "done in SF, ticket CHG-77", Fingerprint: fingerprint})
	return r.GetOperation(), err
}

func (h *manualHarness) gate(t *testing.T, conn string) *certsyncv1.CheckGateResponse {
	t.Helper()
	r, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "connections/" + conn, View: certsyncv1.GateView_GATE_VIEW_FULL})
	must(t, err)
	return r
}

func reasonOf(t *testing.T, err error) (codes.Code, string) {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

const (
	stepDelete = certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING
	stepUpload = certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE
)

// TestManualReregistration is the acceptance run: demo-desync with
// the manual driver waits at each step with exact instructions, proceeds on
// confirmation (the test performs each step on the sandbox, as a person
// would in SF's UI), verifies by probe and by a READ job, and succeeds.
func TestManualReregistration(t *testing.T) {
	const conn = "demo-desync"
	h := newManualHarness(t, time.Minute, nil, conn)
	hands := h.hands[conn]
	ctx := context.Background()

	// Before anyone recorded anything, compare cannot say what SF holds.
	_, err := h.client.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: "connections/" + conn})
	if code, reason := reasonOf(t, err); code != codes.FailedPrecondition || reason != "MAPPING_NOT_RECORDED" {
		t.Fatalf("compare before a record: %v %s (%v)", code, reason, err)
	}

	// A person reads the mapping off SF's screen: the fingerprint as SF
	// shows it (lower case, no colons here), and the fields.
	before, err := hands.List(ctx)
	must(t, err)
	if len(before) != 1 {
		t.Fatalf("sandbox holds %d mappings", len(before))
	}
	old := before[0]
	oldSum := x509Sum(old.Certificate)
	rec, err := h.client.RecordTargetMapping(ctx, &certsyncv1.RecordTargetMappingRequest{Name: "connections/" + conn,
		ConfigurationName: old.ConfigurationName, IntegrationName: old.IntegrationName, LoginName: old.LoginName,
		Fingerprint: strings.ToLower(strings.ReplaceAll(oldSum, ":", "")), Note: "read off Security Center"})
	must(t, err)
	if m := rec.GetMapping(); m.GetSource() != certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PERSON || !m.GetMatchesSource() || m.GetCertificate().GetSha256Fingerprint() != oldSum {
		t.Fatalf("recorded mapping: %v", m)
	}
	cmp, err := h.client.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: "connections/" + conn})
	must(t, err)
	if cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH || cmp.GetTargets()[0].GetSource() != certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PERSON {
		t.Fatalf("compare on the person's record: %v", cmp)
	}
	// The seed: fingerprints match, SF answers AUTH0032. A person's MATCH
	// does not outweigh the probe.
	if v := h.gate(t, conn); v.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_DENY {
		t.Fatalf("gate before: %v %s", v.GetDecision(), v.GetSummary())
	}

	opResp, err := h.client.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "connections/" + conn, Etag: cmp.GetEtag(), Reason: "CHG-77"})
	must(t, err)
	name := opResp.GetOperation().GetName()
	op := h.until(t, name, "waited for the delete", awaitingStep(stepDelete))
	del := stepOf(op, stepDelete)
	in := del.GetInstruction()
	for _, want := range []string{"Security Center", old.ConfigurationName, old.LoginName, "Delete it", oldSum} {
		if !strings.Contains(in.GetText(), want) {
			t.Errorf("delete instruction lacks %q:\n%s", want, in.GetText())
		}
	}
	if del.GetDeadline() == nil || op.GetState() != certsyncv1.OperationState_OPERATION_STATE_RUNNING || !strings.Contains(op.GetSummary(), "waiting for a person") {
		t.Errorf("waiting operation: deadline %v, state %v, summary %q", del.GetDeadline(), op.GetState(), op.GetSummary())
	}
	// Waiting is not a hang: WaitOperation returns with done=false.
	w, err := h.client.WaitOperation(ctx, &certsyncv1.WaitOperationRequest{Name: name, Timeout: durationpb.New(200 * time.Millisecond)})
	must(t, err)
	if w.GetOperation().GetDone() {
		t.Fatalf("operation ended without a person: %v", w.GetOperation())
	}
	// Nothing was changed in SF by certsync itself.
	if c := h.sb.State().Connections[conn].Counters; c.Delete != 0 || c.Upload != 0 {
		t.Fatalf("certsync changed SF itself: %+v", c)
	}
	// Confirming the wrong step is refused and says which one waits.
	if _, err := h.confirm(t, name, stepUpload, ""); err == nil {
		t.Fatal("confirming the upload before the delete was accepted")
	} else if code, reason := reasonOf(t, err); code != codes.FailedPrecondition || reason != "STEP_NOT_AWAITING" || !strings.Contains(status.Convert(err).Message(), "DELETE_MAPPING") {
		t.Fatalf("wrong step: %v %s %v", code, reason, err)
	}
	// While the operation runs the gate does not allow.
	if v := h.gate(t, conn); v.GetDecision() == certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Fatalf("gate allows during a manual re-registration")
	}

	// The person deletes the mapping in SF, then confirms.
	must(t, hands.Delete(ctx, old.ID))
	_, err = h.confirm(t, name, stepDelete, "")
	must(t, err)
	op = h.until(t, name, "waited for the upload", awaitingStep(stepUpload))
	up := stepOf(op, stepUpload)
	if got := stepOf(op, stepDelete); got.GetState() != certsyncv1.StepState_STEP_STATE_SUCCEEDED || got.GetConfirmedBy() == "" {
		t.Errorf("delete step after confirmation: %v", got)
	}
	in = up.GetInstruction()
	block, _ := pem.Decode([]byte(in.GetCertificatePem()))
	if block == nil {
		t.Fatalf("upload step carries no certificate: %v", in)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	must(t, err)
	if x509Sum(cert) != h.sb.State().Connections[conn].IPSActiveSHA256 || in.GetIntegrationName() != "Identity Provisioning Service" ||
		in.GetSha256Fingerprint() != x509Sum(cert) || !strings.Contains(in.GetText(), `"Identity Provisioning Service"`) {
		t.Fatalf("upload instruction: %v", in)
	}
	// The confirmed delete is what compare now shows: no mapping.
	cmp, err = h.client.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: "connections/" + conn})
	must(t, err)
	if cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_TARGET_MISSING {
		t.Errorf("compare between delete and upload: %v", cmp.GetResult())
	}

	// The person uploads exactly what the instruction says.
	_, err = hands.Upload(ctx, registry.NewMapping{ConfigurationName: in.GetConfigurationName(), IntegrationName: in.GetIntegrationName(), LoginName: in.GetLoginName(), Certificate: cert})
	must(t, err)
	// A fingerprint that is not the certificate's is refused: SF shows
	// something else than what should have been uploaded.
	if _, err := h.confirm(t, name, stepUpload, strings.Repeat("AB:", 31)+"AB"); err == nil {
		t.Fatal("a wrong read-back fingerprint was accepted")
	} else if code, reason := reasonOf(t, err); code != codes.FailedPrecondition || reason != "FINGERPRINT_DIFFERS" {
		t.Fatalf("wrong fingerprint: %v %s", code, reason)
	}
	if _, err := h.confirm(t, name, stepUpload, "not a fingerprint"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed fingerprint: %v", err)
	}
	_, err = h.confirm(t, name, stepUpload, "SHA1 "+x509SHA1(cert))
	must(t, err)

	op = h.wait(t, name)
	if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("state %v: %s %v", op.GetState(), op.GetSummary(), op.GetSteps())
	}
	for _, k := range []certsyncv1.StepKind{stepDelete, stepUpload, certsyncv1.StepKind_STEP_KIND_VERIFY_READBACK, certsyncv1.StepKind_STEP_KIND_PROBE, certsyncv1.StepKind_STEP_KIND_VERIFY_JOB} {
		if s := stepOf(op, k); s.GetState() != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
			t.Errorf("step %v: %v %q", k, s.GetState(), s.GetMessage())
		}
	}
	if msg := stepOf(op, certsyncv1.StepKind_STEP_KIND_VERIFY_JOB).GetMessage(); !strings.Contains(msg, "Success") {
		t.Errorf("job step: %q", msg)
	}
	if op.GetFinalProbe().GetOutcome() != certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED {
		t.Errorf("final probe: %v", op.GetFinalProbe())
	}
	sbState := h.sb.State().Connections[conn]
	if sbState.Counters.IPSStartJob != 1 || sbState.Counters.Delete != 1 || sbState.Counters.Upload != 1 {
		t.Errorf("sandbox counters: %+v (one READ job, the person's one delete and one upload)", sbState.Counters)
	}
	cmp, err = h.client.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: "connections/" + conn})
	must(t, err)
	if cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH {
		t.Errorf("compare after: %v", cmp.GetResult())
	}
	// The evidence budget may hold the first answer back (INCONCLUSIVE
	// with retry_after), as it would for a scheduler: ask again after it.
	v := h.gate(t, conn)
	for i := 0; i < 20 && v.GetDecision() == certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE; i++ {
		time.Sleep(min(v.GetRetryAfter().AsDuration(), 500*time.Millisecond))
		v = h.gate(t, conn)
	}
	if v.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Errorf("gate after: %v %s", v.GetDecision(), v.GetSummary())
	}
	// Every confirmation is in the audit, with who and what.
	ev, err := h.client.ListAuditEvents(ctx, &certsyncv1.ListAuditEventsRequest{Connection: "connections/" + conn})
	must(t, err)
	var confirms, refused, records int
	for _, e := range ev.GetEvents() {
		switch {
		case strings.HasSuffix(e.GetRpc(), "/ConfirmOperationStep") && e.GetOutcome() == "OK":
			confirms++
		case strings.HasSuffix(e.GetRpc(), "/ConfirmOperationStep"):
			refused++ // the wrong step, the wrong fingerprint: in the connection's audit too
		case strings.HasSuffix(e.GetRpc(), "/RecordTargetMapping"):
			records++
		}
	}
	if confirms != 2 || refused != 3 || records != 1 { // refused: the wrong step, a wrong and a malformed fingerprint
		t.Errorf("audit: %d confirmations, %d refused, %d records: %v", confirms, refused, records, ev.GetEvents())
	}
}

// TestManualCancelAndTimeout: cancelling before the delete ends the
// operation; cancelling after a confirmed delete still waits for the upload;
// a step nobody confirms times out.
func TestManualCancelAndTimeout(t *testing.T) {
	t.Run("cancel while waiting for the delete", func(t *testing.T) {
		h := newManualHarness(t, time.Minute, nil, "demo-desync")
		name := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync"}).GetName()
		h.until(t, name, "waited for the delete", awaitingStep(stepDelete))
		_, err := h.client.CancelOperation(ctx(t), &certsyncv1.CancelOperationRequest{Name: name, Reason: "wrong window"})
		must(t, err)
		op := h.wait(t, name)
		if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_CANCELLED {
			t.Fatalf("state %v: %v", op.GetState(), op)
		}
		if _, err := h.confirm(t, name, stepDelete, ""); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("confirming an ended operation: %v", err)
		}
	})
	t.Run("cancel after the delete waits for the upload", func(t *testing.T) {
		h := newManualHarness(t, time.Minute, nil, "demo-desync")
		hands := h.hands["demo-desync"]
		name := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync"}).GetName()
		h.until(t, name, "waited for the delete", awaitingStep(stepDelete))
		ms, err := hands.List(context.Background())
		must(t, err)
		must(t, hands.Delete(context.Background(), ms[0].ID))
		_, err = h.confirm(t, name, stepDelete, "")
		must(t, err)
		h.until(t, name, "waited for the upload", awaitingStep(stepUpload))
		_, err = h.client.CancelOperation(ctx(t), &certsyncv1.CancelOperationRequest{Name: name, Reason: "change window closed"})
		must(t, err)
		op := h.until(t, name, "said the upload is still needed", func(op *certsyncv1.Operation) bool {
			return strings.Contains(stepOf(op, stepUpload).GetMessage(), "cancel requested")
		})
		if op.GetDone() {
			t.Fatalf("cancelled with no mapping in SF: %v", op)
		}
		in := stepOf(op, stepUpload).GetInstruction()
		block, _ := pem.Decode([]byte(in.GetCertificatePem()))
		cert, err := x509.ParseCertificate(block.Bytes)
		must(t, err)
		_, err = hands.Upload(context.Background(), registry.NewMapping{ConfigurationName: in.GetConfigurationName(), IntegrationName: in.GetIntegrationName(), LoginName: in.GetLoginName(), Certificate: cert})
		must(t, err)
		_, err = h.confirm(t, name, stepUpload, "")
		must(t, err)
		op = h.wait(t, name)
		if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_CANCELLED || stepOf(op, stepUpload).GetState() != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
			t.Fatalf("state %v: %v", op.GetState(), op.GetSteps())
		}
	})
	t.Run("nobody confirms", func(t *testing.T) {
		h := newManualHarness(t, 300*time.Millisecond, nil, "demo-desync")
		name := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync"}).GetName()
		op := h.wait(t, name)
		if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_FAILED || op.GetError().GetReason() != "CONFIRMATION_TIMEOUT" ||
			stepOf(op, stepDelete).GetState() != certsyncv1.StepState_STEP_STATE_FAILED {
			t.Fatalf("state %v error %v", op.GetState(), op.GetError())
		}
		// The connection is free again.
		next := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync"})
		if next.GetName() == name {
			t.Fatalf("the same operation came back")
		}
	})
}

// TestRecordTargetMappingRefusals: what a person records is checked like
// any other input.
func TestRecordTargetMappingRefusals(t *testing.T) {
	h := newManualHarness(t, time.Minute, nil, "demo-desync")
	tests := []struct {
		name   string
		req    *certsyncv1.RecordTargetMappingRequest
		code   codes.Code
		reason string
	}{
		{"no fingerprint or certificate", &certsyncv1.RecordTargetMappingRequest{Name: "connections/demo-desync"}, codes.InvalidArgument, "FINGERPRINT_REQUIRED"},
		{"malformed fingerprint", &certsyncv1.RecordTargetMappingRequest{Name: "connections/demo-desync", Fingerprint: "zz:zz"}, codes.InvalidArgument, "INVALID_FINGERPRINT"},
		{"not a certificate", &certsyncv1.RecordTargetMappingRequest{Name: "connections/demo-desync", Certificate: []byte("hello")}, codes.InvalidArgument, ""},
		{"registry not manual", &certsyncv1.RecordTargetMappingRequest{Name: "connections/demo-healthy", Fingerprint: strings.Repeat("ab", 32)}, codes.FailedPrecondition, "REGISTRY_NOT_MANUAL"},
		{"unknown connection", &certsyncv1.RecordTargetMappingRequest{Name: "connections/nope", Fingerprint: strings.Repeat("ab", 32)}, codes.NotFound, "CONNECTION_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.RecordTargetMapping(ctx(t), tt.req)
			code, reason := reasonOf(t, err)
			if code != tt.code || (tt.reason != "" && reason != tt.reason) {
				t.Fatalf("got %v %s (%v), want %v %s", code, reason, err, tt.code, tt.reason)
			}
		})
	}
	// A certificate file works too, and a fingerprint given with it must
	// be the certificate's.
	ms, err := h.hands["demo-desync"].List(context.Background())
	must(t, err)
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ms[0].Certificate.Raw})
	_, err = h.client.RecordTargetMapping(ctx(t), &certsyncv1.RecordTargetMappingRequest{Name: "connections/demo-desync", Certificate: pemCert, Fingerprint: strings.Repeat("ab", 20)})
	if code, reason := reasonOf(t, err); code != codes.InvalidArgument || reason != "FINGERPRINT_NOT_CERTIFICATE" {
		t.Fatalf("certificate with another fingerprint: %v %s", code, reason)
	}
	r, err := h.client.RecordTargetMapping(ctx(t), &certsyncv1.RecordTargetMappingRequest{Name: "connections/demo-desync", Certificate: pemCert, IntegrationName: "Identity Provisioning Service"})
	must(t, err)
	if r.GetMapping().GetCertificate().GetSubject() == "" || !r.GetMapping().GetMatchesSource() {
		t.Fatalf("recorded from the file: %v", r.GetMapping())
	}
}

func x509Sum(c *x509.Certificate) string { return x509cert.Summarize(c).SHA256 }

func x509SHA1(c *x509.Certificate) string { return x509cert.Summarize(c).SHA1 }

// TestSeparateProbeIdentityTakesReadJobs: with probe.identity separate the
// probe proves the platform only, so the gate waits for IPS's own evidence;
// a READ job started through certsync (and recorded in the store) is that
// evidence: failing with AUTH0032 it denies, succeeding it allows.
func TestSeparateProbeIdentityTakesReadJobs(t *testing.T) {
	separate := func(c *config.Connection) { c.Probe.Identity = "separate" }
	// The sandbox's probes hold IPS's own key pair; declared separate, the
	// gate may not take their success for IPS's mapping.
	h := newHarnessWithEdit(t, separate, "demo-healthy", "demo-desync")

	v := h.gate(t, "demo-healthy")
	if v.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE || !hasCondition(v, "IpsMappingAuthenticates", "NoIpsMappingEvidence") {
		t.Fatalf("before any job: %v %s", v.GetDecision(), v.GetSummary())
	}
	// The gate does not allow, so starting a job needs force and a reason.
	job, err := h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-healthy", Force: true, Reason: "prove IPS's mapping"})
	must(t, err)
	v = h.gateSettled(t, "demo-healthy")
	if v.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW || !hasCondition(v, "IpsMappingAuthenticates", "ReadJobSucceeded") {
		t.Fatalf("after READ job %s: %v %s %v", job.GetJob().GetJobId(), v.GetDecision(), v.GetSummary(), v.GetConditions())
	}

	// demo-desync: the job fails with AUTH0032 (the seed); the gate denies
	// on it, although the separate probe cannot say so.
	_, err = h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-desync", Force: true, Reason: "look at IPS's own mapping"})
	must(t, err)
	v = h.gateSettled(t, "demo-desync")
	if v.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_DENY || !hasCondition(v, "IpsMappingAuthenticates", "ReadJobFailed") {
		t.Fatalf("after a failing READ job: %v %s %v", v.GetDecision(), v.GetSummary(), v.GetConditions())
	}
}

// newHarnessWithEdit serves the sandbox's demo connections (http registry)
// with edit applied to the ones named, on a store, with the gate reading
// IPS jobs from it.
func newHarnessWithEdit(t *testing.T, edit func(*config.Connection), ids ...string) *manualHarness {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(t.TempDir())
	must(t, err)
	for i := range conns {
		for _, id := range ids {
			if conns[i].ID == id {
				edit(&conns[i])
			}
		}
	}
	st, err := store.Open(context.Background(), "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	mh := &manualHarness{sb: sb, st: st}
	mh.harness = newHarnessFull(t, conns, inventory.Options{ProbeTimeout: 5 * time.Second, Store: st}, func(inv *inventory.Inventory) service.Options {
		g := gate.New(gate.Options{Inventory: inv, Jobs: &ipsjobs.Tracker{Store: st}})
		t.Cleanup(g.Close)
		return service.Options{Gate: g, Store: st}
	})
	return mh
}

// gateSettled asks the gate for fresh evidence, again after retry_after
// while the evidence budget holds the answer back, as a scheduler would.
func (h *manualHarness) gateSettled(t *testing.T, conn string) *certsyncv1.CheckGateResponse {
	t.Helper()
	ask := func() *certsyncv1.CheckGateResponse {
		r, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "connections/" + conn, MaxEvidenceAge: durationpb.New(time.Millisecond),
			View: certsyncv1.GateView_GATE_VIEW_FULL})
		must(t, err)
		return r
	}
	v := ask()
	for i := 0; i < 20 && hasCondition(v, "EvidenceFresh", ""); i++ {
		time.Sleep(min(v.GetRetryAfter().AsDuration(), 500*time.Millisecond))
		v = ask()
	}
	return v
}

func hasCondition(v *certsyncv1.CheckGateResponse, typ, reason string) bool {
	for _, c := range v.GetConditions() {
		if c.GetType() == typ && (reason == "" || c.GetReason() == reason) {
			return true
		}
	}
	return false
}
