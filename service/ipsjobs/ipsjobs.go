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
	JobLogText(ctx context.Context, jobID string) (string, error)
}

// Tracker records and judges jobs. Safe for concurrent use.
type Tracker struct {
	Store Store
	Now   func() time.Time
	Log   *slog.Logger
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
func (t *Tracker) Started(ctx context.Context, connection string, job ips.Job, jobType, by, operation string) *store.JobRecord {
	now := t.now()
	rec := &store.JobRecord{Connection: connection, JobID: job.ID, Type: jobType, Status: job.Status, StartedBy: by,
		Operation: operation, StartTime: now, UpdateTime: now}
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
	job, err := client.JobStatus(ctx, jobID)
	if errors.Is(err, ips.ErrStatusUnsupported) {
		// No status endpoint: a log with errors is a failed job.
		job, err = ips.Job{ID: jobID, Status: rec.Status}, nil
		if text, lerr := client.JobLogText(ctx, jobID); lerr == nil {
			if res, derr := diagnose.DiagnoseJobError(tail(text)); derr == nil && len(res.Findings) > 0 {
				job.Status = ips.StatusFinishedWithError
			}
		}
	}
	if err != nil {
		return nil, err
	}
	Judge(ctx, client, rec, job, t.now())
	t.put(ctx, rec)
	return rec, nil
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
		if !r.Done && client != nil && (fresh || t.now().Sub(r.UpdateTime) >= every) {
			if looked, err := t.Refresh(ctx, client, connection, r.JobID); err == nil {
				return looked, nil
			}
		}
		return r, nil
	}
	return nil, nil
}

func (t *Tracker) put(ctx context.Context, rec *store.JobRecord) {
	if err := t.Store.PutJob(context.WithoutCancel(ctx), rec); err != nil && t.Log != nil {
		t.Log.Warn("record IPS job", "connection", rec.Connection, "job", rec.JobID, "err", err)
	}
}

// Judge brings rec up to job's status: done, succeeded, and for a job that
// met errors its log diagnosed (when client is not nil) into Cause and
// Summary.
func Judge(ctx context.Context, client Client, rec *store.JobRecord, job ips.Job, now time.Time) {
	rec.UpdateTime = now
	if job.Status != "" {
		rec.Status = job.Status
	}
	if job.Done() && !rec.Done {
		rec.Done, rec.EndTime = true, now
	}
	rec.Succeeded = rec.Done && rec.Status == ips.StatusSuccess
	switch {
	case rec.Succeeded:
		rec.Cause, rec.Summary = "", fmt.Sprintf("IPS %s job %s finished with status Success", orRead(rec.Type), rec.JobID)
	case !job.HasErrors() && !(rec.Done && rec.Status != ips.StatusSuccess):
		rec.Summary = fmt.Sprintf("IPS %s job %s: %s", orRead(rec.Type), rec.JobID, orUnknown(rec.Status))
	case client != nil:
		rec.Summary = fmt.Sprintf("IPS %s job %s: %s", orRead(rec.Type), rec.JobID, orUnknown(rec.Status))
		text, err := client.JobLogText(ctx, rec.JobID)
		if err != nil {
			rec.Summary += " (its log could not be exported: " + err.Error() + ")"
			return
		}
		if res, err := diagnose.DiagnoseJobError(tail(text)); err == nil && len(res.Findings) > 0 {
			rec.Cause = res.Findings[0].Cause.String()
			rec.Summary += ": " + res.Summary
		}
	}
}

// tail keeps the end of a long log: the end of a chain names the failing
// call.
func tail(text string) string {
	if len(text) > diagnose.MaxTextBytes {
		return text[len(text)-diagnose.MaxTextBytes:]
	}
	return text
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
