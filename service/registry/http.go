package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// maxAnswer bounds what is read of an answer; a registry of a few hundred
// mappings fits easily.
const maxAnswer = 8 << 20

// HTTPConfig configures the HTTP driver.
type HTTPConfig struct {
	// BaseURL is the contract's base; calls go to {BaseURL}/v1/mappings.
	BaseURL string
	// TokenFile holds the bearer token; it is read on every call, so a
	// rotated token takes effect without a restart. Empty: no token.
	TokenFile string
	// RootCAs verifies the server; nil means the system pool.
	RootCAs *x509.CertPool
	// Proxy picks the proxy; nil means HTTPS_PROXY and friends.
	Proxy func(*http.Request) (*url.URL, error)
	// Timeout bounds each attempt; default 10s.
	Timeout time.Duration
	// Attempts bounds tries of a call that fails transiently; default 3.
	Attempts int
	// Backoff is the first retry's delay, doubled each time, with jitter;
	// default 250ms.
	Backoff time.Duration
}

// HTTP is the driver for certsync's registry contract.
type HTTP struct {
	cfg    HTTPConfig
	client *http.Client
	base   string
}

// NewHTTP builds the HTTP driver.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("registry: base URL %q is not an https URL", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 250 * time.Millisecond
	}
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	t := &http.Transport{
		Proxy:                 cfg.Proxy,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &HTTP{cfg: cfg, client: &http.Client{Transport: t}, base: strings.TrimSuffix(cfg.BaseURL, "/") + "/v1/mappings"}, nil
}

// Close drops idle connections.
func (h *HTTP) Close() { h.client.CloseIdleConnections() }

