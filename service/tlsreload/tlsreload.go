// Package tlsreload serves TLS for certsync's gRPC port from certificate,
// key and client-CA files that are re-read when they change, so that a
// renewed server certificate (cert-manager, a Kubernetes secret update, a
// cron job) or a rotated client CA takes effect without a restart and
// without dropping established connections.
//
// There is no background goroutine: a handshake checks the files' stat at
// most once per CheckInterval and reloads if they changed. A reload that
// fails (a half-written pair, a key that does not match) keeps serving the
// last good state and reports the error; the next change is tried again.
package tlsreload

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxFileBytes bounds what is read from each file, so that a wrong path
// cannot exhaust memory.
const maxFileBytes = 1 << 20

// Options name the files and shape the TLS configuration.
type Options struct {
	// CertFile holds the server certificate chain (PEM, leaf first) and
	// KeyFile its private key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CAs (PEM) whose client certificates
	// are verified. Clients without a certificate may still connect (they
	// authenticate with a token) unless RequireClientCert.
	ClientCAFile      string
	RequireClientCert bool
	// CheckInterval is how often, at most, a handshake stats the files;
	// 0 means one second.
	CheckInterval time.Duration
	// NextProtos are the ALPN protocols offered; nil means {"h2"}, which
	// gRPC needs. The handshake's configuration comes from
	// GetConfigForClient and so does not inherit what grpc's credentials
	// add to the outer configuration.
	NextProtos []string
	// Logger receives reloads and their failures (file names and
	// certificate metadata, never key or certificate bytes); nil discards.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt caused by a
	// change, with its error (nil on success), e.g. for a metric.
	OnReload func(error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Reloader holds the current TLS state and swaps it when the files change.
type Reloader struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	state atomic.Pointer[state]

	mu        sync.Mutex // one check or reload at a time
	lastCheck time.Time
	stamps    [3]os.FileInfo // cert, key, client CA, as last read
}

// state is one consistent set of files, served as a whole.
type state struct {
	config *tls.Config
	leaf   *x509.Certificate
}

// New loads the files at once; an error names the file and the problem
// (never its contents), so that start-up fails clearly.
func New(o Options) (*Reloader, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("tls: both a certificate file and a key file are required")
	}
	if o.RequireClientCert && o.ClientCAFile == "" {
		return nil, errors.New("tls: requiring client certificates needs a client CA file to verify them")
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
	if o.NextProtos == nil {
		o.NextProtos = []string{"h2"}
	}
	r := &Reloader{o: o, log: o.Logger, now: o.Now}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(); err != nil {
		return nil, err
	}
	r.lastCheck = r.now()
	return r, nil
}

// cipherSuites limits TLS 1.2 to forward-secret AEAD suites. TLS 1.3
// suites are not configurable in Go and are all acceptable.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig returns the server configuration. Every handshake gets the
// latest good state through GetConfigForClient (certificate, client CAs and
// client-auth mode together, so a half-applied reload cannot be seen).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		NextProtos:   r.o.NextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current().config, nil
		},
		// Used only if a caller drops GetConfigForClient; still the latest.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &r.current().config.Certificates[0], nil
		},
	}
}

// Leaf returns the server certificate being served, e.g. for an expiry
// metric or the start-up log.
func (r *Reloader) Leaf() *x509.Certificate { return r.state.Load().leaf }

// Reload re-reads the files now, whether or not they changed. On error the
// last good state stays in force.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCheck = r.now()
	return r.loadLocked()
}

// current returns the state to serve, reloading first when the interval
// has passed and a file changed. A handshake that finds another one
// checking does not wait for it.
func (r *Reloader) current() *state {
	if r.mu.TryLock() {
		now := r.now()
		if now.Sub(r.lastCheck) >= r.o.CheckInterval || now.Before(r.lastCheck) {
			r.lastCheck = now
			if r.changedLocked() {
				err := r.loadLocked()
				if r.o.OnReload != nil {
					r.o.OnReload(err)
				}
			}
		}
		r.mu.Unlock()
	}
	return r.state.Load()
}

func (r *Reloader) files() [3]string {
	return [3]string{r.o.CertFile, r.o.KeyFile, r.o.ClientCAFile}
}

// changedLocked compares each file's stat with the version last read: size
// and modification time catch in-place writes, os.SameFile (device and
// inode) catches an atomic rename or a Kubernetes secret's symlink swap.
func (r *Reloader) changedLocked() bool {
	for i, name := range r.files() {
		if name == "" {
			continue
		}
		info, err := os.Stat(name)
		old := r.stamps[i]
		switch {
		case err != nil:
			// Missing for now (mid-rotation): report once, then wait for it
			// to come back.
			if old == nil {
				continue
			}
			r.stamps[i] = nil
			return true
		case old == nil || !os.SameFile(old, info) || old.Size() != info.Size() || !old.ModTime().Equal(info.ModTime()):
			return true
		}
	}
	return false
}

