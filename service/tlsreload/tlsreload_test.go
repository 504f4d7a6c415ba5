package tlsreload

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/certsync/certsync/service/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

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

// fixture is a directory of TLS files and the CAs behind them.
type fixture struct {
	t                         *testing.T
	dir                       string
	certFile, keyFile, caFile string
	serverCA, clientCA, other *pki.CA
	roots                     *x509.CertPool
	clock                     *fakeClock
	log                       syncBuffer
	reloads                   chan error
	keyPEMs                   [][]byte // every key written, for the no-key-in-output checks
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), clock: newFakeClock(), reloads: make(chan error, 16)}
	f.certFile, f.keyFile, f.caFile = filepath.Join(f.dir, "tls.crt"), filepath.Join(f.dir, "tls.key"), filepath.Join(f.dir, "ca.crt")
	var err error
	for _, ca := range []**pki.CA{&f.serverCA, &f.clientCA, &f.other} {
		if *ca, err = pki.NewCA("test CA", time.Now(), 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.serverCA.Cert)
	f.write(f.caFile, pki.CertPEM(f.clientCA.Cert))
	return f
}

// issueServer signs a server certificate for localhost.
func (f *fixture) issueServer(notAfter time.Time) *pki.Leaf {
	f.t.Helper()
	leaf, err := f.serverCA.Issue(pki.LeafOptions{
		Subject:   pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		Usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return leaf
}

func (f *fixture) keyPEM(k crypto.Signer) []byte {
	f.t.Helper()
	b, err := pki.KeyPEM(k)
	if err != nil {
		f.t.Fatal(err)
	}
	f.keyPEMs = append(f.keyPEMs, b)
	return b
}

// write replaces a file atomically, as deployment tools do.
func (f *fixture) write(path string, data []byte) {
	f.t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) writePair(l *pki.Leaf) {
	f.t.Helper()
	f.write(f.keyFile, f.keyPEM(l.Key))
	f.write(f.certFile, pki.CertPEM(l.Cert))
}

func (f *fixture) options() Options {
	return Options{
		CertFile: f.certFile, KeyFile: f.keyFile,
		Now:      f.clock.Now,
		Logger:   slog.New(slog.NewTextHandler(&f.log, nil)),
		OnReload: func(err error) { f.reloads <- err },
	}
}

// noSecrets fails if s holds any key written by the fixture or PEM text.
func (f *fixture) noSecrets(what, s string) {
	f.t.Helper()
	if strings.Contains(s, "BEGIN") {
		f.t.Errorf("%s holds PEM text", what)
	}
	for _, k := range f.keyPEMs {
		for _, line := range strings.Split(string(k), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(s, line) {
				f.t.Errorf("%s holds key material", what)
			}
		}
	}
}

// serve runs a TLS listener that completes each handshake, writes "k" and
// closes.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err == nil {
					_, _ = c.Write([]byte("k"))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
	})
	return lis.Addr().String()
}

// handshake connects and returns the server certificate's serial, or the
// error from the handshake or from the server's verdict on our certificate
// (TLS 1.3 reports that after the client's side of the handshake).
func handshake(addr string, cfg *tls.Config) (*big.Int, string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, "", err
	}
	st := c.ConnectionState()
	return st.PeerCertificates[0].SerialNumber, st.NegotiatedProtocol, nil
}

func (f *fixture) clientConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: f.roots, ServerName: "localhost", NextProtos: []string{"h2"}}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

func (f *fixture) nextReload() error {
	f.t.Helper()
	select {
	case err := <-f.reloads:
		return err
	case <-time.After(5 * time.Second):
		f.t.Fatal("no reload reported")
		return nil
	}
}

func (f *fixture) serial(addr string) *big.Int {
	f.t.Helper()
	s, _, err := handshake(addr, f.clientConfig(nil))
	if err != nil {
		f.t.Fatalf("handshake: %v", err)
	}
	return s
}

