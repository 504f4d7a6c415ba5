// Package ips is a client for the Tenant Admin API of SAP Cloud Identity
// Services – Identity Provisioning (IPS), served on the Identity
// Authentication (IAS) tenant host (https://TENANT.accounts.ondemand.com; in
// the sandbox https://ADDR/ias/{connectionID}). certsync uses it for its
// second source of truth: start an IPS read job and read the job's log, whose
// "Caused by:" chain service/diagnose understands.
//
// # What IPS documents, and what this package assumes
//
// Documented (DOMAIN.md):
//
//	POST {base}/ips/service/publicapi/v1/startJob/{sourceSystemId}/jobs/{READ|RESYNC}
//	GET  {base}/ips/service/publicapi/v1/jobLogs/{jobId}?action=export&logType=ERROR   (a zip)
//
// The caller is a technical "System" administrator of the tenant, with one of
// three credentials: OAuth2 client credentials (a token from
// {base}/oauth2/token, the client id and secret sent with HTTP basic), a
// PKCS#12 client certificate (mutual TLS), or HTTP basic with the client id as
// user and the secret as password.
//
// Not documented, so parsed defensively: the answer to startJob. The job id is
// looked for under "jobId", "job_id", "jobID", "id" (case-insensitive, at the
// top level or one level down under "job", "data", "result", "response" or
// "value"), then in a Location header's last path segment, then as a bare
// JSON string, number or single word of text. A status, when present, is read
// from "status", "jobStatus" or "state".
//
// An assumption of certsync's own: GET {base}/ips/service/publicapi/v1/jobs/{jobId}
// answers the job's status as JSON ({"jobId":"...","status":"..."}). IPS does
// not document it; the sandbox serves it. Against an IPS that answers 405 or
// 501 there, JobStatus fails with an error that matches ErrStatusUnsupported
// (errors.Is); a 404 matches ErrJobNotFound and says that the endpoint may be
// missing too. Read the status in the IPS admin console then, or export the
// job log.
//
// Job statuses are IPS's words: Success, Finished with Error, Running, Running
// with Error, Manually Terminated, Pending Restart. Other spellings of the same
// words (SUCCESS, FINISHED_WITH_ERROR, ...) are normalized to those; unknown
// ones are passed on as IPS wrote them.
//
// # Retries
//
// Each attempt is bounded by Config.Timeout. Failures that are transient
// (transport errors, 408, 429, 5xx) are retried up to Config.Attempts times
// with exponential backoff and jitter, or after the wait the server asks for
// (a Retry-After header in seconds or as an HTTP date, or a body that says
// "Retry after N seconds"), unless that wait exceeds Config.MaxRetryWait: the
// error then carries RetryAfter for the caller to schedule. GETs and the
// token request have no side effects and are retried on every transient
// failure. startJob is retried only when IPS certainly did not start a job: a
// 429, a 503 that carries Retry-After, or a connection that could not be
// opened. Any other failure of startJob (another 5xx, a timeout, a reset) may
// have started a job; it is not retried, and the error has MayHaveStarted set.
// 401 and 403 are never retried (except that an OAuth2 token IPS refuses is
// dropped and fetched once more); their message names the auth method to
// check, never a secret.
//
// # Secrets
//
// The client secret and the PKCS#12 password are read from files when New
// runs (a trailing newline is ignored) and are held in memory only; they never
// appear in errors or logs. Rotating them means building a new Client.
package ips

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// AuthMethod is how the client authenticates to the tenant.
type AuthMethod int

const (
	// OAuth2ClientCredentials fetches a bearer token from {BaseURL}/oauth2/token
	// with grant_type=client_credentials, the client id and secret sent with
	// HTTP basic, and caches it until shortly before it expires.
	OAuth2ClientCredentials AuthMethod = iota + 1
	// ClientCertificate presents the PKCS#12 file's certificate in the TLS
	// handshake.
	ClientCertificate
	// Basic sends the client id and secret with HTTP basic on every call.
	Basic
)

