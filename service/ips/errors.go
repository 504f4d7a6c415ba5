package ips

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Step names the call that failed.
type Step string

const (
	StepToken     Step = "token"
	StepStartJob  Step = "start job"
	StepJobStatus Step = "job status"
	StepJobLog    Step = "job log"
)

// Error is every failure of a Client call.
type Error struct {
	Step Step
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// Transient: an outage or overload rather than a fault in the
	// configuration; trying again later may succeed.
	Transient bool
	// RetryAfter is how long IPS asked to wait (Retry-After header, or a body
	// that says "Retry after N seconds"); 0 when it did not say.
	RetryAfter time.Duration
	// MayHaveStarted (StartJob only): the outcome is unknown and IPS may have
	// started a job; look for it before starting another.
	MayHaveStarted bool
	// Message says what happened and what to check, for people. It never
	// holds a secret.
	Message string
	// Err is the underlying error, if any: ErrJobNotFound,
	// ErrStatusUnsupported, a transport error.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ips: ")
	b.WriteString(string(e.Step))
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

var (
	// ErrJobNotFound matches (errors.Is) a 404 for a job id.
	ErrJobNotFound = errors.New("job not found")
	// ErrStatusUnsupported matches (errors.Is) a JobStatus call that IPS
	// does not serve (certsync assumes GET .../jobs/{jobId}; IPS documents
	// only the log export).
	ErrStatusUnsupported = errors.New("job status endpoint not offered by this IPS")
	// ErrLogTooLarge matches (errors.Is) a job log export, or the text in
	// it, over the package's bounds.
	ErrLogTooLarge = errors.New("job log too large")
	// ErrNotZip matches (errors.Is) a job log export that is not a zip.
	ErrNotZip = errors.New("job log export is not a zip archive")
)

// maxRetryAfter caps what the server can make a caller wait.
const maxRetryAfter = 24 * time.Hour

var retryAfterBody = regexp.MustCompile(`(?i)retry\s+after\s+(\d{1,9})\s*(seconds?|secs?|s)\b`)

// retryAfter reads the wait a 429 or 503 asks for: the Retry-After header
// (delay-seconds or an HTTP date), else a body that says "Retry after N
// seconds". 0 when neither says.
func retryAfter(h http.Header, body []byte, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n < 0 {
				return 0
			}
			if n > int64(maxRetryAfter/time.Second) {
				return maxRetryAfter
			}
			return time.Duration(n) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			d := t.Sub(now)
			if d < 0 {
				// A date in the past: retry now, but not in a busy loop.
				return time.Second
			}
			return min(d.Round(time.Second), maxRetryAfter)
		}
	}
	if len(body) > 64<<10 {
		body = body[:64<<10]
	}
	if m := retryAfterBody.FindSubmatch(body); m != nil {
		n, err := strconv.ParseInt(string(m[1]), 10, 64)
		if err == nil && n >= 0 {
			return min(time.Duration(n)*time.Second, maxRetryAfter)
		}
	}
	return 0
}

// excerpt is a short, printable piece of an answer for error messages.
func excerpt(body []byte) string {
	if len(body) > 1024 {
		body = body[:1024]
	}
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "..."
	}
	return s
}

// bodyMessage takes the message of a JSON error answer in the shapes IAS,
// OAuth2 and certsync's sandbox use, else an excerpt of the answer.
func bodyMessage(body []byte) string {
	var v struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription string          `json:"error_description"`
		Message          string          `json:"message"`
		Detail           string          `json:"detail"`
	}
	if json.Unmarshal(body, &v) == nil {
		var parts []string
		var code string
		var obj struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(v.Error, &code) == nil && code != "":
			parts = append(parts, code)
		case json.Unmarshal(v.Error, &obj) == nil && (obj.Code != "" || obj.Message != ""):
			if obj.Code != "" {
				parts = append(parts, obj.Code)
			}
			if obj.Message != "" {
				parts = append(parts, obj.Message)
			}
		}
		for _, s := range []string{v.ErrorDescription, v.Message, v.Detail} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) > 0 {
			return excerpt([]byte(strings.Join(parts, ": ")))
		}
	}
	return excerpt(body)
}

// statusError builds the error for an unexpected HTTP status. retry says
// whether the caller may retry it (set by the caller's policy).
func (c *Client) statusError(step Step, a answer) *Error {
	e := &Error{Step: step, Status: a.status}
	msg := bodyMessage(a.body)
	switch {
	case a.status == http.StatusUnauthorized:
		e.Message = "the tenant refused the credentials; auth method " + c.cfg.Method.describe()
	case a.status == http.StatusForbidden:
		e.Message = fmt.Sprintf("authenticated, but not allowed (auth method %s): the technical system administrator needs the authorization to manage Identity Provisioning", c.cfg.Method)
	case a.status >= 300 && a.status < 400:
		e.Message = fmt.Sprintf("the tenant redirected to %q instead of answering (a login page?): check the base URL and the auth method (%s)", excerpt([]byte(a.header.Get("Location"))), c.cfg.Method)
		msg = ""
	case a.status == http.StatusTooManyRequests:
		e.Transient = true
		e.RetryAfter = retryAfter(a.header, a.body, c.now())
		e.Message = "rate limited by IPS"
	case a.status == http.StatusRequestTimeout || a.status >= 500:
		e.Transient = true
		e.RetryAfter = retryAfter(a.header, a.body, c.now())
		e.Message = "IPS is failing or overloaded"
	default:
		e.Message = "unexpected answer"
	}
	if msg != "" {
		e.Message += ": " + msg
	}
	if e.RetryAfter > 0 {
		e.Message += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return e
}
