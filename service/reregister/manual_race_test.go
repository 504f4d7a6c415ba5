package reregister_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/sandbox"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/testutil"
)

// hookStore runs hook once, just before the first update that ends an
// operation: the moment a person's confirmation may race the runner.
type hookStore struct {
	store.Store
	mu   sync.Mutex
	hook func(op *store.Operation)
}

func (h *hookStore) UpdateOperation(ctx context.Context, op *store.Operation, a *store.AuditEvent) error {
	h.mu.Lock()
	f := h.hook
	if f != nil && op.Done() {
		h.hook = nil
	} else {
		f = nil
	}
	h.mu.Unlock()
	if f != nil {
		f(op)
	}
	return h.Store.UpdateOperation(ctx, op, a)
}

// env is demo-desync on the manual driver, its store wrapped in a
// hookStore; statusUnsupported puts a proxy before IPS that answers 501 to
// GET .../jobs/{id} (an IPS without the status endpoint certsync assumes);
// setupProxied chooses the proxy's answers.
type env struct {
	st    store.Store
	hs    *hookStore
	inv   *inventory.Inventory
	hands registry.Driver
	opts  reregister.Options
	// hangs hears of each request the proxy holds; starts counts the
	// start requests it held.
	hangs  chan struct{}
	starts *atomic.Int32
}

func setup(t *testing.T, statusUnsupported bool) *env {
	if statusUnsupported {
		return setupProxied(t, http.StatusNotImplemented, 0)
	}
	return setupProxied(t, 0, 0)
}

// statusHang makes the proxy hold GET .../jobs/{id} unanswered, after a
// word on env.hangs; statusHangStart does so with POST .../startJob/...,
// which it counts in env.starts.
const (
	statusHang      = -1
	statusHangStart = -2
)

// setupProxied answers GET .../jobs/{id} with jobStatus and the log export
// with logStatus, where they are not 0; the rest goes to the sandbox's IPS.
func setupProxied(t *testing.T, jobStatus, logStatus int) *env {
	statusUnsupported := jobStatus != 0 || logStatus != 0
	hangs, starts := make(chan struct{}, 100), &atomic.Int32{}
	ctx := context.Background()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	dir := t.TempDir()
	conns, err := sb.WriteFiles(dir)
	must(t, err)
	var hands registry.Driver
	for i := range conns {
		if c := &conns[i]; c.ID == "demo-desync" {
			pool := x509.NewCertPool()
			ca, err := os.ReadFile(c.Registry.CAFile)
			must(t, err)
			pool.AppendCertsFromPEM(ca)
			hands, err = registry.NewHTTP(registry.HTTPConfig{BaseURL: c.Registry.URL, TokenFile: c.Registry.TokenFile, RootCAs: pool})
			must(t, err)
			c.Registry = config.Registry{Driver: "manual", IntegrationName: c.Registry.IntegrationName, LoginName: c.Registry.LoginName}
			if statusUnsupported {
				if c.IPS.BaseURL == "" {
					t.Fatal("no ips base url in sandbox config")
				}
				target, _ := url.Parse(c.IPS.BaseURL)
				rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
				rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
				px := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/startJob/") && jobStatus == statusHangStart {
						starts.Add(1)
						hangs <- struct{}{}
						<-r.Context().Done() // IPS got it; its answer is lost
						return
					}
					if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/jobs/") && jobStatus == statusHang {
						hangs <- struct{}{}
						<-r.Context().Done() // until the caller gives up
						return
					}
					if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/jobs/") && jobStatus != 0 {
						w.WriteHeader(jobStatus)
						return
					}
					if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/jobLogs/") && logStatus != 0 {
						w.WriteHeader(logStatus)
						return
					}
					rp.ServeHTTP(w, r)
				}))
				t.Cleanup(px.Close)
				caf := filepath.Join(dir, "proxy-ca.pem")
				must(t, os.WriteFile(caf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: px.Certificate().Raw}), 0o600))
				c.IPS.CAFile = caf
				c.IPS.BaseURL = strings.Replace(c.IPS.BaseURL, target.Host, strings.TrimPrefix(px.URL, "https://"), 1)
			}
		}
	}
	cfg := &config.Config{Connections: conns}
	cfg.ApplyDefaults()
	problems := cfg.Validate()
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	st, err := store.Open(ctx, "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	inv, err := inventory.Build(cfg.Connections, problems, inventory.Options{ProbeTimeout: 5 * time.Second, Store: st})
	must(t, err)
	t.Cleanup(inv.Close)
	hs := &hookStore{Store: st}
	opts := reregister.Options{Store: hs, Inventory: inv, SettleWindow: 2 * time.Second, ProbeInterval: 200 * time.Millisecond,
		JobPollInterval: 100 * time.Millisecond, LockTTL: time.Second}
	return &env{st: st, hs: hs, inv: inv, hands: hands, opts: opts, hangs: hangs, starts: starts}
}

