package sandbox

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/ips"
)

// ipsClient builds the production IPS client for connection id's tenant
// from IPSSettings, as the lead's wiring will; mut adjusts the config.
func (e *env) ipsClient(id string, m ips.AuthMethod, mut func(*ips.Config)) *ips.Client {
	e.t.Helper()
	st := e.sb.IPSSettings(id)
	cfg := ips.Config{
		BaseURL:            st.BaseURL,
		Method:             m,
		RootCAs:            e.roots,
		Timeout:            10 * time.Second,
		Backoff:            10 * time.Millisecond,
		ClientID:           st.ClientID,
		ClientSecretFile:   st.ClientSecretFile,
		PKCS12File:         st.PKCS12File,
		PKCS12PasswordFile: st.PKCS12PasswordFile,
	}
	if mut != nil {
		mut(&cfg)
	}
	c, err := ips.New(cfg)
	if err != nil {
		e.t.Fatalf("ips.New(%s): %v", id, err)
	}
	e.t.Cleanup(c.Close)
	return c
}

// runJob starts a job and reads its status and ERROR log text.
func (e *env) runJob(c *ips.Client, id, jobType string) (ips.Job, string) {
	e.t.Helper()
	ctx := context.Background()
	started, err := c.StartJob(ctx, e.sb.IPSSettings(id).SourceSystemID, jobType)
	if err != nil {
		e.t.Fatalf("%s: StartJob: %v", id, err)
	}
	if started.ID == "" || started.Status != ips.StatusRunning {
		e.t.Errorf("%s: started %+v, want an id and Running", id, started)
	}
	job, err := c.JobStatus(ctx, started.ID)
	if err != nil {
		e.t.Fatalf("%s: JobStatus: %v", id, err)
	}
	if job.ID != started.ID || !job.Done() {
		e.t.Errorf("%s: status %+v of job %s", id, job, started.ID)
	}
	text, err := c.JobLogText(ctx, started.ID)
	if err != nil {
		e.t.Fatalf("%s: JobLogText: %v", id, err)
	}
	return job, text
}

const ipsSCIMPath = "/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true"

// TestIPSJobsFollowTheModel runs a READ job on every demo connection: the
// job's outcome and log are what SF would answer IPS, and diagnose reads the
// log as the probe's answer would be read.
func TestIPSJobsFollowTheModel(t *testing.T) {
	e := startEnv(t, Options{})
	tests := []struct {
		id        string
		status    int // 0: Success
		cause     diagnose.Cause
		code      string
		plainHost bool
	}{
		{"demo-healthy", 0, 0, "", false},
		{"demo-desync", 401, diagnose.CauseInvalidClientCertificate, "AUTH0032", false},
		{"demo-mismatch", 400, diagnose.CauseTLSRejected, "", false},
		{"demo-company-id", 401, diagnose.CauseInvalidClientCertificate, "AUTH0032", false},
		{"demo-stuck", 401, diagnose.CauseInvalidClientCertificate, "AUTH0032", false},
		{"demo-permission", 403, diagnose.CausePermissionDenied, "", false},
		{"demo-wrong-host", 401, diagnose.CauseCredentialsRequired, "", true},
		{"demo-expiring", 0, 0, "", false},
	}
	if len(tests) != len(seedConnections) {
		t.Errorf("table has %d rows, seed %d", len(tests), len(seedConnections))
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			before := e.sb.State().Connections[tc.id].Counters.SCIM
			c := e.ipsClient(tc.id, ips.OAuth2ClientCredentials, nil)
			job, text := e.runJob(c, tc.id, ips.JobRead)
			if got := e.sb.State().Connections[tc.id].Counters.SCIM; got != before+1 {
				t.Errorf("the job made %d SCIM calls, want 1", got-before)
			}
			if tc.status == 0 {
				if job.Status != ips.StatusSuccess || text != "" {
					t.Errorf("job %+v, ERROR log %q; want Success and no errors", job, text)
				}
				return
			}
			if job.Status != ips.StatusFinishedWithError {
				t.Fatalf("job %+v, want Finished with Error", job)
			}
			host := e.sb.Addr()
			if tc.plainHost {
				host = e.sb.PlainAddr()
			}
			st := e.sb.IPSSettings(tc.id)
			lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
			if lines[0] != "Cannot execute provisioning job in tenant context: "+st.TenantID ||
				lines[1] != "Caused by: Error during execution on behalf of tenant with ID: "+st.TenantID ||
				lines[2] != "Caused by: Executing delta load failed." {
				t.Errorf("chain head:\n%s", text)
			}
			invoking := "HTTP operation failed invoking https://" + host + ipsSCIMPath + " with statusCode: "
			if !strings.HasPrefix(lines[3], "Caused by: "+invoking) || !strings.Contains(text, "\nCaused by: "+invoking) ||
				!strings.Contains(text, " and body ") || !strings.Contains(text, ", Response: ") {
				t.Errorf("chain does not name the SCIM call like the seed:\n%s", text)
			}
			if tc.code == "AUTH0032" && !strings.HasSuffix(text, "with statusCode: 401, Response: "+wantAUTH0032+"\n") {
				t.Errorf("chain does not end like the seed:\n%s", text)
			}

			res, err := diagnose.DiagnoseJobError(text)
			if err != nil || len(res.Findings) == 0 {
				t.Fatalf("DiagnoseJobError: %+v %v\n%s", res, err, text)
			}
			f := res.Findings[0]
			wantHost, _, _ := strings.Cut(host, ":")
			if f.HTTPStatus != tc.status || f.Cause != tc.cause || f.Host != wantHost || !f.SCIMUsers ||
				f.TenantID != st.TenantID || f.LoadMode != "delta" || (tc.code != "" && f.ErrorCode != tc.code) {
				t.Errorf("finding %d %v code %q host %q scim %v tenant %q mode %q; want %d %v %q at %q",
					f.HTTPStatus, f.Cause, f.ErrorCode, f.Host, f.SCIMUsers, f.TenantID, f.LoadMode, tc.status, tc.cause, tc.code, wantHost)
			}
		})
	}
}

