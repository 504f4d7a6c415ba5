package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/pki"
)

// TestMain checks, after every test, that no goroutine leaked and that
// nothing the package logged contains a raw token or key material.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	if code == 0 {
		if problems := secretsInLog(); len(problems) > 0 {
			fmt.Fprintln(os.Stderr, "secrets in the log:", strings.Join(problems, "; "))
			code = 1
		}
	}
	os.Exit(code)
}

// logBuf collects everything every Authorizer in these tests logs.
var logBuf syncBuffer

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var testLogger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))

// issuedTokens are every raw token the tests used; none may be logged.
var issuedTokens sync.Map

// newToken returns a fresh random token and remembers it for the log check.
func newToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tok := fmt.Sprintf("cst_%x", b)
	issuedTokens.Store(tok, true)
	return tok
}

func secretsInLog() []string {
	logged := logBuf.String()
	var problems []string
	issuedTokens.Range(func(k, _ any) bool {
		if strings.Contains(logged, k.(string)) {
			problems = append(problems, "a raw token")
		}
		return true
	})
	for _, marker := range []string{"PRIVATE KEY", "BEGIN CERTIFICATE"} {
		if strings.Contains(logged, marker) {
			problems = append(problems, marker)
		}
	}
	return problems
}

// tokenSpec is one entry of a tokens file written by a test.
type tokenSpec struct {
	name, role, hash string
	connections      []string
}

func tokensYAML(specs ...tokenSpec) string {
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, s := range specs {
		fmt.Fprintf(&b, "  - name: %s\n    role: %s\n    sha256: %q\n", s.name, s.role, s.hash)
		if len(s.connections) > 0 {
			fmt.Fprintf(&b, "    connections: [%s]\n", quoteAll(s.connections))
		}
	}
	return b.String()
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// writeAtomic replaces a file the way deployment tools do: write a sibling,
// then rename over.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is an injectable clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

// newFakeClock starts at the real time, since certificates issued by the
// tests are checked against it.
func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// issueClient signs a client certificate with an optional URI SAN;
// pki.LeafOptions has no URIs, so the template is built here.
func issueClient(t *testing.T, ca *pki.CA, cn string, uri string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// statusMapper stands in for the server's one status mapping: ErrorInfo
// and RetryInfo, as service/status.go does, so tests can check reasons.
func statusMapper(_ context.Context, err error) error {
	fe, ok := fault.As(err)
	if !ok {
		return status.Error(codes.Internal, "internal error")
	}
	code := map[fault.Kind]codes.Code{
		fault.Unauthenticated:   codes.Unauthenticated,
		fault.PermissionDenied:  codes.PermissionDenied,
		fault.ResourceExhausted: codes.ResourceExhausted,
	}[fe.Kind]
	st := status.New(code, fe.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: fe.Reason, Domain: "certsync", Metadata: fe.Metadata}}
	if fe.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(fe.RetryAfter)})
	}
	st, derr := st.WithDetails(details...)
	if derr != nil {
		panic(derr)
	}
	return st.Err()
}

// errInfo returns the status code and ErrorInfo of a call's error.
func errInfo(t *testing.T, err error) (codes.Code, *errdetails.ErrorInfo, time.Duration) {
	t.Helper()
	st, _ := status.FromError(err)
	var info *errdetails.ErrorInfo
	var retry time.Duration
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		}
	}
	return st.Code(), info, retry
}