func TestReloadServesNewCertificate(t *testing.T) {
	f := newFixture(t)
	a := f.issueServer(time.Now().Add(24 * time.Hour))
	f.writePair(a)
	r, err := New(f.options())
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.TLSConfig())
	if got := f.serial(addr); got.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatal("not serving the loaded certificate")
	}

	b := f.issueServer(time.Now().Add(48 * time.Hour))
	f.writePair(b)
	// Within CheckInterval (1s by default) files are not even looked at.
	if got := f.serial(addr); got.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatal("reloaded before the check interval passed")
	}
	f.clock.Advance(time.Second)
	if got := f.serial(addr); got.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatal("a new handshake does not see the new certificate")
	}
	if err := f.nextReload(); err != nil {
		t.Fatal(err)
	}
	if r.Leaf().SerialNumber.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatal("Leaf() is stale")
	}
	if !strings.Contains(f.log.String(), "TLS certificate reloaded") {
		t.Error("the reload was not logged")
	}

	// An in-place write (same inode) is noticed too.
	c := f.issueServer(time.Now().Add(72 * time.Hour))
	time.Sleep(20 * time.Millisecond) // step past coarse file-system timestamps
	if err := os.WriteFile(f.keyFile, f.keyPEM(c.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.certFile, pki.CertPEM(c.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if got := f.serial(addr); got.Cmp(c.Cert.SerialNumber) != 0 {
		t.Fatal("an in-place rewrite was not picked up")
	}
	f.noSecrets("the log", f.log.String())
}

func TestBrokenReloadKeepsLastGood(t *testing.T) {
	f := newFixture(t)
	a := f.issueServer(time.Now().Add(24 * time.Hour))
	f.writePair(a)
	r, err := New(f.options())
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.TLSConfig())
	b := f.issueServer(time.Now().Add(48 * time.Hour))

	steps := []struct {
		name  string
		apply func()
		want  []string
	}{
		{"garbage certificate", func() { f.write(f.certFile, []byte("not a certificate")) }, []string{f.certFile, "no PEM CERTIFICATE"}},
		{"key in the certificate file", func() { f.write(f.certFile, f.keyPEM(b.Key)) }, []string{f.certFile, `"PRIVATE KEY" block`}},
		{"certificate with the wrong key", func() { f.write(f.certFile, pki.CertPEM(b.Cert)) }, []string{f.certFile, f.keyFile, "does not match"}},
		{"missing key file", func() { os.Remove(f.keyFile) }, []string{f.keyFile}},
	}
	for _, s := range steps {
		s.apply()
		f.clock.Advance(time.Second)
		if got := f.serial(addr); got.Cmp(a.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: the last good certificate is no longer served", s.name)
		}
		err := f.nextReload()
		if err == nil {
			t.Fatalf("%s: reload succeeded", s.name)
		}
		for _, w := range s.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", s.name, err, w)
			}
		}
		f.noSecrets("the error", err.Error())
	}
	// An unchanged broken state is not retried on every handshake.
	f.clock.Advance(time.Second)
	f.serial(addr)
	select {
	case err := <-f.reloads:
		t.Fatalf("reloaded unchanged files: %v", err)
	default:
	}
	// Fixing it is picked up.
	f.write(f.keyFile, f.keyPEM(b.Key))
	f.clock.Advance(time.Second)
	if got := f.serial(addr); got.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatal("the fixed pair is not served")
	}
	if !strings.Contains(f.log.String(), "still serving the previous certificate") {
		t.Error("failed reloads were not logged")
	}
	f.noSecrets("the log", f.log.String())
	// Reload on demand reports the same way.
	f.write(f.certFile, []byte("junk"))
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if r.Leaf().SerialNumber.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatal("a failed Reload changed the served certificate")
	}
}

func TestClientCertificates(t *testing.T) {
	f := newFixture(t)
	f.writePair(f.issueServer(time.Now().Add(24 * time.Hour)))
	issueClient := func(ca *pki.CA) *tls.Certificate {
		l, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "client"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		c := l.TLSCertificate()
		return &c
	}
	mine, foreign := issueClient(f.clientCA), issueClient(f.other)

	t.Run("optional", func(t *testing.T) {
		o := f.options()
		o.ClientCAFile = f.caFile
		r, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		addr := serve(t, r.TLSConfig())
		if _, _, err := handshake(addr, f.clientConfig(nil)); err != nil {
			t.Fatalf("no certificate (a token caller): %v", err)
		}
		if _, _, err := handshake(addr, f.clientConfig(mine)); err != nil {
			t.Fatalf("trusted certificate: %v", err)
		}
		if _, _, err := handshake(addr, f.clientConfig(foreign)); err == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
		// Rotating the CA file swaps which certificates verify.
		f.write(f.caFile, pki.CertPEM(f.other.Cert))
		f.clock.Advance(time.Second)
		if _, _, err := handshake(addr, f.clientConfig(foreign)); err != nil {
			t.Fatalf("certificate from the new CA: %v", err)
		}
		if _, _, err := handshake(addr, f.clientConfig(mine)); err == nil {
			t.Fatal("a certificate from the rotated-out CA was accepted")
		}
		// A broken CA file keeps the last good pool.
		f.write(f.caFile, []byte("junk"))
		f.clock.Advance(time.Second)
		if _, _, err := handshake(addr, f.clientConfig(foreign)); err != nil {
			t.Fatalf("after a broken CA file: %v", err)
		}
		for range 2 {
			if err := <-f.reloads; err != nil && !strings.Contains(err.Error(), f.caFile) {
				t.Errorf("error does not name the CA file: %v", err)
			}
		}
		f.write(f.caFile, pki.CertPEM(f.clientCA.Cert))
	})
	t.Run("required", func(t *testing.T) {
		o := f.options()
		o.ClientCAFile = f.caFile
		o.RequireClientCert = true
		r, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		addr := serve(t, r.TLSConfig())
		if _, _, err := handshake(addr, f.clientConfig(nil)); err == nil {
			t.Fatal("no certificate was accepted though required")
		}
		if _, _, err := handshake(addr, f.clientConfig(mine)); err != nil {
			t.Fatalf("trusted certificate: %v", err)
		}
	})
}

