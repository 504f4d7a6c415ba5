package ips

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewRefusesBadConfigs(t *testing.T) {
	secretFile := writeFile(t, "secret", []byte(testSecret))
	empty := writeFile(t, "empty", []byte("\n"))
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"http", Config{BaseURL: "http://tenant.example", Method: Basic, ClientID: "x", ClientSecretFile: secretFile}, "not an https URL"},
		{"credentials in URL", Config{BaseURL: "https://u:p@tenant.example", Method: Basic, ClientID: "x", ClientSecretFile: secretFile}, "not an https URL"},
		{"no method", Config{BaseURL: "https://tenant.example"}, "auth method not set"},
		{"no client id", Config{BaseURL: "https://tenant.example", Method: OAuth2ClientCredentials, ClientSecretFile: secretFile}, "needs a client id"},
		{"no secret file", Config{BaseURL: "https://tenant.example", Method: Basic, ClientID: "x"}, "needs a client secret file"},
		{"missing secret file", Config{BaseURL: "https://tenant.example", Method: Basic, ClientID: "x", ClientSecretFile: secretFile + ".nope"}, "no such file"},
		{"empty secret", Config{BaseURL: "https://tenant.example", Method: Basic, ClientID: "x", ClientSecretFile: empty}, "is empty"},
		{"no pkcs12", Config{BaseURL: "https://tenant.example", Method: ClientCertificate}, "needs a PKCS#12 file"},
		{"not pkcs12", Config{BaseURL: "https://tenant.example", Method: ClientCertificate, PKCS12File: secretFile}, "PKCS#12 file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestParseAuthMethod(t *testing.T) {
	for in, want := range map[string]AuthMethod{
		"oauth2": OAuth2ClientCredentials, "Client_Credentials": OAuth2ClientCredentials,
		"certificate": ClientCertificate, "pkcs12": ClientCertificate, " basic ": Basic,
	} {
		if got, err := ParseAuthMethod(in); err != nil || got != want {
			t.Errorf("ParseAuthMethod(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseAuthMethod("kerberos"); err == nil {
		t.Error("kerberos accepted")
	}
	for _, m := range []AuthMethod{OAuth2ClientCredentials, ClientCertificate, Basic} {
		if got, err := ParseAuthMethod(m.String()); err != nil || got != m {
			t.Errorf("round trip of %v: %v %v", m, got, err)
		}
	}
}

// tokenServer plays the token endpoint and the API; the API accepts only
// tokens in valid (all tokens issued, unless revoked).
type tokenServer struct {
	calls     counter
	mu        sync.Mutex
	issued    int
	revoked   map[string]bool
	expiresIn string
}

func (ts *tokenServer) handler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ts.calls.add(r.URL.Path)
		if r.URL.Path == tokenPath {
			user, pass, ok := r.BasicAuth()
			if r.Method != http.MethodPost || !ok || user != testClientID || pass != testSecret {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"error":"invalid_client","error_description":"Client authentication failed"}`)
				return
			}
			if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
				t.Errorf("token request form %v: %v", r.PostForm, err)
			}
			ts.mu.Lock()
			ts.issued++
			tok := fmt.Sprintf("token-%d", ts.issued)
			ts.mu.Unlock()
			fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":%s}`, tok, ts.expiresIn)
			return
		}
		ts.mu.Lock()
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok := strings.HasPrefix(tok, "token-") && !ts.revoked[tok]
		ts.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"jobId":"job-1","status":"Running"}`)
	}
}

func TestOAuthTokenIsCachedUntilShortlyBeforeExpiry(t *testing.T) {
	ts := &tokenServer{expiresIn: "3600"}
	tn := newTenant(t, ts.handler(t))
	c, _ := tn.client(t, OAuth2ClientCredentials, nil)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for range 3 {
		if _, err := c.JobStatus(ctx, "job-1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.calls.get(tokenPath); n != 1 {
		t.Errorf("%d token requests for 3 calls, want 1", n)
	}
	// After 58m59s the token (1 h) is still used; after 59m01s it is
	// refreshed, a minute before it expires.
	now = now.Add(59*time.Minute - time.Second)
	if _, err := c.JobStatus(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if n := ts.calls.get(tokenPath); n != 1 {
		t.Errorf("token refreshed %d times at 59m", n-1)
	}
	now = now.Add(2 * time.Second)
	if _, err := c.JobStatus(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if n := ts.calls.get(tokenPath); n != 2 {
		t.Errorf("%d token requests after 59m02s, want 2", n)
	}
}

func TestOAuthTokenWithoutExpiryIsNotCached(t *testing.T) {
	for _, exp := range []string{`null`, `"0"`, `"soon"`} {
		ts := &tokenServer{expiresIn: exp}
		tn := newTenant(t, ts.handler(t))
		c, _ := tn.client(t, OAuth2ClientCredentials, nil)
		for range 2 {
			if _, err := c.JobStatus(context.Background(), "job-1"); err != nil {
				t.Fatal(err)
			}
		}
		if n := ts.calls.get(tokenPath); n != 2 {
			t.Errorf("expires_in %s: %d token requests for 2 calls, want 2", exp, n)
		}
	}
	// A string number is a lifetime.
	ts := &tokenServer{expiresIn: `"3600"`}
	tn := newTenant(t, ts.handler(t))
	c, _ := tn.client(t, OAuth2ClientCredentials, nil)
	for range 2 {
		if _, err := c.JobStatus(context.Background(), "job-1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.calls.get(tokenPath); n != 1 {
		t.Errorf(`expires_in "3600": %d token requests, want 1`, n)
	}
}

func TestOAuthRevokedTokenIsFetchedOnceMore(t *testing.T) {
	ts := &tokenServer{expiresIn: "3600", revoked: map[string]bool{}}
	tn := newTenant(t, ts.handler(t))
	c, _ := tn.client(t, OAuth2ClientCredentials, nil)
	ctx := context.Background()
	if _, err := c.StartJob(ctx, "sys-1", "read"); err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	ts.revoked["token-1"] = true
	ts.mu.Unlock()
	job, err := c.StartJob(ctx, "sys-1", JobRead)
	if err != nil || job.ID != "job-1" {
		t.Fatalf("StartJob after revocation: %+v %v", job, err)
	}
	if n := ts.calls.get(tokenPath); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
	if n := ts.calls.get(startPath); n != 3 {
		t.Errorf("%d start requests, want 3 (one refused with the revoked token)", n)
	}
	// A fresh token that is refused too is not retried again.
	ts.mu.Lock()
	ts.revoked["token-2"], ts.revoked["token-3"] = true, true
	ts.mu.Unlock()
	_, err = c.StartJob(ctx, "sys-1", JobRead)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Transient {
		t.Fatalf("err %v, want a 401", err)
	}
	if n := ts.calls.get(startPath); n != 5 {
		t.Errorf("%d start requests, want 5", n)
	}
}

func TestConcurrentCallsShareOneToken(t *testing.T) {
	ts := &tokenServer{expiresIn: "3600"}
	tn := newTenant(t, ts.handler(t))
	c, _ := tn.client(t, OAuth2ClientCredentials, nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := c.JobStatus(context.Background(), "job-1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := ts.calls.get(tokenPath); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestTokenEndpointRefusalIsNotRetried(t *testing.T) {
	ts := &tokenServer{expiresIn: "3600"}
	tn := newTenant(t, ts.handler(t))
	var logs bytes.Buffer
	c, _ := tn.client(t, OAuth2ClientCredentials, func(cfg *Config) {
		cfg.ClientSecretFile = writeFile(t, "wrong", []byte("wrong-"+testSecret))
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	_, err := c.StartJob(context.Background(), "sys-1", JobRead)
	var e *Error
	if !errors.As(err, &e) || e.Step != StepToken || e.Status != http.StatusUnauthorized || e.Transient || e.MayHaveStarted {
		t.Fatalf("err %#v", err)
	}
	for _, want := range []string{"invalid_client", testClientID, "OAuth2 client credentials"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("error %q lacks %q", e.Error(), want)
		}
	}
	if strings.Contains(e.Error(), testSecret) || strings.Contains(logs.String(), testSecret) {
		t.Errorf("secret shown: %v / %s", e, logs.String())
	}
	if n := ts.calls.get(tokenPath); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	if n := ts.calls.get(startPath); n != 0 {
		t.Errorf("%d start requests without a token", n)
	}
}

func Test401And403AreNotRetriedAndNameTheAuthMethod(t *testing.T) {
	for _, tc := range []struct {
		status int
		method AuthMethod
		want   string
	}{
		{http.StatusUnauthorized, Basic, "; auth method basic (HTTP basic authentication): check the client id"},
		{http.StatusForbidden, Basic, "not allowed (auth method basic)"},
	} {
		var calls counter
		tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
			calls.add(r.URL.Path)
			if u, p, ok := r.BasicAuth(); !ok || u != testClientID || p != testSecret {
				t.Errorf("basic auth %q %q %v", u, p, ok)
			}
			w.WriteHeader(tc.status)
			fmt.Fprint(w, `{"error":{"code":"X","message":"nope"}}`)
		})
		c, waits := tn.client(t, tc.method, nil)
		for _, call := range []func() error{
			func() error { _, err := c.StartJob(context.Background(), "sys-1", JobRead); return err },
			func() error { _, err := c.JobStatus(context.Background(), "job-1"); return err },
			func() error { _, err := c.ExportJobLog(context.Background(), "job-1"); return err },
		} {
			err := call()
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Transient || e.MayHaveStarted || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%d: err %v, want a %q", tc.status, err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("secret shown: %v", err)
			}
		}
		for _, p := range []string{startPath, statusPath, logPath} {
			if n := calls.get(p); n != 1 {
				t.Errorf("%d: %s called %d times, want 1", tc.status, p, n)
			}
		}
		if len(waits.all()) != 0 {
			t.Errorf("waited %v", waits.all())
		}
	}
}

func Test429IsRetriedAfterRetryAfter(t *testing.T) {
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name   string
		header string
		body   string
		want   time.Duration
	}{
		{"seconds", "2", `{"error":"too many"}`, 2 * time.Second},
		{"body", "", `{"status":"429","detail":"Too many requests. Retry after 7 seconds."}`, 7 * time.Second},
		{"date", date, ``, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls counter
			tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.add(r.URL.Path) == 1 {
					if tc.header != "" {
						w.Header().Set("Retry-After", tc.header)
					}
					w.WriteHeader(http.StatusTooManyRequests)
					fmt.Fprint(w, tc.body)
					return
				}
				w.WriteHeader(http.StatusAccepted)
				fmt.Fprint(w, `{"jobId":"job-1"}`)
			})
			c, waits := tn.client(t, Basic, nil)
			job, err := c.StartJob(context.Background(), "sys-1", JobRead)
			if err != nil || job.ID != "job-1" {
				t.Fatalf("StartJob: %+v %v", job, err)
			}
			got := waits.all()
			if len(got) != 1 || got[0] < tc.want-time.Second || got[0] > tc.want+time.Second {
				t.Errorf("waits %v, want [%v]", got, tc.want)
			}
			if n := calls.get(startPath); n != 2 {
				t.Errorf("%d start requests, want 2", n)
			}
		})
	}
}

func TestLongRetryAfterIsLeftToTheCaller(t *testing.T) {
	var calls counter
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
		calls.add(r.URL.Path)
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	c, waits := tn.client(t, Basic, nil)
	_, err := c.StartJob(context.Background(), "sys-1", JobRead)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || !e.Transient || e.RetryAfter != 2*time.Minute || e.MayHaveStarted {
		t.Fatalf("err %#v", err)
	}
	if n := calls.get(startPath); n != 1 || len(waits.all()) != 0 {
		t.Errorf("%d calls, waits %v; want 1 call, no wait", n, waits.all())
	}
}

func TestStartJobIsRetriedOnlyWhenNoJobCanHaveStarted(t *testing.T) {
	tests := []struct {
		name         string
		answer       func(w http.ResponseWriter)
		wantCalls    int
		wantMayStart bool
	}{
		{"500", func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, 1, true},
		{"502", func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }, 1, true},
		{"503 without Retry-After", func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, 1, true},
		{"503 with Retry-After", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, 3, false},
		{"429", func(w http.ResponseWriter) { w.WriteHeader(http.StatusTooManyRequests) }, 3, false},
		{"reset", func(w http.ResponseWriter) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
					if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
						_ = tcp.SetLinger(0)
					}
					_ = tc.NetConn().Close()
				}
				conn.Close()
			}
		}, 1, true},
		{"timeout", func(w http.ResponseWriter) { time.Sleep(400 * time.Millisecond) }, 1, true},
		{"no job id", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprint(w, `{"message":"accepted"}`)
		}, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls counter
			tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
				calls.add(r.URL.Path)
				tc.answer(w)
			})
			c, _ := tn.client(t, Basic, func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })
			_, err := c.StartJob(context.Background(), "sys-1", JobRead)
			var e *Error
			if !errors.As(err, &e) || e.Step != StepStartJob || e.MayHaveStarted != tc.wantMayStart {
				t.Fatalf("err %#v, want MayHaveStarted %v", err, tc.wantMayStart)
			}
			if tc.wantMayStart && !strings.Contains(e.Message, "admin console") && !strings.Contains(e.Message, "before starting another") {
				t.Errorf("message %q does not say to look for the job", e.Message)
			}
			if n := calls.get(startPath); n != tc.wantCalls {
				t.Errorf("%d start requests, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestStartJobWithAnEndedContextSendsNothing(t *testing.T) {
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("called %s", r.URL) })
	c, _ := tn.client(t, Basic, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.StartJob(ctx, "sys-1", JobRead)
	var e *Error
	if !errors.As(err, &e) || e.MayHaveStarted || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %#v", err)
	}
}

func TestStartJobIsRetriedWhenTheConnectionFailed(t *testing.T) {
	// A closed listener: the dial fails, nothing was sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := New(Config{BaseURL: "https://" + addr, Method: Basic, ClientID: "x",
		ClientSecretFile: writeFile(t, "s", []byte("y")), Backoff: time.Millisecond, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &waits{}
	c.sleep = w.sleep
	_, err = c.StartJob(context.Background(), "sys-1", JobRead)
	var e *Error
	if !errors.As(err, &e) || !e.Transient || e.MayHaveStarted || len(w.all()) != 1 {
		t.Fatalf("err %#v, waits %v: want a retried transient error", err, w.all())
	}
}

func TestGetsAreRetried(t *testing.T) {
	var calls counter
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.add(r.URL.Path) < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, `{"jobId":"job-1","status":"FINISHED_WITH_ERROR"}`)
	})
	c, waits := tn.client(t, Basic, nil)
	job, err := c.JobStatus(context.Background(), "job-1")
	if err != nil || job != (Job{ID: "job-1", Status: StatusFinishedWithError}) || !job.Done() || !job.HasErrors() {
		t.Fatalf("JobStatus: %+v %v", job, err)
	}
	if got := waits.all(); len(got) != 2 || got[1] < got[0] {
		t.Errorf("waits %v, want 2 growing ones", got)
	}
	// Attempts bounds the tries.
	c2, _ := tn.client(t, Basic, func(cfg *Config) { cfg.Attempts = 2 })
	calls = counter{}
	_, err = c2.JobStatus(context.Background(), "job-1")
	var e *Error
	if !errors.As(err, &e) || e.Status != 500 || !e.Transient || !strings.Contains(e.Message, "after 2 attempts") {
		t.Fatalf("err %v", err)
	}
}

func TestContextEndsRetries(t *testing.T) {
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	c, _ := tn.client(t, Basic, func(cfg *Config) { cfg.Backoff = time.Hour })
	c.sleep = sleepCtx
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := c.JobStatus(ctx, "job-1")
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestJobStatusUnsupportedOrUnknown(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{
		{http.StatusNotFound, ErrJobNotFound},
		{http.StatusMethodNotAllowed, ErrStatusUnsupported},
		{http.StatusNotImplemented, ErrStatusUnsupported},
	} {
		var calls counter
		tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
			calls.add(r.URL.Path)
			w.WriteHeader(tc.status)
		})
		c, _ := tn.client(t, Basic, nil)
		_, err := c.JobStatus(context.Background(), "job-1")
		var e *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.Transient || !strings.Contains(e.Message, "certsync's assumption") {
			t.Errorf("%d: err %v, want %v", tc.status, err, tc.want)
		}
		if n := calls.get(statusPath); n != 1 {
			t.Errorf("%d: %d calls", tc.status, n)
		}
	}
}

func TestJobStatusNeedsAStatus(t *testing.T) {
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"jobId":"job-1"}`) })
	c, _ := tn.client(t, Basic, nil)
	if _, err := c.JobStatus(context.Background(), "job-1"); err == nil || !strings.Contains(err.Error(), "no status") {
		t.Errorf("err %v", err)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var calls counter
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
		calls.add(r.URL.Path)
		http.Redirect(w, r, "/saml2/idp/sso?x=1", http.StatusFound)
	})
	c, _ := tn.client(t, Basic, nil)
	_, err := c.JobStatus(context.Background(), "job-1")
	if err == nil || !strings.Contains(err.Error(), "redirected") || calls.get("/saml2/idp/sso") != 0 {
		t.Errorf("err %v; calls %v", err, calls.n)
	}
}

