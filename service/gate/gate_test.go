package gate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// world stands in for SF, the registry and the source: it counts
// gatherings per connection and answers with the outcome set for it.
type world struct {
	mu       sync.Mutex
	calls    map[string]int
	outcomes map[string]scim.Outcome
	// gate, when set, holds every gathering until it is closed.
	gate chan struct{}
	// started receives the connection id of each gathering as it begins.
	started chan string
	// ctxErr records the gathering context's error when it resumed.
	ctxErr error
	base   time.Time
}

func (w *world) collect(ctx context.Context, e *entry, start time.Time) *Evidence {
	w.mu.Lock()
	w.calls[e.id]++
	hold, o, started := w.gate, w.outcomes[e.id], w.started
	w.mu.Unlock()
	if started != nil {
		started <- e.id
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
		w.mu.Lock()
		w.ctxErr = ctx.Err()
		w.mu.Unlock()
	}
	ev := healthy()
	ev.Connection, ev.Config.ID, ev.CheckedAt = e.id, e.id, start
	// Certificates valid for a year from when the world began, so that
	// gathering again yields the same evidence.
	ev.Source, ev.ProbeCert = cert(w.base.Sub(t0)+365*day), cert(w.base.Sub(t0)+365*day)
	if o != scim.OutcomeUnspecified && o != scim.Authenticated {
		ev.Probe = probe(o, 0, "")
	}
	return ev
}

func (w *world) set(id string, o scim.Outcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.outcomes[id] = o
}

func (w *world) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[id]
}

func (w *world) hold() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gate = make(chan struct{})
	return w.gate
}

func (w *world) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gate != nil {
		close(w.gate)
		w.gate = nil
	}
}

// decisions records OnVerdict's calls.
type decisions struct {
	mu  sync.Mutex
	got []string
}

func (d *decisions) record(id string, dec Decision) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, id+"="+dec.String())
}

func (d *decisions) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

type fixture struct {
	g     *Gate
	clock *fakeClock
	w     *world
	d     *decisions
}

func newFixture(t *testing.T, o Options, ids ...string) *fixture {
	t.Helper()
	f := &fixture{clock: &fakeClock{t: t0}, w: &world{calls: map[string]int{}, outcomes: map[string]scim.Outcome{}}, d: &decisions{}}
	if o.Now == nil {
		o.Now = f.clock.Now
	}
	o.OnVerdict = f.d.record
	var conns []*inventory.Connection
	for _, id := range ids {
		conns = append(conns, &inventory.Connection{Config: config.Connection{ID: id}})
	}
	f.w.base = o.Now()
	f.g = newGate(o, conns)
	f.g.collectFn = f.w.collect
	t.Cleanup(func() {
		f.w.release()
		f.g.Close()
	})
	return f
}

func (f *fixture) check(t *testing.T, id string, maxAge time.Duration) Verdict {
	t.Helper()
	v, err := f.g.Check(context.Background(), id, maxAge)
	if err != nil {
		t.Fatalf("Check(%s): %v", id, err)
	}
	return v
}

func reason(v Verdict) string {
	for _, c := range v.Conditions {
		if c.Inconclusive || c.Severity == Error {
			return c.Reason
		}
	}
	return ""
}

func TestConcurrentCallersShareOneGathering(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.w.hold()
	f.w.started = make(chan string, 1)
	const n = 200
	results := make(chan Verdict, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f.g.Check(context.Background(), "a", UseDefaultAge)
			if err != nil {
				t.Error(err)
			}
			results <- v
		}()
	}
	<-f.w.started
	f.w.release()
	wg.Wait()
	close(results)
	if got := f.w.count("a"); got != 1 {
		t.Fatalf("%d gatherings for %d concurrent callers, want 1", got, n)
	}
	for v := range results {
		if v.Decision != Allow || !v.CheckedAt.Equal(t0) {
			t.Fatalf("answer %v checked at %v, want ALLOW at %v", v.Decision, v.CheckedAt, t0)
		}
	}
}