// TestIPSJobAfterReregistration: a job reads the model as it is now, so the
// runbook's fix (delete the mapping, upload the same certificate) turns the
// seed's failing job into a successful one.
func TestIPSJobAfterReregistration(t *testing.T) {
	e := startEnv(t, Options{})
	c := e.ipsClient("demo-desync", ips.Basic, nil)
	if job, _ := e.runJob(c, "demo-desync", ips.JobRead); job.Status != ips.StatusFinishedWithError {
		t.Fatalf("before: %+v", job)
	}
	e.deleteAll("demo-desync")
	if status, body := e.uploadActive("demo-desync", integrationIPS); status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, body)
	}
	if job, text := e.runJob(c, "demo-desync", ips.JobResync); job.Status != ips.StatusSuccess || text != "" {
		t.Fatalf("after: %+v %q", job, text)
	}
	// A RESYNC of a failing connection names the full load.
	w := e.ipsClient("demo-wrong-host", ips.Basic, nil)
	if _, text := e.runJob(w, "demo-wrong-host", ips.JobResync); !strings.Contains(text, "Executing full load failed.") {
		t.Errorf("RESYNC log:\n%s", text)
	}
}

func TestIPSAuthMethods(t *testing.T) {
	e := startEnv(t, Options{})
	for _, m := range []ips.AuthMethod{ips.OAuth2ClientCredentials, ips.ClientCertificate, ips.Basic} {
		t.Run(m.String(), func(t *testing.T) {
			c := e.ipsClient("demo-healthy", m, nil)
			if job, _ := e.runJob(c, "demo-healthy", ips.JobRead); job.Status != ips.StatusSuccess {
				t.Errorf("job %+v", job)
			}
		})
	}
	if n := e.sb.State().Connections["demo-healthy"].Counters.IPSToken; n != 1 {
		t.Errorf("%d token calls, want 1 (OAuth2 only, cached)", n)
	}

	wrong := writeTemp(t, "wrong-secret")
	for _, m := range []ips.AuthMethod{ips.OAuth2ClientCredentials, ips.Basic} {
		c := e.ipsClient("demo-healthy", m, func(cfg *ips.Config) { cfg.ClientSecretFile = wrong })
		_, err := c.StartJob(context.Background(), e.sb.IPSSettings("demo-healthy").SourceSystemID, ips.JobRead)
		var ie *ips.Error
		if !errors.As(err, &ie) || ie.Status != http.StatusUnauthorized || ie.Transient || !strings.Contains(ie.Message, m.String()) {
			t.Errorf("%v with a wrong secret: %v", m, err)
		}
	}
	// Another tenant's credentials: its certificate, its client.
	other := e.sb.IPSSettings("demo-desync")
	for _, m := range []ips.AuthMethod{ips.ClientCertificate, ips.Basic} {
		c := e.ipsClient("demo-healthy", m, func(cfg *ips.Config) {
			cfg.ClientID, cfg.ClientSecretFile = other.ClientID, other.ClientSecretFile
			cfg.PKCS12File, cfg.PKCS12PasswordFile = other.PKCS12File, other.PKCS12PasswordFile
		})
		_, err := c.StartJob(context.Background(), e.sb.IPSSettings("demo-healthy").SourceSystemID, ips.JobRead)
		var ie *ips.Error
		if !errors.As(err, &ie) || ie.Status != http.StatusUnauthorized {
			t.Errorf("%v with another tenant's credentials: %v", m, err)
		}
	}
	// Another tenant's bearer token, and no credentials at all.
	tok := e.token2(t, "demo-desync")
	for _, auth := range []string{"Bearer " + tok, "Bearer nope", ""} {
		req := mustRequest(t, http.MethodGet, e.sb.IPSSettings("demo-healthy").BaseURL+"/ips/service/publicapi/v1/jobs/x")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if status, body := e.do(e.client(), req); status != http.StatusUnauthorized || !strings.Contains(body, "UNAUTHENTICATED") {
			t.Errorf("Authorization %.12q: %d %s", auth, status, body)
		}
	}
	// The source system must be the tenant's.
	c := e.ipsClient("demo-healthy", ips.Basic, nil)
	if _, err := c.StartJob(context.Background(), other.SourceSystemID, ips.JobRead); err == nil || !strings.Contains(err.Error(), "no source system") {
		t.Errorf("another tenant's source system: %v", err)
	}
	// Jobs are the tenant's.
	job, err := e.ipsClient("demo-desync", ips.Basic, nil).StartJob(context.Background(), other.SourceSystemID, ips.JobRead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.JobStatus(context.Background(), job.ID); !errors.Is(err, ips.ErrJobNotFound) {
		t.Errorf("another tenant's job: %v", err)
	}
	if _, err := c.ExportJobLog(context.Background(), job.ID); !errors.Is(err, ips.ErrJobNotFound) {
		t.Errorf("another tenant's job log: %v", err)
	}
}

// token2 fetches a token of connection id's tenant by hand.
func (e *env) token2(t *testing.T, id string) string {
	t.Helper()
	st := e.sb.IPSSettings(id)
	secret, err := os.ReadFile(st.ClientSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, st.BaseURL+"/oauth2/token", strings.NewReader(url.Values{
		"grant_type": {"client_credentials"}, "client_id": {st.ClientID}, "client_secret": {string(secret)},
	}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, body := e.do(e.client(), req)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	mustJSON(t, body, &tok)
	if status != http.StatusOK || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
		t.Fatalf("token: %d %s", status, body)
	}
	return tok.AccessToken
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestIPSTokenExpires(t *testing.T) {
	clk := &offsetClock{}
	e := startEnv(t, Options{Now: clk.Now})
	c := e.ipsClient("demo-healthy", ips.OAuth2ClientCredentials, nil)
	sys := e.sb.IPSSettings("demo-healthy").SourceSystemID
	if _, err := c.StartJob(context.Background(), sys, ips.JobRead); err != nil {
		t.Fatal(err)
	}
	// The sandbox's hour passes; the client's cache (on the real clock)
	// still holds the token, which the tenant now refuses: the client
	// fetches a new one and goes on.
	clk.Advance(ipsTokenLifetime + time.Minute)
	if _, err := c.StartJob(context.Background(), sys, ips.JobRead); err != nil {
		t.Fatal(err)
	}
	cs := e.sb.State().Connections["demo-healthy"].Counters
	if cs.IPSToken != 2 || cs.IPSStartJob != 3 {
		t.Errorf("counters %+v, want 2 token and 3 start calls", cs)
	}
}

// offsetClock is the real clock plus an offset, so that a client's real
// wait moves the sandbox's time too.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func TestIPSRateLimit(t *testing.T) {
	clk := &offsetClock{}
	e := startEnv(t, Options{Now: clk.Now})
	sys := e.sb.IPSSettings("demo-healthy").SourceSystemID
	c := e.ipsClient("demo-healthy", ips.Basic, func(cfg *ips.Config) { cfg.MaxRetryWait = 5 * time.Second })
	ctx := context.Background()
	// No start is older than first.
	first := clk.Now()
	for i := range ipsStartLimit {
		if _, err := c.StartJob(ctx, sys, ips.JobRead); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
	}
	// The sixth within the minute: 429, Retry-After about a minute, longer
	// than the client sits out.
	_, err := c.StartJob(ctx, sys, ips.JobRead)
	var ie *ips.Error
	if !errors.As(err, &ie) || ie.Status != http.StatusTooManyRequests || !ie.Transient || ie.MayHaveStarted ||
		ie.RetryAfter < 55*time.Second || ie.RetryAfter > 60*time.Second {
		t.Fatalf("sixth start: %#v", err)
	}
	// Other tenants are not limited.
	if _, err := e.ipsClient("demo-desync", ips.Basic, nil).StartJob(ctx, e.sb.IPSSettings("demo-desync").SourceSystemID, ips.JobRead); err != nil {
		t.Errorf("another tenant: %v", err)
	}
	// The answer as sent.
	req := mustRequest(t, http.MethodPost, e.sb.IPSSettings("demo-healthy").BaseURL+"/ips/service/publicapi/v1/startJob/"+sys+"/jobs/READ")
	req.Header.Set("Authorization", "Bearer "+e.token2(t, "demo-healthy"))
	status, body := e.do(e.client(), req)
	if status != http.StatusTooManyRequests || !strings.Contains(body, `"code":"TOO_MANY_REQUESTS"`) || !strings.Contains(body, "Retry after ") {
		t.Errorf("429 answer: %d %s", status, body)
	}
	// Just before the window ends, the tenant asks for a second or two;
	// the client waits it out and the retry is accepted.
	clk.Advance(first.Add(ipsStartWindow - 800*time.Millisecond).Sub(clk.Now()))
	start := time.Now()
	job, err := c.StartJob(ctx, sys, ips.JobRead)
	if err != nil || job.ID == "" {
		t.Fatalf("start after the wait: %+v %v", job, err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("accepted after %v, want a wait of about a second", waited)
	}
	if n := e.sb.State().Connections["demo-healthy"].Counters.IPSStartJob; n != ipsStartLimit+4 {
		t.Errorf("%d start calls, want %d", n, ipsStartLimit+4)
	}
}

func TestIPSFaults(t *testing.T) {
	e := startEnv(t, Options{})
	ctx := context.Background()
	id := "demo-healthy"
	sys := e.sb.IPSSettings(id).SourceSystemID
	inject := func(f Fault) {
		t.Helper()
		f.Connection = id
		if err := e.sb.InjectFault(f); err != nil {
			t.Fatal(err)
		}
	}
	counters := func() Counters { return e.sb.State().Connections[id].Counters }

	// ips_token: a 503 (with Retry-After: 1) is retried.
	inject(Fault{Operation: OperationIPSToken, Status: http.StatusServiceUnavailable})
	c := e.ipsClient(id, ips.OAuth2ClientCredentials, nil)
	job, err := c.StartJob(ctx, sys, ips.JobRead)
	if err != nil {
		t.Fatalf("start after a token fault: %v", err)
	}
	if got := counters(); got.IPSToken != 2 || got.IPSStartJob != 1 {
		t.Errorf("counters %+v", got)
	}

	// ips_start_job: a 429 is retried (nothing started); a 500 or a reset
	// is not (a job may have started).
	inject(Fault{Operation: OperationIPSStartJob, Status: http.StatusTooManyRequests})
	if _, err := c.StartJob(ctx, sys, ips.JobRead); err != nil {
		t.Fatalf("start after a 429 fault: %v", err)
	}
	for _, f := range []Fault{{Operation: OperationIPSStartJob, Status: http.StatusInternalServerError}, {Operation: OperationIPSStartJob, Reset: true}} {
		before := counters().IPSStartJob
		inject(f)
		_, err := c.StartJob(ctx, sys, ips.JobRead)
		var ie *ips.Error
		if !errors.As(err, &ie) || !ie.MayHaveStarted || !ie.Transient {
			t.Errorf("fault %+v: %#v, want MayHaveStarted", f, err)
		}
		if n := counters().IPSStartJob - before; n != 1 {
			t.Errorf("fault %+v: %d start calls, want 1", f, n)
		}
	}

	// ips_job_log: a 502 is retried; the export is the same job's log.
	inject(Fault{Operation: OperationIPSJobLog, Status: http.StatusBadGateway, Times: 2})
	before := counters().IPSJobLog
	if text, err := c.JobLogText(ctx, job.ID); err != nil || text != "" {
		t.Errorf("log after 2 faults: %q %v", text, err)
	}
	if n := counters().IPSJobLog - before; n != 3 {
		t.Errorf("%d export calls, want 3", n)
	}

	// A scim fault is what IPS's read meets: the job fails with it, and
	// diagnose calls it an outage.
	for _, tc := range []struct {
		f     Fault
		cause diagnose.Cause
	}{
		{Fault{Operation: OperationSCIM, Status: http.StatusServiceUnavailable}, diagnose.CauseServerError},
		{Fault{Operation: OperationSCIM, Reset: true}, diagnose.CauseTransportError},
	} {
		inject(tc.f)
		job, text := e.runJob(c, id, ips.JobRead)
		if job.Status != ips.StatusFinishedWithError {
			t.Fatalf("job after scim fault %+v: %+v", tc.f, job)
		}
		res, err := diagnose.DiagnoseJobError(text)
		if err != nil || len(res.Findings) == 0 || res.Findings[0].Cause != tc.cause || !tc.cause.Transient() {
			t.Errorf("scim fault %+v: %+v %v\n%s", tc.f, res, err, text)
		}
	}
	if status, body := e.control(http.MethodGet, "/_sandbox/v1/faults", nil); status != http.StatusOK || body != `{"faults":[]}`+"\n" {
		t.Errorf("faults left: %d %s", status, body)
	}

	// The state shows the IPS counters once they are not zero.
	_, body := e.control(http.MethodGet, "/_sandbox/v1/state", nil)
	for _, k := range []string{`"ips_token":2`, `"ips_start_job":`, `"ips_job_log":`} {
		if !strings.Contains(body, k) {
			t.Errorf("state lacks %s: %s", k, body)
		}
	}
}

func TestIPSJobLogExport(t *testing.T) {
	e := startEnv(t, Options{})
	id := "demo-desync"
	st := e.sb.IPSSettings(id)
	c := e.ipsClient(id, ips.Basic, nil)
	job, err := c.StartJob(context.Background(), st.SourceSystemID, ips.JobRead)
	if err != nil {
		t.Fatal(err)
	}
	get := func(query string) (int, string, http.Header) {
		req := mustRequest(t, http.MethodGet, st.BaseURL+"/ips/service/publicapi/v1/jobLogs/"+job.ID+query)
		req.SetBasicAuth(st.ClientID, readFile(t, st.ClientSecretFile))
		resp, err := e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b), resp.Header
	}
	status, body, h := get("?action=export&logType=ALL")
	if status != http.StatusOK || h.Get("Content-Type") != "application/zip" {
		t.Fatalf("export: %d %s %q", status, h.Get("Content-Type"), body)
	}
	all, err := ips.LogText([]byte(body))
	if err != nil || !strings.Contains(all, " INFO Job "+job.ID) || !strings.Contains(all, "Caused by: HTTP operation failed") {
		t.Errorf("ALL log %q %v", all, err)
	}
	for _, q := range []string{"?action=download&logType=ERROR", "?action=export&logType=DEBUG"} {
		if status, body, _ := get(q); status != http.StatusBadRequest || !strings.Contains(body, "INVALID_ARGUMENT") {
			t.Errorf("%s: %d %s", q, status, body)
		}
	}
	if _, err := c.JobStatus(context.Background(), "no-such-job-1"); !errors.Is(err, ips.ErrJobNotFound) {
		t.Errorf("unknown job: %v", err)
	}
}

func TestIPSSettings(t *testing.T) {
	sb, err := New(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if st := sb.IPSSettings("nope"); st != (IPSSettings{}) {
		t.Errorf("unknown connection: %+v", st)
	}
	st := sb.IPSSettings("demo-healthy")
	if st.BaseURL != "" || st.ClientSecretFile != "" || st.TenantID == "" || st.ClientID == "" || st.SourceSystemID != "ips-source-demo-healthy" {
		t.Errorf("before Start: %+v", st)
	}
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	conns, err := sb.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, cn := range conns {
		st := sb.IPSSettings(cn.ID)
		if st.BaseURL != "https://"+sb.Addr()+"/ias/"+cn.ID || st.CAFile != cn.SF.CAFile {
			t.Errorf("%s: %+v", cn.ID, st)
		}
		for _, p := range []string{st.ClientSecretFile, st.PKCS12File, st.PKCS12PasswordFile} {
			info, err := os.Stat(p)
			if err != nil || info.Mode().Perm() != 0o600 || info.Size() == 0 {
				t.Errorf("%s: %s: %v %v", cn.ID, p, info, err)
			}
		}
		for _, v := range []string{st.TenantID, st.ClientID, readFile(t, st.ClientSecretFile)} {
			if seen[v] {
				t.Errorf("%s: %q shared with another tenant", cn.ID, v)
			}
			seen[v] = true
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
