// Package store keeps what must survive a restart: operations with their
// step journal (including the certificate bytes to upload and the mapping
// deleted), idempotency keys, locks with expiry measured by the database's
// clock, and the audit log. Two implementations pass one acceptance suite:
// SQLite (pure Go, the default) and PostgreSQL (for several replicas).
package store

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Errors every implementation returns, so that callers can tell them apart
// with errors.Is.
var (
	// ErrNotFound: no such operation (or source certificate).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the operation changed since it was read (its Version
	// moved), or an operation with the same request id exists.
	ErrConflict = errors.New("store: conflict")
	// ErrSchemaTooNew: the database was migrated by a newer certsync.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	// ErrAuditChainBroken: PruneAudit refused to remove events that do
	// not verify, since removing them would destroy the evidence.
	ErrAuditChainBroken = errors.New("store: audit chain does not verify")
)

// OperationState is where an operation stands.
type OperationState string

// States; the final ones are Succeeded, Failed, RolledBack and Cancelled.
const (
	StateRunning         OperationState = "RUNNING"
	StatePendingApproval OperationState = "PENDING_APPROVAL"
	StateSucceeded       OperationState = "SUCCEEDED"
	StateFailed          OperationState = "FAILED"
	StateRolledBack      OperationState = "ROLLED_BACK"
	StateCancelled       OperationState = "CANCELLED"
)

// Done reports whether the state is final.
func (s OperationState) Done() bool {
	switch s {
	case StateSucceeded, StateFailed, StateRolledBack, StateCancelled:
		return true
	}
	return false
}

// StepKind names a step of a re-registration.
type StepKind string

// Steps, in the order they run.
const (
	StepCheckPreconditions StepKind = "CHECK_PRECONDITIONS"
	StepReadSource         StepKind = "READ_SOURCE"
	StepBackupMapping      StepKind = "BACKUP_MAPPING"
	StepDeleteMapping      StepKind = "DELETE_MAPPING"
	StepUploadCertificate  StepKind = "UPLOAD_CERTIFICATE"
	StepVerifyReadback     StepKind = "VERIFY_READBACK"
	StepProbe              StepKind = "PROBE"
	StepRestoreMapping     StepKind = "RESTORE_MAPPING"
	StepAwaitApproval      StepKind = "AWAIT_APPROVAL"
	StepVerifyJob          StepKind = "VERIFY_JOB"
)

// StepState is where one step stands.
type StepState string

// Step states. A step is journaled RUNNING before its side effect and
// SUCCEEDED or FAILED after it, so that recovery knows whether the side
// effect may have happened.
const (
	StepPending              StepState = "PENDING"
	StepRunning              StepState = "RUNNING"
	StepSucceeded            StepState = "SUCCEEDED"
	StepFailed               StepState = "FAILED"
	StepSkipped              StepState = "SKIPPED"
	StepAwaitingConfirmation StepState = "AWAITING_CONFIRMATION"
)

// Step is the journal record of one step.
type Step struct {
	Kind      StepKind  `json:"kind"`
	State     StepState `json:"state"`
	Message   string    `json:"message,omitempty"`
	StartTime time.Time `json:"start_time,omitzero"`
	EndTime   time.Time `json:"end_time,omitzero"`
	Attempts  int       `json:"attempts,omitempty"`
	// Instruction is what a person must do in SF's UI, for the steps of a
	// manual re-registration; nil otherwise.
	Instruction *Instruction `json:"instruction,omitempty"`
	// Deadline is when a step waiting for a person's confirmation times
	// out; zero otherwise.
	Deadline time.Time `json:"deadline,omitzero"`
	// ConfirmedBy is the identity that confirmed a manual step.
	ConfirmedBy string `json:"confirmed_by,omitempty"`
	// JobRequested is when certsync asked IPS to start the step's READ job
	// and did not yet learn the job's id; zero otherwise. A run resumed
	// with it set knows that IPS may be running a job it cannot name.
	JobRequested time.Time `json:"job_requested,omitzero"`
}

// Instruction tells a person exactly what to do in SF's Security Center for
// one step of a manual re-registration.
type Instruction struct {
	Text              string `json:"text"`
	CertificateDER    []byte `json:"certificate_der,omitempty"`
	ConfigurationName string `json:"configuration_name,omitempty"`
	IntegrationName   string `json:"integration_name,omitempty"`
	LoginName         string `json:"login_name,omitempty"`
	// SHA256 is the fingerprint of the certificate concerned, as
	// x509cert.FormatFingerprint writes it.
	SHA256 string `json:"sha256,omitempty"`
}

