package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/certsync/certsync/service/fault"
)

// ErrorMapper turns the *fault.Error the interceptors refuse with into what
// the server returns (its one status mapping). nil gives plain statuses
// without details.
type ErrorMapper func(ctx context.Context, err error) error

// UnaryInterceptor authenticates and authorizes every unary call and puts
// the identity in the handler's context (FromContext).
func (a *Authorizer) UnaryInterceptor(mapErr ErrorMapper) grpc.UnaryServerInterceptor {
	mapErr = orPlain(mapErr)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p := policyFor(info.FullMethod)
		if a.open(p, req) {
			return handler(ctx, req)
		}
		id, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, mapErr(ctx, err)
		}
		// Observed before authorization, so that a refused call is
		// recorded with who made it.
		a.observe(ctx, id)
		if err := a.authorize(ctx, info.FullMethod, id, req); err != nil {
			return nil, mapErr(ctx, err)
		}
		return handler(NewContext(ctx, id), req)
	}
}

// StreamInterceptor does the same for streams. The role is checked when the
// stream starts; what depends on the request (its connection, a health
// check's service) is checked on every message the handler receives, since
// the interceptor sees the stream before any message.
func (a *Authorizer) StreamInterceptor(mapErr ErrorMapper) grpc.StreamServerInterceptor {
	mapErr = orPlain(mapErr)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		p := policyFor(info.FullMethod)
		if a.open(p, nil) {
			return handler(srv, ss)
		}
		w := &authStream{ServerStream: ss, a: a, method: info.FullMethod, mapErr: mapErr, ctx: ctx}
		w.id, w.authErr = a.Authenticate(ctx)
		if p.scope == scopeHealth && a.o.OpenHealth {
			// Whether credentials are needed depends on the service named
			// in the request: decide (and log a refusal) in RecvMsg.
			w.deferAuth = true
		} else {
			if w.authErr != nil {
				a.logAuthFailure(ctx, info.FullMethod, w.authErr)
				return mapErr(ctx, w.authErr)
			}
			a.observe(ctx, w.id)
			if err := a.authorize(ctx, info.FullMethod, w.id, nil); err != nil {
				return mapErr(ctx, err)
			}
		}
		if w.authErr == nil {
			if w.deferAuth {
				a.observe(ctx, w.id)
			}
			w.ctx = NewContext(ctx, w.id)
		}
		return handler(srv, w)
	}
}

type authStream struct {
	grpc.ServerStream
	a      *Authorizer
	method string
	mapErr ErrorMapper
	ctx    context.Context

	id        Identity
	authErr   error
	deferAuth bool
}

func (s *authStream) Context() context.Context { return s.ctx }

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.deferAuth {
		if s.a.openHealth(m) {
			return nil
		}
		if s.authErr != nil {
			s.a.logAuthFailure(s.ctx, s.method, s.authErr)
			return s.mapErr(s.ctx, s.authErr)
		}
	}
	if err := s.a.authorize(s.ctx, s.method, s.id, m); err != nil {
		return s.mapErr(s.ctx, err)
	}
	return nil
}

// open reports whether the call needs no credentials at all. req is nil for
// streams, whose open health checks are decided per message.
func (a *Authorizer) open(p policy, req any) bool {
	switch {
	case p.openReflection && a.o.OpenReflection:
		return true
	case p.scope == scopeHealth && req != nil:
		return a.openHealth(req)
	}
	return false
}

// openHealth: the overall status (service "") is open when OpenHealth is on.
func (a *Authorizer) openHealth(req any) bool {
	svc, ok := stringField(req, "service")
	return ok && svc == "" && a.o.OpenHealth
}

// authenticate is Authenticate with the refusal logged.
func (a *Authorizer) authenticate(ctx context.Context, fullMethod string) (Identity, error) {
	id, err := a.Authenticate(ctx)
	if err != nil {
		a.logAuthFailure(ctx, fullMethod, err)
	}
	return id, err
}

// logAuthFailure logs what was wrong (a fixed phrase such as "unknown
// token") and the peer, never the credential itself.
func (a *Authorizer) logAuthFailure(ctx context.Context, fullMethod string, err error) {
	attrs := []slog.Attr{slog.String("rpc", fullMethod)}
	if fe, ok := fault.As(err); ok && fe.Cause != nil {
		attrs = append(attrs, slog.String("problem", fe.Cause.Error()))
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "authentication failed", attrs...)
}

func (a *Authorizer) observe(ctx context.Context, id Identity) {
	if a.o.OnAuthenticated != nil {
		a.o.OnAuthenticated(ctx, id)
	}
}

// stringField reads a singular string field of a request by name. ok is
// false when req is not a proto message or has no such field.
func stringField(req any, name string) (string, bool) {
	m, ok := req.(proto.Message)
	if !ok {
		return "", false
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return "", false
	}
	return r.Get(fd).String(), true
}

// CheckAccess is for handlers of requests that do not name their
// connection (operations): once the handler knows the connection, it asks
// whether the caller may access it. The refusal names resource (what the
// caller asked for), not the connection, which the caller may not know. A
// context without an identity is refused: the interceptor always sets one,
// so its absence means the chain is miswired.
func CheckAccess(ctx context.Context, resource, connID string) error {
	id, ok := FromContext(ctx)
	if !ok {
		return fault.New(fault.PermissionDenied, "CONNECTION_NOT_ALLOWED", "%s: the call has no identity", resource)
	}
	if id.MayAccess(connID) {
		return nil
	}
	return &fault.Error{
		Kind:    fault.PermissionDenied,
		Reason:  "CONNECTION_NOT_ALLOWED",
		Message: fmt.Sprintf("%s belongs to a connection that %s may not access; it may access only connections matching %s", resource, id, strings.Join(id.Connections, ", ")),
		Metadata: map[string]string{
			"resource":            resource,
			"allowed_connections": strings.Join(id.Connections, ","),
			"identity":            id.Name,
		},
	}
}

var kindCodes = map[fault.Kind]codes.Code{
	fault.PermissionDenied:  codes.PermissionDenied,
	fault.Unauthenticated:   codes.Unauthenticated,
	fault.ResourceExhausted: codes.ResourceExhausted,
}

func orPlain(m ErrorMapper) ErrorMapper {
	if m != nil {
		return m
	}
	return func(_ context.Context, err error) error {
		fe, ok := fault.As(err)
		if !ok {
			return status.Error(codes.Internal, "internal error")
		}
		code, ok := kindCodes[fe.Kind]
		if !ok {
			code = codes.Internal
		}
		return status.Error(code, fe.Message)
	}
}
