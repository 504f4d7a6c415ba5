package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/pki"
)

const (
	// maxBodyBytes bounds every request body; the largest legitimate one is
	// a certificate upload of a few kilobytes.
	maxBodyBytes = 1 << 20
	// shutdownGrace bounds Close: in-flight handlers are short (delay faults
	// end at once on Close), so anything slower is forcibly closed.
	shutdownGrace = 5 * time.Second
)

// Options configure a Sandbox.
type Options struct {
	// Addr is the main listener's address; default config.DefaultSandboxAddr.
	// "127.0.0.1:0" picks a free port.
	Addr string
	// Now is the clock for certificate validity, both when the seed
	// certificates are issued and when client certificates are checked;
	// default time.Now.
	Now func() time.Time
	// Logger receives request and state-change logs; default discards.
	Logger *slog.Logger
}

// Sandbox is the simulated IPS and SF.
type Sandbox struct {
	now   func() time.Time
	log   *slog.Logger
	addr  string
	ca    *pki.CA
	caPEM []byte
	roots *x509.CertPool
	// server is the certificate both listeners present.
	server tls.Certificate

	mu        sync.Mutex
	companies map[string]*company    // by SF company id
	systems   map[string]*ipsSystem  // by IPS system id
	conns     map[string]*connection // by connection id
	order     []string               // connection ids in seed order
	faults    []*pendingFault

	lifeMu   sync.Mutex
	started  bool
	closed   bool
	mainSrv  *http.Server
	plainSrv *http.Server
	mainLn   net.Listener
	plainLn  net.Listener
	wg       sync.WaitGroup
	// quit ends delay faults when the sandbox closes, so Close never waits
	// for a long injected delay.
	quit chan struct{}
}

// New builds the CA, the certificates and the seed state. It does not listen.
func New(o Options) (*Sandbox, error) {
	s := &Sandbox{
		now:       o.Now,
		log:       o.Logger,
		addr:      o.Addr,
		companies: map[string]*company{},
		systems:   map[string]*ipsSystem{},
		conns:     map[string]*connection{},
		quit:      make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.addr == "" {
		s.addr = config.DefaultSandboxAddr
	}
	now := s.now()
	// The CA predates every certificate it signs (the oldest seed slot was
	// issued 300 days ago), as a real issuing CA would.
	ca, err := pki.NewCA("certsync sandbox CA", now.Add(-400*day), 400*day+3*year)
	if err != nil {
		return nil, fmt.Errorf("sandbox CA: %w", err)
	}
	s.ca = ca
	s.caPEM = pki.CertPEM(ca.Cert)
	s.roots = x509.NewCertPool()
	s.roots.AddCert(ca.Cert)
	srv, err := ca.Issue(pki.LeafOptions{
		Subject:   pkix.Name{CommonName: "localhost", Organization: []string{"certsync sandbox"}},
		NotBefore: now.Add(-day),
		NotAfter:  now.Add(year),
		Usages:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:  []string{"localhost"},
		IPs:       []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox server certificate: %w", err)
	}
	s.server = srv.TLSCertificate()
	if err := s.buildSeed(now); err != nil {
		return nil, err
	}
	return s, nil
}

// CAPEM returns the sandbox CA certificate in PEM: the only trust anchor
// needed to reach either listener.
func (s *Sandbox) CAPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Start listens on both listeners and serves them in goroutines.
func (s *Sandbox) Start() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.started || s.closed {
		return errors.New("sandbox: already started or closed")
	}
	mainLn, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("sandbox: listen %s: %w", s.addr, err)
	}
	// The plain host only needs to be a different origin than the cert host;
	// a free loopback port is enough.
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		mainLn.Close()
		return fmt.Errorf("sandbox: listen plain host: %w", err)
	}
	s.mainLn, s.plainLn = mainLn, plainLn
	s.mainSrv = s.newServer(s.mainHandler())
	s.plainSrv = s.newServer(s.plainHandler())
	s.started = true
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.mainSrv, mainLn}, {s.plainSrv, plainLn}} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.srv.ServeTLS(p.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("sandbox listener stopped", "addr", p.ln.Addr().String(), "err", err)
			}
		}()
	}
	s.log.Info("sandbox listening", "addr", s.Addr(), "plain_addr", s.PlainAddr())
	return nil
}

func (s *Sandbox) newServer(h http.Handler) *http.Server {
	// HTTP/1.1 only: a reset fault must reset the TCP connection the client
	// uses, which needs http.Hijacker; HTTP/2 could only reset a stream.
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	return &http.Server{
		Handler:           h,
		Protocols:         protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{s.server},
			// Ask for a client certificate but never refuse one in the
			// handshake: SF answers unknown certificates at HTTP level (400
			// "The SSL certificate error"), and the handler does the same.
			ClientAuth: tls.RequestClientCert,
		},
	}
}

// Close stops both servers and waits for their goroutines.
func (s *Sandbox) Close() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.quit)
	if !s.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, srv := range []*http.Server{s.mainSrv, s.plainSrv} {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, srv.Close())
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Addr is the main listener's address after Start ("127.0.0.1:port"); an
// unspecified listen address is reported as 127.0.0.1, which the server
// certificate covers.
func (s *Sandbox) Addr() string { return reachable(s.mainLn) }

// PlainAddr is the plain API host's address after Start.
func (s *Sandbox) PlainAddr() string { return reachable(s.plainLn) }

func reachable(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return ln.Addr().String()
	}
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

func (s *Sandbox) mainHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rest/iam/scim/v2/Users", s.handleSCIM(false))
	mux.HandleFunc("GET /registry/{conn}/v1/mappings", s.handleListMappings)
	mux.HandleFunc("POST /registry/{conn}/v1/mappings", s.handleUploadMapping)
	mux.HandleFunc("DELETE /registry/{conn}/v1/mappings/{id}", s.handleDeleteMapping)
	mux.HandleFunc("GET /ips/v1/systems/{sys}/certificates", s.handleIPSCertificates)
	mux.HandleFunc("GET /ips/v1/systems/{sys}/certificates/active", s.handleIPSActive)
	s.registerIPSJobs(mux)
	mux.HandleFunc("GET /_sandbox/v1/state", s.handleState)
	mux.HandleFunc("GET /_sandbox/v1/faults", s.handleListFaults)
	mux.HandleFunc("POST /_sandbox/v1/faults", s.handleInjectFault)
	mux.HandleFunc("DELETE /_sandbox/v1/faults", s.handleClearFaults)
	return limitBody(mux)
}

func (s *Sandbox) plainHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rest/iam/scim/v2/Users", s.handleSCIM(true))
	return limitBody(mux)
}

func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h.ServeHTTP(w, r)
	})
}

// apiError is the JSON error shape of the registry, IPS and control APIs.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, field, message string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: message, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the sandbox's own types are marshalled; this cannot happen.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, "application/json; charset=utf-8", append(b, '\n'))
}

func writeRaw(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// decodeJSON reads a strict JSON body: unknown fields are refused so that a
// client's misspelt field fails loudly instead of being ignored.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", "", fmt.Sprintf("request body larger than %d bytes", maxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "", "request body is not valid JSON: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "", "request body holds more than one JSON value")
		return false
	}
	return true
}
