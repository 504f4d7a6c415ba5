// Package scim is the SCIM authentication probe: one real mTLS request,
// shaped like the read IPS makes, to SF's SCIM Users endpoint, and the
// classification of whatever SF answers into one ProbeOutcome.
package scim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/x509cert"
)

// Path is SF's SCIM Users endpoint, the one IPS reads users from.
const Path = "/rest/iam/scim/v2/Users"

// probeFilter matches no user: authentication happens before filtering, so
// every failure looks as it would for IPS, and success returns no employee
// data.
const probeFilter = `userName eq "certsync.probe.none"`

// maxBody bounds what is read of an answer; error bodies are small.
const maxBody = 64 << 10

// maxErrorBody bounds the error body kept for transcripts.
const maxErrorBody = 2 << 10

// Outcome classifies SF's answer.
type Outcome int

// Outcomes, one per row of DOMAIN.md's failure table.
const (
	OutcomeUnspecified Outcome = iota
	Authenticated
	InvalidClientCertificate
	TLSRejected
	CredentialsRequired
	PermissionDenied
	Unreachable
	UnexpectedResponse
)

var outcomeNames = [...]string{"UNSPECIFIED", "AUTHENTICATED", "INVALID_CLIENT_CERTIFICATE", "TLS_REJECTED", "CREDENTIALS_REQUIRED", "PERMISSION_DENIED", "UNREACHABLE", "UNEXPECTED_RESPONSE"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what one probe found. It never holds a successful answer's body.
type Result struct {
	Outcome      Outcome
	Cause        diagnose.Cause
	HTTPStatus   int
	ErrorCode    string
	ErrorMessage string
	// ErrorBody is SF's answer for failures only, truncated; never set for
	// a success (that body is employee data).
	ErrorBody  string
	RequestURL string
	Latency    time.Duration
	// ClientCertSHA256 is the fingerprint of the certificate presented.
	ClientCertSHA256 string
	CheckedAt        time.Time
	TotalResults     int
	// RetryAfter is SF's hint on 429, when it gives one.
	RetryAfter time.Duration
}

// Config describes one connection's probe.
type Config struct {
	// BaseURL is SF's URL as IPS has it: https://host[:port].
	BaseURL   string
	CompanyID string
	// Certificate is the client certificate and key presented.
	Certificate tls.Certificate
	// RootCAs verifies SF's server certificate; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds the whole probe (dial, handshake, answer).
	Timeout time.Duration
	// Proxy picks the proxy; nil means HTTPS_PROXY and friends.
	Proxy func(*http.Request) (*url.URL, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// UserAgent identifies certsync in SF's logs.
	UserAgent string
	// Observe, when set, sees every result (metrics); it must not block.
	Observe func(Result)
}

// Prober probes one connection. It keeps its connections to SF open between
// probes, so that a probe costs one TLS handshake per connection, not per
// probe. Safe for concurrent use.
type Prober struct {
	cfg        Config
	client     *http.Client
	transport  *http.Transport
	requestURL string
	certSHA256 string
}

// New builds a Prober.
func New(cfg Config) (*Prober, error) {
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("scim: no client certificate")
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("scim: base URL %q is not https://host[:port]", cfg.BaseURL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "certsync-probe"
	}
	// IPS's own parameter order: startId, count, filter.
	reqURL := *base
	reqURL.Path = strings.TrimSuffix(base.Path, "/") + Path
	reqURL.RawQuery = "startId=initial&count=1&filter=" + strings.ReplaceAll(url.QueryEscape(probeFilter), "+", "%20")
	t := &http.Transport{
		Proxy: cfg.Proxy,
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      cfg.RootCAs,
			Certificates: []tls.Certificate{cfg.Certificate},
		},
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Prober{
		cfg:        cfg,
		client:     &http.Client{Transport: t, Timeout: cfg.Timeout, CheckRedirect: noRedirects},
		transport:  t,
		requestURL: reqURL.String(),
		certSHA256: x509cert.SHA256Fingerprint(cfg.Certificate.Certificate[0]),
	}, nil
}

// SF answers the SCIM call itself; a redirect means we are not talking to
// the mTLS host, and following it would send the certificate elsewhere.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Close drops idle connections.
func (p *Prober) Close() { p.transport.CloseIdleConnections() }

// RequestURL is the URL every probe requests.
func (p *Prober) RequestURL() string { return p.requestURL }

// ClientCertSHA256 is the fingerprint of the certificate the probe presents.
func (p *Prober) ClientCertSHA256() string { return p.certSHA256 }

// Probe makes one request and classifies the answer. It never fails: every
// failure is an outcome.
func (p *Prober) Probe(ctx context.Context) (res Result) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	res = Result{RequestURL: p.requestURL, ClientCertSHA256: p.certSHA256, CheckedAt: p.cfg.Now()}
	start := time.Now()
	defer func() {
		res.Latency = time.Since(start)
		if p.cfg.Observe != nil {
			p.cfg.Observe(res)
		}
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.requestURL, nil)
	if err != nil {
		res.Outcome, res.Cause, res.ErrorMessage = UnexpectedResponse, diagnose.CauseUnspecified, "cannot build the request: "+err.Error()
		return res
	}
	req.Header.Set("successfactors-companyid", p.cfg.CompanyID)
	req.Header.Set("Accept", "application/scim+json, application/json")
	req.Header.Set("User-Agent", p.cfg.UserAgent)

	resp, err := p.client.Do(req)
	if err != nil {
		res.Outcome, res.Cause, res.ErrorMessage = classifyTransport(ctx, err, p.cfg.Timeout)
		return res
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	res.HTTPStatus = resp.StatusCode
	if err != nil {
		res.Outcome, res.Cause, res.ErrorMessage = classifyTransport(ctx, err, p.cfg.Timeout)
		res.ErrorMessage = fmt.Sprintf("HTTP %d, then the answer broke off: %s", resp.StatusCode, res.ErrorMessage)
		return res
	}
	if resp.StatusCode == http.StatusOK {
		res.Outcome = Authenticated
		// Only the count is kept; the body is employee data.
		var lr struct {
			TotalResults int `json:"totalResults"`
		}
		if json.Unmarshal(body, &lr) == nil {
			res.TotalResults = lr.TotalResults
		}
		return res
	}
	c := diagnose.Classify(diagnose.Response{Status: resp.StatusCode, Body: string(body)})
	res.Cause, res.ErrorCode, res.ErrorMessage, res.RetryAfter = c.Cause, c.ErrorCode, c.ErrorMessage, c.RetryAfter
	if ra := resp.Header.Get("Retry-After"); ra != "" && res.RetryAfter == 0 {
		if secs, err := time.ParseDuration(strings.TrimSpace(ra) + "s"); err == nil {
			res.RetryAfter = secs
		}
	}
	// SF's bytes end up in protobuf strings, which must be valid UTF-8.
	res.ErrorCode = strings.ToValidUTF8(res.ErrorCode, "\uFFFD")
	res.ErrorMessage = strings.ToValidUTF8(res.ErrorMessage, "\uFFFD")
	res.ErrorBody = strings.ToValidUTF8(truncate(strings.TrimSpace(string(body)), maxErrorBody), "\uFFFD")
	res.Outcome = outcomeFor(c.Cause)
	if res.ErrorMessage == "" {
		res.ErrorMessage = fmt.Sprintf("SF answered HTTP %d", resp.StatusCode)
	}
	return res
}

func outcomeFor(c diagnose.Cause) Outcome {
	switch c {
	case diagnose.CauseInvalidClientCertificate:
		return InvalidClientCertificate
	case diagnose.CauseTLSRejected:
		return TLSRejected
	case diagnose.CauseCredentialsRequired, diagnose.CauseCompanyIDMissing:
		return CredentialsRequired
	case diagnose.CausePermissionDenied:
		return PermissionDenied
	case diagnose.CauseRateLimited, diagnose.CauseServerError, diagnose.CauseTransportError:
		return Unreachable
	}
	return UnexpectedResponse
}

// Alerts a TLS server sends when it refuses the client's certificate. Go does
// not export the alert type of a TCP TLS connection, so its text is matched.
var certificateAlerts = []string{
	"tls: bad certificate", "tls: certificate required", "tls: unknown certificate authority",
	"tls: expired certificate", "tls: revoked certificate", "tls: unknown certificate", "tls: unsupported certificate",
	"tls: access denied",
}

// classifyTransport names a failure that produced no HTTP answer: SF
// refusing our certificate at the handshake is TLS_REJECTED; everything else
// (timeouts, resets, our own failure to verify SF's server certificate)
// tells nothing about the certificate and is UNREACHABLE.
func classifyTransport(ctx context.Context, err error, timeout time.Duration) (Outcome, diagnose.Cause, string) {
	msg := err.Error()
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	switch {
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie):
		return Unreachable, diagnose.CauseTransportError, "could not verify SF's server certificate (check sf.ca_file or the proxy): " + innermost(err)
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded || isTimeout(err):
		return Unreachable, diagnose.CauseTransportError, fmt.Sprintf("no answer from SF within %s", timeout)
	case errors.Is(err, context.Canceled):
		return Unreachable, diagnose.CauseTransportError, "the probe was cancelled"
	}
	for _, a := range certificateAlerts {
		if strings.Contains(msg, a) {
			return TLSRejected, diagnose.CauseTLSRejected, "SF refused the client certificate during the TLS handshake (" + strings.TrimPrefix(a, "tls: ") + ")"
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return Unreachable, diagnose.CauseTransportError, "cannot resolve SF's host: " + dnsErr.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "connection reset") {
		return Unreachable, diagnose.CauseTransportError, "SF closed the connection without answering: " + innermost(err)
	}
	return Unreachable, diagnose.CauseTransportError, "cannot reach SF: " + innermost(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// innermost strips url.Error's "Get <url>:" prefix, which repeats the URL.
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the result stays valid UTF-8 for protobuf.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "... (truncated)"
}
