// Package registry reads and changes SF's X.509 certificate mappings through
// a driver: the HTTP driver speaks certsync's own contract (the sandbox
// speaks it, and so can a bridge a customer puts in front of SF, which
// publishes no API for these mappings).
package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
)

// Mapping is one X.509 certificate mapping in SF's Security Center.
type Mapping struct {
	ID                string
	ConfigurationName string
	IntegrationName   string
	LoginName         string
	// Certificate is the mapped certificate.
	Certificate *x509.Certificate
}

// NewMapping is what an upload creates.
type NewMapping struct {
	ConfigurationName string
	IntegrationName   string
	LoginName         string
	Certificate       *x509.Certificate
}

// Driver is how the service reads and changes one SF company's mappings.
type Driver interface {
	// List returns every mapping.
	List(ctx context.Context) ([]Mapping, error)
	// Delete removes a mapping. Deleting a mapping that is already gone
	// after an interrupted attempt counts as done.
	Delete(ctx context.Context, id string) error
	// Upload creates a mapping. SF refuses a certificate whose issuer and
	// subject are already mapped: that is a *DuplicateError.
	Upload(ctx context.Context, m NewMapping) (Mapping, error)
}

// Step names the driver call that failed, for errors and journals.
type Step string

// Steps of the driver.
const (
	StepList   Step = "list"
	StepDelete Step = "delete"
	StepUpload Step = "upload"
)

// Error says which step failed and why.
type Error struct {
	Step Step
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// Transient failures (no answer, 429, 5xx) may succeed when retried;
	// others will not.
	Transient bool
	Message   string
	Err       error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("registry %s", e.Step)
	if e.Status != 0 {
		s += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// DuplicateError is SF's refusal to map a certificate whose issuer and
// subject are already mapped.
type DuplicateError struct{ Message string }

func (e *DuplicateError) Error() string { return "registry upload: " + e.Message }

// ErrNotFound is returned by Delete for a mapping that does not exist.
var ErrNotFound = errors.New("registry: no such mapping")
