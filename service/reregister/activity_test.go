package reregister_test

import (
	"context"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/store"
)

// storeOnly is a Manager on an empty store and nothing else: enough for
// what reads and writes the journal alone.
func storeOnly(t *testing.T) (store.Store, *reregister.Manager) {
	t.Helper()
	st, err := store.Open(context.Background(), "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	m := reregister.New(reregister.Options{Store: st})
	t.Cleanup(m.Close)
	return st, m
}

// TestActivitySeesOtherReplicas: the gate asks Activity on every answer to
// know whether its cached evidence predates a re-registration's end. Ends
// written by another replica (here: straight into the shared store) are
// seen within the cache's second, even for an operation that started and
// ended between two looks; a validate-only run changes nothing in SF and is
// not an end that matters.
func TestActivitySeesOtherReplicas(t *testing.T) {
	ctx := context.Background()
	st, m := storeOnly(t)

	if running, ended := m.Activity(ctx, "c"); running != "" || !ended.IsZero() {
		t.Fatalf("nothing happened yet: running %q, ended %v", running, ended)
	}
	eventually := func(what string, ok func(running string, ended time.Time) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			running, ended := m.Activity(ctx, "c")
			if ok(running, ended) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: running %q, ended %v", what, running, ended)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Times in the past, as ends read from the store always are.
	base := time.Now().UTC().Add(-10 * time.Second)
	op, err := st.CreateOperation(ctx, &store.Operation{ID: "op-1", Connection: "c", State: store.StateRunning, CreateTime: base}, nil)
	must(t, err)
	eventually("another replica's operation runs", func(r string, _ time.Time) bool { return r == "op-1" })

	// Seen running, then ended: the end is the one stored, not the moment
	// this replica noticed (evidence gathered in between stays good).
	end := base.Add(time.Second)
	op.State, op.EndTime, op.UpdateTime = store.StateSucceeded, end, time.Now()
	must(t, st.UpdateOperation(ctx, op, nil))
	eventually("it ended", func(r string, e time.Time) bool { return r == "" && !e.IsZero() })
	if _, e := m.Activity(ctx, "c"); !e.Equal(end) {
		t.Errorf("last end %v, want the stored %v", e, end)
	}

	// Started and ended between two looks: never seen running.
	quickEnd := end.Add(2 * time.Second)
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "op-2", Connection: "c", State: store.StateFailed,
		CreateTime: quickEnd.Add(-time.Millisecond), UpdateTime: time.Now(), EndTime: quickEnd}, nil)
	must(t, err)
	eventually("a quick operation ended", func(_ string, e time.Time) bool { return e.Equal(quickEnd) })

	// Another replica's clock runs ahead: its end counts from when it was
	// read here, so that evidence gathered after that is not dropped.
	ahead := time.Now().Add(time.Hour)
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "op-3", Connection: "d", State: store.StateSucceeded,
		CreateTime: ahead, UpdateTime: ahead, EndTime: ahead}, nil)
	must(t, err)
	deadline := time.Now().Add(5 * time.Second)
	var seen time.Time
	for seen.IsZero() && time.Now().Before(deadline) {
		_, seen = m.Activity(ctx, "d")
		time.Sleep(50 * time.Millisecond)
	}
	if seen.IsZero() || seen.After(time.Now()) {
		t.Fatalf("an end stamped an hour ahead reads as %v", seen)
	}
	time.Sleep(1500 * time.Millisecond) // past the cache's second: read again
	if _, again := m.Activity(ctx, "d"); !again.Equal(seen) {
		t.Errorf("the same end moved from %v to %v", seen, again)
	}

	dryEnd := quickEnd.Add(time.Second)
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "op-4", Connection: "c", State: store.StateSucceeded, ValidateOnly: true,
		CreateTime: dryEnd, UpdateTime: time.Now(), EndTime: dryEnd}, nil)
	must(t, err)
	time.Sleep(1500 * time.Millisecond) // past the cache's second
	if _, e := m.Activity(ctx, "c"); !e.Equal(quickEnd) {
		t.Errorf("a validate-only run moved the last end to %v", e)
	}
}

// TestNothingStartsWhileDraining: once a replica drains for shutdown,
// nothing new starts there (automatic remediation runs until the very end
// of a shutdown, and Close could stop a new operation between its delete
// and its upload); the caller is told to ask again.
func TestNothingStartsWhileDraining(t *testing.T) {
	ctx := context.Background()
	st, m := storeOnly(t)
	m.Drain(ctx)
	_, err := m.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "certsync", Automatic: true})
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Unavailable || fe.Reason != "SHUTTING_DOWN" {
		t.Fatalf("Start while draining: %v", err)
	}
	if ops, _, err := st.ListOperations(ctx, store.ListFilter{}); err != nil || len(ops) != 0 {
		t.Errorf("%d operations stored (%v)", len(ops), err)
	}
}

// TestLateUploadOnlyWhileNothingCameAfter: an upload confirmed after its
// operation timed out is taken only while no later re-registration speaks
// for SF's mapping (its own steps say what SF shows now).
func TestLateUploadOnlyWhileNothingCameAfter(t *testing.T) {
	ctx := context.Background()
	st, m := storeOnly(t)
	ca, err := pki.NewCA("IPS", time.Now().Add(-time.Hour), 48*time.Hour)
	must(t, err)
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-outbound"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	must(t, err)
	base := time.Now().UTC().Add(-time.Hour)
	timedOut := func(id string, at time.Time) {
		_, err := st.CreateOperation(ctx, &store.Operation{ID: id, Connection: "c", State: store.StateFailed, Manual: true,
			SourceCertificateDER: leaf.Cert.Raw, Upload: &store.Mapping{ConfigurationName: "IPS"},
			Error:      &store.OperationError{Code: "DEADLINE_EXCEEDED", Reason: "CONFIRMATION_TIMEOUT", Metadata: map[string]string{"step": string(store.StepUploadCertificate)}},
			Steps:      []store.Step{{Kind: store.StepDeleteMapping, State: store.StepSucceeded}, {Kind: store.StepUploadCertificate, State: store.StepFailed}},
			CreateTime: at, UpdateTime: at, EndTime: at}, nil)
		must(t, err)
	}
	timedOut("a", base)
	// A dry run after it changes nothing in SF: still taken.
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "dry", Connection: "c", State: store.StateSucceeded, ValidateOnly: true,
		CreateTime: base.Add(time.Minute), UpdateTime: base.Add(time.Minute)}, nil)
	must(t, err)
	if _, err := m.Confirm(ctx, reregister.ConfirmRequest{ID: "a", Step: store.StepUploadCertificate, By: "carol"}); err != nil {
		t.Fatalf("late upload with nothing after it: %v", err)
	}
	// Another timed-out operation, then a newer one: refused, naming it.
	timedOut("b", base.Add(2*time.Minute))
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "c-new", Connection: "c", State: store.StateRunning, Manual: true,
		CreateTime: base.Add(3 * time.Minute), UpdateTime: base.Add(3 * time.Minute)}, nil)
	must(t, err)
	_, err = m.Confirm(ctx, reregister.ConfirmRequest{ID: "b", Step: store.StepUploadCertificate, By: "carol"})
	if fe, ok := fault.As(err); !ok || fe.Reason != "OPERATION_DONE" || !strings.Contains(fe.Message, "operations/c-new") {
		t.Fatalf("late upload after a newer operation: %v", err)
	}
}
