// Package ipsjobs keeps what certsync knows of the IPS provisioning jobs it
// starts or looks at: their status as IPS reports it and, for a job that
// failed, its log diagnosed. It is the one place that judges a job, for
// StartProvisioningJob/GetProvisioningJob, for the READ job that verifies a
// manual re-registration, and for the gate, which reads a connection's
// latest READ job as evidence for IPS's own mapping when the probe uses a
// separate identity.
package ipsjobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/ips"
	"github.com/certsync/certsync/service/store"
)

// Store is the part of the store that keeps job records.
type Store interface {
	PutJob(ctx context.Context, j *store.JobRecord) error
	GetJob(ctx context.Context, connection, jobID string) (*store.JobRecord, error)
	LatestJobs(ctx context.Context, connection string, limit int) ([]*store.JobRecord, error)
}

// Client is the part of the IPS Tenant Admin API client a Tracker uses.
type Client interface {
	JobStatus(ctx context.Context, jobID string) (ips.Job, error)
	LogSource
}

// LogSource exports a job's log as text (the IPS client does).
type LogSource interface {
	JobLogText(ctx context.Context, jobID string) (string, error)
}

// FetchedLog is a log the caller exported already and needs itself too:
// judging the job with it costs no second export.
type FetchedLog string

// JobLogText returns the log.
func (l FetchedLog) JobLogText(context.Context, string) (string, error) { return string(l), nil }

// DiagnoseLog diagnoses a job log's text: its end, where a chain names the
// failing call, within what the diagnosis reads.
func DiagnoseLog(text string) (diagnose.Result, error) {
	if len(text) > diagnose.MaxTextBytes {
		text = text[len(text)-diagnose.MaxTextBytes:]
	}
	return diagnose.DiagnoseJobError(text)
}

// Tracker records and judges jobs. Safe for concurrent use.
type Tracker struct {
	Store Store
	Now   func() time.Time
	Log   *slog.Logger

	// quiet holds, by connection and job, when LatestRead may ask IPS
	// again after a look that failed (a failed look stores nothing, so
	// the record's UpdateTime cannot pace it): IPS's rate limits hold
	// across gatherings.
	quietMu sync.Mutex
	quiet   map[string]time.Time
	// RefreshEvery is the least time between two looks at a running job
	// (each one a call to IPS, or a log export where IPS reports no
	// status); 0 means DefaultRefreshEvery.
	RefreshEvery time.Duration
}

// DefaultRefreshEvery paces the looks at a running job: the gate may gather
// evidence every second, IPS's API is rate limited, and a READ job takes
// minutes.
const DefaultRefreshEvery = 30 * time.Second

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Started records a job just started. A record that cannot be stored is
// only evidence lost: the job runs anyway, so the error is logged, not
// returned.
// sourceSHA256 is IPS's active certificate as certsync knows it now (the
// gate takes the job as evidence for that certificate only); "" when it
// could not be read.
func (t *Tracker) Started(ctx context.Context, connection string, job ips.Job, jobType, by, operation, sourceSHA256 string) *store.JobRecord {
	now := t.now()
	rec := &store.JobRecord{Connection: connection, JobID: job.ID, Type: jobType, Status: job.Status, StartedBy: by,
		Operation: operation, StartTime: now, UpdateTime: now, SourceSHA256: sourceSHA256}
	// The same now as StartTime: LatestRead tells a job nobody looked at
	// since it started by UpdateTime not being after StartTime.
	Judge(context.WithoutCancel(ctx), nil, rec, job, now)
	t.put(ctx, rec)
	return rec
}

// Refresh asks IPS how a job stands, judges it and stores the record. A
// job certsync has no record of (started in IPS's console) is recorded as
// a READ job seen now.
func (t *Tracker) Refresh(ctx context.Context, client Client, connection, jobID string) (*store.JobRecord, error) {
	rec, err := t.Store.GetJob(ctx, connection, jobID)
	if errors.Is(err, store.ErrNotFound) {
		rec, err = &store.JobRecord{Connection: connection, JobID: jobID, StartTime: t.now()}, nil
	}
	if err != nil {
		return nil, err
	}
	var logs LogSource = client
	job, err := client.JobStatus(ctx, jobID)
	if errors.Is(err, ips.ErrStatusUnsupported) || errors.Is(err, ips.ErrJobNotFound) {
		// No status endpoint (a 404 may say so too: GET .../jobs/{id} is
		// certsync's assumption): the log is all there is, and a log with
		// errors is a failed job. A log that cannot be read is an error,
		// never a clean job.
		text, lerr := client.JobLogText(ctx, jobID)
		if lerr != nil {
			return nil, fmt.Errorf("IPS reports no status of job %s (%w), and its log could not be exported: %w", jobID, err, lerr)
		}
		job, err = ips.Job{ID: jobID, Status: rec.Status}, nil
		logs = FetchedLog(text)
		if res, derr := DiagnoseLog(text); derr == nil && len(res.Findings) > 0 {
			job.Status = ips.StatusFinishedWithError
		}
	}
	if err != nil {
		return nil, err
	}
	t.Judge(ctx, logs, rec, job)
	return rec, nil
}

