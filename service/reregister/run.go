package reregister

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// errHandOver stops a run without ending the operation: SF stayed
// unreachable, or the process is shutting down. The journal keeps
// everything; the recovery loop (here or on another replica) resumes it.
var errHandOver = errors.New("handed over to recovery")

// launch runs an operation in the background while holding its locks.
func (m *Manager) launch(op *store.Operation, owner string) {
	m.mu.Lock()
	if m.running[op.ID] {
		m.mu.Unlock()
		return
	}
	if m.draining.Load() {
		m.mu.Unlock()
		// Journaled: the next process, or another replica, runs it.
		m.release(op.LockKeys, owner)
		return
	}
	m.running[op.ID] = true
	m.mu.Unlock()
	m.noteChange()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.running, op.ID)
			m.mu.Unlock()
			m.release(op.LockKeys, owner)
			m.noteChange()
			m.notify(op.ID)
		}()
		ctx, cancel := context.WithCancel(m.ctx)
		defer cancel()
		lost, stopLocks := m.keepLocks(ctx, cancel, op.LockKeys, owner)
		defer stopLocks()
		r := &run{m: m, op: op, ctx: ctx, stopLocks: stopLocks}
		err := r.execute()
		if errors.Is(err, errHandOver) || lost.Load() {
			m.log.Info("operation handed over", "operation", op.ID, "connection", op.Connection, "err", err)
			return
		}
		if err != nil {
			m.log.Error("operation stopped", "operation", op.ID, "connection", op.Connection, "err", err)
			return
		}
		// r.op, not op: a manual run reloads the operation while it waits.
		if m.o.OnFinish != nil && r.op.Done() {
			m.o.OnFinish(r.op.Connection, string(r.op.State))
		}
	}()
}

// run is one execution of an operation's remaining steps.
type run struct {
	m   *Manager
	op  *store.Operation
	ctx context.Context
	// critical is set while the connection may have no mapping (between
	// the delete and a successful upload or restore): shutting down then
	// waits for SF rather than abandon the upload.
	critical bool
	// stopLocks ends the lease renewals (idempotent).
	stopLocks func()
}

// callCtx is the context for calls to SF: not cancelled by shutdown while
// critical.
func (r *run) callCtx() context.Context {
	if r.critical {
		return context.WithoutCancel(r.ctx)
	}
	return r.ctx
}

func (r *run) conn() (*inventory.Connection, error) {
	c, ok := r.m.o.Inventory.Get(r.op.Connection)
	if !ok || (c.Registry == nil && !r.op.Manual) {
		return nil, fmt.Errorf("connection %q is no longer configured with a registry driver", r.op.Connection)
	}
	return c, nil
}