func TestCacheAndBudget(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Allow || v.EvidenceAge != 0 {
		t.Fatalf("first = %v age %v", v.Decision, v.EvidenceAge)
	}
	f.clock.Advance(30 * time.Second)
	if v := f.check(t, "a", UseDefaultAge); f.w.count("a") != 1 || v.EvidenceAge != 30*time.Second {
		t.Fatalf("cached answer: %d gatherings, age %v", f.w.count("a"), v.EvidenceAge)
	}
	// Older than the caller accepts, and the budget allows: gather again.
	if v := f.check(t, "a", 10*time.Second); f.w.count("a") != 2 || v.EvidenceAge != 0 || !v.CheckedAt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("fresh answer: %d gatherings, age %v, checked %v", f.w.count("a"), v.EvidenceAge, v.CheckedAt)
	}
	// Within the budget, a caller who accepts nothing older gets
	// INCONCLUSIVE with the time until the next gathering.
	f.clock.Advance(100 * time.Millisecond)
	v := f.check(t, "a", 0)
	if v.Decision != Inconclusive || reason(v) != ReasonEvidenceStale || v.RetryAfter != 900*time.Millisecond || f.w.count("a") != 2 {
		t.Fatalf("over budget: %v %s retry %v, %d gatherings", v.Decision, reason(v), v.RetryAfter, f.w.count("a"))
	}
	if len(v.Remediation) != 1 || v.Remediation[0].Action.String() != "RetryLater" {
		t.Errorf("stale remediation = %s", actions(v))
	}
	// ... while one who accepts the evidence's age gets it.
	if v := f.check(t, "a", time.Second); v.Decision != Allow || f.w.count("a") != 2 {
		t.Fatalf("within age: %v, %d gatherings", v.Decision, f.w.count("a"))
	}
	f.clock.Advance(time.Second)
	if v := f.check(t, "a", 0); v.Decision != Allow || f.w.count("a") != 3 {
		t.Fatalf("after the interval: %v, %d gatherings", v.Decision, f.w.count("a"))
	}
}

func TestFailuresAreNotCachedAsSuccesses(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.w.set("a", scim.Unreachable)
	v := f.check(t, "a", UseDefaultAge)
	if v.Decision != Inconclusive || reason(v) != ReasonUnreachable || v.RetryAfter < DefaultTransientRetryAfter {
		t.Fatalf("unreachable: %v %s retry %v", v.Decision, reason(v), v.RetryAfter)
	}
	// Within the budget the failed gathering explains the answer; it is
	// never turned into ALLOW.
	f.w.set("a", scim.Authenticated)
	f.clock.Advance(200 * time.Millisecond)
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Inconclusive || reason(v) != ReasonUnreachable || f.w.count("a") != 1 {
		t.Fatalf("within budget: %v %s, %d gatherings", v.Decision, reason(v), f.w.count("a"))
	}
	// Past the budget the next caller gathers again, although the failed
	// evidence is younger than the default age.
	f.clock.Advance(time.Second)
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Allow || f.w.count("a") != 2 {
		t.Fatalf("after the budget: %v, %d gatherings", v.Decision, f.w.count("a"))
	}
	if got := f.d.list(); len(got) != 2 || got[0] != "a=INCONCLUSIVE" || got[1] != "a=ALLOW" {
		t.Errorf("OnVerdict = %v", got)
	}
}

func TestEvidenceGatheredForTheCallSatisfiesAnyAge(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.w.hold()
	f.w.started = make(chan string, 1)
	done := make(chan Verdict)
	go func() {
		v, _ := f.g.Check(context.Background(), "a", 0)
		done <- v
	}()
	<-f.w.started
	f.clock.Advance(10 * time.Second) // SF is slow today
	f.w.release()
	if v := <-done; v.Decision != Allow || v.EvidenceAge != 10*time.Second {
		t.Fatalf("answer = %v age %v, want ALLOW from the call's own gathering", v.Decision, v.EvidenceAge)
	}
}

func TestCallerLeavingDoesNotCancelTheSharedGathering(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.w.hold()
	f.w.started = make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error)
	go func() {
		_, err := f.g.Check(ctx, "a", UseDefaultAge)
		first <- err
	}()
	<-f.w.started
	second := make(chan Verdict)
	go func() {
		v, _ := f.g.Check(context.Background(), "a", UseDefaultAge)
		second <- v
	}()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("the leaving caller got %v", err)
	}
	f.w.release()
	if v := <-second; v.Decision != Allow {
		t.Fatalf("the staying caller got %v", v.Decision)
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if f.w.ctxErr != nil || f.w.calls["a"] != 1 {
		t.Errorf("gathering context %v, %d gatherings", f.w.ctxErr, f.w.calls["a"])
	}
}

