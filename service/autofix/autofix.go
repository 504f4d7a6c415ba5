// Package autofix is opt-in automatic remediation: when the background
// refresh sees, twice in a row, a pattern that re-registration fixes (the
// seed's: fingerprints match and SF answers AUTH0032; or a renewal not yet
// uploaded), it starts a re-registration under the service's own identity,
// inside the connection's change windows and within its daily budget. It
// never acts on a caller's gate request, never on causes re-registration
// cannot fix, and never again after a re-registration that did not help.
package autofix

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/store"
)

// Identity is the name automatic actions are recorded under.
const Identity = "certsync"

// Pattern names what re-registration fixes.
type Pattern string

// Patterns.
const (
	PatternNone           Pattern = ""
	PatternNotSynced      Pattern = "fingerprints match but SF answers AUTH0032 (KBA 3505973)"
	PatternRenewalPending Pattern = "IPS's active certificate is valid and differs from SF's (a renewal not yet uploaded)"
)

// Classify says which fixable pattern the evidence shows, if any. It asks
// for complete evidence: never during an SF outage, or while SF's mappings
// cannot be read.
func Classify(ev *gate.Evidence, now time.Time) Pattern {
	if !ev.Complete() || ev.Comparison == nil || ev.Source == nil {
		return PatternNone
	}
	if ev.Source.Expired(now) || ev.Source.NotYetValid(now) || !ev.Source.ClientAuth {
		return PatternNone
	}
	switch c := ev.Comparison; {
	case c.Result == compare.ResultMatch && ev.Probe.Outcome == scim.InvalidClientCertificate && ev.Probe.ErrorCode == "AUTH0032":
		// SF's rejection speaks for IPS's mapping only when the probe
		// presented IPS's certificate; a separate identity's rejection
		// says nothing about it (re-registering would touch a mapping
		// that may work).
		if !ev.ProbePresentsSource() {
			return PatternNone
		}
		return PatternNotSynced
	case c.Result == compare.ResultMismatch && c.SameSubjectAndIssuer:
		// SF answered about the certificate: it did not ask for other
		// credentials or refuse permissions, which a new upload does
		// not fix.
		switch ev.Probe.Outcome {
		case scim.Authenticated, scim.InvalidClientCertificate, scim.TLSRejected:
			return PatternRenewalPending
		}
	}
	return PatternNone
}

// Options configure the Remediator.
type Options struct {
	Ops         *reregister.Manager
	Store       store.Store
	Connections []config.Connection
	// RefreshInterval is the background refresh's: two sightings count as
	// "in a row" only within two and a half of them. 0 means the gate's
	// default.
	RefreshInterval time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
}

// Remediator watches the background refresh.
type Remediator struct {
	o   Options
	cfg map[string]config.AutoRemediation

	mu     sync.Mutex
	streak map[string]streak
}

type streak struct {
	pattern Pattern
	etag    string
	count   int
	// seen is the CheckedAt of the last evidence counted: the same
	// gathering handed over twice is one sighting.
	seen time.Time
}

// New builds a Remediator; connections without auto_remediation.enabled
// are never touched.
func New(o Options) (*Remediator, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Remediator{o: o, cfg: map[string]config.AutoRemediation{}, streak: map[string]streak{}}
	for _, c := range o.Connections {
		if !c.AutoRemediation.Enabled {
			continue
		}
		for _, w := range c.AutoRemediation.Windows {
			if _, err := ParseWindow(w); err != nil {
				return nil, fmt.Errorf("connections[%s].auto_remediation.windows: %w", c.ID, err)
			}
		}
		r.cfg[c.ID] = c.AutoRemediation
	}
	return r, nil
}

// Observe is gate.Options.OnBackgroundRefresh.
func (r *Remediator) Observe(ctx context.Context, ev *gate.Evidence) {
	cfg, ok := r.cfg[ev.Connection]
	if !ok {
		return
	}
	now := r.o.Now()
	p := Classify(ev, now)
	r.mu.Lock()
	s := r.streak[ev.Connection]
	if ev.CheckedAt.Equal(s.seen) {
		r.mu.Unlock()
		return // this gathering was counted already
	}
	if p == PatternNone || p != s.pattern || etagOf(ev) != s.etag || ev.CheckedAt.Sub(s.seen) > r.maxGap() {
		s = streak{pattern: p, etag: etagOf(ev)}
	}
	s.count++
	s.seen = ev.CheckedAt
	if p == PatternNone {
		s.count = 0
	}
	r.streak[ev.Connection] = s
	r.mu.Unlock()
	if p == PatternNone || s.count < 2 || ev.Running != "" {
		return
	}
	log := r.o.Logger.With("connection", ev.Connection, "pattern", string(p))
	if !inWindows(cfg.Windows, now) {
		log.Info("automatic remediation waits for the connection's change window")
		return
	}
	max := cfg.MaxPerDay
	if max <= 0 {
		max = 1
	}
	day, err := r.lastDay(ctx, ev.Connection, now)
	if err != nil {
		log.Warn("automatic remediation: cannot read the last day's operations", "err", err)
		return
	}
	// A re-registration that did not help is not tried again: the next step
	// is a person (check sf.company.id, then escalate).
	if day.didNotHelp != "" {
		log.Info("automatic remediation skipped: a re-registration in the last 24 hours did not help; escalate instead", "operation", day.didNotHelp)
		return
	}
	if day.automatic >= max {
		log.Info("automatic remediation budget used up for today", "used", day.automatic, "max_per_day", max)
		return
	}
	audit := &store.AuditEvent{Time: now, Identity: Identity, Role: "service", RPC: "automatic-remediation",
		Connection: "connections/" + ev.Connection, Reason: "automatic remediation: " + string(p), Outcome: "OK"}
	op, err := r.o.Ops.Start(ctx, reregister.Request{
		Connection: ev.Connection, Etag: ev.Comparison.Etag, RequestedBy: Identity, Automatic: true,
		Reason: "automatic remediation: " + string(p), Audit: audit,
	})
	if err != nil {
		log.Warn("automatic remediation not started", "err", err)
		return
	}
	r.mu.Lock()
	delete(r.streak, ev.Connection)
	r.mu.Unlock()
	log.Info("automatic remediation started", "operation", op.ID, "audit.sequence", audit.Sequence)
}

