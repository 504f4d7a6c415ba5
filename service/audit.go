package service

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/store"
)

// Audit: every state-changing call, and every call refused for want of
// authentication or permission, becomes an event in the store's hash chain
// and a line in the log stream (for a SIEM). A change writes its event in
// the same transaction as the change itself, so that a change whose audit
// cannot be written does not happen; everything else (refusals, failures,
// idempotent repeats) is appended by the interceptor once the call ended.

// stateChanging lists the RPCs whose every call is audited.
var stateChanging = map[string]bool{
	"ReregisterCertificate":   true,
	"CancelOperation":         true,
	"ApproveOperation":        true,
	"ConfirmOperationStep":    true,
	"ImportSourceCertificate": true,
	"RecordTargetMapping":     true,
	"StartProvisioningJob":    true,
}

// auditRecord travels with a call: the auth interceptor fills in who the
// caller is, a handler marks the event written with its change.
type auditRecord struct {
	identity auth.Identity
	known    bool
	written  bool
}

type auditKey struct{}

func auditRecordOf(ctx context.Context) *auditRecord {
	r, _ := ctx.Value(auditKey{}).(*auditRecord)
	return r
}

// NoteIdentity is the auth.Options.OnAuthenticated hook.
func NoteIdentity(ctx context.Context, id auth.Identity) {
	if r := auditRecordOf(ctx); r != nil {
		r.identity, r.known = id, true
	}
}

// callerIdentity is who makes the call, for operations and audit.
func callerIdentity(ctx context.Context) auth.Identity {
	if id, ok := auth.FromContext(ctx); ok {
		return id
	}
	return auth.Anonymous()
}

// newAudit starts the event of a state-changing call, for the handler to
// complete and pass to the store with the change.
func (s *Server) newAudit(ctx context.Context, fullMethod string) *store.AuditEvent {
	if s.st == nil {
		return nil
	}
	id := callerIdentity(ctx)
	return &store.AuditEvent{Time: s.now(), Identity: id.Name, Role: id.Role.String(), RPC: fullMethod, Outcome: "OK"}
}

// audited marks a call's event as written with its change and logs it.
func (s *Server) audited(ctx context.Context, ev *store.AuditEvent) {
	if ev == nil || ev.Sequence == 0 {
		return
	}
	if r := auditRecordOf(ctx); r != nil {
		r.written = true
	}
	s.logAudit(ctx, ev)
}

func (s *Server) logAudit(ctx context.Context, ev *store.AuditEvent) {
	s.log.InfoContext(ctx, "audit", "audit.sequence", ev.Sequence, "audit.identity", ev.Identity, "audit.role", ev.Role,
		"audit.rpc", ev.RPC, "audit.connection", ev.Connection, "audit.request_id", ev.RequestID, "audit.reason", ev.Reason,
		"audit.outcome", ev.Outcome, "audit.operation", ev.Operation, "audit.hash", ev.Hash)
}

// auditUnary sits outside authentication, so that it sees refusals too.
func (s *Server) auditUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	rec := &auditRecord{}
	ctx = context.WithValue(ctx, auditKey{}, rec)
	resp, err := handler(ctx, req)
	s.auditCall(ctx, rec, info.FullMethod, req, resp, err)
	return resp, err
}

// auditStream records refused streams (WatchGate changes nothing).
func (s *Server) auditStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	rec := &auditRecord{}
	ctx := context.WithValue(ss.Context(), auditKey{}, rec)
	err := handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	s.auditCall(ctx, rec, info.FullMethod, nil, nil, err)
	return err
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

