package reregister_test

import (
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/sandbox"
	"github.com/certsync/certsync/service/store"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestManualWaitSurvivesRestart: a manual step waits for a person for
// hours, so the wait lives in the journal. A process that stops while it
// waits loses nothing: the next one (here a new Manager on the same store)
// resumes the wait, takes the confirmation and finishes the operation.
func TestManualWaitSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(t.TempDir())
	must(t, err)
	var hands registry.Driver
	for i := range conns {
		if c := &conns[i]; c.ID == "demo-desync" {
			pool := x509.NewCertPool()
			ca, err := os.ReadFile(c.Registry.CAFile)
			must(t, err)
			pool.AppendCertsFromPEM(ca)
			hands, err = registry.NewHTTP(registry.HTTPConfig{BaseURL: c.Registry.URL, TokenFile: c.Registry.TokenFile, RootCAs: pool})
			must(t, err)
			c.Registry = config.Registry{Driver: "manual", IntegrationName: c.Registry.IntegrationName, LoginName: c.Registry.LoginName}
		}
	}
	cfg := &config.Config{Connections: conns}
	cfg.ApplyDefaults()
	problems := cfg.Validate()
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	st, err := store.Open(ctx, "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	inv, err := inventory.Build(cfg.Connections, problems, inventory.Options{ProbeTimeout: 5 * time.Second, Store: st})
	must(t, err)
	t.Cleanup(inv.Close)
	opts := reregister.Options{Store: st, Inventory: inv, SettleWindow: 2 * time.Second, ProbeInterval: 200 * time.Millisecond,
		JobPollInterval: 100 * time.Millisecond, LockTTL: time.Second}

	first := reregister.New(opts)
	op, err := first.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "alice"})
	must(t, err)
	waitFor(t, st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepDeleteMapping) == store.StepAwaitingConfirmation
	})
	first.Close() // the process stops while a person works in SF

	ms, err := hands.List(ctx)
	must(t, err)
	must(t, hands.Delete(ctx, ms[0].ID))

	second := reregister.New(opts)
	t.Cleanup(second.Close)
	must(t, second.Recover(ctx))
	if _, err := second.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"}); err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepUploadCertificate) == store.StepAwaitingConfirmation
	})
	var in *store.Instruction
	for _, s := range got.Steps {
		if s.Kind == store.StepUploadCertificate {
			in = s.Instruction
		}
	}
	if in == nil || len(in.CertificateDER) == 0 {
		t.Fatalf("upload step without instruction: %+v", got.Steps)
	}
	cert, err := x509.ParseCertificate(in.CertificateDER)
	must(t, err)
	_, err = hands.Upload(ctx, registry.NewMapping{ConfigurationName: in.ConfigurationName, IntegrationName: in.IntegrationName, LoginName: in.LoginName, Certificate: cert})
	must(t, err)
	if _, err := second.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "bob"}); err != nil {
		t.Fatal(err)
	}
	final, err := second.Wait(ctx, op.ID, 20*time.Second)
	must(t, err)
	if final.State != store.StateSucceeded {
		t.Fatalf("state %s: %+v %v", final.State, final.Error, final.Steps)
	}
	for _, s := range final.Steps {
		if s.Kind == store.StepDeleteMapping && s.ConfirmedBy != "bob" {
			t.Errorf("delete confirmed by %q", s.ConfirmedBy)
		}
	}
	if n := len(final.Notes); n == 0 {
		t.Errorf("no recovery note on the operation")
	}
}

func stepState(o *store.Operation, k store.StepKind) store.StepState {
	for _, s := range o.Steps {
		if s.Kind == k {
			return s.State
		}
	}
	return ""
}

func waitFor(t *testing.T, st store.Store, id string, cond func(*store.Operation) bool) *store.Operation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, err := st.GetOperation(context.Background(), id)
		must(t, err)
		if cond(o) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s: condition never held: %s %+v", id, o.State, o.Steps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
