package reregister

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/ips"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// A manual re-registration is the same journaled operation as an automatic
// one, but SF publishes no API for its certificate mappings, so a person
// performs the delete and the upload in SF's Security Center: each of those
// steps waits (AWAITING_CONFIRMATION) with exact instructions until someone
// confirms it (Confirm), and times out when nobody does. What SF then shows
// is recorded as a person's record; the service itself verifies by a probe
// and, when IPS's Tenant Admin API is configured, by an IPS READ job.

// Defaults of the manual flow.
const (
	// DefaultManualStepTimeout is how long a step waits for a person.
	DefaultManualStepTimeout = 4 * time.Hour
	// DefaultJobTimeout bounds the wait for the verifying READ job.
	DefaultJobTimeout = 10 * time.Minute
	// DefaultJobPollInterval is the pause between looks at that job.
	DefaultJobPollInterval = 5 * time.Second
)

// instructionIntro says where in SF's UI the steps happen.
const instructionIntro = "In SuccessFactors, open Admin Center > Security Center > X.509 Public Certificate Mapping."

func deleteInstruction(op *store.Operation, source *x509.Certificate) *store.Instruction {
	sum := x509cert.Summarize(source)
	// The fingerprint is the old mapping's, when known: the person looks
	// for that one, not for IPS's new certificate.
	in := &store.Instruction{}
	var b strings.Builder
	b.WriteString(instructionIntro + "\n")
	if bk := op.Backup; bk != nil {
		in.ConfigurationName, in.IntegrationName, in.LoginName = bk.ConfigurationName, bk.IntegrationName, bk.LoginName
		fmt.Fprintf(&b, "1. Find the mapping with Configuration Name %q, Integration Name %q and Login Name %q", bk.ConfigurationName, bk.IntegrationName, bk.LoginName)
		switch {
		case len(bk.CertificateDER) > 0:
			in.SHA256 = x509cert.SHA256Fingerprint(bk.CertificateDER)
			fmt.Fprintf(&b, " (its certificate has SHA-256 fingerprint %s)", in.SHA256)
		case bk.SHA256 != "":
			in.SHA256 = bk.SHA256
			fmt.Fprintf(&b, " (recorded with SHA-256 fingerprint %s)", bk.SHA256)
		case bk.SHA1 != "":
			in.SHA256 = ""
			fmt.Fprintf(&b, " (recorded with SHA-1 fingerprint %s)", bk.SHA1)
		}
		b.WriteString(".\n")
	} else {
		fmt.Fprintf(&b, "1. Find the mapping of the certificate with subject %q and issuer %q (IPS's certificate, old or new), if SF shows one.\n", sum.Subject, sum.Issuer)
	}
	b.WriteString("2. Delete it and save. SF keys mappings by issuer and subject, so the new certificate cannot be added while it exists.\n")
	b.WriteString("3. Confirm this step (certsyncctl confirm " + op.ID + " delete). If SF shows no such mapping, confirm too, and say so in the note.\n")
	b.WriteString("Authentication fails from the delete until the upload that follows: do the next step right away.")
	in.Text = b.String()
	return in
}

func uploadInstruction(op *store.Operation, source *x509.Certificate) *store.Instruction {
	u := op.Upload
	sum := x509cert.Summarize(source)
	in := &store.Instruction{CertificateDER: source.Raw, ConfigurationName: u.ConfigurationName,
		IntegrationName: u.IntegrationName, LoginName: u.LoginName, SHA256: sum.SHA256}
	var b strings.Builder
	b.WriteString(instructionIntro + "\n")
	b.WriteString("1. Choose Add, and upload the certificate attached to this step (certificate_pem; certsyncctl operation " + op.ID + " --write-certificate FILE saves it).\n")
	fmt.Fprintf(&b, "2. Enter Configuration Name %q, Integration Name %q and Login Name %q", u.ConfigurationName, u.IntegrationName, u.LoginName)
	if u.LoginName == "" {
		b.WriteString(" (empty: SF's built-in technical user)")
	}
	b.WriteString(", exactly as written, and save.\n")
	fmt.Fprintf(&b, "3. Check that SF shows SHA-256 fingerprint %s (subject %s) for the new mapping.\n", sum.SHA256, sum.Subject)
	b.WriteString("4. Confirm this step (certsyncctl confirm " + op.ID + " upload --fingerprint FINGERPRINT-SF-SHOWS). certsync then probes SCIM and, when IPS's Tenant Admin API is configured, runs an IPS READ job.")
	in.Text = b.String()
	return in
}

