// Package reregister runs the journaled delete-and-upload of an SF
// certificate mapping, and recovers operations interrupted by a crash.
//
// SF keys a mapping by issuer and subject, so the new mapping cannot be added
// beside the old one: between the delete and the upload nothing
// authenticates. Every step is therefore journaled in the store before and
// after its side effect, the certificate to upload and the mapping deleted
// are journaled before any delete, and recovery rolls forward (uploads) once
// the delete may have happened.
package reregister

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/store"
)

// Defaults.
const (
	DefaultLockTTL       = 30 * time.Second
	DefaultSettleWindow  = 2 * time.Minute
	DefaultProbeInterval = 5 * time.Second
	// DefaultStepRetryWindow is how long a step keeps retrying a failure to
	// reach SF before the operation is handed to the recovery loop.
	DefaultStepRetryWindow = 2 * time.Minute
)

// Options configure a Manager.
type Options struct {
	Store     store.Store
	Inventory *inventory.Inventory
	// Replica names this process in lock owners; default host-pid-random.
	Replica string
	Now     func() time.Time
	Logger  *slog.Logger
	// LockTTL is the lease on what an operation touches; renewed while it
	// runs. Another replica recovers the operation once it expires.
	LockTTL time.Duration
	// SettleWindow is how long the probe is retried after an upload, since
	// SF synchronizes asynchronously.
	SettleWindow time.Duration
	// ProbeInterval is the pause between probes within the settle window.
	ProbeInterval   time.Duration
	StepRetryWindow time.Duration
	// ManualStepTimeout is how long a manual step waits for a person's
	// confirmation.
	ManualStepTimeout time.Duration
	// JobTimeout bounds the wait for the IPS READ job that verifies a
	// manual re-registration; JobPollInterval paces the looks at it.
	JobTimeout, JobPollInterval time.Duration
	// OnAwait is called when a manual step starts and stops waiting for a
	// person on this replica (metrics).
	OnAwait func(connID string, step store.StepKind, awaiting bool)
	// OnFinish is called when an operation of a connection ends, with its
	// final state (the gate drops that connection's evidence; metrics count
	// it).
	OnFinish func(connID, state string)
}

// Manager runs re-registrations. Safe for concurrent use.
type Manager struct {
	o   Options
	log *slog.Logger

	ctx    context.Context // ends at Close; operations run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// draining is set once Drain starts: nothing new starts on a replica
	// that is going away (automatic remediation, a recovery scan), where
	// Close could stop it between a delete and its upload.
	draining atomic.Bool

	mu      sync.Mutex
	running map[string]bool            // operation ids run by this replica
	parked  map[string]bool            // of those, the ones waiting for a person
	waiters map[string][]chan struct{} // operation id -> woken on change

	// unfinished caches the store's unfinished operations by connection,
	// for Running, which the gate asks on every answer: one query a second
	// at most, whatever the load.
	unfinishedMu sync.Mutex
	unfinished   map[string]string // connection id -> operation id
	unfinishedAt time.Time
	// lastEnded holds, by connection, when its latest re-registration
	// ended as far as this replica knows: its own at once, another
	// replica's from the store within runningCacheTTL.
	lastEnded map[string]time.Time
	// endsKnown are the operations whose end was taken from the store,
	// with their update time, for as long as a question may return them.
	endsKnown map[string]time.Time
	// endedAsked is when the store was last asked for ended operations;
	// created is when the manager was built, the first question's start.
	endedAsked, created time.Time
}

// runningCacheTTL bounds how stale Running's view of other replicas'
// operations may be.
const runningCacheTTL = time.Second

// endedOverlap widens each question for ended operations back in time, so
// that an end written by another replica's slow transaction (stamped before
// the previous question, committed after it) is not missed.
const endedOverlap = 30 * time.Second

