// Package fault is the vocabulary domain packages use to say what went wrong,
// without knowing about gRPC. The service package turns a *fault.Error into a
// status with error details in one place (service/status.go).
package fault

import (
	"errors"
	"fmt"
	"time"
)

// Kind is the class of a failure; each maps to one gRPC status code.
type Kind int

const (
	// Internal is an unexpected fault; its message stays in the server log.
	Internal Kind = iota
	// InvalidArgument: the request is wrong; Field names what.
	InvalidArgument
	// NotFound: the named resource does not exist.
	NotFound
	// FailedPrecondition: the system is not in the state the request needs.
	FailedPrecondition
	// Aborted: a concurrent change conflicts (e.g. an operation is running).
	Aborted
	// Unavailable: SF, IPS or another dependency could not be reached.
	Unavailable
	// ResourceExhausted: a rate limit or quota was hit.
	ResourceExhausted
	// DeadlineExceeded: the work did not finish in time.
	DeadlineExceeded
	// PermissionDenied: the caller's role does not allow the call.
	PermissionDenied
	// Unauthenticated: the caller did not prove who it is.
	Unauthenticated
	// Unimplemented: the RPC or feature is not available (yet).
	Unimplemented
)

// Violation is one precondition that did not hold.
type Violation struct {
	Type        string // e.g. "ETAG"
	Subject     string // e.g. "connections/demo-desync"
	Description string
}

// FieldViolation names one request field at fault and why.
type FieldViolation struct {
	Field       string // e.g. "name", "max_evidence_age"
	Reason      string // UPPER_SNAKE_CASE
	Description string
}

// Error is a failure with everything a caller needs to act on it.
type Error struct {
	Kind Kind
	// Reason is UPPER_SNAKE_CASE and stable, e.g. "ETAG_MISMATCH".
	Reason string
	// Message is for people; it never contains secrets or key material.
	Message string
	// Fields are the request fields at fault (InvalidArgument).
	Fields []FieldViolation
	// Metadata holds every dynamic value of the error.
	Metadata map[string]string
	// RetryAfter, when set, tells the caller when to try again.
	RetryAfter time.Duration
	// Violations are the preconditions that failed (FailedPrecondition).
	Violations []Violation
	// Cause is the underlying error, logged but never sent to callers.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// With returns a copy of e with one more metadata entry.
func (e *Error) With(key, value string) *Error {
	c := *e
	c.Metadata = make(map[string]string, len(e.Metadata)+1)
	for k, v := range e.Metadata {
		c.Metadata[k] = v
	}
	c.Metadata[key] = value
	return &c
}

// New builds an Error.
func New(kind Kind, reason, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Invalid builds an InvalidArgument error about one request field.
func Invalid(field, reason, format string, args ...any) *Error {
	e := New(InvalidArgument, reason, format, args...)
	e.Fields = []FieldViolation{{Field: field, Reason: reason, Description: e.Message}}
	return e
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return nil, false
}