// uploadAsPerson performs the waiting upload step in the sandbox, as a
// person would in SF's UI, from the step's instruction.
func uploadAsPerson(t *testing.T, e *env, op *store.Operation) {
	t.Helper()
	var in *store.Instruction
	for _, s := range op.Steps {
		if s.Kind == store.StepUploadCertificate {
			in = s.Instruction
		}
	}
	if in == nil {
		t.Fatalf("upload step without instruction: %+v", op.Steps)
	}
	cert, err := x509.ParseCertificate(in.CertificateDER)
	must(t, err)
	_, err = e.hands.Upload(context.Background(), registry.NewMapping{ConfigurationName: in.ConfigurationName, IntegrationName: in.IntegrationName, LoginName: in.LoginName, Certificate: cert})
	must(t, err)
}

// waitHeld waits until the proxy holds a request (what names it).
func (e *env) waitHeld(t *testing.T, what string) {
	t.Helper()
	select {
	case <-e.hangs:
	case <-time.After(30 * time.Second):
		t.Fatalf("IPS was never asked for %s", what)
	}
}

// personDoesBothSteps starts a re-registration of demo-desync and plays the
// person: delete in SF, confirm, upload the certificate, confirm.
func personDoesBothSteps(t *testing.T, e *env, m *reregister.Manager) *store.Operation {
	t.Helper()
	ctx := context.Background()
	op, err := m.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "alice"})
	must(t, err)
	waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepDeleteMapping) == store.StepAwaitingConfirmation
	})
	deleteAsPerson(t, e)
	_, err = m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"})
	must(t, err)
	uploadAsPerson(t, e, waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepUploadCertificate) == store.StepAwaitingConfirmation
	}))
	_, err = m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "bob"})
	must(t, err)
	return op
}

func deleteAsPerson(t *testing.T, e *env) {
	t.Helper()
	ms, err := e.hands.List(context.Background())
	must(t, err)
	must(t, e.hands.Delete(context.Background(), ms[0].ID))
}

func stepMessage(o *store.Operation, k store.StepKind) string {
	for _, s := range o.Steps {
		if s.Kind == k {
			return s.Message
		}
	}
	return ""
}

// A person confirms the delete just as a cancel request ends the wait: the
// confirmation that was accepted wins, and the operation waits for the
// upload rather than leave SF without a mapping.
func TestManualConfirmRacesCancel(t *testing.T) {
	ctx := context.Background()
	e := setup(t, false)
	m := reregister.New(e.opts)
	t.Cleanup(m.Close)
	op, err := m.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "alice"})
	must(t, err)
	waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepDeleteMapping) == store.StepAwaitingConfirmation
	})
	deleteAsPerson(t, e)
	var confirmErr error
	e.hs.mu.Lock()
	e.hs.hook = func(*store.Operation) {
		_, confirmErr = m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"})
	}
	e.hs.mu.Unlock()
	_, err = m.Cancel(ctx, op.ID, "changed my mind", nil)
	must(t, err)
	if confirmErr != nil {
		t.Fatalf("the confirmation was refused: %v", confirmErr)
	}
	got := waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return o.Done() || stepState(o, store.StepUploadCertificate) == store.StepAwaitingConfirmation
	})
	if got.Done() || stepState(got, store.StepDeleteMapping) != store.StepSucceeded {
		t.Fatalf("an accepted confirmation was dropped: %s, delete %s", got.State, stepState(got, store.StepDeleteMapping))
	}
	uploadAsPerson(t, e, got)
	_, err = m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "bob"})
	must(t, err)
	final, err := m.Wait(ctx, op.ID, 20*time.Second)
	must(t, err)
	if final.State != store.StateCancelled || stepState(final, store.StepUploadCertificate) != store.StepSucceeded {
		t.Fatalf("final %s, upload %s", final.State, stepState(final, store.StepUploadCertificate))
	}
}

