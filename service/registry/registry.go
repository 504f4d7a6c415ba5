// Package registry reads and changes SF's X.509 certificate mappings through
// a driver: the HTTP driver speaks certsync's own contract (the sandbox
// speaks it, and so can a bridge a customer puts in front of SF, which
// publishes no API for these mappings). With the manual driver a person
// performs the changes in SF's UI, and what SF shows is what a person
// recorded (Recorded).
package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Mapping is one X.509 certificate mapping in SF's Security Center.
type Mapping struct {
	ID                string
	ConfigurationName string
	IntegrationName   string
	LoginName         string
	// Certificate is the mapped certificate; nil when a person recorded
	// only its fingerprint.
	Certificate *x509.Certificate
	// SHA256 and SHA1 are the fingerprints a person recorded, as
	// x509cert.FormatFingerprint writes them; either may be empty. They
	// are empty when Certificate is set.
	SHA256, SHA1 string
	// Record is set when the mapping is what a person recorded (manual
	// driver), not what a registry returned.
	Record *Record
}

// Record says who recorded a mapping, and when.
type Record struct {
	By   string
	At   time.Time
	Note string
	// Operation is the manual re-registration whose confirmed step
	// recorded it; empty for a person's RecordTargetMapping.
	Operation string
}

// NewMapping is what an upload creates.
type NewMapping struct {
	ConfigurationName string
	IntegrationName   string
	LoginName         string
	Certificate       *x509.Certificate
}

// Lister reads one SF company's mappings: every driver does, the manual one
// from what a person recorded.
type Lister interface {
	// List returns every mapping.
	List(ctx context.Context) ([]Mapping, error)
}

// Driver is how the service reads and changes one SF company's mappings
// itself (the HTTP driver).
type Driver interface {
	Lister
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
