package registry

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/certsync/certsync/service/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRegistry speaks the contract and can fail on purpose: each entry of
// failures is consumed by one call of that method ("GET", "POST", "DELETE").
type fakeRegistry struct {
	mu       sync.Mutex
	mappings map[string]wireMapping
	next     int
	failures map[string][]string // method -> "503", "reset-after" (do the work, then drop the answer)
	calls    map[string]int
	token    string
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[r.Method]++
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"code":"UNAUTHENTICATED","message":"bearer token required"}}`)
		return
	}
	mode := ""
	if q := f.failures[r.Method]; len(q) > 0 {
		mode, f.failures[r.Method] = q[0], q[1:]
	}
	if mode == "503" {
		w.WriteHeader(503)
		return
	}
	status, body := f.handle(r)
	if mode == "reset-after" {
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
		return
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fakeRegistry) handle(r *http.Request) (int, string) {
	switch {
	case r.Method == "GET":
		list := []wireMapping{}
		for _, m := range f.mappings {
			list = append(list, m)
		}
		b, _ := json.Marshal(map[string]any{"mappings": list})
		return 200, string(b)
	case r.Method == "POST":
		var m wireMapping
		json.NewDecoder(r.Body).Decode(&m)
		for _, old := range f.mappings {
			if old.CertificatePEM == m.CertificatePEM {
				return 409, `{"error":{"code":"DUPLICATE_CERTIFICATE","message":"This X.509 Certificate was already registered to the platform. Please upload a different one or cancel the certificate mapping."}}`
			}
		}
		f.next++
		m.ID = fmt.Sprintf("m%d", f.next)
		f.mappings[m.ID] = m
		b, _ := json.Marshal(m)
		return 201, string(b)
	case r.Method == "DELETE":
		id := strings.TrimPrefix(r.URL.Path, "/v1/mappings/")
		if _, ok := f.mappings[id]; !ok {
			return 404, `{"error":{"code":"NOT_FOUND","message":"no such mapping"}}`
		}
		delete(f.mappings, id)
		return 204, ""
	}
	return 405, ""
}

func setup(t *testing.T) (*fakeRegistry, *HTTP, *x509.Certificate) {
	t.Helper()
	f := &fakeRegistry{mappings: map[string]wireMapping{}, failures: map[string][]string{}, calls: map[string]int{}, token: "s3cret-token"}
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(f.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	d, err := NewHTTP(HTTPConfig{BaseURL: srv.URL, TokenFile: tokenFile, RootCAs: pool, Timeout: 2 * time.Second, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	ca, _ := pki.NewCA("ca", time.Now(), time.Hour)
	leaf, _ := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
	return f, d, leaf.Cert
}

func (f *fakeRegistry) fail(method string, modes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = append(f.failures[method], modes...)
}

func (f *fakeRegistry) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func TestListRetriesTransientFailures(t *testing.T) {
	f, d, cert := setup(t)
	ctx := context.Background()
	if _, err := d.Upload(ctx, NewMapping{IntegrationName: "Identity Provisioning Service", LoginName: "U", Certificate: cert}); err != nil {
		t.Fatal(err)
	}
	f.fail("GET", "503", "503")
	ms, err := d.List(ctx)
	if err != nil || len(ms) != 1 || ms[0].LoginName != "U" || !ms[0].Certificate.Equal(cert) {
		t.Fatalf("List = %v, %v", ms, err)
	}
	if n := f.count("GET"); n != 3 {
		t.Errorf("GET calls = %d, want 3", n)
	}
	f.fail("GET", "503", "503", "503")
	_, err = d.List(ctx)
	var re *Error
	if !errors.As(err, &re) || re.Step != StepList || !re.Transient || re.Status != 503 || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("List after 3 failures = %v", err)
	}
}

func TestRefusalsAreNotRetried(t *testing.T) {
	f, d, _ := setup(t)
	f.mu.Lock()
	f.token = "another"
	f.mu.Unlock()
	_, err := d.List(context.Background())
	var re *Error
	if !errors.As(err, &re) || re.Transient || re.Status != 401 || f.count("GET") != 1 || !strings.Contains(err.Error(), "registry.token_file") {
		t.Fatalf("List = %v after %d calls", err, f.count("GET"))
	}
	if strings.Contains(err.Error(), "s3cret-token") {
		t.Fatal("the error shows the token")
	}
}

func TestUploadAfterLostAnswerIsNotDoubled(t *testing.T) {
	f, d, cert := setup(t)
	f.fail("POST", "reset-after") // the upload lands, its answer is lost
	m, err := d.Upload(context.Background(), NewMapping{IntegrationName: "Identity Provisioning Service", Certificate: cert})
	if err != nil || m.ID == "" || !m.Certificate.Equal(cert) {
		t.Fatalf("Upload = %+v, %v", m, err)
	}
	if n := f.count("POST"); n != 1 {
		t.Errorf("POST calls = %d, want 1 (the lost upload was found, not repeated)", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.mappings) != 1 {
		t.Errorf("mappings = %d, want 1", len(f.mappings))
	}
}

func TestUploadDuplicate(t *testing.T) {
	_, d, cert := setup(t)
	ctx := context.Background()
	nm := NewMapping{IntegrationName: "Identity Provisioning Service", Certificate: cert}
	if _, err := d.Upload(ctx, nm); err != nil {
		t.Fatal(err)
	}
	_, err := d.Upload(ctx, nm)
	var de *DuplicateError
	if !errors.As(err, &de) || !strings.Contains(de.Message, "already registered to the platform") {
		t.Fatalf("second upload = %v", err)
	}
}

func TestDeleteAfterLostAnswerCountsAsDone(t *testing.T) {
	f, d, cert := setup(t)
	ctx := context.Background()
	m, err := d.Upload(ctx, NewMapping{IntegrationName: "Identity Provisioning Service", Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	f.fail("DELETE", "reset-after")
	if err := d.Delete(ctx, m.ID); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if err := d.Delete(ctx, m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing mapping = %v, want ErrNotFound", err)
	}
}

func TestListRejectsBadPEM(t *testing.T) {
	f, d, _ := setup(t)
	f.mu.Lock()
	f.mappings["x"] = wireMapping{ID: "x", CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))}
	f.mu.Unlock()
	_, err := d.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), `mapping 0 ("x")`) {
		t.Fatalf("List = %v", err)
	}
}
