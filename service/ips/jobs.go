package ips

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"
)

// pathPrefix is the Tenant Admin API's IPS part.
const pathPrefix = "/ips/service/publicapi/v1"

// Job types.
const (
	JobRead   = "READ"
	JobResync = "RESYNC"
)

// Job statuses, as IPS words them.
const (
	StatusSuccess            = "Success"
	StatusFinishedWithError  = "Finished with Error"
	StatusRunning            = "Running"
	StatusRunningWithError   = "Running with Error"
	StatusManuallyTerminated = "Manually Terminated"
	StatusPendingRestart     = "Pending Restart"
)

var knownStatuses = []string{
	StatusSuccess, StatusFinishedWithError, StatusRunning,
	StatusRunningWithError, StatusManuallyTerminated, StatusPendingRestart,
}

// Job is an IPS job as the API reports it.
type Job struct {
	ID string
	// Status is IPS's word for the job's state (one of the Status
	// constants, or what IPS wrote when it is none of them); empty when the
	// answer named none (StartJob's answer often does not).
	Status string
}

// Done reports whether the job has ended: Success, Finished with Error or
// Manually Terminated.
func (j Job) Done() bool {
	switch j.Status {
	case StatusSuccess, StatusFinishedWithError, StatusManuallyTerminated:
		return true
	}
	return false
}

// HasErrors reports whether IPS says the job met errors (Finished with
// Error, Running with Error): its log is worth exporting.
func (j Job) HasErrors() bool {
	return j.Status == StatusFinishedWithError || j.Status == StatusRunningWithError
}

// NormalizeStatus maps other spellings of IPS's job statuses (any case,
// underscores or hyphens for spaces: FINISHED_WITH_ERROR) to IPS's words;
// anything else comes back trimmed, as written.
func NormalizeStatus(s string) string {
	s = strings.TrimSpace(s)
	key := strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return r == '_' || r == '-' || unicode.IsSpace(r)
	}), " ")
	for _, k := range knownStatuses {
		if strings.ToLower(k) == key {
			return k
		}
	}
	switch key {
	case "successful", "succeeded", "finished", "completed":
		return StatusSuccess
	case "terminated", "manually stopped", "stopped", "canceled", "cancelled":
		return StatusManuallyTerminated
	}
	return s
}

// StartJob starts a job (JobRead or JobResync) of the source system. The
// returned Job has the id IPS gave it and, when IPS's answer said one, the
// status. See the package documentation for how the undocumented answer is
// read, and for the retry policy: an error with MayHaveStarted set means a
// job may be running anyway.
func (c *Client) StartJob(ctx context.Context, sourceSystemID, jobType string) (Job, error) {
	if err := checkID("source system id", sourceSystemID); err != nil {
		return Job{}, &Error{Step: StepStartJob, Message: err.Error()}
	}
	jt := strings.ToUpper(strings.TrimSpace(jobType))
	if jt != JobRead && jt != JobResync {
		return Job{}, &Error{Step: StepStartJob, Message: fmt.Sprintf("job type %q is not READ or RESYNC", jobType)}
	}
	if err := ctx.Err(); err != nil {
		return Job{}, &Error{Step: StepStartJob, Message: "not started: " + err.Error(), Err: err}
	}
	target := c.base + pathPrefix + "/startJob/" + url.PathEscape(sourceSystemID) + "/jobs/" + jt
	var job Job
	retryable := func(e *Error) bool { return e.Transient && !e.MayHaveStarted }
	err := c.retry(ctx, StepStartJob, retryable, func(ctx context.Context) error {
		a, err := c.send(ctx, request{step: StepStartJob, method: http.MethodPost, target: target, accept: "application/json", limit: maxJSONAnswer})
		if err != nil {
			// Sent, or perhaps sent, and no answer: a timeout, a reset, the
			// caller giving up. A refused handshake or a failed dial sent
			// nothing.
			var e *Error
			if errors.As(err, &e) && e.Step == StepStartJob && e.Err != nil && !notSent(e.Err) &&
				(e.Transient || errors.Is(e.Err, context.Canceled)) {
				e.MayHaveStarted = true
				e.Message += "; IPS may have started the job: look for it before starting another"
			}
			return err
		}
		switch {
		case a.status == http.StatusOK || a.status == http.StatusCreated || a.status == http.StatusAccepted:
			var body []byte
			if !a.tooLarge {
				body = a.body
			}
			id, status := parseJobAnswer(body, a.header)
			if id == "" {
				return &Error{Step: StepStartJob, Status: a.status, MayHaveStarted: true,
					Message: fmt.Sprintf("IPS accepted the request but its answer names no job id (looked for jobId, job_id, id and a Location header): %q; find the job in the IPS admin console", excerpt(body))}
			}
			job = Job{ID: id, Status: status}
			return nil
		case a.status == http.StatusNotFound:
			return &Error{Step: StepStartJob, Status: a.status,
				Message: fmt.Sprintf("the tenant knows no source system %q (check the source system id and the base URL): %s", sourceSystemID, bodyMessage(a.body))}
		}
		e := c.statusError(StepStartJob, a)
		switch {
		case a.status == http.StatusTooManyRequests:
			// A rate-limited request was refused before any work.
		case a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") != "":
			// A 503 with Retry-After is load shedding: refused unprocessed.
		case e.Transient:
			e.MayHaveStarted = true
			e.Message += "; IPS may have started the job: look for it before starting another"
		}
		return e
	})
	return job, err
}

