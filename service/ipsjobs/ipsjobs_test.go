package ipsjobs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/ips"
	"github.com/certsync/certsync/service/store"
)

// fakeIPS answers job status and log exports from maps.
type fakeIPS struct {
	status  map[string]ips.Job
	logs    map[string]string
	asked   []string
	noState bool       // answers like an IPS without a status endpoint
	limited *ips.Error // answers every status question with this
}

func (f *fakeIPS) JobStatus(_ context.Context, id string) (ips.Job, error) {
	f.asked = append(f.asked, "status "+id)
	if f.limited != nil {
		return ips.Job{}, f.limited
	}
	if f.noState {
		return ips.Job{}, &ips.Error{Step: ips.StepJobStatus, Status: 404, Err: ips.ErrStatusUnsupported}
	}
	j, ok := f.status[id]
	if !ok {
		return ips.Job{}, errors.New("no such job")
	}
	return j, nil
}

func (f *fakeIPS) JobLogText(_ context.Context, id string) (string, error) {
	f.asked = append(f.asked, "log "+id)
	return f.logs[id], nil
}

// seedLog is a READ job's failure as IPS logs it: SF refused the
// certificate with AUTH0032.
const seedLog = `2026-11-27 10:00:00 ERROR Job failed
Caused by: HTTP operation failed invoking https://api4.cert.successfactors.com/rest/iam/scim/v2/Users?startId=initial&count=100 with statusCode: 401 and body {"status":"401","detail":"Authentication service failed to return token. [AUTH0032]Invalid client certificate"}
`

func newTracker(t *testing.T, now *time.Time) (*Tracker, store.Store) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "certsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Tracker{Store: st, Now: func() time.Time { return *now }}, st
}

func TestJudgeDiagnosesFailedJobs(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	client := &fakeIPS{logs: map[string]string{"j1": seedLog}}
	tests := []struct {
		name                string
		job                 ips.Job
		done, succeeded     bool
		cause, summaryHasIt string
	}{
		{"success", ips.Job{ID: "j1", Status: ips.StatusSuccess}, true, true, "", "Success"},
		{"finished with error", ips.Job{ID: "j1", Status: ips.StatusFinishedWithError}, true, false, "InvalidClientCertificate", "AUTH0032"},
		{"running", ips.Job{ID: "j1", Status: ips.StatusRunning}, false, false, "", "Running"},
		{"running with error", ips.Job{ID: "j1", Status: ips.StatusRunningWithError}, false, false, "InvalidClientCertificate", "AUTH0032"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &store.JobRecord{Connection: "c", JobID: "j1", Type: "READ"}
			Judge(context.Background(), client, rec, tt.job, now)
			if rec.Done != tt.done || rec.Succeeded != tt.succeeded || rec.Cause != tt.cause || !strings.Contains(rec.Summary, tt.summaryHasIt) {
				t.Fatalf("%+v", rec)
			}
			if tt.done != !rec.EndTime.IsZero() {
				t.Errorf("end time %v for done=%v", rec.EndTime, tt.done)
			}
		})
	}
}