func etagOf(ev *gate.Evidence) string {
	if ev.Comparison == nil {
		return ""
	}
	return ev.Comparison.Etag
}

// maxGap is how far apart two sightings may be and still be "in a row".
func (r *Remediator) maxGap() time.Duration {
	interval := r.o.RefreshInterval
	if interval <= 0 {
		interval = gate.DefaultRefreshInterval
	}
	return interval * 5 / 2
}

// day is what the last 24 hours say about a connection's re-registrations.
type day struct {
	automatic int // automatic ones started
	// didNotHelp is the latest real one that ended in the last 24 hours,
	// cancelled ones aside, when it ended FAILED or ROLLED_BACK.
	didNotHelp string
}

// lastDay reads every operation of the connection created in the last two
// days, page by page (validate-only runs must not push real ones off a
// single page): an operation created yesterday may have ended today.
func (r *Remediator) lastDay(ctx context.Context, connID string, now time.Time) (day, error) {
	var d day
	judged := false // the latest real outcome was seen
	f := store.ListFilter{Connection: connID, PageSize: 100}
	for {
		ops, next, err := r.o.Store.ListOperations(ctx, f)
		if err != nil {
			return d, err
		}
		for _, op := range ops {
			if now.Sub(op.CreateTime) >= 48*time.Hour {
				return d, nil // newest first: the rest is older
			}
			if op.Automatic && now.Sub(op.CreateTime) < 24*time.Hour {
				d.automatic++
			}
			if judged || op.ValidateOnly || !op.Done() || op.State == store.StateCancelled || now.Sub(op.EndTime) >= 24*time.Hour {
				continue
			}
			judged = true
			if op.State == store.StateFailed || op.State == store.StateRolledBack {
				d.didNotHelp = op.ID
			}
		}
		if next == "" {
			return d, nil
		}
		f.PageToken = next
	}
}

// Window is a weekly change window in UTC.
type Window struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight; end may be <= start (past midnight)
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindow reads "Mon-Fri 22:00-04:00", "Sat 00:00-24:00" or "Mon,Wed 01:00-02:00".
func ParseWindow(s string) (Window, error) {
	var w Window
	f := strings.Fields(s)
	if len(f) != 2 {
		return w, fmt.Errorf("%q: want DAYS HH:MM-HH:MM, e.g. \"Mon-Fri 22:00-04:00\"", s)
	}
	for _, part := range strings.Split(strings.ToLower(f[0]), ",") {
		from, to, rng := strings.Cut(part, "-")
		a, ok1 := dayNames[from]
		b := a
		ok2 := true
		if rng {
			b, ok2 = dayNames[to]
		}
		if !ok1 || !ok2 {
			return w, fmt.Errorf("%q: days are Mon..Sun, as Mon-Fri or Mon,Wed", s)
		}
		for d := a; ; d = (d + 1) % 7 {
			w.days[d] = true
			if d == b {
				break
			}
		}
	}
	from, to, ok := strings.Cut(f[1], "-")
	var err1, err2 error
	w.start, err1 = minutes(from)
	w.end, err2 = minutes(to)
	if !ok || err1 != nil || err2 != nil || w.start == w.end {
		return w, fmt.Errorf("%q: times are HH:MM-HH:MM (UTC) and must differ", s)
	}
	return w, nil
}

func minutes(hm string) (int, error) {
	h, m, ok := strings.Cut(hm, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("bad time %q", hm)
	}
	return hh*60 + mm, nil
}

// Contains reports whether t (UTC) falls in the window.
func (w Window) Contains(t time.Time) bool {
	t = t.UTC()
	m := t.Hour()*60 + t.Minute()
	if w.start < w.end {
		return w.days[t.Weekday()] && m >= w.start && m < w.end
	}
	// Past midnight: the evening part belongs to the listed day, the
	// morning part to the day before.
	if m >= w.start {
		return w.days[t.Weekday()]
	}
	return m < w.end && w.days[(t.Weekday()+6)%7]
}

func inWindows(ws []string, t time.Time) bool {
	if len(ws) == 0 {
		return true
	}
	for _, s := range ws {
		if w, err := ParseWindow(s); err == nil && w.Contains(t) {
			return true
		}
	}
	return false
}
