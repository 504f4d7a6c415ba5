package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockedBuffer is a bytes.Buffer safe for the server's log writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeProbeFiles writes a client certificate and key and returns their paths.
func writeProbeFiles(t *testing.T, dir string) (string, string) {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "probe"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.KeyPEM(leaf.Key)
	certFile, keyFile := filepath.Join(dir, "probe.crt"), filepath.Join(dir, "probe.key")
	if err := os.WriteFile(certFile, pki.CertPEM(leaf.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestConfigCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeProbeFiles(t, dir)
	otherCert, _ := writeProbeFiles(t, t.TempDir())
	cfg := fmt.Sprintf(`
server:
  log_level: loud
connections:
  - id: good
    sf: {url: "https://api4.cert.successfactors.com", company_id: ACME}
    source: {type: file, file: %[1]s}
    registry: {driver: manual}
    probe: {identity: ips, cert_file: %[1]s, key_file: %[2]s}
  - id: plain-host
    sf: {url: "https://api4.successfactors.com", company_id: ACME}
    source: {type: file, file: %[1]s}
    registry: {driver: manual}
    probe: {identity: ips, cert_file: %[1]s, key_file: %[2]s}
  - id: bad
    sf: {url: "http://127.0.0.1:8443"}
    source: {type: file, file: /nonexistent/ips.crt}
    registry: {driver: carrier-pigeon}
    probe: {identity: ips, cert_file: %[3]s, key_file: %[2]s}
  - id: loopback
    sf: {url: "https://127.0.0.1:50443", company_id: ACME}
    source: {type: file, file: %[1]s}
    registry: {driver: manual}
    probe: {identity: ips, cert_file: %[1]s, key_file: %[2]s}
`, certFile, keyFile, otherCert)
	path := filepath.Join(dir, "certsync.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"config", "check", "--config", path}, &out, &errOut)
	if code := exitCode(err, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2; output:\n%s%s", code, out.String(), errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		"error: server.log_level: \"loud\"",
		"error: connections[plain-host].sf.url: api4.successfactors.com is SF's plain API host; certificate authentication needs the mTLS host api4.cert.successfactors.com",
		"error: connections[bad].sf.url: \"http://127.0.0.1:8443\" must use https",
		"error: connections[bad].sf.company_id: required",
		"error: connections[bad].source.file: cannot read /nonexistent/ips.crt",
		"error: connections[bad].registry.driver: \"carrier-pigeon\" is not one of http, manual",
		"error: connections[bad].probe.key_file: does not go with probe.cert_file",
		"warning: connections[loopback].sf.url: 127.0.0.1 is not on a known SF domain",
		"configuration invalid: 7 error(s)",
	} {
		if !strings.Contains(got+errOut.String(), want) {
			t.Errorf("output lacks %q:\n%s%s", want, got, errOut.String())
		}
	}
	if strings.Contains(got, "connections[good]") {
		t.Errorf("the good connection was reported:\n%s", got)
	}
	if strings.Contains(got+errOut.String(), "PRIVATE KEY") {
		t.Errorf("output echoes key material")
	}
}

func TestServeRefusesInvalidConfigBeforeListening(t *testing.T) {
	addr := testutil.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("connections:\n  - id: x\n    unknown_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--config", path, "--grpc-addr", addr}, &out, &errOut)
	if code := exitCode(err, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown_key") {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	err = run(context.Background(), []string{"serve", "--grpc-addr", "nonsense"}, &out, &errOut)
	if code := exitCode(err, &errOut); code != 2 || !strings.Contains(errOut.String(), "server.grpc_addr") {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
}

// startServe runs `certsyncd serve` in-process and returns its address and a
// function that stops it (as SIGTERM would) and returns its error.
func startServe(t *testing.T, args ...string) (string, *lockedBuffer, func() error) {
	t.Helper()
	addr := testutil.FreeAddr(t)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--grpc-addr", addr, "--log-format", "json"}, args...), logs, logs)
	}()
	testutil.WaitListening(t, addr, 10*time.Second)
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return addr, logs, stop
}

func TestServeEndToEndWithGrpcurlAndHealthProbe(t *testing.T) {
	grpcurl := testutil.Tool(t, "grpcurl")
	probe := testutil.Tool(t, "grpc-health-probe")
	addr, logs, stop := startServe(t)

	out, code := testutil.Run(t, 30*time.Second, grpcurl, "-plaintext", addr, "list")
	for _, svc := range []string{"certsync.v1.CertSyncService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if code != 0 || !strings.Contains(out, svc) {
			t.Errorf("grpcurl list (exit %d) lacks %s:\n%s", code, svc, out)
		}
	}
	out, code = testutil.Run(t, 30*time.Second, probe, "-addr", addr)
	if code != 0 || !strings.Contains(out, "SERVING") {
		t.Errorf("grpc-health-probe exit %d: %s", code, out)
	}

	// A failed call's details print through reflection, types resolved.
	key := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
	body, _ := json.Marshal(map[string][]byte{"data": []byte(key)})
	out, code = testutil.Run(t, 30*time.Second, grpcurl, "-plaintext", "-format-error", "-d", string(body), addr, "certsync.v1.CertSyncService/InspectCertificate")
	if code == 0 || !strings.Contains(out, "PRIVATE_KEY_REFUSED") || !strings.Contains(out, "google.rpc.ErrorInfo") ||
		!strings.Contains(out, "google.rpc.BadRequest") || strings.Contains(out, "not recognized") || strings.Contains(out, "MIGHAgEA") {
		t.Errorf("grpcurl error details (exit %d):\n%s", code, out)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no orderly shutdown in logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "MIGHAgEA") {
		t.Errorf("logs contain key material")
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "certsyncd ") {
		t.Fatalf("--version: %v %q", err, out.String())
	}
}
