package service

import (
	"context"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

const defaultWaitTimeout = time.Minute

func (s *Server) operations() (*reregister.Manager, error) {
	if s.ops == nil {
		return nil, fault.New(fault.Unimplemented, "OPERATIONS_DISABLED", "this server runs without a store: re-registration is not available")
	}
	return s.ops, nil
}

// ReregisterCertificate implements certsync.v1.CertSyncService.
func (s *Server) ReregisterCertificate(ctx context.Context, req *certsyncv1.ReregisterCertificateRequest) (*certsyncv1.ReregisterCertificateResponse, error) {
	ops, err := s.operations()
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	ev := s.newAudit(ctx, certsyncv1.CertSyncService_ReregisterCertificate_FullMethodName)
	if ev != nil {
		ev.Connection, ev.RequestID, ev.Reason = c.Name(), req.GetRequestId(), req.GetReason()
	}
	op, err := ops.Start(ctx, reregister.Request{
		Connection: c.Config.ID, Etag: req.GetEtag(), ValidateOnly: req.GetValidateOnly(), RequestID: req.GetRequestId(),
		MappingID: req.GetMappingId(), Reason: req.GetReason(), RequestedBy: callerIdentity(ctx).Name, Audit: ev,
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.audited(ctx, ev)
	s.log.InfoContext(ctx, "re-registration", "connection", c.Name(), "operation", op.ID, "validate_only", op.ValidateOnly, "request_id", op.RequestID)
	return &certsyncv1.ReregisterCertificateResponse{Operation: operationProto(op)}, nil
}

// operation loads an operation the caller may see: a caller limited to some
// connections sees only their operations (and learns nothing of others').
func (s *Server) operation(ctx context.Context, name string) (*reregister.Manager, *store.Operation, error) {
	ops, err := s.operations()
	if err != nil {
		return nil, nil, err
	}
	op, err := ops.Get(ctx, strings.TrimPrefix(name, operationPrefix))
	if err != nil {
		return nil, nil, err
	}
	if err := auth.CheckAccess(ctx, operationPrefix+op.ID, op.Connection); err != nil {
		return nil, nil, err
	}
	return ops, op, nil
}

// GetOperation implements certsync.v1.CertSyncService.
func (s *Server) GetOperation(ctx context.Context, req *certsyncv1.GetOperationRequest) (*certsyncv1.GetOperationResponse, error) {
	_, op, err := s.operation(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &certsyncv1.GetOperationResponse{Operation: operationProto(op)}, nil
}

// ListOperations implements certsync.v1.CertSyncService.
func (s *Server) ListOperations(ctx context.Context, req *certsyncv1.ListOperationsRequest) (*certsyncv1.ListOperationsResponse, error) {
	ops, err := s.operations()
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	list, next, err := ops.List(ctx, store.ListFilter{
		Connection: strings.TrimPrefix(req.GetConnection(), connectionPrefix),
		PageSize:   pageSize(req.GetPageSize()),
		PageToken:  req.GetPageToken(),
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &certsyncv1.ListOperationsResponse{NextPageToken: next}
	for _, op := range list {
		resp.Operations = append(resp.Operations, operationProto(op))
	}
	return resp, nil
}

// WaitOperation implements certsync.v1.CertSyncService.
func (s *Server) WaitOperation(ctx context.Context, req *certsyncv1.WaitOperationRequest) (*certsyncv1.WaitOperationResponse, error) {
	ops, _, err := s.operation(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	timeout := defaultWaitTimeout
	if req.GetTimeout() != nil {
		timeout = req.GetTimeout().AsDuration()
	}
	// Answer a little before the caller's own deadline, with the operation
	// as it stands, rather than let the call fail.
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - 200*time.Millisecond; left < timeout {
			timeout = max(left, 0)
		}
	}
	op, err := ops.Wait(ctx, strings.TrimPrefix(req.GetName(), operationPrefix), timeout)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &certsyncv1.WaitOperationResponse{Operation: operationProto(op)}, nil
}

// CancelOperation implements certsync.v1.CertSyncService.
func (s *Server) CancelOperation(ctx context.Context, req *certsyncv1.CancelOperationRequest) (*certsyncv1.CancelOperationResponse, error) {
	ops, op, err := s.operation(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	ev := s.newAudit(ctx, certsyncv1.CertSyncService_CancelOperation_FullMethodName)
	if ev != nil {
		ev.Connection, ev.Operation, ev.Reason = connectionPrefix+op.Connection, operationPrefix+op.ID, req.GetReason()
	}
	op, err = ops.Cancel(ctx, op.ID, req.GetReason(), ev)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.audited(ctx, ev)
	return &certsyncv1.CancelOperationResponse{Operation: operationProto(op)}, nil
}

// ApproveOperation implements certsync.v1.CertSyncService.
func (s *Server) ApproveOperation(ctx context.Context, req *certsyncv1.ApproveOperationRequest) (*certsyncv1.ApproveOperationResponse, error) {
	ops, op, err := s.operation(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	ev := s.newAudit(ctx, certsyncv1.CertSyncService_ApproveOperation_FullMethodName)
	if ev != nil {
		ev.Connection, ev.Operation, ev.Reason = connectionPrefix+op.Connection, operationPrefix+op.ID, req.GetReason()
	}
	op, err = ops.Approve(ctx, op.ID, callerIdentity(ctx).Name, ev)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.audited(ctx, ev)
	return &certsyncv1.ApproveOperationResponse{Operation: operationProto(op)}, nil
}

var operationStateProto = map[store.OperationState]certsyncv1.OperationState{
	store.StateRunning:         certsyncv1.OperationState_OPERATION_STATE_RUNNING,
	store.StatePendingApproval: certsyncv1.OperationState_OPERATION_STATE_PENDING_APPROVAL,
	store.StateSucceeded:       certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED,
	store.StateFailed:          certsyncv1.OperationState_OPERATION_STATE_FAILED,
	store.StateRolledBack:      certsyncv1.OperationState_OPERATION_STATE_ROLLED_BACK,
	store.StateCancelled:       certsyncv1.OperationState_OPERATION_STATE_CANCELLED,
}

func stepKindProto(k store.StepKind) certsyncv1.StepKind {
	return certsyncv1.StepKind(certsyncv1.StepKind_value["STEP_KIND_"+string(k)])
}

func stepStateProto(s store.StepState) certsyncv1.StepState {
	return certsyncv1.StepState(certsyncv1.StepState_value["STEP_STATE_"+string(s)])
}

func operationProto(op *store.Operation) *certsyncv1.Operation {
	p := &certsyncv1.Operation{
		Name:         operationPrefix + op.ID,
		Connection:   connectionPrefix + op.Connection,
		State:        operationStateProto[op.State],
		Done:         op.Done(),
		CreateTime:   timestampOrNil(op.CreateTime),
		UpdateTime:   timestampOrNil(op.UpdateTime),
		EndTime:      timestampOrNil(op.EndTime),
		RequestId:    op.RequestID,
		Reason:       op.Reason,
		RequestedBy:  op.RequestedBy,
		ValidateOnly: op.ValidateOnly,
		MappingId:    op.MappingID,
		ApprovedBy:   op.ApprovedBy,
		NewMappingId: op.NewMappingID,
		Automatic:    op.Automatic,
	}
	if len(op.SourceCertificateDER) > 0 {
		p.SourceSha256 = x509cert.SHA256Fingerprint(op.SourceCertificateDER)
	}
	if b := op.Backup; b != nil {
		switch {
		case len(b.CertificateDER) > 0:
			p.PreviousSha256 = x509cert.SHA256Fingerprint(b.CertificateDER)
		default:
			p.PreviousSha256 = b.SHA256 // what a person recorded, if anything
		}
	}
	for _, st := range op.Steps {
		p.Steps = append(p.Steps, &certsyncv1.OperationStep{
			Kind: stepKindProto(st.Kind), State: stepStateProto(st.State), Message: st.Message,
			StartTime: timestampOrNil(st.StartTime), EndTime: timestampOrNil(st.EndTime), Attempts: int32(st.Attempts),
			Instruction: instructionProto(st.Instruction), ConfirmedBy: st.ConfirmedBy,
		})
		if st.State == store.StepAwaitingConfirmation {
			p.Steps[len(p.Steps)-1].Deadline = timestampOrNil(st.Deadline)
		}
	}
	if e := op.Error; e != nil {
		p.Error = &certsyncv1.OperationError{Code: e.Code, Reason: e.Reason, Message: e.Message, Metadata: e.Metadata}
	}
	if fp := op.FinalProbe; fp != nil {
		p.FinalProbe = &certsyncv1.ProbeScimAuthResponse{
			Outcome:                 certsyncv1.ProbeOutcome(certsyncv1.ProbeOutcome_value["PROBE_OUTCOME_"+fp.Outcome]),
			HttpStatus:              int32(fp.HTTPStatus),
			ErrorCode:               fp.ErrorCode,
			ErrorMessage:            fp.ErrorMessage,
			RequestUrl:              fp.RequestURL,
			Latency:                 durationpb.New(fp.Latency),
			ClientCertificateSha256: fp.ClientSHA256,
			CheckedAt:               timestampOrNil(fp.CheckedAt),
			Connection:              connectionPrefix + op.Connection,
		}
	}
	p.Summary = operationSummary(op)
	return p
}

func operationSummary(op *store.Operation) string {
	switch op.State {
	case store.StateRunning:
		if op.CancelRequested {
			if st, ok := awaiting(op); ok && st.Kind == store.StepUploadCertificate {
				return "cancel requested, but the delete was confirmed: waiting for the upload first, then cancelled"
			}
			return "cancel requested: stops before its next change in SF"
		}
		if st, ok := awaiting(op); ok {
			return "waiting for a person to " + strings.ToLower(strings.ReplaceAll(string(st.Kind), "_", " ")) + " in SF and confirm it"
		}
		for _, st := range op.Steps {
			if st.State == store.StepRunning || st.State == store.StepPending {
				return "running: " + strings.ToLower(strings.ReplaceAll(string(st.Kind), "_", " "))
			}
		}
		return "running"
	case store.StateSucceeded:
		if op.ValidateOnly {
			return "dry run: every check passed; nothing was changed"
		}
		return "IPS's certificate is mapped in SF and authenticates"
	case store.StateCancelled:
		return "cancelled"
	case store.StatePendingApproval:
		return "waiting for approval"
	}
	if op.Error != nil {
		return strings.ToLower(string(op.State)) + ": " + op.Error.Message
	}
	return strings.ToLower(string(op.State))
}
