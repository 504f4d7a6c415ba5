package source

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/pki"
)

func TestFileIsReReadWhenItChanges(t *testing.T) {
	ca, err := pki.NewCA("IPS", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *pki.Leaf {
		l, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ips.crt")
	first, second := issue(), issue()
	if err := os.WriteFile(path, pki.CertPEM(first.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	f := NewFile(path)
	ctx := context.Background()
	got, err := f.Active(ctx)
	if err != nil || !got.Equal(first.Cert) {
		t.Fatalf("first read: %v", err)
	}

	// A new download replaces the file the way Kubernetes updates a secret:
	// a new file renamed over the old one.
	tmp := filepath.Join(dir, "new.crt")
	if err := os.WriteFile(tmp, pki.CertPEM(second.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	got, err = f.Active(ctx)
	if err != nil || !got.Equal(second.Cert) {
		t.Fatalf("after the change: %v, same as second: %v", err, got != nil && got.Equal(second.Cert))
	}

	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Active(ctx); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("garbage file: %v", err)
	}
	os.Remove(path)
	if _, err := f.Active(ctx); err == nil || !strings.Contains(err.Error(), "cannot read IPS's certificate") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestHTTPSourceErrorsSayWhetherToAskAgain: an outage (no answer, a 5xx, a
// 429) is transient, which the gate turns into INCONCLUSIVE; an answer
// saying there is no such certificate is not.
func TestHTTPSourceErrorsSayWhetherToAskAgain(t *testing.T) {
	status := http.StatusServiceUnavailable
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	h, err := NewHTTP(srv.URL+"/cert.pem", pool, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct {
		status    int
		transient bool
	}{{http.StatusServiceUnavailable, true}, {http.StatusTooManyRequests, true}, {http.StatusNotFound, false}, {http.StatusForbidden, false}} {
		status = tc.status
		_, err := h.Active(context.Background())
		if err == nil || IsTransient(err) != tc.transient {
			t.Errorf("HTTP %d: %v, transient %v, want %v", tc.status, err, IsTransient(err), tc.transient)
		}
	}
	srv.Close()
	if _, err := h.Active(context.Background()); err == nil || !IsTransient(err) {
		t.Errorf("no answer: %v, want a transient error", err)
	}
	if IsTransient(errors.New("other")) || IsTransient(nil) {
		t.Error("a foreign error or nil is transient")
	}
}