// manualSteps are a manual operation's steps after the backup: both changes
// wait for a person; the read-back is what the person read off SF's screen.
func manualSteps() []store.Step {
	return []store.Step{
		{Kind: store.StepDeleteMapping, State: store.StepPending},
		{Kind: store.StepUploadCertificate, State: store.StepPending},
		{Kind: store.StepVerifyReadback, State: store.StepPending},
		{Kind: store.StepProbe, State: store.StepPending},
		{Kind: store.StepVerifyJob, State: store.StepPending},
	}
}

// executeManual runs the remaining steps of a manual operation from the
// journal, the same code for a fresh and a recovered one.
func (r *run) executeManual(c *inventory.Connection, source *x509.Certificate) error {
	if s := r.step(store.StepDeleteMapping); s.State != store.StepSucceeded && s.State != store.StepSkipped {
		ok, err := r.await(store.StepDeleteMapping, deleteInstruction(r.op, source))
		if !ok || err != nil {
			return err
		}
	}
	if s := r.step(store.StepUploadCertificate); s.State != store.StepSucceeded {
		ok, err := r.await(store.StepUploadCertificate, uploadInstruction(r.op, source))
		if !ok || err != nil {
			return err
		}
	}
	if s := r.step(store.StepVerifyReadback); s.State == store.StepPending || s.State == store.StepRunning {
		// Confirm sets it when the person read the fingerprint back.
		s.State, s.EndTime = store.StepSkipped, r.m.o.Now()
		s.Message = "nobody read SF's fingerprint back when confirming the upload; the probe and the READ job verify instead"
		if err := r.save(); err != nil {
			return err
		}
	}
	if r.cancelled() {
		return r.done(store.StateCancelled, nil, "cancelled after the upload was confirmed; the probe and the READ job were not run: "+r.op.CancelReason)
	}
	if s := r.step(store.StepProbe); s.State != store.StepSucceeded {
		if err := r.probe(c, false); err != nil || r.op.Done() {
			return err // ended: the probe failed, or a cancel stopped it
		}
	}
	return r.verifyJob(c)
}

// await journals a step as waiting for a person, with its instruction and
// deadline, then waits until someone confirms it (true), or it times out or
// is cancelled (the operation ended: false), or the process stops
// (errHandOver: the journal keeps the wait, and recovery resumes it).
func (r *run) await(kind store.StepKind, in *store.Instruction) (bool, error) {
	s := r.step(kind)
	if s.State != store.StepAwaitingConfirmation {
		now := r.m.o.Now()
		s.State, s.Instruction, s.Attempts = store.StepAwaitingConfirmation, in, s.Attempts+1
		s.StartTime, s.Deadline = now, now.Add(r.m.o.ManualStepTimeout)
		s.Message = "waiting for a person to perform this step in SF's Security Center and confirm it (ConfirmOperationStep) by " + s.Deadline.UTC().Format(time.RFC3339)
		if err := r.save(); err != nil {
			return false, err
		}
		r.m.log.Info("operation waits for a person", "operation", r.op.ID, "connection", r.op.Connection, "step", string(kind))
	}
	cancelNoted := false
	r.m.setParked(r.op.ID, true)
	defer r.m.setParked(r.op.ID, false)
	if f := r.m.o.OnAwait; f != nil {
		f(r.op.Connection, kind, true)
		defer f(r.op.Connection, kind, false)
	}
	for {
		ch := r.m.subscribe(r.op.ID)
		fresh, err := r.m.o.Store.GetOperation(r.ctx, r.op.ID)
		if err != nil {
			r.m.unsubscribe(r.op.ID, ch)
			if r.ctx.Err() != nil {
				return false, errHandOver
			}
			return false, err
		}
		// The store is the truth while waiting: confirmations and cancel
		// requests arrive there, possibly through another replica.
		r.op = fresh
		s = r.step(kind)
		if s.State == store.StepSucceeded {
			r.m.unsubscribe(r.op.ID, ch)
			return true, nil
		}
		if r.op.Done() {
			r.m.unsubscribe(r.op.ID, ch)
			return false, fmt.Errorf("operation ended elsewhere (%s)", r.op.State)
		}
		if r.op.CancelRequested {
			if kind == store.StepDeleteMapping {
				r.m.unsubscribe(r.op.ID, ch)
				s.State, s.EndTime, s.Message = store.StepSkipped, r.m.o.Now(), "cancelled while waiting for the delete"
				ok, err := r.doneUnlessChanged(store.StateCancelled, nil, "cancelled while waiting for the delete to be confirmed: "+r.op.CancelReason+
					"; if the mapping was deleted in SF anyway, request a new re-registration: it guides the upload")
				if ok || err != nil {
					return false, err
				}
				continue // changed meanwhile (a confirmation?): look again
			}
			if !cancelNoted {
				// A confirmed delete is never left without its upload.
				s.Message = "cancel requested, but the delete was confirmed: SF has no mapping for IPS until this upload is done; do it and confirm, and the operation ends CANCELLED without verification"
				if err := r.save(); err != nil {
					r.m.unsubscribe(r.op.ID, ch)
					return false, err
				}
				cancelNoted = true
				r.m.unsubscribe(r.op.ID, ch)
				continue
			}
		}
		left := s.Deadline.Sub(r.m.o.Now())
		if left <= 0 {
			r.m.unsubscribe(r.op.ID, ch)
			ok, err := r.timedOut(kind)
			if ok || err != nil {
				return false, err
			}
			continue // changed meanwhile (a confirmation?): look again
		}
		poll := time.NewTimer(min(left, time.Second))
		select {
		case <-ch:
		case <-poll.C:
		case <-r.ctx.Done():
			poll.Stop()
			r.m.unsubscribe(r.op.ID, ch)
			return false, errHandOver
		}
		poll.Stop()
		r.m.unsubscribe(r.op.ID, ch)
	}
}