// save journals the operation; a conflict means someone else changed it
// (a cancel request): reload and merge that request, then retry.
func (r *run) save() error {
	for i := 0; i < 5; i++ {
		r.op.UpdateTime = r.m.o.Now()
		err := r.m.o.Store.UpdateOperation(context.WithoutCancel(r.ctx), r.op, nil)
		if err == nil {
			if !r.op.Done() {
				r.m.notify(r.op.ID) // done() notifies once the locks are free
			}
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		fresh, gerr := r.m.o.Store.GetOperation(context.WithoutCancel(r.ctx), r.op.ID)
		if gerr != nil {
			return gerr
		}
		if fresh.Done() {
			return fmt.Errorf("operation ended elsewhere (%s)", fresh.State)
		}
		r.op.Version = fresh.Version
		r.op.CancelRequested, r.op.CancelReason = fresh.CancelRequested || r.op.CancelRequested, fresh.CancelReason
		mergeConfirmations(r.op, fresh)
	}
	return errors.New("operation keeps changing under us")
}

// mergeConfirmations keeps what a person confirmed meanwhile (Confirm
// writes the store directly): a step waiting here but confirmed there, and
// the read-back that came with it.
func mergeConfirmations(op, fresh *store.Operation) {
	for _, fs := range fresh.Steps {
		if fs.State != store.StepSucceeded {
			continue
		}
		for i := range op.Steps {
			s := &op.Steps[i]
			if s.Kind == fs.Kind && (s.State == store.StepAwaitingConfirmation || (s.Kind == store.StepVerifyReadback && s.State == store.StepPending)) {
				*s = fs
			}
		}
	}
}

func (r *run) step(kind store.StepKind) *store.Step {
	for i := range r.op.Steps {
		if r.op.Steps[i].Kind == kind {
			return &r.op.Steps[i]
		}
	}
	r.op.Steps = append(r.op.Steps, store.Step{Kind: kind, State: store.StepPending})
	return &r.op.Steps[len(r.op.Steps)-1]
}

// begin journals a step RUNNING before its side effect.
func (r *run) begin(kind store.StepKind, msg string) error {
	s := r.step(kind)
	s.State, s.Message, s.Attempts = store.StepRunning, msg, s.Attempts+1
	if s.StartTime.IsZero() {
		s.StartTime = r.m.o.Now()
	}
	if err := r.save(); err != nil {
		return err
	}
	failpoint("before:" + string(kind))
	return nil
}

// end journals a step's outcome after its side effect.
func (r *run) end(kind store.StepKind, state store.StepState, msg string) error {
	failpoint("after:" + string(kind))
	s := r.step(kind)
	s.State, s.Message, s.EndTime = state, msg, r.m.o.Now()
	return r.save()
}

// cancelled reports a cancel request, re-read from the store so that a
// request made through another replica is seen too.
func (r *run) cancelled() bool {
	if fresh, err := r.m.o.Store.GetOperation(r.ctx, r.op.ID); err == nil {
		r.op.CancelRequested, r.op.CancelReason = fresh.CancelRequested, fresh.CancelReason
		r.op.Version = fresh.Version
	}
	return r.op.CancelRequested
}

func (m *Manager) finish(op *store.Operation, state store.OperationState, e *store.OperationError, note string) {
	now := m.o.Now()
	op.State, op.Error, op.EndTime, op.UpdateTime = state, e, now, now
	if note != "" {
		op.Notes = append(op.Notes, note)
	}
	for i := range op.Steps {
		if op.Steps[i].State == store.StepPending {
			op.Steps[i].State = store.StepSkipped
		}
	}
}

func (r *run) done(state store.OperationState, e *store.OperationError, note string) error {
	r.m.finish(r.op, state, e, note)
	if err := r.save(); err != nil {
		return err
	}
	r.ended(state)
	return nil
}

// doneUnlessChanged ends the operation only if nobody changed it since it
// was read: a wait that times out or is cancelled must not overwrite a
// person's confirmation that landed meanwhile. false: look again.
func (r *run) doneUnlessChanged(state store.OperationState, e *store.OperationError, note string) (bool, error) {
	r.m.finish(r.op, state, e, note)
	r.op.UpdateTime = r.m.o.Now()
	err := r.m.o.Store.UpdateOperation(context.WithoutCancel(r.ctx), r.op, nil)
	if errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.ended(state)
	return true, nil
}

// ended frees what a finished operation held and tells whoever waits.
func (r *run) ended(state store.OperationState) {
	// Free the connection before anyone waiting hears of the end, so that
	// a new request right after is not refused as busy.
	if r.stopLocks != nil {
		r.stopLocks()
	}
	r.m.release(r.op.LockKeys, r.m.owner(r.op.ID))
	r.m.noteEnded(r.op)
	r.m.notify(r.op.ID)
	r.m.log.Info("operation ended", "operation", r.op.ID, "connection", r.op.Connection, "state", string(state))
}

// execute runs the remaining steps from the journal. It is the same code for
// a fresh operation and for a recovered one: each step looks at what the
// journal and SF say before it acts.
func (r *run) execute() error {
	c, err := r.conn()
	if err != nil {
		return r.done(store.StateFailed, &store.OperationError{Code: "FAILED_PRECONDITION", Reason: "CONNECTION_GONE", Message: err.Error()}, "")
	}
	source, err := x509.ParseCertificate(r.op.SourceCertificateDER)
	if err != nil {
		return r.done(store.StateFailed, &store.OperationError{Code: "INTERNAL", Reason: "JOURNAL_CORRUPT", Message: "the journaled certificate does not parse"}, "")
	}
	if r.op.Manual {
		return r.executeManual(c, source)
	}

	// Delete (unless done or skipped). Cancelling is honoured only here,
	// before anything changed in SF.
	if s := r.step(store.StepDeleteMapping); s.State == store.StepPending || s.State == store.StepRunning {
		if s.State == store.StepPending && r.cancelled() {
			return r.done(store.StateCancelled, nil, "cancelled before any change in SF: "+r.op.CancelReason)
		}
		if err := r.deleteMapping(c); err != nil {
			return err
		}
	}
	if s := r.step(store.StepUploadCertificate); s.State != store.StepSucceeded {
		ended, err := r.upload(c, source)
		if ended || err != nil {
			return err
		}
	}
	if s := r.step(store.StepVerifyReadback); s.State != store.StepSucceeded {
		ended, err := r.verify(c, source)
		if ended || err != nil {
			return err
		}
	}
	if r.cancelled() {
		return r.done(store.StateCancelled, nil, "cancelled after IPS's certificate was uploaded and read back; the probe was not run: "+r.op.CancelReason)
	}
	return r.probe(c, true)
}

// retry runs a call to SF until it succeeds, fails for good, or the retry
// window passes (then the operation is handed over to recovery).
func (r *run) retry(what string, call func() error) error {
	deadline := time.Now().Add(r.m.o.StepRetryWindow)
	delay := time.Second
	for {
		err := call()
		var re *registry.Error
		if err == nil || !errors.As(err, &re) || !re.Transient {
			return err
		}
		if time.Now().Add(delay).After(deadline) {
			r.op.Notes = append(r.op.Notes, fmt.Sprintf("%s: SF stayed unreachable (%v); recovery will resume", what, err))
			_ = r.save()
			return errHandOver
		}
		done := r.ctx.Done()
		if r.critical {
			done = nil
		}
		select {
		case <-done:
			return errHandOver
		case <-time.After(delay):
		}
		delay = min(delay*2, 15*time.Second)
	}
}

func (r *run) deleteMapping(c *inventory.Connection) error {
	b := r.op.Backup
	if err := r.begin(store.StepDeleteMapping, "deleting mapping "+b.ID); err != nil {
		return err
	}
	err := r.retry("delete", func() error { return c.Registry.Delete(r.ctx, b.ID) })
	if err == nil || errors.Is(err, registry.ErrNotFound) {
		r.critical = true // no mapping until the upload lands
	}
	switch {
	case errors.Is(err, errHandOver):
		return err
	case errors.Is(err, registry.ErrNotFound):
		return r.end(store.StepDeleteMapping, store.StepSucceeded, "mapping "+b.ID+" was already gone")
	case err != nil:
		// A refusal that is not transient: nothing changed in SF.
		return r.done(store.StateFailed, &store.OperationError{Code: "FAILED_PRECONDITION", Reason: "DELETE_REFUSED", Message: err.Error(),
			Metadata: map[string]string{"step": "delete", "mapping_id": b.ID}}, "SF refused the delete; its mapping is unchanged")
	}
	return r.end(store.StepDeleteMapping, store.StepSucceeded, "deleted mapping "+b.ID)
}

// upload puts IPS's certificate in place. It returns ended=true when it
// finished the operation (rolled back).
func (r *run) upload(c *inventory.Connection, source *x509.Certificate) (bool, error) {
	if err := r.begin(store.StepUploadCertificate, "uploading IPS's certificate SHA-256 "+x509cert.SHA256Fingerprint(source.Raw)); err != nil {
		return false, err
	}
	// Recovered or not, the delete may have happened: finish the upload even
	// while shutting down.
	r.critical = true
	defer func() { r.critical = false }()
	// A recovered run cannot know whether the delete happened: if the old
	// mapping is still there, delete it first.
	if b := r.op.Backup; b != nil {
		var present bool
		if err := r.retry("read back before upload", func() error {
			ms, err := c.Registry.List(r.callCtx())
			present = false
			for _, m := range ms {
				if m.ID == b.ID && m.Certificate != nil && !bytes.Equal(m.Certificate.Raw, source.Raw) {
					present = true
				}
			}
			return err
		}); err != nil {
			return false, err
		}
		if present {
			if err := r.retry("delete", func() error { return c.Registry.Delete(r.callCtx(), b.ID) }); err != nil && !errors.Is(err, registry.ErrNotFound) {
				return false, err
			}
			r.op.Notes = append(r.op.Notes, "the old mapping was still in place; deleted it before the upload")
		}
	}
	u := r.op.Upload
	var got registry.Mapping
	err := r.retry("upload", func() error {
		var err error
		got, err = c.Registry.Upload(r.callCtx(), registry.NewMapping{ConfigurationName: u.ConfigurationName, IntegrationName: u.IntegrationName, LoginName: u.LoginName, Certificate: source})
		return err
	})
	var dup *registry.DuplicateError
	switch {
	case errors.Is(err, errHandOver):
		return false, err
	case errors.As(err, &dup):
		// A retried or recovered upload may find its own earlier attempt.
		if m, ok := r.findMapped(c, source); ok {
			r.op.NewMappingID = m.ID
			return false, r.end(store.StepUploadCertificate, store.StepSucceeded, "IPS's certificate was already mapped as "+m.ID)
		}
		return true, r.rollback(c, "UPLOAD_REFUSED", "SF refused the upload: "+dup.Message)
	case err != nil:
		return true, r.rollback(c, "UPLOAD_REFUSED", "SF refused the upload: "+err.Error())
	}
	r.op.NewMappingID = got.ID
	return false, r.end(store.StepUploadCertificate, store.StepSucceeded, "uploaded as mapping "+got.ID)
}

func (r *run) findMapped(c *inventory.Connection, source *x509.Certificate) (registry.Mapping, bool) {
	var found registry.Mapping
	var ok bool
	_ = r.retry("read back", func() error {
		ms, err := c.Registry.List(r.callCtx())
		for _, m := range ms {
			if m.Certificate != nil && bytes.Equal(m.Certificate.Raw, source.Raw) {
				found, ok = m, true
			}
		}
		return err
	})
	return found, ok
}

func (r *run) verify(c *inventory.Connection, source *x509.Certificate) (bool, error) {
	if err := r.begin(store.StepVerifyReadback, "reading SF's mappings back"); err != nil {
		return false, err
	}
	var ms []registry.Mapping
	if err := r.retry("read back", func() error {
		var err error
		ms, err = c.Registry.List(r.ctx)
		return err
	}); err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.Certificate != nil && bytes.Equal(m.Certificate.Raw, source.Raw) {
			r.op.NewMappingID = m.ID
			return false, r.end(store.StepVerifyReadback, store.StepSucceeded, "SF maps IPS's certificate as "+m.ID+" (SHA-256 "+x509cert.SHA256Fingerprint(source.Raw)+")")
		}
	}
	return true, r.rollback(c, "READBACK_DIFFERS", "SF's mappings do not contain the uploaded certificate")
}

