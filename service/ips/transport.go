package ips

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxJSONAnswer bounds JSON answers (token, start, status): real ones are a
// few hundred bytes.
const maxJSONAnswer = 1 << 20

// answer is one HTTP exchange's outcome.
type answer struct {
	status int
	header http.Header
	body   []byte
	// tooLarge: the body was cut at the limit.
	tooLarge bool
}

// request is what one call sends.
type request struct {
	step   Step
	method string
	target string
	// form, when set, is sent as application/x-www-form-urlencoded.
	form   url.Values
	accept string
	limit  int64
	// basic sends the client id and secret with HTTP basic whatever the
	// auth method (the token request).
	basic bool
}

// send makes one attempt: it authorizes the request, sends it and reads the
// answer up to limit bytes. A transport failure comes back as *Error; an
// HTTP status is the caller's to judge. For OAuth2, an answer 401 to a
// cached token drops the token and tries once more with a fresh one.
func (c *Client) send(ctx context.Context, rq request) (answer, error) {
	a, cached, err := c.sendOnce(ctx, rq)
	if err == nil && a.status == http.StatusUnauthorized && cached {
		c.log.Debug("ips: cached token refused, fetching a new one", "step", rq.step)
		a, _, err = c.sendOnce(ctx, rq)
	}
	return a, err
}

func (c *Client) sendOnce(ctx context.Context, rq request) (a answer, cachedToken bool, err error) {
	var body io.Reader
	if rq.form != nil {
		body = strings.NewReader(rq.form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.target, body)
	if err != nil {
		return answer{}, false, &Error{Step: rq.step, Message: err.Error(), Err: err}
	}
	if rq.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if rq.method == http.MethodPost && rq.form == nil {
		// An explicit empty body: some gateways refuse a POST without
		// Content-Length with 411.
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	req.Header.Set("Accept", rq.accept)
	req.Header.Set("User-Agent", "certsync-ips")
	switch {
	case rq.basic || c.cfg.Method == Basic:
		req.SetBasicAuth(c.cfg.ClientID, string(c.secret))
	case c.cfg.Method == OAuth2ClientCredentials:
		tok, cached, tokErr := c.accessToken(ctx)
		if tokErr != nil {
			return answer{}, false, tokErr
		}
		cachedToken = cached
		req.Header.Set("Authorization", "Bearer "+string(tok))
		// A token the tenant refuses is not used again.
		defer func() {
			if err == nil && a.status == http.StatusUnauthorized {
				c.dropToken(tok)
			}
		}()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, false, c.transportError(ctx, rq.step, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, rq.limit+1))
	if err != nil {
		e := c.transportError(ctx, rq.step, err)
		e.Status = resp.StatusCode
		e.Message = fmt.Sprintf("HTTP %d, then the answer broke off: %s", resp.StatusCode, e.Message)
		return answer{}, false, e
	}
	a = answer{status: resp.StatusCode, header: resp.Header, body: data}
	if int64(len(data)) > rq.limit {
		a.body, a.tooLarge = data[:rq.limit], true
		// Drain nothing more: closing the body drops the connection.
	}
	return a, cachedToken, nil
}

// transportError classifies a failed exchange. A connection that could not
// be opened (dial, proxy connect) certainly sent nothing; certificate
// problems are configuration, not outages.
func (c *Client) transportError(ctx context.Context, step Step, err error) *Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is known; keep the message short
	}
	e := &Error{Step: step, Transient: true, Message: err.Error(), Err: err}
	var (
		verr  *tls.CertificateVerificationError
		uerr  x509.UnknownAuthorityError
		herr  x509.HostnameError
		cerr  x509.CertificateInvalidError
		aerr  tls.AlertError
		operr *net.OpError
	)
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()) && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		e.Transient = false
		e.Message = "canceled: " + err.Error()
	case errors.As(err, &verr), errors.As(err, &uerr), errors.As(err, &herr), errors.As(err, &cerr):
		e.Transient = false
		e.Message = "the tenant's TLS certificate is not trusted: " + err.Error() + " (check the CA file)"
	case errors.As(err, &aerr), errors.As(err, &operr) && operr.Op == "remote error":
		// An alert from the tenant: it refused the handshake, and with it
		// anything sent.
		e.Transient = false
		e.Message = "the TLS handshake was refused: " + err.Error()
		if c.cfg.Method == ClientCertificate {
			e.Message += "; auth method " + c.cfg.Method.describe()
		}
	}
	return e
}

// notSent reports whether a transport error certainly happened before the
// request left: the connection could not be opened.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect") {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// retry runs call up to Attempts times while it returns an *Error that
// retryable accepts, waiting with backoff, or for the server's RetryAfter
// when it asked for one no longer than MaxRetryWait.
func (c *Client) retry(ctx context.Context, step Step, retryable func(*Error) bool, call func(ctx context.Context) error) error {
	delay := c.cfg.Backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := call(actx)
		cancel()
		var e *Error
		if err == nil || !errors.As(err, &e) || !retryable(e) {
			return annotate(err, attempt)
		}
		if attempt >= c.cfg.Attempts {
			return annotate(err, attempt)
		}
		wait := delay + jitter(delay)
		if e.RetryAfter > 0 {
			if e.RetryAfter > c.cfg.MaxRetryWait {
				// The caller schedules a later try; sitting out a long
				// wait here would hold an RPC for minutes.
				return annotate(err, attempt)
			}
			wait = e.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return annotate(err, attempt)
		}
		c.log.Debug("ips: retrying", "step", step, "attempt", attempt, "status", e.Status, "wait", wait, "err", e.Message)
		if err := c.sleep(ctx, wait); err != nil {
			return &Error{Step: step, Transient: e.Transient, RetryAfter: e.RetryAfter, MayHaveStarted: e.MayHaveStarted,
				Message: fmt.Sprintf("gave up waiting to retry (%v) after: %s", err, e.Message), Err: err}
		}
		delay *= 2
	}
}