func (m *Manager) setParked(id string, parked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if parked {
		m.parked[id] = true
	} else {
		delete(m.parked, id)
	}
}

// timedOut ends an operation whose step nobody confirmed in time, unless
// it changed meanwhile (false).
func (r *run) timedOut(kind store.StepKind) (bool, error) {
	s := r.step(kind)
	s.State, s.EndTime = store.StepFailed, r.m.o.Now()
	s.Message = "nobody confirmed this step by " + s.Deadline.UTC().Format(time.RFC3339)
	msg := "nobody confirmed the delete in time; nothing was confirmed changed in SF (if the mapping was deleted anyway, upload IPS's certificate: request a new re-registration)"
	if kind != store.StepDeleteMapping {
		msg = "the delete was confirmed but nobody confirmed the upload in time: SF may have no mapping for IPS, and every job fails until IPS's certificate is uploaded; upload it as this operation's upload step says and confirm that step (still accepted), or request a new re-registration"
	}
	return r.doneUnlessChanged(store.StateFailed, &store.OperationError{Code: "DEADLINE_EXCEEDED", Reason: "CONFIRMATION_TIMEOUT", Message: msg,
		Metadata: map[string]string{"step": string(kind), "deadline": s.Deadline.UTC().Format(time.RFC3339)}}, "")
}