// String returns the name ParseAuthMethod accepts.
func (m AuthMethod) String() string {
	switch m {
	case OAuth2ClientCredentials:
		return "oauth2"
	case ClientCertificate:
		return "certificate"
	case Basic:
		return "basic"
	}
	return fmt.Sprintf("AuthMethod(%d)", int(m))
}

// describe names the method and what to check for people.
func (m AuthMethod) describe() string {
	switch m {
	case OAuth2ClientCredentials:
		return "oauth2 (OAuth2 client credentials): check the client id and the client secret file"
	case ClientCertificate:
		return "certificate (PKCS#12 client certificate): check that the PKCS#12 file's certificate is the one registered for the tenant's system administrator, and that it has not expired"
	case Basic:
		return "basic (HTTP basic authentication): check the client id (user) and the client secret file (password)"
	}
	return m.String()
}

// ParseAuthMethod reads an auth method as configurations write it:
// "oauth2" (also "oauth2_client_credentials", "client_credentials"),
// "certificate" (also "client_certificate", "pkcs12"), "basic".
func ParseAuthMethod(s string) (AuthMethod, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "oauth2", "oauth2_client_credentials", "client_credentials", "oauth":
		return OAuth2ClientCredentials, nil
	case "certificate", "client_certificate", "pkcs12", "mtls":
		return ClientCertificate, nil
	case "basic":
		return Basic, nil
	}
	return 0, fmt.Errorf("ips: auth method %q is not one of oauth2, certificate, basic", s)
}

// Config configures a Client.
type Config struct {
	// BaseURL is the IAS tenant: https://tenant.accounts.ondemand.com (the
	// sandbox: https://ADDR/ias/{connectionID}). It must be https.
	BaseURL string
	Method  AuthMethod
	// ClientID is the OAuth2 client id, or the user for Basic.
	ClientID string
	// ClientSecretFile holds the OAuth2 client secret, or the password for
	// Basic.
	ClientSecretFile string
	// PKCS12File holds the client certificate, its key and optionally its
	// chain (ClientCertificate); PKCS12PasswordFile its password (empty: no
	// password).
	PKCS12File         string
	PKCS12PasswordFile string
	// RootCAs verifies the tenant; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds each attempt, reading the answer included; default 30s.
	Timeout time.Duration
	// Proxy picks the proxy; nil means HTTPS_PROXY and friends.
	Proxy func(*http.Request) (*url.URL, error)
	// Attempts bounds tries of a call that may be retried; default 3.
	Attempts int
	// Backoff is the first retry's delay, doubled each time, with jitter;
	// default 500ms.
	Backoff time.Duration
	// MaxRetryWait is the longest server-requested wait (Retry-After) the
	// client sits out before retrying; longer ones end the call with an
	// error carrying RetryAfter. Default 30s.
	MaxRetryWait time.Duration
	// Logger receives debug logs of retries; default discards. Secrets are
	// never logged.
	Logger *slog.Logger
}

// secret keeps a credential out of fmt and slog output.
type secret string

func (secret) String() string                 { return "[redacted]" }
func (secret) GoString() string               { return "[redacted]" }
func (secret) LogValue() slog.Value           { return slog.StringValue("[redacted]") }
func (s secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Client calls one tenant's Tenant Admin API. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   string // BaseURL without a trailing slash
	http   *http.Client
	secret secret
	log    *slog.Logger
	now    func() time.Time
	// sleep waits between attempts; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error

	// tokenSem serializes token fetches (a channel, so that waiting for it
	// honours the caller's context).
	tokenSem chan struct{}
	tokenMu  sync.Mutex
	token    secret
	// tokenUntil is when the cached token is refreshed: shortly before it
	// expires.
	tokenUntil time.Time
}

