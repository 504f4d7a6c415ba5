package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"

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

// metricValue returns the value of one metric line of a scrape, or "".
func metricValue(t *testing.T, addr, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestMetricsFollowProbesAndGateCalls checks, through the daemon as built by
// serve, that a probe and a gate call move the domain metrics and that the
// per-connection health follows the gate.
func TestMetricsFollowProbesAndGateCalls(t *testing.T) {
	metricsAddr := testutil.FreeAddr(t)
	sandboxAddr := testutil.FreeAddr(t)
	addr, _, stop := startServe(t, "--sandbox", "--sandbox-addr", sandboxAddr, "--metrics-addr", metricsAddr, "--refresh-interval", "0")
	defer stop()
	testutil.WaitListening(t, metricsAddr, 10*time.Second)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := certsyncv1.NewCertSyncServiceClient(conn)
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	probes := `certsync_probes_total{connection="demo-desync",outcome="INVALID_CLIENT_CERTIFICATE"}`
	if v := metricValue(t, metricsAddr, probes); v != "" {
		t.Fatalf("before any probe: %s = %s", probes, v)
	}
	health := func(id string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "connections/" + id})
		if err != nil {
			t.Fatalf("health %s: %v", id, err)
		}
		return r.GetStatus()
	}
	// No evidence yet, and a health check does not start a probe.
	if s := health("demo-desync"); s != healthpb.HealthCheckResponse_UNKNOWN {
		t.Errorf("health before evidence: %v", s)
	}
	if v := metricValue(t, metricsAddr, probes); v != "" {
		t.Fatalf("a health check probed: %s = %s", probes, v)
	}

	if _, err := c.ProbeScimAuth(ctx, &certsyncv1.ProbeScimAuthRequest{Name: "demo-desync"}); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, metricsAddr, probes); v != "1" {
		t.Errorf("after a probe: %s = %q, want 1", probes, v)
	}
	for _, id := range []string{"demo-desync", "demo-healthy"} {
		if _, err := c.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	for series, want := range map[string]string{
		probes: "2",
		`certsync_gate_decisions_total{connection="demo-desync",decision="DENY"}`: "1",
		`certsync_gate_decision{connection="demo-desync",decision="DENY"}`:        "1",
		`certsync_gate_decision{connection="demo-healthy",decision="ALLOW"}`:      "1",
		`certsync_fingerprints_match{connection="demo-desync"}`:                   "1",
	} {
		if v := metricValue(t, metricsAddr, series); v != want {
			t.Errorf("after gate calls: %s = %q, want %q", series, v, want)
		}
	}
	if v := metricValue(t, metricsAddr, `grpc_server_handled_total{grpc_code="OK",grpc_method="CheckGate",grpc_service="certsync.v1.CertSyncService",grpc_type="unary"}`); v != "2" {
		t.Errorf("gRPC server metric for CheckGate = %q, want 2", v)
	}
	if v := metricValue(t, metricsAddr, `certsync_certificate_not_after_timestamp_seconds{connection="demo-healthy",side="ips"}`); v == "" {
		t.Error("no expiry timestamp for demo-healthy's IPS certificate")
	}
	if s := health("demo-desync"); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of demo-desync after DENY: %v", s)
	}
	if s := health("demo-healthy"); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of demo-healthy after ALLOW: %v", s)
	}
}
