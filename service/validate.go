package service

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/fault"
)

const (
	maxPageSize      = 500
	maxPageTokenLen  = 512
	maxReasonLen     = 512
	maxJobIDLen      = 128
	maxEvidenceAge   = 24 * time.Hour
	maxWaitTimeout   = 10 * time.Minute
	maxIdentifierLen = 256
)

// validateRequest checks the shape of a request before any handler runs, so
// that handlers only see well-formed input. It returns every violation at
// once; content checks that need the domain (is this valid DER?) stay with
// the domain packages.
func validateRequest(req any) error {
	var vs []*fault.FieldViolation
	add := func(v *fault.FieldViolation) {
		if v != nil {
			vs = append(vs, v)
		}
	}
	conn := func(name string) {
		_, v := connectionID("name", name)
		add(v)
	}
	op := func(name string) {
		_, v := operationID("name", name)
		add(v)
	}
	switch r := req.(type) {
	case *certsyncv1.ListConnectionsRequest:
		add(checkPage(r.GetPageSize(), r.GetPageToken()))
	case *certsyncv1.GetConnectionRequest:
		conn(r.GetName())
	case *certsyncv1.InspectCertificateRequest:
		if len(r.GetData()) == 0 {
			add(&fault.FieldViolation{Field: "data", Reason: "EMPTY_INPUT", Description: "data is empty: send a PEM or DER certificate"})
		}
	case *certsyncv1.DiagnoseJobErrorRequest:
		if r.GetText() == "" {
			add(&fault.FieldViolation{Field: "text", Reason: "REQUIRED", Description: "text is empty: send the job error as IPS shows it"})
		}
	case *certsyncv1.CompareFingerprintsRequest:
		conn(r.GetName())
	case *certsyncv1.ProbeScimAuthRequest:
		conn(r.GetName())
	case *certsyncv1.ReregisterCertificateRequest:
		conn(r.GetName())
		if id := r.GetRequestId(); id != "" && !requestIDPattern.MatchString(id) {
			add(&fault.FieldViolation{Field: "request_id", Reason: "INVALID_REQUEST_ID", Description: "request_id must be 1-128 characters of A-Z a-z 0-9 . _ : -"})
		}
		add(checkText("reason", r.GetReason(), maxReasonLen))
		add(checkText("etag", r.GetEtag(), maxIdentifierLen))
		add(checkText("mapping_id", r.GetMappingId(), maxIdentifierLen))
	case *certsyncv1.GetOperationRequest:
		op(r.GetName())
	case *certsyncv1.ListOperationsRequest:
		if r.GetConnection() != "" {
			_, v := connectionID("connection", r.GetConnection())
			add(v)
		}
		add(checkPage(r.GetPageSize(), r.GetPageToken()))
	case *certsyncv1.WaitOperationRequest:
		op(r.GetName())
		add(checkDuration("timeout", r.GetTimeout(), maxWaitTimeout))
	case *certsyncv1.CancelOperationRequest:
		op(r.GetName())
		add(checkText("reason", r.GetReason(), maxReasonLen))
	case *certsyncv1.ApproveOperationRequest:
		op(r.GetName())
		add(checkText("reason", r.GetReason(), maxReasonLen))
	case *certsyncv1.ConfirmOperationStepRequest:
		op(r.GetName())
		add(checkText("note", r.GetNote(), maxReasonLen))
		add(checkText("fingerprint", r.GetFingerprint(), maxIdentifierLen))
	case *certsyncv1.CheckGateRequest:
		conn(r.GetName())
		add(checkDuration("max_evidence_age", r.GetMaxEvidenceAge(), maxEvidenceAge))
		add(checkText("job_id", r.GetJobId(), maxJobIDLen))
	case *certsyncv1.WatchGateRequest:
		conn(r.GetName())
	case *certsyncv1.ImportSourceCertificateRequest:
		conn(r.GetName())
		add(checkText("reason", r.GetReason(), maxReasonLen))
	case *certsyncv1.ListSourceCertificatesRequest:
		conn(r.GetName())
		add(checkPage(r.GetPageSize(), r.GetPageToken()))
	case *certsyncv1.RecordTargetMappingRequest:
		conn(r.GetName())
		add(checkText("note", r.GetNote(), maxReasonLen))
		add(checkText("configuration_name", r.GetConfigurationName(), maxIdentifierLen))
		add(checkText("integration_name", r.GetIntegrationName(), maxIdentifierLen))
		add(checkText("login_name", r.GetLoginName(), maxIdentifierLen))
		add(checkText("fingerprint", r.GetFingerprint(), maxIdentifierLen))
	case *certsyncv1.StartProvisioningJobRequest:
		conn(r.GetName())
		add(checkText("reason", r.GetReason(), maxReasonLen))
	case *certsyncv1.GetProvisioningJobRequest:
		conn(r.GetName())
		if id := r.GetJobId(); id == "" || !requestIDPattern.MatchString(id) {
			add(&fault.FieldViolation{Field: "job_id", Reason: "INVALID_JOB_ID", Description: "job_id must be 1-128 characters of A-Z a-z 0-9 . _ : -"})
		}
	case *certsyncv1.GetEscalationBundleRequest:
		conn(r.GetName())
	case *certsyncv1.ListAuditEventsRequest:
		if r.GetConnection() != "" {
			_, v := connectionID("connection", r.GetConnection())
			add(v)
		}
		add(checkPage(r.GetPageSize(), r.GetPageToken()))
	}
	if len(vs) == 0 {
		return nil
	}
	e := fault.New(fault.InvalidArgument, "INVALID_REQUEST", "%s", vs[0].Description)
	if len(vs) > 1 {
		e.Message = fmt.Sprintf("%s (and %d more problems, see BadRequest details)", vs[0].Description, len(vs)-1)
	}
	for _, v := range vs {
		e.Fields = append(e.Fields, *v)
	}
	return e
}

func checkPage(size int32, token string) *fault.FieldViolation {
	if size < 0 {
		return &fault.FieldViolation{Field: "page_size", Reason: "NEGATIVE", Description: fmt.Sprintf("page_size is %d; it must be 0 (default) to %d", size, maxPageSize)}
	}
	if len(token) > maxPageTokenLen {
		return &fault.FieldViolation{Field: "page_token", Reason: "INVALID_PAGE_TOKEN", Description: "page_token is not one this server issued"}
	}
	return nil
}

func checkDuration(field string, d *durationpb.Duration, max time.Duration) *fault.FieldViolation {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return &fault.FieldViolation{Field: field, Reason: "INVALID_DURATION", Description: fmt.Sprintf("%s is not a valid duration: %v", field, err)}
	}
	v := d.AsDuration()
	if v < 0 || v > max {
		return &fault.FieldViolation{Field: field, Reason: "OUT_OF_RANGE", Description: fmt.Sprintf("%s is %s; it must be between 0s and %s", field, v, max)}
	}
	return nil
}

// validationUnary rejects malformed requests with INVALID_ARGUMENT and a
// BadRequest detail listing each field at fault.
func (s *Server) validationUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := validateRequest(req); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return handler(ctx, req)
}

// validationStream validates the first (and, for server streams, only)
// request message of a stream.
func (s *Server) validationStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &validatingStream{ServerStream: ss, s: s})
}

type validatingStream struct {
	grpc.ServerStream
	s *Server
}

func (v *validatingStream) RecvMsg(m any) error {
	if err := v.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := validateRequest(m); err != nil {
		return toStatus(v.Context(), v.s.log, err)
	}
	return nil
}