func TestInvalidate(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.check(t, "a", UseDefaultAge)
	// Within the budget: the evidence goes, and nothing replaces it yet.
	f.g.Invalidate("a")
	if v, ok := f.g.Latest("a"); !ok || v.Decision != Inconclusive || reason(v) != ReasonEvidenceMissing {
		t.Fatalf("Latest after Invalidate = %v %s %v", v.Decision, reason(v), ok)
	}
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Inconclusive || reason(v) != ReasonEvidenceStale || v.RetryAfter != time.Second {
		t.Fatalf("Check after Invalidate = %v %s retry %v", v.Decision, reason(v), v.RetryAfter)
	}
	if f.w.count("a") != 1 {
		t.Fatalf("%d gatherings within the budget", f.w.count("a"))
	}
	// Past the budget, invalidation gathers again at once.
	f.clock.Advance(2 * time.Second)
	f.g.Invalidate("a")
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Allow || f.w.count("a") != 2 {
		t.Fatalf("after Invalidate past the budget: %v, %d gatherings", v.Decision, f.w.count("a"))
	}
	// The second invalidation finds the verdict INCONCLUSIVE already.
	if got := joinList(f.d.list()); got != "a=ALLOW a=INCONCLUSIVE a=ALLOW" {
		t.Errorf("OnVerdict = %s", got)
	}
}

func TestInvalidateDiscardsAGatheringUnderWay(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.w.hold()
	f.w.started = make(chan string, 2)
	done := make(chan Verdict)
	go func() {
		v, _ := f.g.Check(context.Background(), "a", UseDefaultAge)
		done <- v
	}()
	<-f.w.started
	f.g.Invalidate("a")
	f.w.release()
	<-done // its caller gets it: it was gathered for that call
	if v, ok := f.g.Latest("a"); ok {
		t.Fatalf("pre-invalidation evidence was stored: %v", v.Decision)
	}
}

func TestLatestNeverGathers(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	if _, ok := f.g.Latest("a"); ok {
		t.Fatal("a verdict without evidence")
	}
	if _, ok := f.g.Latest("unknown"); ok {
		t.Fatal("a verdict for an unknown connection")
	}
	if f.w.count("a") != 0 {
		t.Fatal("Latest gathered")
	}
	f.check(t, "a", UseDefaultAge)
	f.clock.Advance(time.Hour)
	v, ok := f.g.Latest("a")
	if !ok || v.Decision != Allow || v.EvidenceAge != time.Hour || f.w.count("a") != 1 {
		t.Fatalf("Latest = %v %v age %v, %d gatherings", v.Decision, ok, v.EvidenceAge, f.w.count("a"))
	}
}

func receive(t *testing.T, ch <-chan Verdict) Verdict {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
	}
	return Verdict{}
}

func nothing(t *testing.T, ch <-chan Verdict) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected verdict %v %s", v.Decision, reason(v))
	default:
	}
}

