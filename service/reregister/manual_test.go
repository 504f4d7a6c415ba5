package reregister_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/reregister"
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
	e := setup(t, false)
	st, hands, opts := e.st, e.hands, e.opts

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