// Mapping is an SF mapping as journaled: every field needed to put it back.
type Mapping struct {
	ID                string `json:"id"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	CertificateDER    []byte `json:"certificate_der"`
	// SHA256 and SHA1 are a manual mapping's fingerprints as a person
	// recorded them (x509cert.FormatFingerprint's form) when the
	// certificate itself is unknown; empty otherwise.
	SHA256 string `json:"sha256,omitempty"`
	SHA1   string `json:"sha1,omitempty"`
}

// OperationError says why an operation did not succeed.
type OperationError struct {
	Code     string            `json:"code"`
	Reason   string            `json:"reason"`
	Message  string            `json:"message"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Probe is the journaled result of the last probe.
type Probe struct {
	Outcome      string        `json:"outcome"`
	HTTPStatus   int           `json:"http_status,omitempty"`
	ErrorCode    string        `json:"error_code,omitempty"`
	ErrorMessage string        `json:"error_message,omitempty"`
	RequestURL   string        `json:"request_url,omitempty"`
	Latency      time.Duration `json:"latency,omitempty"`
	ClientSHA256 string        `json:"client_sha256,omitempty"`
	CheckedAt    time.Time     `json:"checked_at,omitzero"`
}

// Operation is a re-registration with its journal. Implementations store
// the fields they filter on as columns and may store the rest as one
// document; every field must round-trip exactly.
type Operation struct {
	ID         string
	Connection string // connection id (not the resource name)
	State      OperationState
	// Version increases by one on every successful UpdateOperation; an
	// update whose Version is not the stored one fails with ErrConflict.
	Version      int64
	RequestID    string
	Reason       string
	RequestedBy  string
	ApprovedBy   string
	ValidateOnly bool
	Automatic    bool
	// Manual is true for a guided re-registration: a person performs the
	// delete and the upload in SF's UI and confirms each.
	Manual bool
	// LockKeys are the keys the operation holds while it runs (company and
	// mapping key), so that recovery can take them over.
	LockKeys []string
	Etag     string
	// MappingID is the mapping being replaced.
	MappingID string
	// SourceCertificateDER is the certificate to upload, journaled before
	// any delete.
	SourceCertificateDER []byte
	// Backup is the mapping deleted, journaled before the delete.
	Backup *Mapping
	// NewMappingID is the uploaded mapping's id.
	NewMappingID string
	// Upload holds the fields the upload uses (configuration, integration
	// and login name), journaled with the source certificate.
	Upload     *Mapping
	Steps      []Step
	Error      *OperationError
	FinalProbe *Probe
	// CancelRequested asks whoever runs the operation to stop before its
	// next side effect; CancelReason says why.
	CancelRequested bool
	CancelReason    string
	// Log lines of recovery and other notes, oldest first.
	Notes      []string
	CreateTime time.Time
	UpdateTime time.Time
	EndTime    time.Time
}

// Done reports whether the operation is final.
func (o *Operation) Done() bool { return o.State.Done() }

// ListFilter selects operations.
type ListFilter struct {
	// Connection limits to one connection id; empty means all.
	Connection string
	// PageSize is at most this many; 0 means 50.
	PageSize int
	// PageToken continues a previous listing; empty starts at the newest.
	PageToken string
}

// AuditEvent records a state-changing or refused call.
type AuditEvent struct {
	// Sequence is assigned by the store, from 1.
	Sequence   int64
	Time       time.Time
	Identity   string
	Role       string
	RPC        string
	Connection string
	RequestID  string
	Reason     string
	Outcome    string
	Operation  string
	// Hash and PreviousHash are computed by the store when it appends:
	// Hash = hex(SHA-256(PreviousHash || canonical encoding of the other
	// fields)); see HashEvent.
	Hash         string
	PreviousHash string
}

// AuditVerification is the result of checking the chain.
type AuditVerification struct {
	Intact           bool
	EventsChecked    int64
	FirstBadSequence int64
	Message          string
	// PrunedThrough is the sequence of the last event PruneAudit removed
	// (all events up to it are gone), 0 when none was; the check started
	// after it.
	PrunedThrough int64
}

// SourceCertificate is one version of IPS's outbound certificate, imported
// by an operator from IPS > Outbound Certificate (IPS has no API to download
// it). A connection has at most one Active version: the one IPS shows as
// Active.
type SourceCertificate struct {
	// ID is the version's id; ImportSourceCertificate assigns one when it
	// is empty.
	ID string
	// Connection is the connection id (not the resource name).
	Connection string
	// DER is the certificate.
	DER []byte
	// SHA256 is lower-case hex of SHA-256(DER), computed by the store.
	SHA256 string
	// Active is true when IPS shows this certificate as the Active one.
	Active bool
	// ImportTime is when the version was first imported; zero means now.
	ImportTime time.Time
	ImportedBy string
	Reason     string
}

// Lock is a lease on a key.
type Lock struct {
	Key     string
	Owner   string
	Expires time.Time
}

// Store is the persistence interface. Every method takes a context first and
// is safe for concurrent use, also across processes sharing one database.
type Store interface {
	// CreateOperation stores a new operation (Version becomes 1) and, when
	// audit is not nil, appends it in the same transaction. An operation with
	// the same Connection and non-empty RequestID yields ErrConflict and the
	// existing operation.
	CreateOperation(ctx context.Context, op *Operation, audit *AuditEvent) (*Operation, error)
	// GetOperation returns one operation or ErrNotFound.
	GetOperation(ctx context.Context, id string) (*Operation, error)
	// FindOperationByRequestID returns the operation created with this
	// request id on this connection, or ErrNotFound.
	FindOperationByRequestID(ctx context.Context, connection, requestID string) (*Operation, error)
	// ListOperations returns operations newest first (by CreateTime, then
	// ID) and a token for the next page ("" on the last).
	ListOperations(ctx context.Context, f ListFilter) ([]*Operation, string, error)
	// ListUnfinished returns every operation whose state is not final,
	// oldest first.
	ListUnfinished(ctx context.Context) ([]*Operation, error)
	// ListEndedSince returns the operations in a final state whose last
	// update was at or after since, oldest update first.
	ListEndedSince(ctx context.Context, since time.Time) ([]*Operation, error)
	// UpdateOperation replaces the stored operation if its Version is still
	// op.Version, then sets op.Version to the new one; else ErrConflict.
	// When audit is not nil it is appended in the same transaction.
	UpdateOperation(ctx context.Context, op *Operation, audit *AuditEvent) error

	// AcquireLock takes or renews the lease on key for owner, until ttl
	// from now by the database's clock. It returns false with the current
	// holder when another owner holds an unexpired lease.
	AcquireLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, Lock, error)
	// ReleaseLock ends owner's lease on key; releasing a lease not held is
	// not an error.
	ReleaseLock(ctx context.Context, key, owner string) error
	// GetLock returns the current lease on key; ok is false when none is
	// held or it expired.
	GetLock(ctx context.Context, key string) (Lock, bool, error)

	// AppendAudit appends one event to the chain.
	AppendAudit(ctx context.Context, ev *AuditEvent) error
	// ListAudit returns events newest first, optionally for one connection.
	ListAudit(ctx context.Context, connection string, pageSize int, pageToken string) ([]*AuditEvent, string, error)
	// VerifyAudit recomputes the chain: from the first event or, once
	// PruneAudit removed events, from the first remaining one, whose
	// PreviousHash must equal the hash the prune recorded. Its Message
	// then also says how many older events were pruned.
	VerifyAudit(ctx context.Context) (AuditVerification, error)
	// PruneAudit removes the oldest events whose Time is before before:
	// the longest run from the start of the (remaining) chain in which
	// every event is older than before, so that the rest stays one
	// verifiable chain; an event that is not older stops the run even
	// when later ones are. The newest event is always kept, and so is
	// every event when before is the zero time. In the same transaction
	// it records a checkpoint (sequence and hash of the last event
	// removed, when, and how many) for VerifyAudit to start from. It
	// first checks the events it is about to remove and, when they do
	// not verify, removes nothing and returns ErrAuditChainBroken. It
	// returns the number of events removed.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)

	// ImportSourceCertificate stores a version of IPS's certificate and,
	// when audit is not nil, appends audit in the same transaction. When
	// c is Active, the connection's previously active version becomes
	// inactive. When the connection already has a version with the same
	// DER, no second one is stored: that version's Active flag is set to
	// c.Active and it is returned with its own ID, ImportTime, ImportedBy
	// and Reason (so a returned ID other than c.ID tells a repeat). An ID
	// taken by another version yields ErrConflict.
	ImportSourceCertificate(ctx context.Context, c *SourceCertificate, audit *AuditEvent) (*SourceCertificate, error)
	// ListSourceCertificates returns a connection's versions newest first
	// (by ImportTime, then ID) and a token for the next page ("" on the
	// last); an empty connection lists every connection's.
	ListSourceCertificates(ctx context.Context, connection string, pageSize int, pageToken string) ([]*SourceCertificate, string, error)
	// ActiveSourceCertificate returns the connection's Active version, or
	// ErrNotFound when it has none.
	ActiveSourceCertificate(ctx context.Context, connection string) (*SourceCertificate, error)

	// RecordTarget appends what was seen of IPS's mapping in SF's
	// Security Center for a connection whose registry is manual (or, when
	// r.Absent, that SF shows none) and, when audit is not nil, appends
	// audit in the same transaction. The store assigns ID when it is empty
	// and RecordTime when it is zero, lower-cases SHA256 and SHA1, and
	// returns the stored record. An ID taken yields ErrConflict.
	RecordTarget(ctx context.Context, r *TargetRecord, audit *AuditEvent) (*TargetRecord, error)
	// LatestTargetRecord returns the connection's newest record (by
	// RecordTime, then insertion order), or ErrNotFound.
	LatestTargetRecord(ctx context.Context, connection string) (*TargetRecord, error)
	// ListTargetRecords returns a connection's records newest first and a
	// token for the next page ("" on the last).
	ListTargetRecords(ctx context.Context, connection string, pageSize int, pageToken string) ([]*TargetRecord, string, error)

	// PutJob stores an IPS provisioning job's record, replacing the one
	// with the same Connection and JobID.
	PutJob(ctx context.Context, j *JobRecord) error
	// GetJob returns one job's record, or ErrNotFound.
	GetJob(ctx context.Context, connection, jobID string) (*JobRecord, error)
	// LatestJobs returns up to limit of a connection's job records, newest
	// StartTime first (then JobID descending).
	LatestJobs(ctx context.Context, connection string, limit int) ([]*JobRecord, error)

	// Close releases the database.
	Close() error
}

