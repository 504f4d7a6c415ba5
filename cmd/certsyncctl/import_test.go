package main

import (
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/health"

	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/store"
)

// startImportServer serves one connection, "ips", whose source is the
// imported certificates, with a store.
func startImportServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("probe CA", time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "probe"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(probe.Key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "probe.crt"), filepath.Join(dir, "probe.key")
	if err := os.WriteFile(certFile, pki.CertPEM(probe.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Connections: []config.Connection{{
		ID:       "ips",
		SF:       config.SF{URL: "https://api4.cert.successfactors.com", CompanyID: "ACME"},
		Source:   config.Source{Type: "imported"},
		Registry: config.Registry{Driver: "manual"},
		Probe:    config.Probe{Identity: "separate", CertFile: certFile, KeyFile: keyFile},
	}}}
	cfg.ApplyDefaults()
	problems := cfg.Validate()
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("configuration invalid: %v", errs)
	}
	st, err := store.Open(context.Background(), "", filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv, err := inventory.Build(cfg.Connections, problems, inventory.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inv.Close)
	srv := service.New(service.Options{Inventory: inv, Store: st})
	g := srv.NewGRPCServer(service.GRPCOptions{MaxMessageBytes: config.DefaultMaxMessageBytes, Health: health.NewServer()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func TestImportAndSourceCertificates(t *testing.T) {
	addr := startImportServer(t)
	first, firstSum := writeCert(t)
	second, secondSum := writeCert(t)

	out, errOut, code := ctl(t, "", "import", "ips", first, "--active", "--reason", "CHG-7 download", "--addr", addr)
	if code != 0 || !strings.Contains(out, "connections/ips: version ") || !strings.Contains(out, "(Active)") ||
		!strings.Contains(out, hexPairs(firstSum[:])) || !strings.Contains(out, "MANUAL_REGISTRY") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	// From standard input, not active, JSON out.
	pemData, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = ctl(t, string(pemData), "import", "connections/ips", "-", "-o", "json", "--addr", addr)
	var resp struct {
		SourceCertificate struct {
			ID          string `json:"id"`
			Active      bool   `json:"active"`
			Certificate struct {
				SHA256 string `json:"sha256_fingerprint"`
			} `json:"certificate"`
		} `json:"source_certificate"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.SourceCertificate.ID == "" || resp.SourceCertificate.Active ||
		resp.SourceCertificate.Certificate.SHA256 != hexPairs(secondSum[:]) {
		t.Fatalf("import from stdin: exit %d %+v\n%s%s", code, resp, out, errOut)
	}

	out, errOut, code = ctl(t, "", "source-certificates", "ips", "--addr", addr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.Contains(lines[1], hexPairs(secondSum[:])) || strings.Contains(lines[1], " yes ") ||
		!strings.Contains(lines[2], hexPairs(firstSum[:])) || !strings.Contains(lines[2], " yes ") || !strings.Contains(lines[2], "anonymous") {
		t.Errorf("source-certificates: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = ctl(t, "", "source-certificates", "ips", "--limit", "1", "--addr", addr)
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "raise --limit") {
		t.Errorf("source-certificates --limit 1: exit %d\n%s", code, out)
	}

	// With a manual registry SF's side is unknown, but expiry is not.
	ca, err := pki.NewCA("IPS CA", time.Now().Add(-time.Hour), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-outbound"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(2 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = ctl(t, string(pki.CertPEM(leaf.Cert)), "import", "ips", "-", "--active", "--addr", addr)
	if code != 0 || !strings.Contains(out, "SOURCE_EXPIRES_SOON") || !strings.Contains(out, "urgently") || strings.Contains(out, "TARGET_MISSING") {
		t.Errorf("import of a certificate that expires in 2 days: exit %d\n%s%s", code, out, errOut)
	}

	// Refusals are no answer: a key, a usage error, an unknown connection.
	key := filepath.Join(t.TempDir(), "ips.key")
	if err := os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"import", "ips", key},
		{"import", "ips"},
		{"import", "nope", first},
		{"source-certificates"},
		{"source-certificates", "ips", "--limit", "0"},
	} {
		_, errOut, code := ctl(t, "", append(args, "--addr", addr)...)
		if code != 3 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 3 with a message", args, code, errOut)
		}
	}
	_, errOut, _ = ctl(t, "", "import", "ips", key, "--addr", addr)
	if !strings.Contains(errOut, "PRIVATE_KEY_REFUSED") || strings.Contains(errOut, "MIIB") {
		t.Errorf("key refused with: %s", errOut)
	}
}