const (
	defaultTimeout      = 30 * time.Second
	defaultAttempts     = 3
	defaultBackoff      = 500 * time.Millisecond
	defaultMaxRetryWait = 30 * time.Second
	// maxSecretBytes bounds the secret and password files: real ones are
	// short, and a wrong path (a log, a disk image) must not be read whole.
	maxSecretBytes = 64 << 10
	// maxPKCS12Bytes bounds the PKCS#12 file.
	maxPKCS12Bytes = 1 << 20
)

// New checks cfg, reads the secrets and, for ClientCertificate, the PKCS#12
// file. It makes no call.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("ips: base URL %q is not an https URL without query or credentials", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = defaultAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = defaultBackoff
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = defaultMaxRetryWait
	}
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	c := &Client{
		cfg:      cfg,
		base:     strings.TrimSuffix(cfg.BaseURL, "/"),
		log:      cfg.Logger,
		now:      time.Now,
		sleep:    sleepCtx,
		tokenSem: make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	switch cfg.Method {
	case OAuth2ClientCredentials, Basic:
		if cfg.ClientID == "" {
			return nil, fmt.Errorf("ips: auth method %s needs a client id", cfg.Method)
		}
		if cfg.ClientSecretFile == "" {
			return nil, fmt.Errorf("ips: auth method %s needs a client secret file", cfg.Method)
		}
		b, err := readSecretFile(cfg.ClientSecretFile, maxSecretBytes)
		if err != nil {
			return nil, fmt.Errorf("ips: client secret: %w", err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("ips: client secret file %s is empty", cfg.ClientSecretFile)
		}
		c.secret = secret(b)
	case ClientCertificate:
		cert, err := loadPKCS12(cfg.PKCS12File, cfg.PKCS12PasswordFile)
		if err != nil {
			return nil, err
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	default:
		return nil, fmt.Errorf("ips: auth method not set (one of oauth2, certificate, basic)")
	}
	c.http = &http.Client{
		Transport: &http.Transport{
			Proxy:                 cfg.Proxy,
			TLSClientConfig:       tlsCfg,
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		// A redirect is never part of the API: IAS redirects unauthenticated
		// browsers to its login page. It is reported, not followed, so that
		// no credential travels anywhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// String names the tenant and the auth method, and nothing secret: the
// Client's fields are not for printing.
func (c *Client) String() string {
	return fmt.Sprintf("ips.Client(%s, %s)", c.base, c.cfg.Method)
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Method is the configured auth method.
func (c *Client) Method() AuthMethod { return c.cfg.Method }

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// readSecretFile reads a short file; one trailing newline (LF or CRLF) is
// not part of the secret.
func readSecretFile(path string, limit int64) ([]byte, error) {
	b, err := readLimited(path, limit)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return b, nil
}

// loadPKCS12 decodes the client certificate. Modern files (PBES2 with
// AES-256 and PBKDF2-HMAC-SHA-256, as OpenSSL 3 and Java write them) and the
// legacy 3DES/RC2 ones both decode.
func loadPKCS12(path, passwordFile string) (tls.Certificate, error) {
	if path == "" {
		return tls.Certificate{}, errors.New("ips: auth method certificate needs a PKCS#12 file")
	}
	data, err := readLimited(path, maxPKCS12Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ips: PKCS#12 file: %w", err)
	}
	var password []byte
	if passwordFile != "" {
		password, err = readSecretFile(passwordFile, maxSecretBytes)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("ips: PKCS#12 password: %w", err)
		}
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, string(password))
	if err != nil {
		// go-pkcs12's messages name algorithms and structure, never the
		// password.
		return tls.Certificate{}, fmt.Errorf("ips: PKCS#12 file %s: %w (wrong password, or not a PKCS#12 file with one key and its certificate)", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return tls.Certificate{}, fmt.Errorf("ips: PKCS#12 file %s: the key (%T) cannot sign", path, key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("ips: PKCS#12 file %s: the key does not belong to the certificate %q", path, leaf.Subject.String())
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: signer, Leaf: leaf}
	for _, ca := range chain {
		cert.Certificate = append(cert.Certificate, ca.Raw)
	}
	return cert, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