// verifyJob starts an IPS READ job and waits for its outcome: the proof
// that IPS itself authenticates with the mapping a person uploaded.
func (r *run) verifyJob(c *inventory.Connection) error {
	if c.IPS == nil {
		s := r.step(store.StepVerifyJob)
		s.State, s.EndTime = store.StepSkipped, r.m.o.Now()
		s.Message = "IPS's Tenant Admin API is not configured (ips.base_url): no READ job verified the mapping; the probe did"
		if c.Config.Probe.Identity == "separate" {
			s.Message = "IPS's Tenant Admin API is not configured (ips.base_url): no READ job verified IPS's own mapping, and the probe uses a separate identity, so it proved SF's host, company id and platform only; run a READ job in IPS to be sure"
		}
		return r.done(store.StateSucceeded, nil, "")
	}
	if err := r.begin(store.StepVerifyJob, "starting an IPS READ job"); err != nil {
		return err
	}
	tracker := r.tracker()
	// A recovered run resumes the job it started, rather than a second
	// one that IPS may refuse while the first runs.
	var rec *store.JobRecord
	recs, err := r.m.o.Store.LatestJobs(r.ctx, r.op.Connection, 20)
	if err != nil {
		// Without the records a resumed run cannot tell whether it
		// started a job: recovery tries again.
		r.m.log.Warn("read the READ jobs of a re-registration", "operation", r.op.ID, "err", err)
		return errHandOver
	}
	for _, j := range recs {
		if j.Operation == r.op.ID && j.Type == "READ" {
			rec = j
			break
		}
	}
	job := ips.Job{}
	if rec != nil {
		job = ips.Job{ID: rec.JobID, Status: rec.Status}
	} else {
		s := r.step(store.StepVerifyJob)
		if !s.JobRequested.IsZero() {
			// A run before this one asked IPS to start the job and
			// stopped before it learnt the job's id: IPS may be running
			// it. Another one would double IPS's load or be refused.
			return r.failJob(fmt.Sprintf("certsync asked IPS to start a READ job at %s and stopped before it learnt the job's id: IPS may be running it; look at the source system's jobs in IPS, or run a READ job yourself",
				s.JobRequested.UTC().Format(time.RFC3339)), "JOB_NOT_STARTED", "", "")
		}
		s.JobRequested = r.m.o.Now()
		if err := r.save(); err != nil {
			return err
		}
		var err error
		if job, err = r.startJob(c); err != nil {
			return err
		}
		if job.ID == "" {
			return nil // the operation ended
		}
		r.step(store.StepVerifyJob).JobRequested = time.Time{} // known now: the record names it
		sha := ""
		if cert, err := x509.ParseCertificate(r.op.SourceCertificateDER); err == nil {
			sha = x509cert.Summarize(cert).SHA256 // the certificate the person uploaded
		}
		rec = tracker.Started(r.ctx, r.op.Connection, job, "READ", "certsync (operations/"+r.op.ID+")", r.op.ID, sha)
		r.step(store.StepVerifyJob).Message = "IPS READ job " + job.ID + " started"
		if err := r.save(); err != nil {
			return err
		}
	}
	// The job's own start, journaled: a resumed run does not wait anew,
	// but it looks at the job once before it judges the deadline.
	deadline := rec.StartTime.Add(r.m.o.JobTimeout)
	client := c.IPS
	noStatus := false // IPS serves no job status: the log is all there is
	logRead := false  // without status: a log was read (and was clean)
	logErr := errors.New("not read yet")
	looked := false
	for !job.Done() {
		if looked && !r.m.o.Now().Before(deadline) {
			if noStatus && logRead {
				return r.jobUnverified(job.ID, fmt.Sprintf("IPS does not report how jobs stand, and READ job %s's log showed no failing call within %s; the probe verified the mapping, look at the job in IPS to be sure", job.ID, r.m.o.JobTimeout))
			}
			if noStatus {
				msg := fmt.Sprintf("IPS does not report how jobs stand, and READ job %s's log could not be read within %s (%v); nothing verified the job, look at it in IPS", job.ID, r.m.o.JobTimeout, logErr)
				return r.failJob(msg, "JOB_STATUS_UNKNOWN", job.ID, "")
			}
			msg := fmt.Sprintf("IPS READ job %s did not finish within %s (last status %q); look at it in IPS", job.ID, r.m.o.JobTimeout, job.Status)
			return r.failJob(msg, "JOB_TIMEOUT", job.ID, "")
		}
		select {
		case <-r.ctx.Done():
			return errHandOver
		case <-time.After(r.m.o.JobPollInterval):
		}
		looked = true
		if noStatus {
			// A log with a failing call is a failed job; a clean one says
			// nothing yet.
			fresh, err := tracker.Refresh(r.ctx, client, r.op.Connection, job.ID)
			if r.ctx.Err() != nil {
				return errHandOver
			}
			if err != nil {
				logErr = err
				continue
			}
			logRead = true
			if fresh.Done {
				job = ips.Job{ID: job.ID, Status: fresh.Status}
			}
			continue
		}
		next, err := client.JobStatus(r.ctx, job.ID)
		switch {
		case r.ctx.Err() != nil:
			// Shutting down, or another replica took over: not IPS's
			// answer, and not this run's to journal.
			return errHandOver
		case errors.Is(err, ips.ErrStatusUnsupported), errors.Is(err, ips.ErrJobNotFound):
			// GET .../jobs/{id} is certsync's assumption, not IPS's
			// documented API: without it, read the log instead (at
			// least once, even past the deadline).
			noStatus, looked = true, false
			continue
		case err != nil:
			var e *ips.Error
			if errors.As(err, &e) && e.Transient {
				continue
			}
			return r.failJob("IPS would not say how READ job "+job.ID+" went: "+err.Error(), "JOB_STATUS_UNKNOWN", job.ID, "")
		}
		job = next
	}
	return r.judgeJobLog(client, rec, job)
}