// Judge brings rec up to job (see Judge) and stores it.
func (t *Tracker) Judge(ctx context.Context, logs LogSource, rec *store.JobRecord, job ips.Job) {
	Judge(ctx, logs, rec, job, t.now())
	t.put(ctx, rec)
}

// LatestRead returns the connection's newest READ job, asking IPS first
// when it had not finished and was not looked at for RefreshEvery (client
// may be nil: then as recorded). Nil when certsync knows of none.
func (t *Tracker) LatestRead(ctx context.Context, client Client, connection string) (*store.JobRecord, error) {
	recs, err := t.Store.LatestJobs(ctx, connection, 20)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Type != "READ" && r.Type != "" {
			continue
		}
		every := t.RefreshEvery
		if every <= 0 {
			every = DefaultRefreshEvery
		}
		// A job not looked at since it started is asked about at once.
		fresh := !r.UpdateTime.After(r.StartTime)
		key := connection + "\x00" + r.JobID
		if !r.Done && client != nil && (fresh || t.now().Sub(r.UpdateTime) >= every) && !t.quietUntil(key) {
			looked, err := t.Refresh(ctx, client, connection, r.JobID)
			if err == nil {
				return looked, nil
			}
			wait := every
			var e *ips.Error
			if errors.As(err, &e) {
				wait = max(wait, e.RetryAfter)
			}
			t.setQuiet(key, t.now().Add(wait))
		}
		return r, nil
	}
	return nil, nil
}

// quietUntil reports a job IPS is not to be asked about yet.
func (t *Tracker) quietUntil(key string) bool {
	t.quietMu.Lock()
	defer t.quietMu.Unlock()
	until, ok := t.quiet[key]
	if ok && !t.now().Before(until) {
		delete(t.quiet, key)
		return false
	}
	return ok
}

func (t *Tracker) setQuiet(key string, until time.Time) {
	t.quietMu.Lock()
	defer t.quietMu.Unlock()
	if t.quiet == nil {
		t.quiet = map[string]time.Time{}
	}
	t.quiet[key] = until
}

func (t *Tracker) put(ctx context.Context, rec *store.JobRecord) {
	if err := t.Store.PutJob(context.WithoutCancel(ctx), rec); err != nil && t.Log != nil {
		t.Log.Warn("record IPS job", "connection", rec.Connection, "job", rec.JobID, "err", err)
	}
}

// Judge brings rec up to job's status: done, succeeded, and for a job that
// met errors its log diagnosed (when logs is not nil) into Cause and
// Summary.
func Judge(ctx context.Context, logs LogSource, rec *store.JobRecord, job ips.Job, now time.Time) {
	rec.UpdateTime = now
	if job.Status != "" {
		rec.Status = job.Status
	}
	if job.Done() && !rec.Done {
		rec.Done, rec.EndTime = true, now
	}
	rec.Succeeded = rec.Done && rec.Status == ips.StatusSuccess
	if rec.Succeeded {
		rec.Cause, rec.Summary = "", fmt.Sprintf("IPS %s job %s finished with status Success", orRead(rec.Type), rec.JobID)
		return
	}
	rec.Summary = fmt.Sprintf("IPS %s job %s: %s", orRead(rec.Type), rec.JobID, orUnknown(rec.Status))
	failed := job.HasErrors() || (rec.Done && rec.Status != ips.StatusSuccess)
	if !failed || logs == nil {
		return
	}
	text, err := logs.JobLogText(ctx, rec.JobID)
	if err != nil {
		rec.Summary += " (its log could not be exported: " + err.Error() + ")"
		return
	}
	if res, err := DiagnoseLog(text); err == nil && len(res.Findings) > 0 {
		rec.Cause = res.Findings[0].Cause.String()
		rec.Summary += ": " + res.Summary
	}
}

func orRead(t string) string {
	if t == "" {
		return "READ"
	}
	return t
}

func orUnknown(s string) string {
	if s == "" {
		return "status not reported yet"
	}
	return "status " + s
}