func (s *Server) auditCall(ctx context.Context, rec *auditRecord, fullMethod string, req, resp any, err error) {
	if s.st == nil || rec.written {
		return
	}
	code := status.Code(err)
	rpc := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	denied := code == codes.Unauthenticated || code == codes.PermissionDenied
	if !denied && !(stateChanging[rpc] && strings.HasPrefix(fullMethod, "/certsync.v1.")) {
		return
	}
	ev := &store.AuditEvent{Time: s.now(), RPC: fullMethod, Outcome: code.String(), Identity: "unauthenticated", Role: "none"}
	if code == codes.OK {
		ev.Outcome = "OK"
	}
	if rec.known {
		ev.Identity, ev.Role = rec.identity.Name, rec.identity.Role.String()
	}
	fillAudit(ev, req, resp)
	// The call is over; its context may be too. The event must still land.
	wctx := context.WithoutCancel(ctx)
	if ev.Connection == "" && strings.HasPrefix(ev.Operation, operationPrefix) {
		// A refused call on an operation (a wrong fingerprint in a
		// confirmation, say) belongs in its connection's audit too.
		if op, gerr := s.st.GetOperation(wctx, strings.TrimPrefix(ev.Operation, operationPrefix)); gerr == nil {
			ev.Connection = connectionPrefix + op.Connection
		}
	}
	if aerr := s.st.AppendAudit(wctx, ev); aerr != nil {
		s.log.ErrorContext(ctx, "audit event not written", "rpc", fullMethod, "outcome", ev.Outcome, "err", aerr)
		return
	}
	s.logAudit(ctx, ev)
}

// fillAudit takes what an event names from the request and the response.
// A refused request was not validated, so each field is recorded only if it
// would pass validation: nothing a caller sent unchecked (a key pasted into
// a reason, escape sequences aimed at a terminal) reaches the chain or the
// log.
func fillAudit(ev *store.AuditEvent, req, resp any) {
	if r, ok := req.(interface{ GetName() string }); ok {
		n := r.GetName()
		if id, v := operationID("name", n); v == nil && strings.HasPrefix(n, operationPrefix) {
			ev.Operation = operationPrefix + id
		} else if id, v := connectionID("name", n); v == nil {
			ev.Connection = connectionPrefix + id
		} else if n != "" {
			ev.Connection = notRecorded
		}
	}
	if r, ok := req.(interface{ GetRequestId() string }); ok && r.GetRequestId() != "" {
		ev.RequestID = r.GetRequestId()
		if !requestIDPattern.MatchString(ev.RequestID) {
			ev.RequestID = notRecorded
		}
	}
	if r, ok := req.(interface{ GetReason() string }); ok && r.GetReason() != "" {
		ev.Reason = r.GetReason()
		if checkText("reason", ev.Reason, maxReasonLen) != nil {
			ev.Reason = notRecorded
		}
	}
	if r, ok := resp.(interface{ GetOperation() *certsyncv1.Operation }); ok && r.GetOperation() != nil {
		ev.Operation, ev.Connection = r.GetOperation().GetName(), r.GetOperation().GetConnection()
	}
}

// notRecorded stands for a field that failed validation.
const notRecorded = "(invalid, not recorded)"

// ListAuditEvents implements certsync.v1.CertSyncService.
func (s *Server) ListAuditEvents(ctx context.Context, req *certsyncv1.ListAuditEventsRequest) (*certsyncv1.ListAuditEventsResponse, error) {
	if s.st == nil {
		return nil, toStatus(ctx, s.log, errNoStore)
	}
	conn := ""
	if req.GetConnection() != "" {
		conn = connectionPrefix + strings.TrimPrefix(req.GetConnection(), connectionPrefix)
	}
	events, next, err := s.st.ListAudit(ctx, conn, pageSize(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &certsyncv1.ListAuditEventsResponse{NextPageToken: next}
	for _, e := range events {
		resp.Events = append(resp.Events, &certsyncv1.AuditEvent{
			Sequence: e.Sequence, Time: timestamppb.New(e.Time), Identity: e.Identity, Role: e.Role, Rpc: e.RPC,
			Connection: e.Connection, RequestId: e.RequestID, Reason: e.Reason, Outcome: e.Outcome, Operation: e.Operation,
			Hash: e.Hash, PreviousHash: e.PreviousHash,
		})
	}
	return resp, nil
}

// VerifyAuditLog implements certsync.v1.CertSyncService.
func (s *Server) VerifyAuditLog(ctx context.Context, _ *certsyncv1.VerifyAuditLogRequest) (*certsyncv1.VerifyAuditLogResponse, error) {
	if s.st == nil {
		return nil, toStatus(ctx, s.log, errNoStore)
	}
	v, err := s.st.VerifyAudit(ctx)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &certsyncv1.VerifyAuditLogResponse{Intact: v.Intact, EventsChecked: v.EventsChecked, FirstBadSequence: v.FirstBadSequence, Message: v.Message}, nil
}