// jobUnverified ends a manual operation whose READ job could not be judged:
// the person's steps and the probe stand, so it succeeds, and the step says
// what was not verified.
func (r *run) jobUnverified(jobID, msg string) error {
	if err := r.end(store.StepVerifyJob, store.StepSkipped, msg); err != nil {
		return err
	}
	return r.done(store.StateSucceeded, nil, "READ job "+jobID+" was not verified: "+msg)
}

// startJob starts the READ job, retrying what IPS asks to retry (429) within
// the step retry window. An empty job means the operation ended.
func (r *run) startJob(c *inventory.Connection) (ips.Job, error) {
	deadline := time.Now().Add(r.m.o.StepRetryWindow)
	for {
		job, err := c.IPS.StartJob(r.ctx, c.Config.IPS.SourceSystemID, "READ")
		if err == nil {
			return job, nil
		}
		var e *ips.Error
		if errors.As(err, &e) && e.Transient && !e.MayHaveStarted {
			wait := max(e.RetryAfter, time.Second)
			if time.Now().Add(wait).After(deadline) {
				r.op.Notes = append(r.op.Notes, "IPS kept refusing to start the READ job ("+err.Error()+"); recovery will try again")
				r.step(store.StepVerifyJob).JobRequested = time.Time{} // refused: no job runs
				_ = r.save()
				return ips.Job{}, errHandOver
			}
			select {
			case <-r.ctx.Done():
				r.step(store.StepVerifyJob).JobRequested = time.Time{} // IPS refused: no job runs
				_ = r.save()
				return ips.Job{}, errHandOver
			case <-time.After(wait):
			}
			continue
		}
		if r.ctx.Err() != nil {
			return ips.Job{}, errHandOver // shutting down or handed over: recovery tries again
		}
		if errors.As(err, &e) && e.MayHaveStarted {
			return ips.Job{}, r.failJob("IPS may or may not have started the READ job (its answer was lost: "+err.Error()+"); look at the source system's jobs in IPS", "JOB_NOT_STARTED", "", "")
		}
		return ips.Job{}, r.failJob("IPS did not start the READ job: "+err.Error(), "JOB_NOT_STARTED", "", "")
	}
}

// judgeJobLog ends the operation on the finished job: success, or its log
// diagnosed.
func (r *run) judgeJobLog(client *ips.Client, rec *store.JobRecord, job ips.Job) error {
	r.tracker().Judge(r.ctx, client, rec, job)
	if rec.Succeeded {
		if err := r.end(store.StepVerifyJob, store.StepSucceeded, rec.Summary+": IPS authenticates with the uploaded mapping"); err != nil {
			return err
		}
		return r.done(store.StateSucceeded, nil, "")
	}
	advice := "; check sf.company.id, then escalate to LOD-SF-PLT-IAS (certsyncctl escalate)"
	if c := diagnose.ParseCause(rec.Cause); c.Transient() || c == diagnose.CauseUnspecified {
		// An outage or an unexplained failure says nothing about the
		// mapping: run the job again before escalating.
		advice = "; this does not show a certificate problem: run the job again (certsyncctl start-job) before escalating"
	}
	return r.failJob(rec.Summary+advice, "JOB_FAILED", job.ID, rec.Cause)
}

func (r *run) tracker() *ipsjobs.Tracker {
	return &ipsjobs.Tracker{Store: r.m.o.Store, Now: r.m.o.Now, Log: r.m.log}
}

func (r *run) failJob(msg, reason, jobID, cause string) error {
	if err := r.end(store.StepVerifyJob, store.StepFailed, msg); err != nil {
		return err
	}
	md := map[string]string{"step": "verify_job"}
	if jobID != "" {
		md["job_id"] = jobID
	}
	if cause != "" {
		md["cause"] = cause
	}
	return r.done(store.StateFailed, &store.OperationError{Code: "FAILED_PRECONDITION", Reason: reason, Message: msg, Metadata: md}, "")
}