// The same race with the step's deadline: a confirmation accepted at the
// deadline is not undone by the timeout.
func TestManualConfirmRacesTimeout(t *testing.T) {
	ctx := context.Background()
	e := setup(t, false)
	e.opts.ManualStepTimeout = time.Second
	m := reregister.New(e.opts)
	t.Cleanup(m.Close)
	op, err := m.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "alice"})
	must(t, err)
	waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepDeleteMapping) == store.StepAwaitingConfirmation
	})
	var confirmErr error
	e.hs.mu.Lock()
	e.hs.hook = func(*store.Operation) {
		_, confirmErr = m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"})
	}
	e.hs.mu.Unlock()
	final, err := m.Wait(ctx, op.ID, 20*time.Second)
	must(t, err)
	if confirmErr != nil {
		t.Fatalf("the confirmation was refused: %v", confirmErr)
	}
	// The delete stands; then nobody uploads, and the upload times out.
	if stepState(final, store.StepDeleteMapping) != store.StepSucceeded || final.Error == nil || final.Error.Metadata["step"] != string(store.StepUploadCertificate) {
		t.Fatalf("final %s, delete %s, error %+v", final.State, stepState(final, store.StepDeleteMapping), final.Error)
	}

	// The person uploads late. That upload may still be confirmed, once,
	// so that what SF shows is recorded (compare would otherwise go on
	// reading the delete's "no mapping"); the operation stays FAILED.
	deleteAsPerson(t, e) // what the confirmation said was done
	uploadAsPerson(t, e, final)
	if _, err := m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"}); err == nil {
		t.Error("a late confirmation of the delete was taken")
	}
	late, err := m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "carol", Note: "uploaded the next morning"})
	must(t, err)
	if late.State != store.StateFailed || stepState(late, store.StepUploadCertificate) != store.StepSucceeded ||
		!strings.Contains(stepMessage(late, store.StepUploadCertificate), "after the deadline") {
		t.Errorf("after the late confirmation: %s, upload %s %q", late.State, stepState(late, store.StepUploadCertificate), stepMessage(late, store.StepUploadCertificate))
	}
	rec, err := e.st.LatestTargetRecord(ctx, "demo-desync")
	must(t, err)
	if rec.Absent || len(rec.DER) == 0 || rec.RecordedBy != "carol" {
		t.Errorf("latest record after the late upload: %+v", rec)
	}
	if _, err := m.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "carol"}); err == nil {
		t.Error("the late upload was confirmed twice")
	}
}

// An IPS without the job-status endpoint certsync assumes: the job is
// judged by its log, and a clean log leaves the operation SUCCEEDED with
// the job step saying it was not verified, never FAILED with advice to
// escalate.
func TestManualVerifyJobWithoutStatusEndpoint(t *testing.T) {
	ctx := context.Background()
	e := setup(t, true)
	e.opts.JobTimeout = time.Second
	m := reregister.New(e.opts)
	t.Cleanup(m.Close)
	op := personDoesBothSteps(t, e, m)
	final, err := m.Wait(ctx, op.ID, 20*time.Second)
	must(t, err)
	msg := stepMessage(final, store.StepVerifyJob)
	if final.State != store.StateSucceeded || stepState(final, store.StepVerifyJob) != store.StepSkipped || !strings.Contains(msg, "does not report") {
		t.Fatalf("final %s %+v, job step %s %q", final.State, final.Error, stepState(final, store.StepVerifyJob), msg)
	}
}