// New builds a Manager. Call Recover once at start-up and Run for the
// replica scan; Close stops it.
func New(o Options) *Manager {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockTTL <= 0 {
		o.LockTTL = DefaultLockTTL
	}
	if o.SettleWindow <= 0 {
		o.SettleWindow = DefaultSettleWindow
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.StepRetryWindow <= 0 {
		o.StepRetryWindow = DefaultStepRetryWindow
	}
	if o.ManualStepTimeout <= 0 {
		o.ManualStepTimeout = DefaultManualStepTimeout
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = DefaultJobTimeout
	}
	if o.JobPollInterval <= 0 {
		o.JobPollInterval = DefaultJobPollInterval
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		o.Replica = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomID()[:6])
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{o: o, log: o.Logger, ctx: ctx, cancel: cancel, running: map[string]bool{}, parked: map[string]bool{}, waiters: map[string][]chan struct{}{},
		lastEnded: map[string]time.Time{}, endsKnown: map[string]time.Time{}, created: o.Now()}
}

// Drain waits until no operation runs here, or ctx ends. Operations that
// wait for a person (possibly for hours) do not hold a shutdown back: their
// wait is journaled, and Close hands them over at once.
func (m *Manager) Drain(ctx context.Context) {
	m.draining.Store(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		m.mu.Lock()
		n := len(m.running) - len(m.parked)
		m.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops running operations at their next journaled boundary (an
// upload in progress is finished first) and waits for them; the journal lets
// a restart, or another replica, finish them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// owner is the lock owner for an operation run by this replica: the
// operation id lets a refused caller name the operation; the replica part
// keeps two replicas from renewing each other's lease.
func (m *Manager) owner(opID string) string { return m.o.Replica + "/" + opID }

func opFromOwner(owner string) string {
	for i := len(owner) - 1; i >= 0; i-- {
		if owner[i] == '/' {
			return owner[i+1:]
		}
	}
	return owner
}

// Get returns an operation.
func (m *Manager) Get(ctx context.Context, id string) (*store.Operation, error) {
	op, err := m.o.Store.GetOperation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fault.New(fault.NotFound, "OPERATION_NOT_FOUND", "operation %q does not exist", "operations/"+id).With("operation", "operations/"+id)
	}
	return op, err
}

// List returns operations newest first.
func (m *Manager) List(ctx context.Context, f store.ListFilter) ([]*store.Operation, string, error) {
	ops, next, err := m.o.Store.ListOperations(ctx, f)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, "", err
	}
	return ops, next, nil
}

// Wait blocks until the operation is done or timeout passes, then returns it
// as it stands. Operations run by another replica are polled.
func (m *Manager) Wait(ctx context.Context, id string, timeout time.Duration) (*store.Operation, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := m.subscribe(id)
		op, err := m.Get(ctx, id)
		if err != nil || op.Done() {
			m.unsubscribe(id, ch)
			return op, err
		}
		poll := time.NewTimer(time.Second)
		select {
		case <-ch:
		case <-poll.C:
		case <-deadline.C:
			poll.Stop()
			m.unsubscribe(id, ch)
			return m.Get(ctx, id)
		case <-ctx.Done():
			poll.Stop()
			m.unsubscribe(id, ch)
			return nil, ctx.Err()
		}
		poll.Stop()
		m.unsubscribe(id, ch)
	}
}

func (m *Manager) subscribe(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.waiters[id] = append(m.waiters[id], ch)
	m.mu.Unlock()
	return ch
}

func (m *Manager) unsubscribe(id string, ch chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := m.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(m.waiters, id)
	} else {
		m.waiters[id] = ws
	}
}