// loadLocked reads all files and swaps the state if they are good.
func (r *Reloader) loadLocked() error {
	var contents [3][]byte
	for i, name := range r.files() {
		if name == "" {
			continue
		}
		data, info, err := readFile(name)
		// Remember what was read even when it is bad, so that a bad file is
		// reported once and retried on its next change.
		r.stamps[i] = info
		if err != nil {
			return r.failed(err)
		}
		contents[i] = data
	}
	st, err := r.build(contents[0], contents[1], contents[2])
	if err != nil {
		return r.failed(err)
	}
	old := r.state.Swap(st)
	attrs := []any{
		slog.String("cert_file", r.o.CertFile),
		slog.String("subject", st.leaf.Subject.String()),
		slog.String("serial", st.leaf.SerialNumber.Text(16)),
		slog.Time("not_after", st.leaf.NotAfter),
	}
	if r.o.ClientCAFile != "" {
		attrs = append(attrs, slog.String("client_ca_file", r.o.ClientCAFile))
	}
	if old == nil {
		r.log.Info("TLS certificate loaded", attrs...)
	} else {
		r.log.Info("TLS certificate reloaded", attrs...)
	}
	return nil
}

func (r *Reloader) failed(err error) error {
	if r.state.Load() != nil {
		r.log.Warn("TLS reload failed; still serving the previous certificate", slog.String("error", err.Error()))
	}
	return err
}

func readFile(name string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, info, fmt.Errorf("tls: read %s: %w", name, err)
	}
	if len(data) > maxFileBytes {
		return nil, info, fmt.Errorf("tls: %s is larger than %d bytes", name, maxFileBytes)
	}
	return data, info, nil
}

// build checks one set of files and makes the configuration served for it.
// Each check names the file at fault; none echoes its contents.
func (r *Reloader) build(certPEM, keyPEM, caPEM []byte) (*state, error) {
	if _, err := parseCertificates(certPEM); err != nil {
		return nil, fmt.Errorf("tls: certificate file %s: %w", r.o.CertFile, err)
	}
	if !hasPrivateKey(keyPEM) {
		return nil, fmt.Errorf("tls: key file %s: no PEM private key block found", r.o.KeyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls's messages here describe the mismatch or parse
		// failure without key material.
		return nil, fmt.Errorf("tls: certificate file %s with key file %s: %w", r.o.CertFile, r.o.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: certificate file %s: %w", r.o.CertFile, err)
		}
	}
	if now := r.now(); now.After(leaf.NotAfter) {
		// Serving an expired certificate fails every client; keeping the
		// previous one (or refusing to start) says so more clearly.
		return nil, fmt.Errorf("tls: certificate file %s: the certificate expired at %s", r.o.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		NextProtos:   r.o.NextProtos,
		Certificates: []tls.Certificate{pair},
	}
	if r.o.ClientCAFile != "" {
		cas, err := parseCertificates(caPEM)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA file %s: %w", r.o.ClientCAFile, err)
		}
		pool := x509.NewCertPool()
		for _, c := range cas {
			pool.AddCert(c)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if r.o.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	// Session tickets are keyed per state: a session resumed from a ticket
	// skips client-certificate verification, so after a client CA is
	// rotated out, tickets issued under it must stop working.
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("tls: session ticket key: %w", err)
	}
	cfg.SetSessionTicketKeys([][32]byte{key})
	return &state{config: cfg, leaf: leaf}, nil
}

// parseCertificates reads every CERTIFICATE block; other blocks are an
// error, since a key in a certificate file is a deployment mistake worth
// stopping for.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for n := 1; len(rest) > 0; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(out) == 0 {
				return nil, errors.New("no PEM CERTIFICATE block found")
			}
			return nil, fmt.Errorf("block %d is not valid PEM", n)
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("block %d is a %s block, not a CERTIFICATE", n, pemTypeForMessage(block.Type))
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		out = append(out, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// pemTypeForMessage avoids echoing a long or odd PEM type line.
func pemTypeForMessage(t string) string {
	if len(t) > 40 {
		return "PEM"
	}
	return fmt.Sprintf("%q", t)
}

func hasPrivateKey(data []byte) bool {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if block.Type == "PRIVATE KEY" || block.Type == "EC PRIVATE KEY" || block.Type == "RSA PRIVATE KEY" {
			return true
		}
	}
}