// An IPS that answers 404 to the job-status URL certsync assumes is judged
// by the job's log like one that answers 501; and when the log cannot be
// exported either, nothing verified the job: the operation fails, it never
// claims that a log it did not read was clean.
func TestManualVerifyJobStatusNotFoundAndNoLog(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		jobStatus, logStatus int
		state                store.OperationState
		jobStep              store.StepState
		want                 string
	}{
		{"404 status, log read", http.StatusNotFound, 0, store.StateSucceeded, store.StepSkipped, "showed no failing call"},
		{"501 status, no log", http.StatusNotImplemented, http.StatusNotFound, store.StateFailed, store.StepFailed, "could not be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := setupProxied(t, tc.jobStatus, tc.logStatus)
			e.opts.JobTimeout = 3 * time.Second // room for a loaded machine: the log must be read in time
			m := reregister.New(e.opts)
			t.Cleanup(m.Close)
			op := personDoesBothSteps(t, e, m)
			final, err := m.Wait(ctx, op.ID, 30*time.Second)
			must(t, err)
			msg := stepMessage(final, store.StepVerifyJob)
			if final.State != tc.state || stepState(final, store.StepVerifyJob) != tc.jobStep || !strings.Contains(msg, tc.want) {
				t.Fatalf("final %s %+v, job step %s %q", final.State, final.Error, stepState(final, store.StepVerifyJob), msg)
			}
			if tc.state == store.StateFailed && (final.Error == nil || final.Error.Reason != "JOB_STATUS_UNKNOWN") {
				t.Errorf("error %+v, want JOB_STATUS_UNKNOWN", final.Error)
			}
		})
	}
}

// A replica that stops while it asks IPS how the READ job stands hands the
// operation over: the cancelled call is not IPS's answer, so the operation
// is not failed, and the next process resumes it.
func TestManualShutdownDuringJobStatus(t *testing.T) {
	ctx := context.Background()
	e := setupProxied(t, statusHang, 0)
	m := reregister.New(e.opts)
	op := personDoesBothSteps(t, e, m)
	e.waitHeld(t, "the READ job's status")
	m.Close()
	got, err := e.st.GetOperation(ctx, op.ID)
	must(t, err)
	if got.Done() || stepState(got, store.StepVerifyJob) != store.StepRunning {
		t.Fatalf("after a shutdown mid-call: %s %+v, job step %s %q", got.State, got.Error, stepState(got, store.StepVerifyJob), stepMessage(got, store.StepVerifyJob))
	}
}