// JobStatus reads a job's status with GET .../jobs/{jobId}: certsync's
// assumption, not a documented IPS endpoint (see the package documentation).
func (c *Client) JobStatus(ctx context.Context, jobID string) (Job, error) {
	if err := checkID("job id", jobID); err != nil {
		return Job{}, &Error{Step: StepJobStatus, Message: err.Error()}
	}
	target := c.base + pathPrefix + "/jobs/" + url.PathEscape(jobID)
	var job Job
	err := c.retry(ctx, StepJobStatus, idempotent, func(ctx context.Context) error {
		a, err := c.send(ctx, request{step: StepJobStatus, method: http.MethodGet, target: target, accept: "application/json", limit: maxJSONAnswer})
		if err != nil {
			return err
		}
		switch a.status {
		case http.StatusOK:
			if a.tooLarge {
				return &Error{Step: StepJobStatus, Status: a.status, Message: "the status answer is larger than expected"}
			}
			id, status := parseJobAnswer(a.body, nil)
			if status == "" {
				return &Error{Step: StepJobStatus, Status: a.status, Message: fmt.Sprintf("the answer names no status: %q", excerpt(a.body))}
			}
			if id == "" {
				id = jobID
			}
			job = Job{ID: id, Status: status}
			return nil
		case http.StatusNotFound:
			return &Error{Step: StepJobStatus, Status: a.status, Err: ErrJobNotFound,
				Message: fmt.Sprintf("IPS knows no job %q, or does not serve GET %s/jobs/{jobId} (certsync's assumption; read the job in the IPS admin console): %s", jobID, pathPrefix, bodyMessage(a.body))}
		case http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return &Error{Step: StepJobStatus, Status: a.status, Err: ErrStatusUnsupported,
				Message: fmt.Sprintf("this IPS does not serve GET %s/jobs/{jobId} (certsync's assumption, not documented by IPS): read the job in the IPS admin console or export its log", pathPrefix)}
		}
		return c.statusError(StepJobStatus, a)
	})
	return job, err
}

// MaxLogBytes bounds a job log export (the zip as sent).
const MaxLogBytes = 16 << 20