func TestSubscribe(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	ctx := context.Background()
	ch, cancel, err := f.g.Subscribe("a")
	if err != nil {
		t.Fatal(err)
	}
	// No evidence yet: the subscription gathers it.
	if v := receive(t, ch); v.Decision != Allow {
		t.Fatalf("first = %v", v.Decision)
	}
	// The same evidence, gathered again, is no change.
	f.clock.Advance(2 * time.Second)
	if _, err := f.g.Refresh(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if f.w.count("a") != 2 {
		t.Fatalf("%d gatherings", f.w.count("a"))
	}
	nothing(t, ch)
	if v, _ := f.g.Latest("a"); !v.CheckedAt.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("Latest did not take the new timestamp: %v", v.CheckedAt)
	}
	f.w.set("a", scim.InvalidClientCertificate)
	f.clock.Advance(2 * time.Second)
	f.g.Refresh(ctx, "a")
	if v := receive(t, ch); v.Decision != Deny {
		t.Fatalf("change = %v", v.Decision)
	}
	// A slow reader sees only the latest verdict.
	f.w.set("a", scim.Unreachable)
	f.clock.Advance(2 * time.Second)
	f.g.Refresh(ctx, "a")
	f.w.set("a", scim.Authenticated)
	f.clock.Advance(2 * time.Second)
	f.g.Refresh(ctx, "a")
	if v := receive(t, ch); v.Decision != Allow {
		t.Fatalf("latest = %v", v.Decision)
	}
	nothing(t, ch)

	// A second subscriber starts from the current verdict, without a
	// gathering.
	ch2, cancel2, _ := f.g.Subscribe("a")
	if v := receive(t, ch2); v.Decision != Allow || f.w.count("a") != 5 {
		t.Fatalf("second subscriber: %v, %d gatherings", v.Decision, f.w.count("a"))
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
	cancel2()
	want := "a=ALLOW a=DENY a=INCONCLUSIVE a=ALLOW"
	if got := joinList(f.d.list()); got != want {
		t.Errorf("OnVerdict = %s, want %s", got, want)
	}
}

func joinList(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

type fakeOps struct {
	mu      sync.Mutex
	running string
	ended   time.Time
	last    *Reregistration
}

func (o *fakeOps) Activity(context.Context, string) (string, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.running, o.ended
}

func (o *fakeOps) LastReregistration(context.Context, string) *store.Operation {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		return nil
	}
	return &store.Operation{ID: o.last.ID, State: store.OperationState(o.last.State), EndTime: o.last.Ended, Automatic: o.last.Automatic, Reason: o.last.Reason}
}

func (o *fakeOps) Get(_ context.Context, id string) (*store.Operation, error) {
	return &store.Operation{ID: id, State: store.StateRunning}, nil
}

func (o *fakeOps) set(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.running = id
}

func TestRunningReregistrationOverridesCachedEvidence(t *testing.T) {
	ops := &fakeOps{}
	f := newFixture(t, Options{Operations: ops, RunningRetryAfter: 7 * time.Second}, "a")
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Allow {
		t.Fatalf("before: %v", v.Decision)
	}
	ops.set("op1")
	v := f.check(t, "a", UseDefaultAge)
	if v.Decision != Inconclusive || reason(v) != ReasonReregistrationRunning || v.RetryAfter != 7*time.Second {
		t.Fatalf("while running: %v %s retry %v", v.Decision, reason(v), v.RetryAfter)
	}
	if l, _ := f.g.Latest("a"); l.Decision != Inconclusive {
		t.Errorf("Latest while running = %v", l.Decision)
	}
	ops.set("")
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Allow {
		t.Fatalf("after: %v", v.Decision)
	}
	if f.w.count("a") != 1 {
		t.Errorf("%d gatherings; the running state needs none", f.w.count("a"))
	}
	if got := joinList(f.d.list()); got != "a=ALLOW a=INCONCLUSIVE a=ALLOW" {
		t.Errorf("OnVerdict = %s", got)
	}
}

// TestReregistrationEndedUnseen: a re-registration that started and ended
// between two answers (another replica's, or one too quick for anyone to ask
// meanwhile) still makes the evidence gathered before it worthless: the next
// answer comes from a new gathering, never from the cache.
func TestReregistrationEndedUnseen(t *testing.T) {
	ops := &fakeOps{}
	f := newFixture(t, Options{Operations: ops}, "a")
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Allow {
		t.Fatalf("before: %v", v.Decision)
	}
	f.w.set("a", scim.InvalidClientCertificate)
	f.clock.Advance(5 * time.Second)
	ops.mu.Lock()
	ops.ended = f.clock.Now().Add(-time.Second)
	ops.mu.Unlock()
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Deny {
		t.Fatalf("after an unseen re-registration: %v from the cache", v.Decision)
	}
	if n := f.w.count("a"); n != 2 {
		t.Errorf("%d gatherings, want 2", n)
	}
	// Evidence gathered after the end stays good.
	if v := f.check(t, "a", UseDefaultAge); v.Decision != Deny || f.w.count("a") != 2 {
		t.Errorf("then: %v after %d gatherings, want the cached DENY", v.Decision, f.w.count("a"))
	}

	// A watcher that starts after another such end is not shown the
	// cached DENY as current: it sees the evidence missing (unless the new
	// gathering's verdict already replaced that), then the new ALLOW.
	f.w.set("a", scim.Authenticated)
	f.clock.Advance(5 * time.Second)
	ops.mu.Lock()
	ops.ended = f.clock.Now().Add(-time.Second)
	ops.mu.Unlock()
	ch, cancel, err := f.g.Subscribe("a")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	v := receive(t, ch)
	if v.Decision == Inconclusive && reason(v) == ReasonEvidenceMissing {
		v = receive(t, ch)
	}
	if v.Decision != Allow {
		t.Errorf("watch: %v %s, want the new ALLOW", v.Decision, reason(v))
	}
}

func TestUnknownConnectionAndClose(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	_, err := f.g.Check(context.Background(), "nope", UseDefaultAge)
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.NotFound || fe.Reason != "CONNECTION_NOT_FOUND" {
		t.Fatalf("unknown connection: %v", err)
	}
	if _, _, err := f.g.Subscribe("nope"); err == nil {
		t.Fatal("Subscribe to an unknown connection")
	}
	ch, _, err := f.g.Subscribe("a")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ch)
	f.g.Close()
	f.g.Close()
	for range ch {
	}
	f.clock.Advance(time.Hour)
	if _, err := f.g.Check(context.Background(), "a", UseDefaultAge); err != ErrClosed {
		t.Fatalf("Check after Close: %v", err)
	}
	if _, _, err := f.g.Subscribe("a"); err != ErrClosed {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestCloseEndsGatheringsUnderWay(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	f.w.hold()
	f.w.started = make(chan string, 1)
	done := make(chan error)
	go func() {
		_, err := f.g.Check(context.Background(), "a", UseDefaultAge)
		done <- err
	}()
	<-f.w.started
	f.g.Close() // the held gathering sees its context end
	if err := <-done; err != nil {
		t.Fatalf("the caller got %v", err)
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if !errors.Is(f.w.ctxErr, context.Canceled) {
		t.Errorf("gathering context = %v", f.w.ctxErr)
	}
}

type fakeLocker struct {
	mu     sync.Mutex
	keys   map[string]int
	refuse map[string]bool
	err    error
}

func (l *fakeLocker) TryLock(_ context.Context, key string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ttl <= 0 {
		return false, errors.New("no ttl")
	}
	l.keys[key]++
	return !l.refuse[key], l.err
}

func TestRunRefreshesAndStops(t *testing.T) {
	locker := &fakeLocker{keys: map[string]int{}, refuse: map[string]bool{"refresh:b": true}}
	ids := []string{"a", "b", "c", "d", "e"}
	f := newFixture(t, Options{Now: time.Now, RefreshInterval: 20 * time.Millisecond, ProbeInterval: time.Nanosecond, RefreshConcurrency: 2, Locker: locker}, ids...)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- f.g.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range []string{"a", "c", "d", "e"} {
		for f.w.count(id) < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%s refreshed %d times", id, f.w.count(id))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if f.w.count("b") != 0 {
		t.Errorf("b was refreshed %d times although another replica holds its lock", f.w.count("b"))
	}
	locker.mu.Lock()
	if locker.keys["refresh:b"] == 0 || locker.keys["refresh:a"] == 0 {
		t.Errorf("lock keys = %v", locker.keys)
	}
	locker.mu.Unlock()
	for _, id := range []string{"a", "c"} {
		if v, ok := f.g.Latest(id); !ok || v.Decision != Allow {
			t.Errorf("Latest(%s) = %v %v", id, v.Decision, ok)
		}
	}
}

func TestRunRefreshesWhenTheLockerFails(t *testing.T) {
	locker := &fakeLocker{keys: map[string]int{}, err: errors.New("database down")}
	f := newFixture(t, Options{Now: time.Now, RefreshInterval: 10 * time.Millisecond, ProbeInterval: time.Nanosecond}, "a")
	f.g.o.Locker = locker
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- f.g.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for f.w.count("a") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-stopped
	if f.w.count("a") < 2 {
		t.Fatalf("refreshed %d times", f.w.count("a"))
	}
}

func TestRunDisabled(t *testing.T) {
	f := newFixture(t, Options{}, "a")
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- f.g.Run(ctx) }()
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if f.w.count("a") != 0 {
		t.Fatal("a disabled refresh gathered")
	}
}
