// Package gate answers "may this provisioning job run now?": checks turn
// evidence into conditions, conditions into a verdict. Evidence is cached and
// shared between concurrent callers, refreshed in the background, and never
// gathered faster than SF can bear.
package gate

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/store"
)

// Operations says what re-registrations are doing; the re-registration
// manager satisfies it.
type Operations interface {
	// Activity returns the id of a running re-registration of the
	// connection ("" when none) and when its latest re-registration ended,
	// as far as this replica knows (zero when none did): evidence gathered
	// before then no longer holds. The gate asks on every answer.
	Activity(ctx context.Context, connID string) (running string, lastEnded time.Time)
	// LastReregistration returns the connection's latest finished
	// re-registration (not a validate-only run), or nil.
	LastReregistration(ctx context.Context, connID string) *store.Operation
	// Get returns one operation: the gate asks who started a running one.
	Get(ctx context.Context, id string) (*store.Operation, error)
}

// Locker lets several replicas share the background refresh: the replica
// that gets the lock refreshes, the others skip. The store satisfies it.
type Locker interface {
	// TryLock takes key for ttl unless someone else holds it; it never
	// waits.
	TryLock(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// Defaults, as DESIGN.md sets them.
const (
	// DefaultProbeInterval is the evidence budget: at most one gathering
	// (one probe, one registry read) per connection per interval
	// (--gate-probe-interval).
	DefaultProbeInterval = time.Second
	// DefaultMaxEvidenceAge is the oldest evidence a caller accepts when it
	// does not say.
	DefaultMaxEvidenceAge = 2 * time.Minute
	// DefaultRefreshInterval is --refresh-interval's default. Options take
	// 0 as "disabled", so the wiring passes the flag's value.
	DefaultRefreshInterval = time.Minute
	// DefaultRefreshConcurrency bounds the background refresh's gatherings.
	DefaultRefreshConcurrency = 4
	// DefaultRefreshJitter spreads refreshes by ±10% of the interval, so
	// that connections (and replicas) do not probe SF in lockstep.
	DefaultRefreshJitter = 0.1
	// DefaultGatherTimeout bounds one gathering: the probe's own timeout
	// (10 s) runs beside the registry's retried reads.
	DefaultGatherTimeout = 30 * time.Second
)

// UseDefaultAge asks Check for Options.DefaultMaxEvidenceAge; callers pass it
// when the request carries no max_evidence_age. 0 is a real value: only
// evidence from this very instant, or gathered for this request.
const UseDefaultAge time.Duration = -1

// Options configure a Gate. Every dependency is passed here.
type Options struct {
	// Inventory holds the connections the gate answers for.
	Inventory *inventory.Inventory
	// Operations reports re-registrations; nil means none ever runs.
	Operations Operations
	// Jobs reads IPS's latest READ job, the evidence for IPS's own mapping
	// when the probe uses a separate identity; nil means none.
	Jobs *ipsjobs.Tracker
	// Locker shares the background refresh between replicas; nil means
	// this replica always refreshes.
	Locker Locker
	// Now is the clock that stamps and ages evidence; nil means time.Now.
	// The background refresh schedules on the real clock.
	Now func() time.Time
	// ProbeInterval is the per-connection evidence budget; 0 means
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// DefaultMaxEvidenceAge applies when a caller gives none; 0 means
	// DefaultMaxEvidenceAge.
	DefaultMaxEvidenceAge time.Duration
	// RefreshInterval is how often Run refreshes each connection; 0 (or
	// less) disables the background refresh.
	RefreshInterval time.Duration
	// RefreshConcurrency bounds concurrent background gatherings; 0 means
	// DefaultRefreshConcurrency.
	RefreshConcurrency int
	// RefreshJitter is the fraction of RefreshInterval by which each
	// refresh is moved at random; 0 means DefaultRefreshJitter, negative
	// means none.
	RefreshJitter float64
	// GatherTimeout bounds one gathering; 0 means DefaultGatherTimeout.
	GatherTimeout time.Duration
	// Expiry are the certificate expiry thresholds; zero fields take
	// DefaultExpiry's.
	Expiry ExpiryThresholds
	// RunningRetryAfter is the retry hint while a re-registration runs; 0
	// means DefaultRunningRetryAfter.
	RunningRetryAfter time.Duration
	// OnVerdict is called whenever a connection's verdict changes (its
	// decision or its conditions), in order, with the new decision: the
	// wiring maps it onto the per-connection health status. It runs under
	// the connection's lock, so it must be quick and must not call back
	// into the Gate.
	OnVerdict func(connID string, d Decision)
	// OnEvidence, when set, sees every gathering (metrics); it runs outside
	// any lock and must not block.
	OnEvidence func(ev *Evidence)
	// OnBackgroundRefresh, when set, sees the evidence the background
	// refresh looked at (automatic remediation acts on it, never on a
	// caller's gate request).
	OnBackgroundRefresh func(ctx context.Context, ev *Evidence)
	Logger              *slog.Logger
}

// Gate is the pre-job gate. It is safe for concurrent use.
type Gate struct {
	o      Options
	policy Policy
	now    func() time.Time
	log    *slog.Logger

	entries map[string]*entry
	list    []*entry // in inventory order, for the background refresh

	// collectFn gathers evidence; tests replace it.
	collectFn func(ctx context.Context, e *entry, start time.Time) *Evidence

	// base bounds every gathering: shared gatherings must not die with
	// the caller that happened to start them, only with the Gate.
	base   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // gatherings in flight
}

// entry is one connection's cache. Its fields are guarded by mu.
type entry struct {
	conn *inventory.Connection
	id   string

	mu sync.Mutex
	// ev is the latest gathering, complete or not, and v its verdict.
	ev *Evidence
	v  Verdict
	// started is when the latest gathering started: the budget counts
	// from it.
	started time.Time
	// inflight is the gathering under way, which callers join.
	inflight *call
	// gen changes on Invalidate, so that a gathering that started before
	// does not store pre-invalidation evidence.
	gen uint64
	// published is the verdict last announced to OnVerdict and watchers.
	published    Verdict
	hasPublished bool
	subs         map[*subscriber]struct{}
}

// call is one gathering that callers wait for together.
type call struct {
	done chan struct{}
	// v and next are set before done closes.
	v Verdict
	// next is when the budget allows the following gathering.
	next time.Time
}

// ErrClosed is returned once the Gate is closed.
var ErrClosed = fault.New(fault.Unavailable, "GATE_CLOSED", "the gate is shutting down; ask another replica or try again")

// New builds a Gate over the inventory's connections. It starts nothing; Run
// starts the background refresh, and Close must be called to end gatherings
// still in flight.
func New(o Options) *Gate {
	var conns []*inventory.Connection
	if o.Inventory != nil {
		conns = o.Inventory.All()
	}
	return newGate(o, conns)
}

func newGate(o Options, conns []*inventory.Connection) *Gate {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.DefaultMaxEvidenceAge <= 0 {
		o.DefaultMaxEvidenceAge = DefaultMaxEvidenceAge
	}
	if o.RefreshConcurrency <= 0 {
		o.RefreshConcurrency = DefaultRefreshConcurrency
	}
	if o.RefreshJitter == 0 {
		o.RefreshJitter = DefaultRefreshJitter
	}
	o.RefreshJitter = min(max(o.RefreshJitter, 0), 1)
	if o.GatherTimeout <= 0 {
		o.GatherTimeout = DefaultGatherTimeout
	}
	g := &Gate{
		o:       o,
		policy:  Policy{Expiry: o.Expiry, RunningRetryAfter: o.RunningRetryAfter}.withDefaults(),
		now:     o.Now,
		log:     o.Logger,
		entries: map[string]*entry{},
	}
	g.collectFn = func(ctx context.Context, e *entry, start time.Time) *Evidence { return g.collect(ctx, e.conn, start) }
	g.base, g.cancel = context.WithCancel(context.Background())
	for _, c := range conns {
		e := &entry{conn: c, id: c.Config.ID, subs: map[*subscriber]struct{}{}}
		g.entries[e.id] = e
		g.list = append(g.list, e)
	}
	return g
}

// Close ends gatherings in flight, waits for them, and ends every
// subscription. Call it after the gRPC server stopped and Run returned.
func (g *Gate) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
	for _, e := range g.list {
		e.mu.Lock()
		for s := range e.subs {
			close(s.ch)
			delete(e.subs, s)
		}
		e.mu.Unlock()
	}
}

func (g *Gate) entry(id string) (*entry, error) {
	e, ok := g.entries[id]
	if !ok {
		return nil, fault.New(fault.NotFound, "CONNECTION_NOT_FOUND", "connection %q is not configured", "connections/"+id).With("connection", "connections/"+id)
	}
	return e, nil
}

// Check answers the gate for one connection. It answers from cached evidence
// no older than maxAge (UseDefaultAge for the default); otherwise it gathers,
// sharing one gathering with every concurrent caller, within the budget of
// one gathering per ProbeInterval. A caller the budget turns away gets the
// freshest evidence if it is young enough, else INCONCLUSIVE (EvidenceStale)
// with RetryAfter set to when the next gathering is allowed. Evidence
// gathered for this call satisfies any maxAge.
func (g *Gate) Check(ctx context.Context, connID string, maxAge time.Duration) (Verdict, error) {
	e, err := g.entry(connID)
	if err != nil {
		return Verdict{}, err
	}
	if maxAge < 0 {
		maxAge = g.o.DefaultMaxEvidenceAge
	}
	running, ended, hasOps := g.activity(ctx, connID)

	e.mu.Lock()
	now := g.now()
	g.forgetOutdatedLocked(e, ended, now)
	if e.ev.Complete() && now.Sub(e.ev.CheckedAt) <= maxAge {
		v := g.currentLocked(e, running, hasOps, now)
		e.mu.Unlock()
		return v, nil
	}
	c, err := g.startLocked(e, now)
	if err != nil {
		e.mu.Unlock()
		return Verdict{}, err
	}
	if c == nil {
		v := g.turnedAwayLocked(e, running, hasOps, now, maxAge)
		e.mu.Unlock()
		return v, nil
	}
	e.mu.Unlock()
	return g.wait(ctx, c)
}

// Refresh gathers a connection's evidence now if the budget allows (or joins
// a gathering under way) and returns the resulting verdict; when the budget
// does not allow, it returns the current verdict without gathering.
func (g *Gate) Refresh(ctx context.Context, connID string) (Verdict, error) {
	e, err := g.entry(connID)
	if err != nil {
		return Verdict{}, err
	}
	return g.refresh(ctx, e)
}

func (g *Gate) refresh(ctx context.Context, e *entry) (Verdict, error) {
	_, ended, _ := g.activity(ctx, e.id)
	e.mu.Lock()
	now := g.now()
	g.forgetOutdatedLocked(e, ended, now)
	c, err := g.startLocked(e, now)
	if err != nil || c == nil {
		v := e.published.withAge(now)
		e.mu.Unlock()
		return v, err
	}
	e.mu.Unlock()
	return g.wait(ctx, c)
}

// Latest returns the connection's latest verdict without gathering anything:
// health checks and listings use it, and a health check never starts a
// probe. It is false when the connection has had no verdict yet.
func (g *Gate) Latest(connID string) (Verdict, bool) {
	e, ok := g.entries[connID]
	if !ok {
		return Verdict{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.hasPublished {
		return Verdict{}, false
	}
	return e.published.withAge(g.now()), true
}

// Invalidate drops a connection's evidence: a re-registration's end calls
// it, since what SF maps has changed. Watchers and OnVerdict learn that the
// verdict is INCONCLUSIVE until new evidence arrives, and a gathering starts
// at once if the budget allows.
func (g *Gate) Invalidate(connID string) {
	e, ok := g.entries[connID]
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := g.now()
	g.invalidateLocked(e, now)
	if _, err := g.startLocked(e, now); err != nil {
		g.log.Debug("gate: no gathering after invalidation", "connection", connID, "err", err)
	}
}

func (g *Gate) invalidateLocked(e *entry, now time.Time) {
	e.gen++
	e.ev, e.v, e.inflight = nil, Verdict{}, nil
	if e.hasPublished {
		g.publishLocked(e, missingVerdict(e.id, now))
	}
}

// forgetOutdatedLocked drops the evidence, and a gathering under way, that
// started before the connection's latest re-registration ended. Invalidate
// does so when this replica's own operation ends; this catches the ends it
// is not told of (another replica's, seen within a second) and the instant
// between an end being stored, where callers can already read it, and
// Invalidate. Every path that answers from the cache or decides whether to
// gather calls it first; Latest, which must never touch the store, does
// not.
func (g *Gate) forgetOutdatedLocked(e *entry, ended, now time.Time) {
	if ended.IsZero() {
		return
	}
	if (e.ev != nil && !e.ev.CheckedAt.After(ended)) || (e.inflight != nil && !e.started.After(ended)) {
		g.invalidateLocked(e, now)
	}
}

// activity asks Operations what runs and what ended; hasOps is false when
// the gate has no Operations to ask.
func (g *Gate) activity(ctx context.Context, connID string) (running string, ended time.Time, hasOps bool) {
	if g.o.Operations == nil {
		return "", time.Time{}, false
	}
	running, ended = g.o.Operations.Activity(ctx, connID)
	return running, ended, true
}

// currentLocked answers from the cached evidence. A re-registration that
// started or ended since the gathering changes the verdict at once: the gate
// must not ALLOW while the mapping is being replaced, and that is worth a
// cheap question to Operations on every answer.
func (g *Gate) currentLocked(e *entry, running string, hasOps bool, now time.Time) Verdict {
	if hasOps && running != e.ev.Running {
		ev := *e.ev
		ev.Running = running
		e.ev, e.v = &ev, Decide(&ev, g.policy)
		g.publishLocked(e, e.v)
	}
	v := e.v.withAge(now)
	if v.Decision == Inconclusive {
		v.RetryAfter = max(v.RetryAfter, e.started.Add(g.o.ProbeInterval).Sub(now))
	}
	return v
}

// turnedAwayLocked answers a caller the budget turned away.
func (g *Gate) turnedAwayLocked(e *entry, running string, hasOps bool, now time.Time, maxAge time.Duration) Verdict {
	wait := e.started.Add(g.o.ProbeInterval).Sub(now)
	if e.ev != nil && now.Sub(e.ev.CheckedAt) <= maxAge {
		// Incomplete, but young enough: it explains why the answer is
		// INCONCLUSIVE better than "stale" would.
		return g.currentLocked(e, running, hasOps, now)
	}
	return staleVerdict(e, now, maxAge, g.o.ProbeInterval, wait)
}

// startLocked returns the gathering under way, or starts one if the budget
// allows; nil means the budget does not allow one now.
func (g *Gate) startLocked(e *entry, now time.Time) (*call, error) {
	if e.inflight != nil {
		return e.inflight, nil
	}
	if !e.started.IsZero() && now.Sub(e.started) < g.o.ProbeInterval {
		return nil, nil
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	g.wg.Add(1)
	g.mu.Unlock()
	c := &call{done: make(chan struct{}), next: now.Add(g.o.ProbeInterval)}
	e.inflight, e.started = c, now
	go g.gather(e, c, e.gen, now)
	return c, nil
}

func (g *Gate) gather(e *entry, c *call, gen uint64, start time.Time) {
	defer g.wg.Done()
	ctx, cancel := context.WithTimeout(g.base, g.o.GatherTimeout)
	ev := g.collectFn(ctx, e, start)
	cancel()
	if g.o.OnEvidence != nil {
		g.o.OnEvidence(ev)
	}
	v := Decide(ev, g.policy)
	g.log.Debug("gate: evidence gathered", "connection", e.id, "decision", v.Decision.String(), "complete", ev.Complete())

	e.mu.Lock()
	c.v = v
	if e.gen == gen {
		e.ev, e.v = ev, v
		g.publishLocked(e, v)
	}
	if e.inflight == c {
		e.inflight = nil
	}
	e.mu.Unlock()
	close(c.done)
}

func (g *Gate) wait(ctx context.Context, c *call) (Verdict, error) {
	select {
	case <-c.done:
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
	now := g.now()
	v := c.v.withAge(now)
	if v.Decision == Inconclusive {
		v.RetryAfter = max(v.RetryAfter, c.next.Sub(now))
	}
	return v, nil
}

// publishLocked announces v if it differs from the last verdict announced;
// a verdict that differs only in its timestamps replaces it silently, so
// that Latest shows the fresh CheckedAt.
func (g *Gate) publishLocked(e *entry, v Verdict) {
	if e.hasPublished && e.published.SameAs(v) {
		e.published = v
		return
	}
	if !e.hasPublished || e.published.Decision != v.Decision {
		g.log.Info("gate verdict", "connection", e.id, "decision", v.Decision.String(), "reasons", v.Reasons())
	}
	e.published, e.hasPublished = v, true
	for s := range e.subs {
		s.offer(v.withAge(g.now()))
	}
	if g.o.OnVerdict != nil {
		g.o.OnVerdict(e.id, v.Decision)
	}
}

// staleVerdict is the answer to a caller whose max_evidence_age the cached
// evidence exceeds while the budget forbids gathering again.
func staleVerdict(e *entry, now time.Time, maxAge, interval, wait time.Duration) Verdict {
	v := Verdict{Connection: e.id, Decision: Inconclusive, RetryAfter: max(wait, time.Millisecond)}
	msg := fmt.Sprintf("there is no evidence yet, and the gate gathers evidence for a connection at most once per %s", interval)
	if e.ev != nil {
		v.CheckedAt = e.ev.CheckedAt
		msg = fmt.Sprintf("the freshest evidence (it said %s) is %s old, older than the %s this request accepts, and the gate gathers evidence for a connection at most once per %s",
			e.v.Decision, now.Sub(e.ev.CheckedAt).Round(time.Millisecond), maxAge, interval)
	}
	v.Conditions = []Condition{{Type: TypeEvidenceFresh, Status: Unknown, Severity: Warning, Reason: ReasonEvidenceStale,
		Message: msg, ObservedTime: now, Source: FromProbe, Inconclusive: true}}
	v.Remediation = pick(diagnose.CauseServerError, diagnose.Situation{}, diagnose.ActionRetryLater)
	v.Summary = "Cannot tell whether the job would succeed (EvidenceStale); ask again after retry_after."
	return v.withAge(now)
}

// missingVerdict is what watchers see after Invalidate, until new evidence
// arrives.
func missingVerdict(connID string, now time.Time) Verdict {
	return Verdict{
		Connection: connID, Decision: Inconclusive, RetryAfter: DefaultTransientRetryAfter,
		Conditions: []Condition{{Type: TypeEvidenceFresh, Status: Unknown, Severity: Warning, Reason: ReasonEvidenceMissing,
			Message:      "the connection changed (a re-registration ended), so its earlier evidence no longer holds; new evidence is being gathered",
			ObservedTime: now, Source: FromOperation, Inconclusive: true}},
		Summary: "Cannot tell whether the job would succeed (EvidenceMissing); ask again after retry_after.",
	}
}