func TestProtocolLimits(t *testing.T) {
	f := newFixture(t)
	f.writePair(f.issueServer(time.Now().Add(24 * time.Hour)))
	r, err := New(f.options())
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", cfg.MinVersion)
	}
	addr := serve(t, cfg)
	tests := []struct {
		name string
		mod  func(*tls.Config)
		ok   bool
	}{
		{"TLS 1.3", func(c *tls.Config) {}, true},
		{"TLS 1.2 with AES-GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, true},
		{"TLS 1.2 with ChaCha20", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
		}, true},
		{"TLS 1.2 with CBC", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, false},
		{"TLS 1.1", func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS10
			c.MaxVersion = tls.VersionTLS11
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.clientConfig(nil)
			tc.mod(c)
			_, proto, err := handshake(addr, c)
			if tc.ok && (err != nil || proto != "h2") {
				t.Fatalf("err %v, ALPN %q; want success with h2", err, proto)
			}
			if !tc.ok && err == nil {
				t.Fatal("handshake succeeded")
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	f := newFixture(t)
	good := f.issueServer(time.Now().Add(24 * time.Hour))
	other := f.issueServer(time.Now().Add(24 * time.Hour))
	expired := f.issueServer(time.Now().Add(-time.Hour))
	file := func(name string, data []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodCert, goodKey := file("good.crt", pki.CertPEM(good.Cert)), file("good.key", f.keyPEM(good.Key))
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"no files", Options{}, []string{"required"}},
		{"missing certificate", Options{CertFile: filepath.Join(f.dir, "nope.crt"), KeyFile: goodKey}, []string{"nope.crt", "no such file"}},
		{"missing key", Options{CertFile: goodCert, KeyFile: filepath.Join(f.dir, "nope.key")}, []string{"nope.key"}},
		{"certificate as key", Options{CertFile: goodCert, KeyFile: goodCert}, []string{"good.crt", "no PEM private key"}},
		{"mismatched pair", Options{CertFile: goodCert, KeyFile: file("other.key", f.keyPEM(other.Key))}, []string{"good.crt", "other.key", "does not match"}},
		{"expired", Options{CertFile: file("expired.crt", pki.CertPEM(expired.Cert)), KeyFile: file("expired.key", f.keyPEM(expired.Key))}, []string{"expired.crt", "expired at"}},
		{"bad client CA", Options{CertFile: goodCert, KeyFile: goodKey, ClientCAFile: file("ca.crt", []byte("junk"))}, []string{"client CA file", "ca.crt"}},
		{"client CA holding a key", Options{CertFile: goodCert, KeyFile: goodKey, ClientCAFile: goodKey}, []string{"client CA file", "PRIVATE KEY"}},
		{"required without CA", Options{CertFile: goodCert, KeyFile: goodKey, RequireClientCert: true}, []string{"client CA"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			f.noSecrets("the error", err.Error())
		})
	}
	if _, err := New(Options{CertFile: goodCert, KeyFile: goodKey}); err != nil {
		t.Fatalf("good files: %v", err)
	}
}

func TestConcurrentHandshakesDuringReload(t *testing.T) {
	f := newFixture(t)
	f.writePair(f.issueServer(time.Now().Add(24 * time.Hour)))
	o := f.options()
	o.OnReload = nil
	o.Now = nil
	o.CheckInterval = time.Millisecond
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.TLSConfig())
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, _, err := handshake(addr, f.clientConfig(nil)); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
		}()
	}
	for range 5 {
		f.writePair(f.issueServer(time.Now().Add(24 * time.Hour)))
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
