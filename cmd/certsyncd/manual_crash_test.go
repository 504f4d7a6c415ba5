package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/registry"
)

// TestManualReregistrationSurvivesSIGKILL: a manual re-registration waits
// for people for hours, so its waits live in the journal. The server is
// killed (SIGKILL) while the delete waits and again right after the upload
// is confirmed; each restart resumes where the journal says, and the
// operation ends SUCCEEDED with exactly IPS's mapping in SF.
func TestManualReregistrationSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs separate processes")
	}
	cfgPath := filepath.Join(t.TempDir(), "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", cfgPath)
	waitFile(t, cfgPath, 30*time.Second)
	sb := newSandboxControl(t, cfgPath)
	const conn = "demo-desync"

	// The person's hands in SF's Security Center: the sandbox's registry,
	// which certsync no longer reaches once the connection is manual.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var hands registry.Driver
	for _, c := range cfg.Connections {
		if c.ID != conn {
			continue
		}
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(c.Registry.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(ca)
		if hands, err = registry.NewHTTP(registry.HTTPConfig{BaseURL: c.Registry.URL, TokenFile: c.Registry.TokenFile, RootCAs: pool}); err != nil {
			t.Fatal(err)
		}
	}
	// As the README does it: switch the connection to the manual driver.
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)(- id: ` + conn + `\n.*?)driver: http`)
	manualCfg := filepath.Join(t.TempDir(), "manual.yaml")
	if err := os.WriteFile(manualCfg, block.ReplaceAll(raw, []byte("${1}driver: manual")), 0o600); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := startServer(t, binary(t), manualCfg, dataDir, "")
	r, err := s.client.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: conn, Reason: "CHG-9"})
	if err != nil {
		t.Fatal(err)
	}
	name := r.GetOperation().GetName()
	awaiting := func(s *server, kind certsyncv1.StepKind) *certsyncv1.Operation {
		t.Helper()
		for {
			g, err := s.client.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			if stepState(g.GetOperation(), kind) == certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION {
				return g.GetOperation()
			}
			if g.GetOperation().GetDone() {
				t.Fatalf("ended instead of waiting for %v: %v", kind, g.GetOperation())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	awaiting(s, certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING)
	s.kill()

	// While no server runs, the person deletes the mapping in SF.
	ms, err := hands.List(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("mappings: %v %v", ms, err)
	}
	if err := hands.Delete(ctx, ms[0].ID); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, binary(t), manualCfg, dataDir, "")
	awaiting(s, certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING)
	if _, err := s.client.ConfirmOperationStep(ctx, &certsyncv1.ConfirmOperationStepRequest{Name: name, Step: certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING}); err != nil {
		t.Fatal(err)
	}
	op := awaiting(s, certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE)
	var in *certsyncv1.ManualInstruction
	for _, st := range op.GetSteps() {
		if st.GetKind() == certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE {
			in = st.GetInstruction()
		}
	}
	b, _ := pem.Decode([]byte(in.GetCertificatePem()))
	if b == nil {
		t.Fatalf("the upload step carries no certificate: %v", in)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hands.Upload(ctx, registry.NewMapping{ConfigurationName: in.GetConfigurationName(), IntegrationName: in.GetIntegrationName(), LoginName: in.GetLoginName(), Certificate: cert}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.ConfirmOperationStep(ctx, &certsyncv1.ConfirmOperationStepRequest{Name: name, Step: certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE}); err != nil {
		t.Fatal(err)
	}
	s.kill() // during the probe or the READ job

	s = startServer(t, binary(t), manualCfg, dataDir, "")
	final := waitDone(t, s, name)
	if final.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("after the restarts: %v %s %v", final.GetState(), final.GetSummary(), final.GetSteps())
	}
	for _, k := range []certsyncv1.StepKind{certsyncv1.StepKind_STEP_KIND_PROBE, certsyncv1.StepKind_STEP_KIND_VERIFY_JOB} {
		if got := stepState(final, k); got != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
			t.Errorf("%v: %v", k, got)
		}
	}
	if n := sb.state(t).Connections[conn].Counters.IPSStartJob; n != 1 {
		t.Errorf("%d READ jobs started, want 1 (a resumed run finds its own)", n)
	}
	checkOneGoodMapping(t, sb, s, conn)
}