func annotate(err error, attempts int) error {
	var e *Error
	if attempts > 1 && errors.As(err, &e) {
		e.Message = fmt.Sprintf("%s (after %d attempts)", e.Message, attempts)
	}
	return err
}

func jitter(d time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d)/2+1))
	if err != nil {
		return 0
	}
	return time.Duration(n.Int64())
}

// idempotent is the retry policy of calls without side effects.
func idempotent(e *Error) bool { return e.Transient }

// token endpoint ---------------------------------------------------------

// accessToken returns the cached token, or fetches one. cached says whether
// it came from the cache (and so may have been revoked since).
func (c *Client) accessToken(ctx context.Context) (secret, bool, error) {
	if tok, ok := c.cachedToken(); ok {
		return tok, true, nil
	}
	select {
	case c.tokenSem <- struct{}{}:
	case <-ctx.Done():
		return "", false, &Error{Step: StepToken, Transient: true, Message: "gave up waiting for a token: " + ctx.Err().Error(), Err: ctx.Err()}
	}
	defer func() { <-c.tokenSem }()
	// Another caller may have fetched one while this one waited.
	if tok, ok := c.cachedToken(); ok {
		return tok, true, nil
	}
	tok, lifetime, err := c.fetchToken(ctx)
	if err != nil {
		return "", false, err
	}
	if lifetime > 0 {
		// Refresh shortly before expiry: a tenth of the lifetime, at most a
		// minute early.
		margin := min(lifetime/10, time.Minute)
		c.tokenMu.Lock()
		c.token, c.tokenUntil = tok, c.now().Add(lifetime-margin)
		c.tokenMu.Unlock()
	}
	return tok, false, nil
}

func (c *Client) cachedToken() (secret, bool) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if c.token != "" && c.now().Before(c.tokenUntil) {
		return c.token, true
	}
	return "", false
}

// dropToken forgets tok if it is still the cached one.
func (c *Client) dropToken(tok secret) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if c.token == tok {
		c.token, c.tokenUntil = "", time.Time{}
	}
}

// maxTokenLifetime caps how long a token is cached, whatever expires_in says.
const maxTokenLifetime = 24 * time.Hour

func (c *Client) fetchToken(ctx context.Context) (secret, time.Duration, error) {
	var tok secret
	var lifetime time.Duration
	err := c.retry(ctx, StepToken, idempotent, func(ctx context.Context) error {
		a, _, err := c.sendOnce(ctx, request{
			step:   StepToken,
			method: http.MethodPost,
			target: c.base + "/oauth2/token",
			form:   url.Values{"grant_type": {"client_credentials"}},
			accept: "application/json",
			limit:  maxJSONAnswer,
			basic:  true,
		})
		if err != nil {
			return err
		}
		if a.status != http.StatusOK {
			e := c.statusError(StepToken, a)
			if a.status == http.StatusBadRequest || a.status == http.StatusUnauthorized {
				// OAuth2 answers invalid_client with 400 or 401.
				e.Message = fmt.Sprintf("the token endpoint refused client id %q: %s; auth method %s",
					c.cfg.ClientID, bodyMessage(a.body), c.cfg.Method.describe())
			}
			return e
		}
		if a.tooLarge {
			return &Error{Step: StepToken, Status: a.status, Message: "the token answer is larger than expected"}
		}
		var w struct {
			AccessToken string          `json:"access_token"`
			TokenType   string          `json:"token_type"`
			ExpiresIn   json.RawMessage `json:"expires_in"`
		}
		// The answer holds the token: errors never quote it.
		if err := json.Unmarshal(a.body, &w); err != nil {
			return &Error{Step: StepToken, Status: a.status, Message: "the token answer is not JSON"}
		}
		if w.AccessToken == "" {
			return &Error{Step: StepToken, Status: a.status, Message: "the token answer has no access_token"}
		}
		if w.TokenType != "" && !strings.EqualFold(w.TokenType, "bearer") {
			return &Error{Step: StepToken, Status: a.status, Message: fmt.Sprintf("the token type is %q, not Bearer", excerpt([]byte(w.TokenType)))}
		}
		tok, lifetime = secret(w.AccessToken), parseExpiresIn(w.ExpiresIn)
		return nil
	})
	return tok, lifetime, err
}

// parseExpiresIn reads expires_in as a number or a numeric string; 0 (do
// not cache) when absent or nonsense.
func parseExpiresIn(raw json.RawMessage) time.Duration {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0
	}
	d := time.Duration(f * float64(time.Second))
	if f > maxTokenLifetime.Seconds() {
		d = maxTokenLifetime
	}
	return d
}
