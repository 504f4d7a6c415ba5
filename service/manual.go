package service

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// RecordTargetMapping implements certsync.v1.CertSyncService: what a person
// sees in SF's Security Center, for a connection whose registry is manual.
// Compare uses it, tagged as a person's record; the gate never allows on it
// alone.
func (s *Server) RecordTargetMapping(ctx context.Context, req *certsyncv1.RecordTargetMappingRequest) (*certsyncv1.RecordTargetMappingResponse, error) {
	if s.st == nil {
		return nil, toStatus(ctx, s.log, errNoStore)
	}
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	rec := &store.TargetRecord{
		Connection: c.Config.ID, ConfigurationName: strings.TrimSpace(req.GetConfigurationName()),
		IntegrationName: strings.TrimSpace(req.GetIntegrationName()), LoginName: strings.TrimSpace(req.GetLoginName()),
		Note: req.GetNote(), RecordedBy: callerIdentity(ctx).Name, RecordTime: s.now(),
	}
	var fp *x509cert.Fingerprint
	if req.GetFingerprint() != "" {
		f, err := x509cert.NormalizeFingerprint(req.GetFingerprint())
		if err != nil {
			return nil, toStatus(ctx, s.log, fault.Invalid("fingerprint", "INVALID_FINGERPRINT", "fingerprint: %v", err))
		}
		fp = &f
	}
	switch {
	case len(req.GetCertificate()) > 0:
		cert, err := parseOneCertificate("certificate", req.GetCertificate(), nil)
		if err != nil {
			return nil, toStatus(ctx, s.log, err)
		}
		sum := x509cert.Summarize(cert)
		if fp != nil && !sum.Matches(*fp) {
			return nil, toStatus(ctx, s.log, fault.Invalid("fingerprint", "FINGERPRINT_NOT_CERTIFICATE",
				"the fingerprint %s is not the certificate's (SHA-256 %s, SHA-1 %s): give one of them, or both from the same mapping", *fp, sum.SHA256, sum.SHA1))
		}
		rec.SetCertificate(cert.Raw)
	case fp != nil:
		if fp.Algorithm == x509cert.AlgorithmSHA1 {
			rec.SHA1 = hex.EncodeToString(fp.Sum)
		} else {
			rec.SHA256 = hex.EncodeToString(fp.Sum)
		}
	default:
		return nil, toStatus(ctx, s.log, fault.Invalid("fingerprint", "FINGERPRINT_REQUIRED",
			"give the fingerprint SF shows for the mapping (SHA-1 or SHA-256), or the certificate file"))
	}
	// The input is judged first, then the connection's state.
	if !c.Manual() {
		return nil, toStatus(ctx, s.log, fault.New(fault.FailedPrecondition, "REGISTRY_NOT_MANUAL",
			"%s reads SF's mappings itself (registry driver %s): there is nothing for a person to record", c.Name(), c.Config.Registry.Driver).With("connection", c.Name()))
	}
	ev := s.newAudit(ctx, certsyncv1.CertSyncService_RecordTargetMapping_FullMethodName)
	if ev != nil {
		ev.Connection, ev.Reason = c.Name(), req.GetNote()
	}
	stored, err := s.st.RecordTarget(ctx, rec, ev)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.audited(ctx, ev)
	if s.gate != nil {
		s.gate.Invalidate(c.Config.ID)
	}
	s.log.InfoContext(ctx, "target mapping recorded", "connection", c.Name(), "record", stored.ID, "sha256", stored.SHA256, "sha1", stored.SHA1)

	// Answer with the mapping as compare sees it: against IPS's active
	// certificate when it can be read.
	mappings, err := registry.RecordedMappings(stored)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	in := compare.Input{Mappings: mappings, Now: s.now()}
	if c.Source != nil {
		in.Source, in.SourceErr = c.Source.Active(ctx)
	}
	resp := comparisonProto(c, compare.Compare(in), s.now())
	out := &certsyncv1.RecordTargetMappingResponse{}
	if len(resp.Targets) > 0 {
		out.Mapping = resp.Targets[0]
	}
	return out, nil
}

// ConfirmOperationStep implements certsync.v1.CertSyncService: a person
// performed a manual step in SF's UI.
func (s *Server) ConfirmOperationStep(ctx context.Context, req *certsyncv1.ConfirmOperationStepRequest) (*certsyncv1.ConfirmOperationStepResponse, error) {
	kind, err := stepKindOf(req.GetStep())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	ops, op, err := s.operation(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	ev := s.newAudit(ctx, certsyncv1.CertSyncService_ConfirmOperationStep_FullMethodName)
	if ev != nil {
		ev.Connection, ev.Operation = connectionPrefix+op.Connection, operationPrefix+op.ID
		ev.Reason = fmt.Sprintf("confirmed %s", kind)
		if n := strings.TrimSpace(req.GetNote()); n != "" {
			ev.Reason += ": " + n
		}
	}
	op, err = ops.Confirm(ctx, reregister.ConfirmRequest{ID: op.ID, Step: kind, Note: req.GetNote(), Fingerprint: req.GetFingerprint(),
		By: callerIdentity(ctx).Name, Audit: ev})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.audited(ctx, ev)
	if op.Done() && s.gate != nil {
		// A late upload on a failed operation: no run goes on to end and
		// invalidate, and what SF shows has changed.
		s.gate.Invalidate(op.Connection)
	}
	s.log.InfoContext(ctx, "manual step confirmed", "operation", operationPrefix+op.ID, "connection", connectionPrefix+op.Connection, "step", string(kind))
	return &certsyncv1.ConfirmOperationStepResponse{Operation: operationProto(op)}, nil
}

// confirmable are the steps a person performs.
var confirmable = map[certsyncv1.StepKind]store.StepKind{
	certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING:     store.StepDeleteMapping,
	certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE: store.StepUploadCertificate,
}

func stepKindOf(k certsyncv1.StepKind) (store.StepKind, error) {
	if kind, ok := confirmable[k]; ok {
		return kind, nil
	}
	if k == certsyncv1.StepKind_STEP_KIND_UNSPECIFIED {
		return "", fault.Invalid("step", "STEP_REQUIRED", "step is required: STEP_KIND_DELETE_MAPPING or STEP_KIND_UPLOAD_CERTIFICATE")
	}
	return "", fault.Invalid("step", "STEP_NOT_CONFIRMABLE", "%s is not a step a person performs: only STEP_KIND_DELETE_MAPPING and STEP_KIND_UPLOAD_CERTIFICATE are confirmed", k)
}

// instructionProto is a manual step's instruction with the certificate as
// PEM, ready to save and upload.
func instructionProto(in *store.Instruction) *certsyncv1.ManualInstruction {
	if in == nil {
		return nil
	}
	p := &certsyncv1.ManualInstruction{Text: in.Text, ConfigurationName: in.ConfigurationName, IntegrationName: in.IntegrationName,
		LoginName: in.LoginName, Sha256Fingerprint: in.SHA256}
	if len(in.CertificateDER) > 0 {
		p.CertificatePem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: in.CertificateDER}))
	}
	return p
}

// awaiting is the step of a running operation that waits for a person.
func awaiting(op *store.Operation) (store.Step, bool) {
	for _, st := range op.Steps {
		if st.State == store.StepAwaitingConfirmation {
			return st, true
		}
	}
	return store.Step{}, false
}
