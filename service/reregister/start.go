package reregister

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// Request asks for a re-registration. The mapping's fields never come from
// here: they come from the old mapping and the connection's configuration.
type Request struct {
	Connection   string // connection id
	Etag         string
	ValidateOnly bool
	RequestID    string
	MappingID    string
	Reason       string
	RequestedBy  string
	// Audit, when not nil, is written in the same transaction as the new
	// operation: a change whose audit cannot be written is refused.
	Audit *store.AuditEvent
	// Automatic marks an operation the service started on its own.
	Automatic bool
}

// Start checks the preconditions, journals the operation with everything a
// recovery needs, and runs its side effects in the background. It returns
// the operation at once (RUNNING), or already done for a dry run.
func (m *Manager) Start(ctx context.Context, req Request) (*store.Operation, error) {
	if m.draining.Load() {
		return nil, fault.New(fault.Unavailable, "SHUTTING_DOWN", "this certsync replica is shutting down; ask again (another replica, or this one after its restart, takes the request)")
	}
	c, ok := m.o.Inventory.Get(req.Connection)
	if !ok {
		return nil, fault.New(fault.NotFound, "CONNECTION_NOT_FOUND", "connection %q is not configured", "connections/"+req.Connection)
	}
	if req.RequestID != "" {
		op, err := m.o.Store.FindOperationByRequestID(ctx, c.Config.ID, req.RequestID)
		if err == nil {
			return op, nil // a retried call: the same operation
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if id, busy := m.Running(ctx, c.Config.ID); busy {
		return nil, busyFault(c, id)
	}

	plan, err := m.plan(ctx, c, req)
	if err != nil {
		return nil, err
	}
	now := m.o.Now()
	op := &store.Operation{
		ID: randomID(), Connection: c.Config.ID, State: store.StateRunning,
		RequestID: req.RequestID, Reason: req.Reason, RequestedBy: req.RequestedBy, ValidateOnly: req.ValidateOnly, Automatic: req.Automatic,
		Manual: c.Manual(),
		Etag:   plan.etag, MappingID: plan.mappingID, SourceCertificateDER: plan.source.Raw,
		Backup: plan.backup, Upload: plan.upload, LockKeys: lockKeys(c, plan.mappingKey),
		CreateTime: now, UpdateTime: now,
		Steps: []store.Step{
			{Kind: store.StepCheckPreconditions, State: store.StepSucceeded, Message: plan.checks, StartTime: now, EndTime: now, Attempts: 1},
			{Kind: store.StepReadSource, State: store.StepSucceeded, Message: "IPS's active certificate, SHA-256 " + x509cert.SHA256Fingerprint(plan.source.Raw) + ", journaled", StartTime: now, EndTime: now, Attempts: 1},
			backupStep(plan.backup, now),
			{Kind: store.StepDeleteMapping, State: store.StepPending},
			{Kind: store.StepUploadCertificate, State: store.StepPending},
			{Kind: store.StepVerifyReadback, State: store.StepPending},
			{Kind: store.StepProbe, State: store.StepPending},
		},
	}
	if req.Audit != nil {
		req.Audit.Operation = "operations/" + op.ID
	}
	switch {
	case op.Manual:
		// A person deletes (or confirms there is nothing to delete: a
		// record may be stale) and uploads; the service verifies.
		op.Steps = append(op.Steps[:3], manualSteps()...)
	case plan.backup == nil:
		op.Steps[3] = store.Step{Kind: store.StepDeleteMapping, State: store.StepSkipped, Message: "SF maps no certificate for IPS: nothing to delete"}
	}

	if req.ValidateOnly {
		// A dry run changes nothing: it is stored done, for the record.
		for i := range op.Steps {
			if op.Steps[i].State == store.StepPending {
				op.Steps[i].State, op.Steps[i].Message = store.StepSkipped, "validate_only: not run"
			}
		}
		op.State, op.EndTime = store.StateSucceeded, now
		op.Notes = append(op.Notes, "validate_only: every check passed; nothing was changed in SF")
		return m.create(ctx, op, req.Audit)
	}
	if c.Config.RequiresApproval {
		// Nothing is locked or changed until someone else approves.
		op.State = store.StatePendingApproval
		op.Steps = append(op.Steps[:3], append([]store.Step{{Kind: store.StepAwaitApproval, State: store.StepAwaitingConfirmation,
			StartTime: now, Message: "waiting for another identity with the approver role (ApproveOperation)"}}, op.Steps[3:]...)...)
		created, err := m.create(ctx, op, req.Audit)
		if err == nil {
			m.noteChange()
		}
		return created, err
	}

	owner := m.owner(op.ID)
	ok, holder, err := m.acquire(ctx, op.LockKeys, owner)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, busyFault(c, holder)
	}
	created, err := m.create(ctx, op, req.Audit)
	if err != nil || created.ID != op.ID {
		m.release(op.LockKeys, owner)
		return created, err
	}
	// The run gets its own copy: the caller reads created while the run
	// journals its steps.
	mine, err := m.o.Store.GetOperation(ctx, created.ID)
	if err != nil {
		m.release(op.LockKeys, owner)
		return nil, err
	}
	m.launch(mine, owner)
	return created, nil
}

func (m *Manager) create(ctx context.Context, op *store.Operation, audit *store.AuditEvent) (*store.Operation, error) {
	created, err := m.o.Store.CreateOperation(ctx, op, audit)
	if errors.Is(err, store.ErrConflict) && created != nil {
		return created, nil // the same request_id raced in from elsewhere
	}
	return created, err
}

func busyFault(c *inventory.Connection, opID string) error {
	return fault.New(fault.Aborted, "OPERATION_IN_PROGRESS",
		"%s already has operation operations/%s running; wait for it (WaitOperation) or cancel it", c.Name(), opID).
		With("connection", c.Name()).With("operation", "operations/"+opID)
}

func backupStep(b *store.Mapping, now time.Time) store.Step {
	if b == nil {
		return store.Step{Kind: store.StepBackupMapping, State: store.StepSkipped, Message: "no mapping to back up"}
	}
	fp := "SHA-256 " + b.SHA256
	if len(b.CertificateDER) > 0 {
		fp = "SHA-256 " + x509cert.SHA256Fingerprint(b.CertificateDER)
	} else if b.SHA256 == "" {
		fp = "SHA-1 " + b.SHA1
	}
	return store.Step{Kind: store.StepBackupMapping, State: store.StepSucceeded, StartTime: now, EndTime: now, Attempts: 1,
		Message: fmt.Sprintf("mapping %s (configuration %q, integration %q, login %q, %s) journaled", b.ID, b.ConfigurationName, b.IntegrationName, b.LoginName, fp)}
}

type plan struct {
	source     *x509.Certificate
	etag       string
	mappingID  string
	mappingKey string
	backup     *store.Mapping
	upload     *store.Mapping
	checks     string
}

// plan runs every check against a fresh comparison and decides what the
// operation will delete and upload.
func (m *Manager) plan(ctx context.Context, c *inventory.Connection, req Request) (*plan, error) {
	reading := c.Read(ctx, m.o.Now(), 0)
	src, srcErr := reading.Source, reading.SourceErr
	unrecorded := false
	if c.Manual() && errors.Is(reading.RegistryErr, registry.ErrNotRecorded) {
		// Nobody recorded what SF shows: the person will look for the
		// mapping by IPS's subject and issuer.
		cmp := compare.Compare(compare.Input{Source: src, SourceErr: srcErr, Now: m.o.Now(),
			PinnedSubject: c.Config.PinnedSubject, PinnedIssuer: c.Config.PinnedIssuer})
		reading.RegistryErr, reading.Comparison, unrecorded = nil, &cmp, true
	}
	if err := reading.RegistryErr; err != nil {
		var re *registry.Error
		if errors.As(err, &re) && re.Transient {
			e := fault.New(fault.Unavailable, "REGISTRY_UNAVAILABLE", "SF's certificate registry could not be reached (step %s): %s", re.Step, re.Message).With("step", string(re.Step)).With("connection", c.Name())
			e.RetryAfter, e.Cause = 5*time.Second, err
			return nil, e
		}
		return nil, fault.New(fault.FailedPrecondition, "REGISTRY_REFUSED", "SF's certificate registry refused to list mappings: %v", err).With("connection", c.Name())
	}
	cmp := *reading.Comparison
	precondition := func(typ, reason, format string, args ...any) error {
		e := fault.New(fault.FailedPrecondition, reason, format, args...).With("connection", c.Name())
		e.Violations = []fault.Violation{{Type: typ, Subject: c.Name(), Description: e.Message}}
		return e
	}
	if req.Etag != "" && req.Etag != cmp.Etag {
		return nil, precondition("ETAG", "ETAG_MISMATCH",
			"the etag no longer holds: IPS's certificate or SF's mapping changed since the comparison (compare again and retry)").(*fault.Error).With("etag", req.Etag).With("current_etag", cmp.Etag)
	}
	if src == nil {
		return nil, precondition("SOURCE", "SOURCE_MISSING", "IPS's active certificate could not be read: %v", srcErr)
	}
	sum := x509cert.Summarize(src)
	now := m.o.Now()
	switch {
	case c.Config.PinnedSubject != "" && sum.Subject != c.Config.PinnedSubject:
		return nil, precondition("PINNED_DN", "SOURCE_DN_NOT_PINNED", "IPS's certificate has subject %q, not the pinned %q: certsync uploads only the pinned certificate", sum.Subject, c.Config.PinnedSubject)
	case c.Config.PinnedIssuer != "" && sum.Issuer != c.Config.PinnedIssuer:
		return nil, precondition("PINNED_DN", "SOURCE_DN_NOT_PINNED", "IPS's certificate has issuer %q, not the pinned %q: certsync uploads only the pinned certificate", sum.Issuer, c.Config.PinnedIssuer)
	case sum.Expired(now) || sum.NotYetValid(now):
		return nil, precondition("SOURCE", "SOURCE_NOT_VALID", "IPS's active certificate is not valid now (%s to %s): renew it in IPS first", sum.NotBefore.UTC().Format("2006-01-02"), sum.NotAfter.UTC().Format("2006-01-02"))
	case !sum.ClientAuth:
		return nil, precondition("SOURCE", "SOURCE_NOT_CLIENT_AUTH", "IPS's certificate does not allow TLS client authentication")
	}

	// The mapping to replace: the one the comparison found, or the one the
	// caller names, which must then be a candidate (same issuer and subject
	// or same certificate): nobody can make certsync delete another mapping.
	var target *registry.Mapping
	candidates := map[string]registry.Mapping{}
	for _, t := range cmp.Targets {
		if t.Candidate {
			candidates[t.Mapping.ID] = t.Mapping
		}
	}
	switch {
	case req.MappingID != "":
		mp, ok := candidates[req.MappingID]
		if !ok {
			return nil, precondition("MAPPING", "MAPPING_NOT_CANDIDATE", "mapping %q is not one of SF's mappings for IPS's certificate (same issuer and subject, or same fingerprint)", req.MappingID)
		}
		target = &mp
	case cmp.Result == compare.ResultAmbiguous:
		return nil, precondition("MAPPING", "AMBIGUOUS_MAPPING", "several SF mappings could be IPS's; name the one to replace with mapping_id")
	case cmp.MappingID != "":
		mp := candidates[cmp.MappingID]
		target = &mp
	}

	p := &plan{source: src, etag: cmp.Etag}
	reg := c.Config.Registry
	up := &store.Mapping{IntegrationName: reg.IntegrationName, ConfigurationName: reg.ConfigurationName, LoginName: reg.LoginName, CertificateDER: src.Raw}
	if target != nil {
		p.mappingID = target.ID
		p.backup = &store.Mapping{ID: target.ID, ConfigurationName: target.ConfigurationName, IntegrationName: target.IntegrationName, LoginName: target.LoginName,
			SHA256: target.SHA256, SHA1: target.SHA1}
		if target.Certificate != nil {
			p.backup.CertificateDER = target.Certificate.Raw
		}
		if up.ConfigurationName == "" {
			up.ConfigurationName = target.ConfigurationName
		}
		if up.LoginName == "" {
			up.LoginName = target.LoginName
		}
	}
	if up.ConfigurationName == "" {
		up.ConfigurationName = "IPS " + c.Config.ID
	}
	p.upload = up
	key := sha256.Sum256(append(append([]byte{}, src.RawIssuer...), src.RawSubject...))
	p.mappingKey = hex.EncodeToString(key[:16])
	p.checks = fmt.Sprintf("comparison %s (etag %s); source valid until %s", cmp.Result, cmp.Etag, sum.NotAfter.UTC().Format("2006-01-02"))
	if req.Etag != "" {
		p.checks += "; the caller's etag holds"
	}
	if unrecorded {
		p.checks += "; nobody recorded SF's mapping (manual registry), so the delete step names IPS's subject and issuer"
	}
	return p, nil
}
