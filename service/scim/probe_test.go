package scim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	ca     *pki.CA
	client tls.Certificate
	server *httptest.Server
	conns  atomic.Int32
	// lastQuery and lastCompany are what the server saw last.
	lastQuery, lastCompany atomic.Value
}

// newEnv serves handler over TLS with a CA-signed certificate for 127.0.0.1.
func newEnv(t *testing.T, clientAuth tls.ClientAuthType, handler http.HandlerFunc) *env {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("probe test CA", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "sf"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	cliLeaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ca: ca, client: cliLeaf.TLSCertificate()}
	e.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.lastQuery.Store(r.URL.RawQuery)
		e.lastCompany.Store(r.Header.Get("successfactors-companyid"))
		handler(w, r)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	e.server.TLS = &tls.Config{Certificates: []tls.Certificate{srvLeaf.TLSCertificate()}, ClientAuth: clientAuth, ClientCAs: pool}
	e.server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.conns.Add(1)
		}
	}
	e.server.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake refusals are expected here
	e.server.StartTLS()
	t.Cleanup(e.server.Close)
	return e
}

func (e *env) prober(t *testing.T, timeout time.Duration) *Prober {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	p, err := New(Config{BaseURL: e.server.URL, CompanyID: "ACME", Certificate: e.client, RootCAs: pool, Timeout: timeout,
		Proxy: noProxy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func respond(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const auth0032 = `{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}`

func TestClassifiesEveryAnswer(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		outcome Outcome
		status  int
		code    string
		msg     string
	}{
		{"authenticated", respond(200, `{"totalResults":0,"Resources":[],"secret":"employee-data"}`), Authenticated, 200, "", ""},
		{"auth0032", respond(401, auth0032), InvalidClientCertificate, 401, "AUTH0032", "Invalid client certificate"},
		{"ssl error page", respond(400, "<html>\n<head><title>400 Bad Request</title></head>\n<body>\n<h1>The SSL certificate error</h1>\n</body>\n</html>"), TLSRejected, 400, "", "SSL certificate error"},
		{"credentials", respond(401, `{"error":{"code":"LGN0011","message":{"lang":"en-US","value":"Authentication credentials are required. Please provide a valid username, password, and company id"}}}`), CredentialsRequired, 401, "LGN0011", "credentials are required"},
		{"permission", respond(403, `{"error":{"code":"Forbidden","message":"You don't have permission to view the user."}}`), PermissionDenied, 403, "Forbidden", "permission"},
		{"rate limited", respond(429, `{"status":"429","detail":"Too many requests. Retry after 30 seconds."}`), Unreachable, 429, "", "Too many requests"},
		{"outage", respond(503, "Service Unavailable"), Unreachable, 503, "", ""},
		{"teapot", respond(418, "short and stout"), UnexpectedResponse, 418, "", ""},
		{"invalid utf-8", respond(500, "\xff\xfe broken"), Unreachable, 500, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tls.RequestClientCert, tt.handler)
			r := e.prober(t, 5*time.Second).Probe(context.Background())
			if r.Outcome != tt.outcome || r.HTTPStatus != tt.status || r.ErrorCode != tt.code || !strings.Contains(r.ErrorMessage, tt.msg) {
				t.Errorf("got %v %d %q %q", r.Outcome, r.HTTPStatus, r.ErrorCode, r.ErrorMessage)
			}
			if tt.outcome == Authenticated && (r.ErrorBody != "" || strings.Contains(r.ErrorMessage, "employee")) {
				t.Errorf("a successful answer's body was kept: %q %q", r.ErrorBody, r.ErrorMessage)
			}
			if tt.outcome != Authenticated && r.ErrorBody == "" {
				t.Errorf("a failure's body was not kept")
			}
			for _, s := range []string{r.ErrorBody, r.ErrorMessage, r.ErrorCode} {
				if !utf8Valid(s) {
					t.Errorf("not valid UTF-8: %q", s)
				}
			}
		})
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func TestRequestIsShapedLikeIPSs(t *testing.T) {
	e := newEnv(t, tls.RequireAnyClientCert, respond(200, `{"totalResults":0}`))
	p := e.prober(t, 5*time.Second)
	r := p.Probe(context.Background())
	if r.Outcome != Authenticated {
		t.Fatalf("outcome %v: %s", r.Outcome, r.ErrorMessage)
	}
	if q := e.lastQuery.Load().(string); q != "startId=initial&count=1&filter=userName%20eq%20%22certsync.probe.none%22" {
		t.Errorf("query = %s", q)
	}
	if c := e.lastCompany.Load().(string); c != "ACME" {
		t.Errorf("company header = %q", c)
	}
	if !strings.HasSuffix(strings.SplitN(r.RequestURL, "?", 2)[0], "/rest/iam/scim/v2/Users") {
		t.Errorf("request URL = %s", r.RequestURL)
	}
	if r.ClientCertSHA256 == "" || r.ClientCertSHA256 != p.ClientCertSHA256() || r.CheckedAt.IsZero() || r.Latency <= 0 {
		t.Errorf("result = %+v", r)
	}
}

func TestReusesConnections(t *testing.T) {
	e := newEnv(t, tls.RequestClientCert, respond(401, auth0032))
	p := e.prober(t, 5*time.Second)
	for i := 0; i < 5; i++ {
		if r := p.Probe(context.Background()); r.Outcome != InvalidClientCertificate {
			t.Fatalf("probe %d: %v", i, r.Outcome)
		}
	}
	if n := e.conns.Load(); n != 1 {
		t.Errorf("5 probes opened %d connections, want 1", n)
	}
}

func TestTransportFailures(t *testing.T) {
	t.Run("handshake refused", func(t *testing.T) {
		// The server trusts another CA: it refuses our certificate.
		e := newEnv(t, tls.RequireAndVerifyClientCert, respond(200, "{}"))
		other, _ := pki.NewCA("other", time.Now(), time.Hour)
		pool := x509.NewCertPool()
		pool.AddCert(other.Cert)
		e.server.TLS.ClientCAs = pool
		r := e.prober(t, 5*time.Second).Probe(context.Background())
		if r.Outcome != TLSRejected || r.Cause != diagnose.CauseTLSRejected {
			t.Errorf("got %v %v: %s", r.Outcome, r.Cause, r.ErrorMessage)
		}
	})
	t.Run("server certificate not trusted", func(t *testing.T) {
		e := newEnv(t, tls.RequestClientCert, respond(200, "{}"))
		p, err := New(Config{BaseURL: e.server.URL, CompanyID: "ACME", Certificate: e.client, RootCAs: x509.NewCertPool(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		r := p.Probe(context.Background())
		if r.Outcome != Unreachable || !strings.Contains(r.ErrorMessage, "could not verify SF's server certificate") {
			t.Errorf("got %v: %s", r.Outcome, r.ErrorMessage)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		e := newEnv(t, tls.RequestClientCert, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		r := e.prober(t, 300*time.Millisecond).Probe(context.Background())
		if r.Outcome != Unreachable || !strings.Contains(r.ErrorMessage, "no answer from SF within 300ms") {
			t.Errorf("got %v: %s", r.Outcome, r.ErrorMessage)
		}
	})
	t.Run("reset", func(t *testing.T) {
		e := newEnv(t, tls.RequestClientCert, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
					if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
						tcp.SetLinger(0)
					}
				}
				conn.Close()
			}
		})
		e.server.EnableHTTP2 = false
		r := e.prober(t, 5*time.Second).Probe(context.Background())
		if r.Outcome != Unreachable || r.HTTPStatus != 0 {
			t.Errorf("got %v %d: %s", r.Outcome, r.HTTPStatus, r.ErrorMessage)
		}
	})
	t.Run("nobody listening", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		cli := newEnv(t, tls.RequestClientCert, respond(200, "{}")).client
		p, err := New(Config{BaseURL: "https://" + addr, CompanyID: "ACME", Certificate: cli, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if r := p.Probe(context.Background()); r.Outcome != Unreachable || !strings.Contains(r.ErrorMessage, "cannot reach SF") {
			t.Errorf("got %v: %s", r.Outcome, r.ErrorMessage)
		}
	})
}

// noProxy keeps tests on loopback whatever HTTPS_PROXY says.
func noProxy(*http.Request) (*neturl.URL, error) { return nil, nil }