func TestInvalidArguments(t *testing.T) {
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("called %s", r.URL) })
	c, _ := tn.client(t, Basic, nil)
	ctx := context.Background()
	if _, err := c.StartJob(ctx, "sys-1", "DELETE"); err == nil {
		t.Error("job type DELETE accepted")
	}
	if _, err := c.StartJob(ctx, "", JobRead); err == nil {
		t.Error("empty source system accepted")
	}
	for _, id := range []string{"", "a/b", "a b", "..", strings.Repeat("x", 300)} {
		if _, err := c.JobStatus(ctx, id); err == nil {
			t.Errorf("job id %q accepted", id)
		}
		if _, err := c.ExportJobLog(ctx, id); err == nil {
			t.Errorf("job id %q accepted for export", id)
		}
	}
}

func TestPathsAreEscaped(t *testing.T) {
	var got []string
	var mu sync.Mutex
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.EscapedPath()+"?"+r.URL.RawQuery)
		mu.Unlock()
		fmt.Fprint(w, `{"jobId":"j","status":"Running"}`)
	})
	c, _ := tn.client(t, Basic, func(cfg *Config) { cfg.BaseURL += "/" })
	ctx := context.Background()
	if _, err := c.StartJob(ctx, "sys 1?x", JobResync); err == nil {
		t.Error("a source system id with a space was accepted")
	}
	if _, err := c.StartJob(ctx, "sys%1", JobResync); err != nil {
		t.Fatal(err)
	}
	if _, err := c.JobStatus(ctx, "j:1"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/ips/service/publicapi/v1/startJob/sys%251/jobs/RESYNC?",
		"/ips/service/publicapi/v1/jobs/j:1?",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paths %q, want %q", got, want)
	}
}