// TargetRecord is what was seen of IPS's mapping in SF's Security Center,
// for connections whose registry is manual: SF publishes no API for these
// mappings, so a person reads them off the screen (RecordTargetMapping), or
// a confirmed step of a manual re-registration says what SF now shows.
// What a person recorded alone never makes the gate ALLOW.
type TargetRecord struct {
	// ID is assigned by the store when empty.
	ID string
	// Connection is the connection id (not the resource name).
	Connection string
	// Absent is true when SF shows no mapping for IPS's certificate (after
	// a confirmed delete); the mapping fields are empty then.
	Absent            bool
	ConfigurationName string
	IntegrationName   string
	LoginName         string
	// SHA256 and SHA1 are lower-case hex fingerprints of the mapped
	// certificate; either may be empty (a person may read only one off
	// the screen), and both are set when DER is.
	SHA256 string
	SHA1   string
	// DER is the mapped certificate when the person gave the file; may be
	// empty.
	DER []byte
	// Note is what else the person saw.
	Note       string
	RecordedBy string
	RecordTime time.Time
	// Operation is the id of the manual re-registration whose confirmed
	// step wrote the record; empty for RecordTargetMapping.
	Operation string
}

// SetCertificate records the mapped certificate itself, with both of its
// fingerprints as the record keeps them.
func (r *TargetRecord) SetCertificate(der []byte) {
	sha1Sum, sha256Sum := sha1.Sum(der), sha256.Sum256(der)
	r.DER, r.SHA1, r.SHA256 = der, hex.EncodeToString(sha1Sum[:]), hex.EncodeToString(sha256Sum[:])
}