func (m *Manager) notify(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Cancel asks an operation to stop before its next side effect. A running
// delete is always followed by its upload: cancelling then ends the
// operation once the certificate is back in place.
//
// audit, when not nil, is written in the same transaction as the request.
func (m *Manager) Cancel(ctx context.Context, id, reason string, audit *store.AuditEvent) (*store.Operation, error) {
	for {
		op, err := m.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if op.Done() {
			return op, fault.New(fault.FailedPrecondition, "OPERATION_DONE", "operation %s already ended %s", "operations/"+id, op.State).With("operation", "operations/"+id).With("state", string(op.State))
		}
		op.CancelRequested, op.CancelReason = true, reason
		if op.State == store.StatePendingApproval {
			m.finish(op, store.StateCancelled, nil, "cancelled before approval")
		}
		err = m.o.Store.UpdateOperation(ctx, op, audit)
		if errors.Is(err, store.ErrConflict) {
			continue // the runner journaled a step meanwhile; try again
		}
		if err != nil {
			return nil, err
		}
		m.noteChange()
		m.notify(id)
		return op, nil
	}
}

// Approve lets an operation that waits for approval run. The approver must
// be another identity than the requester: nobody approves their own change.
// The checks run again, since SF or IPS may have changed while it waited.
func (m *Manager) Approve(ctx context.Context, id, approver string, audit *store.AuditEvent) (*store.Operation, error) {
	op, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	name := "operations/" + id
	if op.State != store.StatePendingApproval {
		return op, fault.New(fault.FailedPrecondition, "NOT_PENDING_APPROVAL", "operation %s is %s, not waiting for approval", name, op.State).With("operation", name).With("state", string(op.State))
	}
	if approver == op.RequestedBy {
		return op, fault.New(fault.PermissionDenied, "SELF_APPROVAL", "%s requested operation %s and cannot approve it: another identity with the approver role must", approver, name).
			With("operation", name).With("identity", approver)
	}
	c, ok := m.o.Inventory.Get(op.Connection)
	if !ok || (c.Registry == nil && !op.Manual) {
		return op, fault.New(fault.FailedPrecondition, "CONNECTION_GONE", "the connection of operation %s is no longer configured with a registry driver", name)
	}
	p, err := m.plan(ctx, c, Request{Connection: op.Connection, MappingID: op.MappingID})
	if err != nil {
		return op, err
	}
	if p.etag != op.Etag {
		m.finish(op, store.StateFailed, &store.OperationError{Code: "FAILED_PRECONDITION", Reason: "ETAG_MISMATCH",
			Message: "IPS's certificate or SF's mapping changed while the operation waited for approval; request it again"}, "")
		if err := m.o.Store.UpdateOperation(ctx, op, audit); err != nil {
			return nil, err
		}
		m.noteChange()
		e := fault.New(fault.FailedPrecondition, "ETAG_MISMATCH", "IPS's certificate or SF's mapping changed while operation %s waited for approval; it ended, request it again", name).With("operation", name)
		e.Violations = []fault.Violation{{Type: "ETAG", Subject: name, Description: e.Message}}
		return nil, e
	}
	owner := m.owner(op.ID)
	ok, holder, err := m.acquire(ctx, op.LockKeys, owner)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, busyFault(c, holder)
	}
	now := m.o.Now()
	op.State, op.ApprovedBy, op.UpdateTime = store.StateRunning, approver, now
	op.SourceCertificateDER, op.Backup, op.Upload = p.source.Raw, p.backup, p.upload
	for i := range op.Steps {
		if op.Steps[i].Kind == store.StepAwaitApproval {
			op.Steps[i].State, op.Steps[i].EndTime, op.Steps[i].Message = store.StepSucceeded, now, "approved by "+approver
		}
	}
	if err := m.o.Store.UpdateOperation(ctx, op, audit); err != nil {
		m.release(op.LockKeys, owner)
		return nil, err
	}
	mine, err := m.o.Store.GetOperation(ctx, op.ID)
	if err != nil {
		m.release(op.LockKeys, owner)
		return nil, err
	}
	m.launch(mine, owner)
	return op, nil
}

// Running returns the id of a running (not validate-only) operation of the
// connection. It is cheap: operations of this replica are known in memory,
// and others' come from the store at most once a second.
func (m *Manager) Running(ctx context.Context, connID string) (string, bool) {
	m.unfinishedMu.Lock()
	defer m.unfinishedMu.Unlock()
	if !m.refreshActivityLocked(ctx) {
		return "", false
	}
	id, ok := m.unfinished[connID]
	return id, ok
}

// Activity implements gate.Operations: the running re-registration of the
// connection ("" when none) and when its latest one ended. The gate asks on
// every answer, so it costs two small queries a second at most.
func (m *Manager) Activity(ctx context.Context, connID string) (string, time.Time) {
	m.unfinishedMu.Lock()
	defer m.unfinishedMu.Unlock()
	m.refreshActivityLocked(ctx)
	return m.unfinished[connID], m.lastEnded[connID]
}

