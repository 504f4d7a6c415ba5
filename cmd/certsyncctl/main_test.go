package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/health"

	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer serves certsync on a loopback port for the CLI to call.
func startServer(t *testing.T) string {
	t.Helper()
	srv := service.New(service.Options{})
	g := srv.NewGRPCServer(service.GRPCOptions{MaxMessageBytes: config.DefaultMaxMessageBytes, Health: health.NewServer()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func writeCert(t *testing.T) (string, [32]byte) {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-outbound"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(100 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ips.crt")
	if err := os.WriteFile(path, pki.CertPEM(leaf.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, sha256.Sum256(leaf.Cert.Raw)
}

func hexPairs(b []byte) string {
	s := make([]string, len(b))
	for i, c := range b {
		s[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(s, ":")
}

func TestInspect(t *testing.T) {
	addr := startServer(t)
	path, sum := writeCert(t)

	// Flags before and after the argument.
	for _, args := range [][]string{
		{"--addr", addr, "inspect", path},
		{"inspect", path, "--addr", addr},
		{"inspect", "--addr=" + addr, path},
	} {
		out, errOut, code := ctl(t, "", args...)
		if code != 0 || !hasRow(out, "SHA-256:", hexPairs(sum[:])) || !hasRow(out, "Subject:", "CN=ips-outbound") || !hasRow(out, "Client auth:", "yes") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}

	out, errOut, code := ctl(t, "", "inspect", path, "-o", "json", "--addr", addr)
	var resp struct {
		Certificates []struct {
			SHA256 string `json:"sha256_fingerprint"`
		} `json:"certificates"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Certificates) != 1 || resp.Certificates[0].SHA256 != hexPairs(sum[:]) {
		t.Errorf("json: exit %d\n%s%s", code, out, errOut)
	}

	// Standard input, and a refusal: exit 3 with the reason and the field.
	out, errOut, code = ctl(t, "not a certificate", "inspect", "-", "--addr", addr)
	if code != 3 || out != "" || !strings.Contains(errOut, "InvalidArgument") || !strings.Contains(errOut, "reason: UNRECOGNIZED_INPUT") || !strings.Contains(errOut, "field data:") {
		t.Errorf("garbage: exit %d\n%s%s", code, out, errOut)
	}
}

// hasRow reports whether a line of out reads "key   value".
func hasRow(out, key, value string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.Join(f[:len(f)-1], " ") == key && f[len(f)-1] == value {
			return true
		}
	}
	return false
}

func TestDiagnoseFromStdin(t *testing.T) {
	addr := startServer(t)
	seed, err := os.ReadFile("../../../shared/seed/000_2c08482fcf6dad1b.txt")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := ctl(t, string(seed), "diagnose", "--addr", addr)
	if code != 0 || !strings.Contains(out, "AUTH0032") || !strings.Contains(out, "api15preview.cert.sapsf.cn (SF mTLS host)") || !strings.Contains(out, "LOD-SF-PLT-IAS") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	// The three steps of the seed's resolution, in order.
	i1, i2, i3 := strings.Index(out, "1. "), strings.Index(out, "2. "), strings.Index(out, "3. ")
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("steps not numbered in order:\n%s", out)
	}
}

func TestNoAnswerExitsThree(t *testing.T) {
	path, _ := writeCert(t)
	for _, args := range [][]string{
		{"inspect", path, "--addr", testutil.FreeAddr(t), "--timeout", "2s"}, // nobody listens
		{"inspect"},                       // missing argument
		{"frobnicate"},                    // unknown command
		{"inspect", path, "--bogus-flag"}, // unknown flag
		{"inspect", path, "-o", "yaml"},   // unknown format
		{"inspect", "/nonexistent/file"},  // unreadable input
		{},                                // nothing at all
	} {
		_, errOut, code := ctl(t, "", args...)
		if code != 3 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 3 with a message", args, code, errOut)
		}
	}
}