// rollback restores the journaled mapping after SF refused the upload or the
// read-back differed, so that the connection keeps the mapping it had.
func (r *run) rollback(c *inventory.Connection, reason, msg string) error {
	failedStep := store.StepUploadCertificate
	if reason == "READBACK_DIFFERS" {
		failedStep = store.StepVerifyReadback
	}
	if err := r.end(failedStep, store.StepFailed, msg); err != nil {
		return err
	}
	oe := &store.OperationError{Code: "ABORTED", Reason: reason, Message: msg}
	b := r.op.Backup
	if b == nil {
		return r.done(store.StateFailed, oe, "there was no previous mapping to restore")
	}
	if err := r.begin(store.StepRestoreMapping, "restoring mapping "+b.ID); err != nil {
		return err
	}
	r.critical = true
	defer func() { r.critical = false }()
	old, err := x509.ParseCertificate(b.CertificateDER)
	if err != nil {
		return r.done(store.StateFailed, oe, "the journaled mapping does not parse; it was not restored")
	}
	if m, ok := r.findMapped(c, old); ok {
		r.op.Notes = append(r.op.Notes, "the previous mapping was still in place as "+m.ID)
		if err := r.end(store.StepRestoreMapping, store.StepSucceeded, "the previous mapping is in place as "+m.ID); err != nil {
			return err
		}
		return r.done(store.StateRolledBack, oe, "")
	}
	var restored registry.Mapping
	err = r.retry("restore", func() error {
		var err error
		restored, err = c.Registry.Upload(r.callCtx(), registry.NewMapping{ConfigurationName: b.ConfigurationName, IntegrationName: b.IntegrationName, LoginName: b.LoginName, Certificate: old})
		return err
	})
	if errors.Is(err, errHandOver) {
		return err
	}
	if err != nil {
		_ = r.end(store.StepRestoreMapping, store.StepFailed, "SF refused to restore the previous mapping: "+err.Error())
		return r.done(store.StateFailed, oe, "the previous mapping could not be restored; restore it by hand from the journal")
	}
	if err := r.end(store.StepRestoreMapping, store.StepSucceeded, "restored the previous mapping as "+restored.ID); err != nil {
		return err
	}
	return r.done(store.StateRolledBack, oe, "")
}