// A replica that stops while IPS has its request to start the READ job,
// but not yet its answer, leaves the operation to the next one, which must
// not start a second job it cannot tell from the first: the operation ends
// FAILED saying that IPS may be running one.
func TestManualStopWhileStartingTheJob(t *testing.T) {
	ctx := context.Background()
	e := setupProxied(t, statusHangStart, 0)
	m := reregister.New(e.opts)
	op := personDoesBothSteps(t, e, m)
	e.waitHeld(t, "the READ job's start")
	m.Close()

	next := reregister.New(e.opts)
	t.Cleanup(next.Close)
	deadline := time.Now().Add(20 * time.Second)
	for {
		must(t, next.Recover(ctx))
		got, err := e.st.GetOperation(ctx, op.ID)
		must(t, err)
		if got.Done() {
			if got.State != store.StateFailed || got.Error == nil || got.Error.Reason != "JOB_NOT_STARTED" ||
				!strings.Contains(got.Error.Message, "may be running") {
				t.Fatalf("resumed: %s %+v", got.State, got.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never resumed: %s", got.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.starts.Load(); n != 1 {
		t.Errorf("IPS was asked %d times to start a READ job", n)
	}
}

// A confirmation made while no runner is alive (a restart, a lease not yet
// expired) still records what SF shows: compare does not fall back to the
// delete's "no mapping".
func TestManualConfirmRecordsWithoutARunner(t *testing.T) {
	ctx := context.Background()
	e := setup(t, false)
	first := reregister.New(e.opts)
	op, err := first.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "alice"})
	must(t, err)
	waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepDeleteMapping) == store.StepAwaitingConfirmation
	})
	deleteAsPerson(t, e)
	_, err = first.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"})
	must(t, err)
	got := waitFor(t, e.st, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepUploadCertificate) == store.StepAwaitingConfirmation
	})
	first.Close()
	uploadAsPerson(t, e, got)
	second := reregister.New(e.opts)
	t.Cleanup(second.Close)
	_, err = second.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "bob"})
	must(t, err)
	rec, err := e.st.LatestTargetRecord(ctx, "demo-desync")
	must(t, err)
	if rec.Absent || len(rec.DER) == 0 || rec.Operation != op.ID || rec.RecordedBy != "bob" {
		t.Fatalf("latest record: %+v", rec)
	}
	c, _ := e.inv.Get("demo-desync")
	if r := c.Read(ctx, time.Now(), 0); r.Comparison == nil || r.Comparison.Result.String() != "MATCH" {
		t.Fatalf("compare after the confirmed upload: %+v", r)
	}
	// Recovery then finishes the operation.
	deadline := time.Now().Add(10 * time.Second)
	for {
		must(t, second.Recover(ctx))
		o, err := e.st.GetOperation(ctx, op.ID)
		must(t, err)
		if o.Done() {
			if o.State != store.StateSucceeded {
				t.Fatalf("recovered operation: %s %+v", o.State, o.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never recovered: %s", o.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two replicas on one PostgreSQL: the one that runs the operation hears of
// the confirmations made through the other (it reads the store while it
// waits), and the record they write is visible to both.
func TestManualConfirmThroughAnotherReplica(t *testing.T) {
	dsn := testutil.PostgresDatabase(t)
	ctx := context.Background()
	e := setup(t, false)
	open := func() store.Store {
		st, err := store.Open(ctx, dsn, "")
		must(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}
	optsA, optsB := e.opts, e.opts
	optsA.Store, optsA.Replica = open(), "replica-a"
	optsB.Store, optsB.Replica = open(), "replica-b"
	a, b := reregister.New(optsA), reregister.New(optsB)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)

	op, err := a.Start(ctx, reregister.Request{Connection: "demo-desync", RequestedBy: "alice"})
	must(t, err)
	waitFor(t, optsB.Store, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepDeleteMapping) == store.StepAwaitingConfirmation
	})
	deleteAsPerson(t, e)
	_, err = b.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepDeleteMapping, By: "bob"})
	must(t, err)
	got := waitFor(t, optsB.Store, op.ID, func(o *store.Operation) bool {
		return stepState(o, store.StepUploadCertificate) == store.StepAwaitingConfirmation
	})
	uploadAsPerson(t, e, got)
	_, err = b.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: store.StepUploadCertificate, By: "bob"})
	must(t, err)
	final, err := b.Wait(ctx, op.ID, 30*time.Second)
	must(t, err)
	if final.State != store.StateSucceeded {
		t.Fatalf("final %s %+v", final.State, final.Error)
	}
	if got, err := optsA.Store.LatestTargetRecord(ctx, "demo-desync"); err != nil || got.Absent || got.RecordedBy != "bob" {
		t.Fatalf("record: %+v %v", got, err)
	}
}

// OnAwait (the metric behind the "upload pending" alert) follows each wait
// for a person: on when it starts, off when it is confirmed.
func TestManualOnAwait(t *testing.T) {
	ctx := context.Background()
	e := setup(t, false)
	var mu sync.Mutex
	var seen []string
	e.opts.OnAwait = func(conn string, step store.StepKind, awaiting bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s %v", conn, step, awaiting))
	}
	m := reregister.New(e.opts)
	t.Cleanup(m.Close)
	op := personDoesBothSteps(t, e, m)
	if _, err := m.Wait(ctx, op.ID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"demo-desync DELETE_MAPPING true", "demo-desync DELETE_MAPPING false",
		"demo-desync UPLOAD_CERTIFICATE true", "demo-desync UPLOAD_CERTIFICATE false",
	}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("OnAwait calls:\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}