// ExportJobLog exports the job's error log
// (GET .../jobLogs/{jobId}?action=export&logType=ERROR): a zip, at most
// MaxLogBytes; LogText reads it. A job without a log gives an empty slice.
func (c *Client) ExportJobLog(ctx context.Context, jobID string) ([]byte, error) {
	if err := checkID("job id", jobID); err != nil {
		return nil, &Error{Step: StepJobLog, Message: err.Error()}
	}
	q := url.Values{"action": {"export"}, "logType": {"ERROR"}}
	target := c.base + pathPrefix + "/jobLogs/" + url.PathEscape(jobID) + "?" + q.Encode()
	var out []byte
	err := c.retry(ctx, StepJobLog, idempotent, func(ctx context.Context) error {
		a, err := c.send(ctx, request{step: StepJobLog, method: http.MethodGet, target: target,
			accept: "application/zip, application/octet-stream;q=0.9, */*;q=0.1", limit: MaxLogBytes})
		if err != nil {
			return err
		}
		switch a.status {
		case http.StatusOK, http.StatusNoContent:
			if a.tooLarge {
				return &Error{Step: StepJobLog, Status: a.status, Err: ErrLogTooLarge,
					Message: fmt.Sprintf("the job log export is larger than %d bytes", MaxLogBytes)}
			}
			if len(a.body) == 0 {
				out = []byte{}
				return nil
			}
			if !isZip(a.body) {
				ct, _, _ := mime.ParseMediaType(a.header.Get("Content-Type"))
				return &Error{Step: StepJobLog, Status: a.status, Err: ErrNotZip,
					Message: fmt.Sprintf("the job log export is not a zip (Content-Type %q): %q", ct, excerpt(a.body))}
			}
			out = a.body
			return nil
		case http.StatusNotFound:
			return &Error{Step: StepJobLog, Status: a.status, Err: ErrJobNotFound,
				Message: fmt.Sprintf("IPS knows no job %q: %s", jobID, bodyMessage(a.body))}
		}
		return c.statusError(StepJobLog, a)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// JobLogText is ExportJobLog followed by LogText.
func (c *Client) JobLogText(ctx context.Context, jobID string) (string, error) {
	b, err := c.ExportJobLog(ctx, jobID)
	if err != nil {
		return "", err
	}
	text, err := LogText(b)
	if err != nil {
		return "", &Error{Step: StepJobLog, Status: http.StatusOK, Message: err.Error(), Err: err}
	}
	return text, nil
}

func isZip(b []byte) bool {
	return bytes.HasPrefix(b, []byte("PK\x03\x04")) || bytes.HasPrefix(b, []byte("PK\x05\x06"))
}

// maxIDLen bounds ids: real ones are UUIDs or short numbers.
const maxIDLen = 256

func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("no %s", what)
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("%s is longer than %d bytes", what, maxIDLen)
	}
	if !validID(id) {
		return fmt.Errorf("%s %q holds spaces or control characters", what, id)
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." {
		return false
	}
	for _, r := range id {
		if r == unicode.ReplacementChar || unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == '\\' || r == '?' || r == '#' {
			return false
		}
	}
	return true
}

// looksLikeGeneratedID is the stricter test for ids not found under a key
// (a Location header, a bare word): a generated id has a digit, so "OK" or
// "jobs" is not taken for one.
func looksLikeGeneratedID(id string) bool {
	return validID(id) && strings.ContainsAny(id, "0123456789")
}

var (
	// Keys are compared lower-case without '_' and '-'.
	jobIDKeys     = []string{"jobid"}
	plainIDKeys   = []string{"id"}
	statusKeys    = []string{"status", "jobstatus", "state"}
	containerKeys = []string{"job", "data", "result", "response", "value"}
)

// parseJobAnswer finds a job id and status in an undocumented answer: see
// the package documentation for where it looks. Either may be empty.
func parseJobAnswer(body []byte, header http.Header) (id, status string) {
	body = bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	isJSON := len(body) > 0 && dec.Decode(&v) == nil
	if isJSON {
		// One JSON value and nothing after it: "3f6b..." is a word, not
		// the number 3 followed by garbage.
		_, err := dec.Token()
		isJSON = err == io.EOF
	}
	if isJSON {
		id, status = fromJSON(v)
	}
	if id == "" && header != nil {
		if loc := header.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil {
				segs := strings.Split(strings.TrimRight(u.EscapedPath(), "/"), "/")
				if seg, err := url.PathUnescape(segs[len(segs)-1]); err == nil && looksLikeGeneratedID(seg) {
					id = seg
				}
			}
		}
	}
	if id == "" && !isJSON && len(body) <= maxIDLen {
		if w := string(body); looksLikeGeneratedID(w) {
			id = w
		}
	}
	return id, status
}

func fromJSON(v any) (id, status string) {
	switch x := v.(type) {
	case string:
		if s := strings.TrimSpace(x); validID(s) {
			return s, ""
		}
		return "", ""
	case json.Number:
		return x.String(), ""
	case []any:
		if len(x) == 1 {
			if m, ok := x[0].(map[string]any); ok {
				return fromObject(m)
			}
		}
		return "", ""
	case map[string]any:
		return fromObject(x)
	}
	return "", ""
}

func fromObject(m map[string]any) (id, status string) {
	norm := make(map[string]any, len(m))
	for k, v := range m {
		nk := strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(k))
		if _, dup := norm[nk]; !dup {
			norm[nk] = v
		}
	}
	var nested []map[string]any
	for _, k := range containerKeys {
		if sub, ok := norm[k].(map[string]any); ok {
			n := make(map[string]any, len(sub))
			for sk, sv := range sub {
				nk := strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(sk))
				if _, dup := n[nk]; !dup {
					n[nk] = sv
				}
			}
			nested = append(nested, n)
		}
	}
	// The most specific key first: jobId at the top, jobId one level down,
	// {"job":{"id"}}, a top-level id, then an id one level down.
	id = idUnder(norm, jobIDKeys)
	for _, n := range nested {
		if id == "" {
			id = idUnder(n, jobIDKeys)
		}
	}
	if id == "" {
		if job, ok := norm["job"].(map[string]any); ok {
			for k, v := range job {
				if strings.EqualFold(k, "id") {
					id = idValue(v)
				}
			}
		}
	}
	if id == "" {
		id = idUnder(norm, plainIDKeys)
	}
	for _, n := range nested {
		if id == "" {
			id = idUnder(n, plainIDKeys)
		}
	}
	status = statusUnder(norm)
	for _, n := range nested {
		if status == "" {
			status = statusUnder(n)
		}
	}
	return id, status
}

func idUnder(m map[string]any, keys []string) string {
	for _, k := range keys {
		if id := idValue(m[k]); id != "" {
			return id
		}
	}
	return ""
}

func idValue(v any) string {
	switch x := v.(type) {
	case string:
		if s := strings.TrimSpace(x); validID(s) {
			return s
		}
	case json.Number:
		return x.String()
	}
	return ""
}

func statusUnder(m map[string]any) string {
	for _, k := range statusKeys {
		if s, ok := m[k].(string); ok && strings.TrimSpace(s) != "" && len(s) <= 128 {
			return NormalizeStatus(strings.ToValidUTF8(s, "\uFFFD"))
		}
	}
	return ""
}