type wireMapping struct {
	ID                string `json:"id,omitempty"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	CertificatePEM    string `json:"certificate_pem"`
}

type wireError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// List implements Driver. A GET is safe to repeat, so transient failures are
// retried.
func (h *HTTP) List(ctx context.Context) ([]Mapping, error) {
	var out []Mapping
	err := h.retry(ctx, StepList, func(ctx context.Context, _ int) error {
		status, body, err := h.do(ctx, http.MethodGet, h.base, nil)
		if err != nil {
			return &Error{Step: StepList, Transient: true, Message: err.Error(), Err: err}
		}
		if status != http.StatusOK {
			return statusError(StepList, status, body)
		}
		var w struct {
			Mappings []wireMapping `json:"mappings"`
		}
		if err := json.Unmarshal(body, &w); err != nil {
			return &Error{Step: StepList, Status: status, Message: "the answer is not the contract's JSON: " + err.Error()}
		}
		out = out[:0]
		for i, wm := range w.Mappings {
			m, err := fromWire(wm)
			if err != nil {
				return &Error{Step: StepList, Status: status, Message: fmt.Sprintf("mapping %d (%q): %v", i, wm.ID, err)}
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Delete implements Driver. DELETE of an id is idempotent: when an earlier
// attempt's outcome is unknown, a 404 on the retry means it did delete.
func (h *HTTP) Delete(ctx context.Context, id string) error {
	if id == "" {
		return &Error{Step: StepDelete, Message: "no mapping id"}
	}
	target := h.base + "/" + url.PathEscape(id)
	return h.retry(ctx, StepDelete, func(ctx context.Context, attempt int) error {
		status, body, err := h.do(ctx, http.MethodDelete, target, nil)
		switch {
		case err != nil:
			return &Error{Step: StepDelete, Transient: true, Message: err.Error(), Err: err}
		case status == http.StatusNoContent || status == http.StatusOK:
			return nil
		case status == http.StatusNotFound && attempt > 1:
			return nil
		case status == http.StatusNotFound:
			return &Error{Step: StepDelete, Status: status, Message: fmt.Sprintf("mapping %q does not exist", id), Err: ErrNotFound}
		}
		return statusError(StepDelete, status, body)
	})
}

// Upload implements Driver. A POST is not safe to repeat blindly: after an
// attempt whose outcome is unknown, the mappings are read back first, and
// an upload that did land is returned instead of being sent again.
func (h *HTTP) Upload(ctx context.Context, nm NewMapping) (Mapping, error) {
	if nm.Certificate == nil {
		return Mapping{}, &Error{Step: StepUpload, Message: "no certificate"}
	}
	payload, err := json.Marshal(wireMapping{
		ConfigurationName: nm.ConfigurationName,
		IntegrationName:   nm.IntegrationName,
		LoginName:         nm.LoginName,
		CertificatePEM:    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: nm.Certificate.Raw})),
	})
	if err != nil {
		return Mapping{}, &Error{Step: StepUpload, Message: err.Error()}
	}
	var out Mapping
	uncertain := false
	err = h.retry(ctx, StepUpload, func(ctx context.Context, attempt int) error {
		if uncertain {
			if m, ok := h.find(ctx, nm.Certificate); ok {
				out = m
				return nil
			}
		}
		status, body, err := h.do(ctx, http.MethodPost, h.base, payload)
		switch {
		case err != nil:
			uncertain = true
			return &Error{Step: StepUpload, Transient: true, Message: err.Error(), Err: err}
		case status == http.StatusCreated || status == http.StatusOK:
			var wm wireMapping
			if err := json.Unmarshal(body, &wm); err != nil {
				return &Error{Step: StepUpload, Status: status, Message: "the answer is not the contract's JSON: " + err.Error()}
			}
			m, err := fromWire(wm)
			if err != nil {
				return &Error{Step: StepUpload, Status: status, Message: err.Error()}
			}
			out = m
			return nil
		case status == http.StatusConflict:
			if uncertain {
				// Our own earlier attempt may be the duplicate.
				if m, ok := h.find(ctx, nm.Certificate); ok {
					out = m
					return nil
				}
			}
			return &DuplicateError{Message: errorMessage(body, "the certificate's issuer and subject are already mapped")}
		}
		e := statusError(StepUpload, status, body)
		if e.Transient {
			uncertain = true
		}
		return e
	})
	return out, err
}

// find looks for a mapping of exactly this certificate.
func (h *HTTP) find(ctx context.Context, c *x509.Certificate) (Mapping, bool) {
	ms, err := h.List(ctx)
	if err != nil {
		return Mapping{}, false
	}
	for _, m := range ms {
		if m.Certificate != nil && bytes.Equal(m.Certificate.Raw, c.Raw) {
			return m, true
		}
	}
	return Mapping{}, false
}

// retry runs one call up to Attempts times while it fails transiently,
// waiting with exponential backoff and jitter in between.
func (h *HTTP) retry(ctx context.Context, step Step, call func(ctx context.Context, attempt int) error) error {
	delay := h.cfg.Backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		err := call(actx, attempt)
		cancel()
		var re *Error
		if err == nil || !errors.As(err, &re) || !re.Transient || attempt >= h.cfg.Attempts {
			if re != nil && attempt > 1 {
				re.Message = fmt.Sprintf("%s (after %d attempts)", re.Message, attempt)
			}
			return err
		}
		if ctx.Err() != nil {
			return &Error{Step: step, Transient: true, Message: "gave up: " + ctx.Err().Error(), Err: ctx.Err()}
		}
		jitter, _ := rand.Int(rand.Reader, big.NewInt(int64(delay)/2+1))
		select {
		case <-ctx.Done():
			return &Error{Step: step, Transient: true, Message: "gave up: " + ctx.Err().Error(), Err: ctx.Err()}
		case <-time.After(delay + time.Duration(jitter.Int64())):
		}
		delay *= 2
	}
}

func (h *HTTP) do(ctx context.Context, method, target string, payload []byte) (int, []byte, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.cfg.TokenFile != "" {
		tok, err := os.ReadFile(h.cfg.TokenFile)
		if err != nil {
			return 0, nil, fmt.Errorf("read the token file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known to the caller; keep the message short
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("HTTP %d, then the answer broke off: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, data, nil
}

func statusError(step Step, status int, body []byte) *Error {
	transient := status == http.StatusTooManyRequests || status >= 500
	msg := errorMessage(body, http.StatusText(status))
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		msg += " (check registry.token_file)"
	}
	return &Error{Step: step, Status: status, Transient: transient, Message: msg}
}

// errorMessage takes the contract's error message, or a short excerpt of an
// answer that does not follow the contract.
func errorMessage(body []byte, fallback string) string {
	var we wireError
	if json.Unmarshal(body, &we) == nil && we.Error.Message != "" {
		return strings.ToValidUTF8(we.Error.Message, "\uFFFD")
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "\uFFFD"))
	if s == "" {
		return fallback
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.ToValidUTF8(s, "")
}

func fromWire(wm wireMapping) (Mapping, error) {
	block, _ := pem.Decode([]byte(wm.CertificatePEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return Mapping{}, errors.New("certificate_pem holds no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return Mapping{}, fmt.Errorf("certificate_pem: %v", err)
	}
	return Mapping{ID: wm.ID, ConfigurationName: wm.ConfigurationName, IntegrationName: wm.IntegrationName, LoginName: wm.LoginName, Certificate: c}, nil
}