// ConfirmRequest confirms a manual step.
type ConfirmRequest struct {
	ID   string // operation id
	Step store.StepKind
	Note string
	// Fingerprint is what SF shows for the uploaded certificate (upload
	// step only, optional); when given it must be the certificate's.
	Fingerprint string
	By          string
	Audit       *store.AuditEvent
}

// Confirm records that a person performed a manual step in SF's UI; the
// operation's run proceeds with the next step.
func (m *Manager) Confirm(ctx context.Context, req ConfirmRequest) (*store.Operation, error) {
	name := "operations/" + req.ID
	for {
		op, err := m.Get(ctx, req.ID)
		if err != nil {
			return nil, err
		}
		late := op.Done() && uploadTimedOut(op, req.Step)
		if late {
			// Only while no later re-registration speaks for SF's
			// mapping: its steps say what SF shows now.
			newer, err := m.laterOperation(ctx, op)
			if err != nil {
				return nil, err
			}
			if newer != "" {
				return nil, fault.New(fault.FailedPrecondition, "OPERATION_DONE", "operation %s already ended %s, and operations/%s came after it: confirm that one's steps, or record what SF shows (RecordTargetMapping)", name, op.State, newer).
					With("operation", name).With("state", string(op.State)).With("later_operation", "operations/"+newer)
			}
		}
		if op.Done() && !late {
			return nil, fault.New(fault.FailedPrecondition, "OPERATION_DONE", "operation %s already ended %s", name, op.State).With("operation", name).With("state", string(op.State))
		}
		if !op.Manual {
			return nil, fault.New(fault.FailedPrecondition, "NOT_MANUAL", "operation %s is not a manual re-registration: it has no step to confirm", name).With("operation", name)
		}
		var s, awaiting *store.Step
		for i := range op.Steps {
			if op.Steps[i].Kind == req.Step {
				s = &op.Steps[i]
			}
			if op.Steps[i].State == store.StepAwaitingConfirmation && op.Steps[i].Kind != store.StepAwaitApproval {
				awaiting = &op.Steps[i]
			}
		}
		if !late && (s == nil || s.State != store.StepAwaitingConfirmation || s.Kind == store.StepAwaitApproval) {
			e := fault.New(fault.FailedPrecondition, "STEP_NOT_AWAITING", "step %s of operation %s is not waiting for confirmation", req.Step, name).With("operation", name).With("step", string(req.Step))
			if awaiting != nil {
				e.Message += fmt.Sprintf("; step %s is", awaiting.Kind)
				e = e.With("awaiting_step", string(awaiting.Kind))
			} else if op.State == store.StatePendingApproval {
				e.Message += "; it waits for approval first"
			}
			return nil, e
		}
		now := m.o.Now()
		readBack := ""
		if req.Fingerprint != "" {
			if req.Step != store.StepUploadCertificate {
				return nil, fault.Invalid("fingerprint", "FINGERPRINT_NOT_EXPECTED", "a fingerprint is read back only when confirming the upload step")
			}
			fp, err := x509cert.NormalizeFingerprint(req.Fingerprint)
			if err != nil {
				return nil, fault.Invalid("fingerprint", "INVALID_FINGERPRINT", "%v", err)
			}
			cert, err := x509.ParseCertificate(op.SourceCertificateDER)
			if err != nil {
				return nil, fault.New(fault.Internal, "JOURNAL_CORRUPT", "the journaled certificate of %s does not parse", name)
			}
			sum := x509cert.Summarize(cert)
			if !sum.Matches(fp) {
				// Said in the algorithm the person read, so that the two
				// can be compared by eye.
				want := sum.SHA256
				if fp.Algorithm == x509cert.AlgorithmSHA1 {
					want = sum.SHA1
				}
				e := fault.New(fault.FailedPrecondition, "FINGERPRINT_DIFFERS",
					"the fingerprint given, %s %s, is not the certificate to upload, whose %s is %s: check it for a typo; if SF really shows it, SF holds another certificate: delete that mapping, upload the certificate attached to the step, then confirm again",
					fp.Algorithm, fp, fp.Algorithm, want).
					With("operation", name).With("expected_"+strings.ToLower(strings.ReplaceAll(fp.Algorithm.String(), "-", "")), want)
				e.Violations = []fault.Violation{{Type: "FINGERPRINT", Subject: name, Description: e.Message}}
				return nil, e
			}
			readBack = fmt.Sprintf("%s read SF's fingerprint back (%s %s): it is IPS's certificate (a person's record)", req.By, fp.Algorithm, fp)
		}
		s.State, s.EndTime, s.ConfirmedBy = store.StepSucceeded, now, req.By
		s.Message = "confirmed by " + req.By
		if strings.TrimSpace(req.Note) != "" {
			s.Message += ": " + req.Note
		}
		if late {
			s.Message = "confirmed by " + req.By + " after the deadline"
			if strings.TrimSpace(req.Note) != "" {
				s.Message += ": " + req.Note
			}
			op.Notes = append(op.Notes, fmt.Sprintf("%s confirmed the upload at %s, after the operation had failed: the operation stays FAILED and certsync verified nothing; CheckGate probes", req.By, now.UTC().Format(time.RFC3339)))
		}
		if readBack != "" {
			for i := range op.Steps {
				if op.Steps[i].Kind == store.StepVerifyReadback {
					op.Steps[i].State, op.Steps[i].StartTime, op.Steps[i].EndTime, op.Steps[i].Message = store.StepSucceeded, now, now, readBack
				}
			}
		}
		op.UpdateTime = now
		err = m.o.Store.UpdateOperation(ctx, op, req.Audit)
		if errors.Is(err, store.ErrConflict) {
			continue // the run journaled meanwhile; look again
		}
		if err != nil {
			return nil, err
		}
		m.recordConfirmed(ctx, op, req)
		m.notify(op.ID)
		return op, nil
	}
}