// probe proves the new mapping authenticates, retrying within the settle
// window since SF synchronizes asynchronously. On success it ends the
// operation SUCCEEDED when last is set (a manual one verifies by an IPS job
// next); on failure it always ends it FAILED.
func (r *run) probe(c *inventory.Connection, last bool) error {
	if err := r.begin(store.StepProbe, "probing SCIM authentication"); err != nil {
		return err
	}
	deadline := r.m.o.Now().Add(r.m.o.SettleWindow)
	var res scim.Result
	attempts := 0
	for {
		attempts++
		res = c.Prober.Probe(r.ctx)
		if r.ctx.Err() != nil {
			// Shutting down or handed over: the probe's failure is ours,
			// not SF's answer; recovery probes again.
			return errHandOver
		}
		if res.Outcome == scim.Authenticated || !r.m.o.Now().Add(r.m.o.ProbeInterval).Before(deadline) {
			break
		}
		// IPS's certificate is in place: a cancel only stops the probing.
		if r.cancelled() {
			r.step(store.StepProbe).Attempts = attempts
			if err := r.end(store.StepProbe, store.StepSkipped, fmt.Sprintf("cancelled after %d probe(s) without authentication", attempts)); err != nil {
				return err
			}
			return r.done(store.StateCancelled, nil, "cancelled while probing: IPS's certificate is mapped in SF, but authentication was not verified: "+r.op.CancelReason)
		}
		select {
		case <-r.ctx.Done():
			return errHandOver
		case <-time.After(r.m.o.ProbeInterval):
		}
	}
	r.op.FinalProbe = &store.Probe{Outcome: res.Outcome.String(), HTTPStatus: res.HTTPStatus, ErrorCode: res.ErrorCode, ErrorMessage: res.ErrorMessage,
		RequestURL: res.RequestURL, Latency: res.Latency, ClientSHA256: res.ClientCertSHA256, CheckedAt: res.CheckedAt}
	r.step(store.StepProbe).Attempts = attempts
	if res.Outcome == scim.Authenticated {
		if err := r.end(store.StepProbe, store.StepSucceeded, fmt.Sprintf("authenticated after %d probe(s)", attempts)); err != nil {
			return err
		}
		if !last {
			return nil
		}
		return r.done(store.StateSucceeded, nil, "")
	}
	msg := fmt.Sprintf("IPS's certificate is mapped, but the probe still answers %s", res.Outcome)
	if res.HTTPStatus != 0 {
		msg += fmt.Sprintf(" (HTTP %d %s)", res.HTTPStatus, res.ErrorCode)
	}
	msg += fmt.Sprintf(" after %d probe(s) over the settle window; check sf.company.id, then escalate to LOD-SF-PLT-IAS", attempts)
	if err := r.end(store.StepProbe, store.StepFailed, msg); err != nil {
		return err
	}
	return r.done(store.StateFailed, &store.OperationError{Code: "FAILED_PRECONDITION", Reason: "PROBE_FAILED", Message: msg,
		Metadata: map[string]string{"outcome": res.Outcome.String(), "http_status": fmt.Sprint(res.HTTPStatus), "error_code": res.ErrorCode}}, "")
}
