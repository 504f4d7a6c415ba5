package ips

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testClientID = "7c5a1d2e-client"
	testSecret   = "s3cr3t-never-shown"
)

// tenant is an httptest TLS server playing an IAS tenant; h answers every
// request.
type tenant struct {
	srv   *httptest.Server
	roots *x509.CertPool
}

func newTenant(t *testing.T, h http.HandlerFunc) *tenant {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &tenant{srv: srv, roots: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
}

// writeFile writes data into a fresh temporary file and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waits records the waits between attempts instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// client builds a client of tn with method m (basic or oauth2 with the test
// secret), mut applied to the config first; waits are recorded, not slept.
func (tn *tenant) client(t *testing.T, m AuthMethod, mut func(*Config)) (*Client, *waits) {
	t.Helper()
	cfg := Config{
		BaseURL:          tn.srv.URL,
		Method:           m,
		ClientID:         testClientID,
		ClientSecretFile: writeFile(t, "secret", []byte(testSecret+"\n")),
		RootCAs:          tn.roots,
		Timeout:          5 * time.Second,
		Backoff:          10 * time.Millisecond,
	}
	if mut != nil {
		mut(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	w := &waits{}
	c.sleep = w.sleep
	return c, w
}

// counter counts requests by path, safely across handler goroutines.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[path]++
	return c.n[path]
}

func (c *counter) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

const (
	startPath  = "/ips/service/publicapi/v1/startJob/sys-1/jobs/READ"
	statusPath = "/ips/service/publicapi/v1/jobs/job-1"
	logPath    = "/ips/service/publicapi/v1/jobLogs/job-1"
	tokenPath  = "/oauth2/token"
)

// tlsConfigFor returns a server TLS config presenting a certificate.
func tlsConfigFor(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
