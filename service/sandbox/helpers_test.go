package sandbox

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/certsync/certsync/service/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// probeQuery is what certsync's probe asks: IPS's request with a filter that
// matches nobody.
const probeQuery = "?startId=initial&count=1&filter=userName%20eq%20%22certsync.probe.none%22"

// env is a started sandbox with its files written, as production code would
// see it: only through the configuration WriteFiles returns.
type env struct {
	t     *testing.T
	sb    *Sandbox
	conns map[string]config.Connection
	roots *x509.CertPool
}

func startEnv(t *testing.T, o Options) *env {
	t.Helper()
	o.Addr = "127.0.0.1:0"
	sb, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sb.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	list, err := sb.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	e := &env{t: t, sb: sb, conns: map[string]config.Connection{}, roots: x509.NewCertPool()}
	for _, c := range list {
		e.conns[c.ID] = c
	}
	caPEM, err := os.ReadFile(list[0].SF.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if !e.roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file holds no certificate")
	}
	return e
}

func (e *env) conn(id string) config.Connection {
	e.t.Helper()
	c, ok := e.conns[id]
	if !ok {
		e.t.Fatalf("no connection %s in WriteFiles' output", id)
	}
	return c
}

// client returns a fresh client (its own transport, so no connection is
// reused across tests) presenting certs, if any.
func (e *env) client(certs ...tls.Certificate) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.roots, Certificates: certs},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// probeClient presents the connection's probe key pair, loaded from the
// files WriteFiles wrote.
func (e *env) probeClient(id string) *http.Client {
	e.t.Helper()
	c := e.conn(id)
	kp, err := tls.LoadX509KeyPair(c.Probe.CertFile, c.Probe.KeyFile)
	if err != nil {
		e.t.Fatalf("load probe key pair of %s: %v", id, err)
	}
	return e.client(kp)
}

// scim calls the connection's SCIM endpoint as IPS would: its URL, its
// company id header.
func (e *env) scim(c *http.Client, id, query string) (int, string) {
	e.t.Helper()
	cn := e.conn(id)
	req, err := http.NewRequest(http.MethodGet, cn.SF.URL+"/rest/iam/scim/v2/Users"+query, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("successfactors-companyid", cn.SF.CompanyID)
	return e.do(c, req)
}

func (e *env) do(c *http.Client, req *http.Request) (int, string) {
	e.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func (e *env) token(id string) string {
	e.t.Helper()
	b, err := os.ReadFile(e.conn(id).Registry.TokenFile)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// registry calls the registry contract; token "" sends no Authorization.
func (e *env) registry(method, id, path, token string, body any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.conn(id).Registry.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.do(e.client(), req)
}

type testMapping struct {
	ID                string `json:"id"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	CertificatePEM    string `json:"certificate_pem"`
}

func (e *env) listMappings(id string) []testMapping {
	e.t.Helper()
	status, body := e.registry(http.MethodGet, id, "/v1/mappings", e.token(id), nil)
	if status != http.StatusOK {
		e.t.Fatalf("list %s: %d %s", id, status, body)
	}
	var out struct {
		Mappings []testMapping `json:"mappings"`
	}
	mustJSON(e.t, body, &out)
	return out.Mappings
}

func (e *env) deleteAll(id string) {
	e.t.Helper()
	for _, m := range e.listMappings(id) {
		if status, body := e.registry(http.MethodDelete, id, "/v1/mappings/"+m.ID, e.token(id), nil); status != http.StatusNoContent {
			e.t.Fatalf("delete %s: %d %s", m.ID, status, body)
		}
	}
}

// uploadActive uploads IPS's active certificate, as re-registration does.
func (e *env) uploadActive(id, integration string) (int, string) {
	e.t.Helper()
	pemBytes, err := os.ReadFile(e.conn(id).Probe.CertFile)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.registry(http.MethodPost, id, "/v1/mappings", e.token(id), map[string]string{
		"configuration_name": "IPS " + id,
		"integration_name":   integration,
		"login_name":         "IPS_TECH_USER",
		"certificate_pem":    string(pemBytes),
	})
}

// control calls the control API over HTTPS.
func (e *env) control(method, path string, body any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte: // sent as is, so tests can send broken JSON
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "https://"+e.sb.Addr()+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(e.client(), req)
}

func (e *env) state() State {
	e.t.Helper()
	status, body := e.control(http.MethodGet, "/_sandbox/v1/state", nil)
	if status != http.StatusOK {
		e.t.Fatalf("state: %d %s", status, body)
	}
	var st State
	mustJSON(e.t, body, &st)
	return st
}

func mustJSON(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

func wantStatusBody(t *testing.T, what string, gotStatus int, gotBody string, wantStatus int, wantBody string) {
	t.Helper()
	if gotStatus != wantStatus || gotBody != wantBody {
		t.Errorf("%s: got %d %s\nwant %d %s", what, gotStatus, gotBody, wantStatus, wantBody)
	}
}

// clock is a settable Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func isSSLError(status int, body string) bool {
	return status == http.StatusBadRequest && strings.Contains(body, "The SSL certificate error")
}

// newRootsConfig trusts only the sandbox CA, as a configured ca_file does.
func newRootsConfig(t *testing.T, caPEM []byte) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CAPEM holds no certificate")
	}
	return &tls.Config{RootCAs: pool}
}