// JobRecord is what certsync knows of one IPS provisioning job it started
// (StartProvisioningJob, or the verification of a manual re-registration)
// or looked at: the gate reads the latest READ job as evidence for IPS's
// own mapping when the probe uses a separate identity.
type JobRecord struct {
	Connection string
	JobID      string
	// Type is "READ" or "RESYNC".
	Type string
	// Status is IPS's status text, normalized (ips.NormalizeStatus).
	Status string
	// Done is true once IPS reports the job finished.
	Done bool
	// Succeeded is true for a job that finished without errors.
	Succeeded bool
	// Cause is the diagnosis of a failed job's log (diagnose.Cause's
	// name), empty when it succeeded or was not diagnosed.
	Cause string
	// Summary is one sentence for people.
	Summary    string
	StartedBy  string
	Operation  string
	StartTime  time.Time
	UpdateTime time.Time
	// EndTime is when certsync saw the job finished; zero while running.
	EndTime time.Time
	// SourceSHA256 is IPS's active certificate (x509cert's SHA-256 form)
	// when certsync started the job: the job speaks for that certificate
	// only. Empty when unknown; an update without it keeps the stored one.
	SourceSHA256 string
}

// Leases adapts a Store to the lease interface of the gate's background
// refresh: each key is held by one replica at a time.
type Leases struct {
	Store Store
	Owner string
}

// TryLock takes or renews the lease on key for ttl.
func (l Leases) TryLock(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, _, err := l.Store.AcquireLock(ctx, key, l.Owner, ttl)
	return ok, err
}
