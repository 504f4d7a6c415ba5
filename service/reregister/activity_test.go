package reregister_test

import (
	"context"
	"testing"
	"time"

	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/store"
)

// TestActivitySeesOtherReplicas: the gate asks Activity on every answer to
// know whether its cached evidence predates a re-registration's end. Ends
// written by another replica (here: straight into the shared store) are
// seen within the cache's second, even for an operation that started and
// ended between two looks; a validate-only run changes nothing in SF and is
// not an end that matters.
func TestActivitySeesOtherReplicas(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	m := reregister.New(reregister.Options{Store: st})
	t.Cleanup(m.Close)

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

	now := time.Now().UTC().Truncate(time.Millisecond)
	op, err := st.CreateOperation(ctx, &store.Operation{ID: "op-1", Connection: "c", State: store.StateRunning, CreateTime: now}, nil)
	must(t, err)
	eventually("another replica's operation runs", func(r string, _ time.Time) bool { return r == "op-1" })

	end := now.Add(time.Second)
	op.State, op.EndTime, op.UpdateTime = store.StateSucceeded, end, end
	must(t, st.UpdateOperation(ctx, op, nil))
	eventually("it ended", func(r string, e time.Time) bool { return r == "" && !e.Before(end) })

	// Started and ended between two looks: never seen running.
	quickEnd := end.Add(2 * time.Second)
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "op-2", Connection: "c", State: store.StateFailed,
		CreateTime: quickEnd.Add(-time.Millisecond), UpdateTime: quickEnd, EndTime: quickEnd}, nil)
	must(t, err)
	eventually("a quick operation ended", func(_ string, e time.Time) bool { return e.Equal(quickEnd) })

	dryEnd := quickEnd.Add(time.Second)
	_, err = st.CreateOperation(ctx, &store.Operation{ID: "op-3", Connection: "c", State: store.StateSucceeded, ValidateOnly: true,
		CreateTime: dryEnd, UpdateTime: dryEnd, EndTime: dryEnd}, nil)
	must(t, err)
	time.Sleep(1500 * time.Millisecond) // past the cache's second
	if _, e := m.Activity(ctx, "c"); !e.Equal(quickEnd) {
		t.Errorf("a validate-only run moved the last end to %v", e)
	}
}