// uploadTimedOut reports an operation that failed because nobody confirmed
// its upload in time, after the delete was confirmed: SF may have had no
// mapping for IPS since. A person who uploads later may still confirm that
// step (and only that one, once), so that what SF shows is recorded and
// compare stops reading the delete's "no mapping".
func uploadTimedOut(op *store.Operation, step store.StepKind) bool {
	if step != store.StepUploadCertificate || op.State != store.StateFailed || op.Error == nil ||
		op.Error.Reason != "CONFIRMATION_TIMEOUT" || op.Error.Metadata["step"] != string(store.StepUploadCertificate) {
		return false
	}
	for _, s := range op.Steps {
		if s.Kind == store.StepUploadCertificate {
			return s.State == store.StepFailed
		}
	}
	return false
}

// laterOperation returns the id of a re-registration of op's connection
// created after op (validate-only runs aside), or "".
func (m *Manager) laterOperation(ctx context.Context, op *store.Operation) (string, error) {
	ops, _, err := m.o.Store.ListOperations(ctx, store.ListFilter{Connection: op.Connection, PageSize: 50})
	if err != nil {
		return "", err
	}
	for _, o := range ops { // newest first
		if o.ID == op.ID {
			return "", nil
		}
		if !o.ValidateOnly {
			return o.ID, nil
		}
	}
	return "", nil
}

// recordConfirmed keeps what a confirmed step says SF now shows, so that
// compare and the gate see it whether or not a run is alive to go on. A
// record lost to a crash is only evidence lost: the journal is what counts.
func (m *Manager) recordConfirmed(ctx context.Context, op *store.Operation, req ConfirmRequest) {
	rec := &store.TargetRecord{Connection: op.Connection, Operation: op.ID, RecordedBy: req.By}
	switch req.Step {
	case store.StepDeleteMapping:
		// SF shows no mapping for IPS now: the old record is no longer
		// the truth while the upload is pending.
		rec.Absent, rec.Note = true, "deleted in SF (confirmed step of operations/"+op.ID+")"
	case store.StepUploadCertificate:
		u := op.Upload
		rec.ConfigurationName, rec.IntegrationName, rec.LoginName = u.ConfigurationName, u.IntegrationName, u.LoginName
		rec.Note = "uploaded in SF (confirmed step of operations/" + op.ID + ")"
		rec.SetCertificate(op.SourceCertificateDER)
	default:
		return
	}
	if _, err := m.o.Store.RecordTarget(context.WithoutCancel(ctx), rec, nil); err != nil {
		m.log.Warn("record what a confirmed step says SF shows", "operation", op.ID, "err", err)
	}
}