// refreshActivityLocked re-reads the unfinished and the recently ended
// operations when the cache is older than runningCacheTTL; false when the
// store could not be read.
func (m *Manager) refreshActivityLocked(ctx context.Context) bool {
	if time.Since(m.unfinishedAt) <= runningCacheTTL {
		return true
	}
	now := m.o.Now()
	ops, err := m.o.Store.ListUnfinished(ctx)
	if err != nil {
		return false
	}
	unfinished := map[string]string{}
	for _, op := range ops {
		if !op.ValidateOnly {
			unfinished[op.Connection] = op.ID
		}
	}
	since := m.endedAsked
	if since.IsZero() {
		since = m.created
	}
	endedIDs := map[string]bool{}
	from := since.Add(-endedOverlap)
	if ended, err := m.o.Store.ListEndedSince(ctx, from); err == nil {
		for _, op := range ended {
			endedIDs[op.ID] = true
			if _, known := m.endsKnown[op.ID]; known || op.ValidateOnly {
				continue // the overlap returns ends already taken
			}
			m.endsKnown[op.ID] = op.UpdateTime
			// Another replica's clock may run ahead; an end read from
			// the store has happened by now on this one.
			at := op.EndTime
			if at.After(now) {
				at = now
			}
			m.noteEndedLocked(op.Connection, at)
		}
		// Forgotten once no question can return them again: by their
		// update time, which another replica's clock may have put ahead.
		for id, updated := range m.endsKnown {
			if updated.Before(from) {
				delete(m.endsKnown, id)
			}
		}
		m.endedAsked = now
	}
	// An operation seen running before, gone now and not among the ended
	// ones (the store could not say, or it was removed) ended by now.
	for conn, id := range m.unfinished {
		if unfinished[conn] != id && !endedIDs[id] {
			m.noteEndedLocked(conn, now)
		}
	}
	m.unfinished, m.unfinishedAt = unfinished, time.Now()
	return true
}

func (m *Manager) noteEndedLocked(connID string, at time.Time) {
	if at.After(m.lastEnded[connID]) {
		m.lastEnded[connID] = at
	}
}

// noteChange makes the next Running read the store again, after this
// replica started or ended an operation.
func (m *Manager) noteChange() {
	m.unfinishedMu.Lock()
	m.unfinishedAt = time.Time{}
	m.unfinishedMu.Unlock()
}

// noteEnded records that this replica ended a real operation of the
// connection, for the gate, and makes the next Running read the store.
func (m *Manager) noteEnded(op *store.Operation) {
	m.unfinishedMu.Lock()
	defer m.unfinishedMu.Unlock()
	if !op.ValidateOnly {
		m.noteEndedLocked(op.Connection, op.EndTime)
	}
	// Known ended: the next look must not take it for one that vanished.
	if m.unfinished[op.Connection] == op.ID {
		delete(m.unfinished, op.Connection)
	}
	m.unfinishedAt = time.Time{}
}

// LastReregistration implements gate.Operations: the latest finished,
// real (not validate-only) operation of the connection.
func (m *Manager) LastReregistration(ctx context.Context, connID string) *store.Operation {
	ops, _, err := m.o.Store.ListOperations(ctx, store.ListFilter{Connection: connID, PageSize: 20})
	if err != nil {
		return nil
	}
	for _, op := range ops {
		if op.Done() && !op.ValidateOnly {
			return op
		}
	}
	return nil
}

// lockKeys are what a change touches: the SF company and the mapping key
// (issuer + subject), so two connections that share both never race.
func lockKeys(c *inventory.Connection, mappingKey string) []string {
	company := "company:" + c.Config.SF.URL + "|" + c.Config.SF.CompanyID
	keys := []string{company, "mapping:" + c.Config.SF.URL + "|" + c.Config.SF.CompanyID + "|" + mappingKey}
	sort.Strings(keys)
	return keys
}

// acquire takes every key for owner, or none: on refusal it releases what it
// took and returns the holder's operation id.
func (m *Manager) acquire(ctx context.Context, keys []string, owner string) (bool, string, error) {
	var taken []string
	for _, k := range keys {
		ok, holder, err := m.o.Store.AcquireLock(ctx, k, owner, m.o.LockTTL)
		if err != nil || !ok {
			for _, t := range taken {
				_ = m.o.Store.ReleaseLock(context.WithoutCancel(ctx), t, owner)
			}
			if err != nil {
				return false, "", err
			}
			return false, opFromOwner(holder.Owner), nil
		}
		taken = append(taken, k)
	}
	return true, "", nil
}

func (m *Manager) release(keys []string, owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := m.o.Store.ReleaseLock(ctx, k, owner); err != nil {
			m.log.Warn("release lock", "key", k, "err", err)
		}
	}
}