func TestLatestReadAsksIPSWhileTheJobRuns(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tr, st := newTracker(t, &now)
	client := &fakeIPS{status: map[string]ips.Job{"j1": {ID: "j1", Status: ips.StatusRunning}}, logs: map[string]string{"j1": seedLog}}

	if got, err := tr.LatestRead(ctx, client, "c"); err != nil || got != nil {
		t.Fatalf("no job yet: %v %v", got, err)
	}
	tr.Started(ctx, "c", ips.Job{ID: "r1", Status: ips.StatusSuccess}, "RESYNC", "alice", "", "")
	now = now.Add(time.Minute)
	tr.Started(ctx, "c", ips.Job{ID: "j1"}, "READ", "alice", "", "")
	now = now.Add(time.Minute)
	got, err := tr.LatestRead(ctx, client, "c")
	if err != nil || got.JobID != "j1" || got.Done {
		t.Fatalf("running job: %+v %v", got, err)
	}
	// Looked at a moment ago: not asked again yet.
	asked := len(client.asked)
	client.status["j1"] = ips.Job{ID: "j1", Status: ips.StatusFinishedWithError}
	if got, err := tr.LatestRead(ctx, client, "c"); err != nil || got.Done || len(client.asked) != asked {
		t.Fatalf("asked IPS again within RefreshEvery: %v %+v %v", client.asked, got, err)
	}
	// It ended with AUTH0032: the next look records and diagnoses it.
	now = now.Add(DefaultRefreshEvery)
	got, err = tr.LatestRead(ctx, client, "c")
	if err != nil || !got.Done || got.Succeeded || got.Cause != "InvalidClientCertificate" || !got.EndTime.Equal(now) {
		t.Fatalf("failed job: %+v %v", got, err)
	}
	stored, err := st.GetJob(ctx, "c", "j1")
	if err != nil || stored.Cause != "InvalidClientCertificate" {
		t.Fatalf("stored: %+v %v", stored, err)
	}
	// A finished job is not asked about again.
	now = now.Add(time.Hour)
	asked = len(client.asked)
	if _, err := tr.LatestRead(ctx, client, "c"); err != nil || len(client.asked) != asked {
		t.Fatalf("asked IPS again about a finished job: %v %v", client.asked, err)
	}
	// Without a client the record is answered as it stands.
	if got, err := tr.LatestRead(ctx, nil, "other"); err != nil || got != nil {
		t.Fatalf("another connection: %v %v", got, err)
	}
}

func TestRefreshWithoutStatusEndpointReadsTheLog(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tr, _ := newTracker(t, &now)
	client := &fakeIPS{noState: true, logs: map[string]string{"j1": seedLog, "j2": "2026-11-27 INFO Read 3 users\n"}}
	got, err := tr.Refresh(ctx, client, "c", "j1")
	if err != nil || !got.Done || got.Cause != "InvalidClientCertificate" {
		t.Fatalf("log with AUTH0032: %+v %v", got, err)
	}
	got, err = tr.Refresh(ctx, client, "c", "j2")
	if err != nil || got.Done {
		t.Fatalf("a clean log proves no end: %+v %v", got, err)
	}
}

// TestLatestReadHoldsBackAfterAFailedLook: a look at a running job that
// fails (IPS rate-limits certsync) stores nothing, yet the gate gathers
// every second: IPS is not asked again before RefreshEvery, or its
// Retry-After when longer.
func TestLatestReadHoldsBackAfterAFailedLook(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tr, _ := newTracker(t, &now)
	client := &fakeIPS{status: map[string]ips.Job{"j1": {ID: "j1", Status: ips.StatusRunning}},
		limited: &ips.Error{Step: ips.StepJobStatus, Status: 429, Transient: true, RetryAfter: 2 * time.Minute}}
	tr.Started(ctx, "c", ips.Job{ID: "j1"}, "READ", "alice", "", "")
	if _, err := tr.LatestRead(ctx, client, "c"); err != nil {
		t.Fatal(err)
	}
	if len(client.asked) != 1 {
		t.Fatalf("first look: %v", client.asked)
	}
	for i := 0; i < 10; i++ { // the gate's gatherings over the next 100 s
		now = now.Add(10 * time.Second)
		if got, err := tr.LatestRead(ctx, client, "c"); err != nil || got.JobID != "j1" {
			t.Fatalf("while held back: %+v %v", got, err)
		}
	}
	if len(client.asked) != 1 {
		t.Fatalf("asked IPS %d times within its Retry-After: %v", len(client.asked), client.asked)
	}
	now = now.Add(time.Minute) // past the Retry-After
	client.limited = nil
	if got, err := tr.LatestRead(ctx, client, "c"); err != nil || len(client.asked) != 2 || got.Status != ips.StatusRunning {
		t.Fatalf("after the Retry-After: %+v %v %v", got, client.asked, err)
	}
}
