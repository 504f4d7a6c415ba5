package service

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/metrics"
)

// GRPCOptions shape the gRPC server.
type GRPCOptions struct {
	// MaxMessageBytes bounds every received message.
	MaxMessageBytes int
	// Health is the health service to register; the caller owns its statuses.
	Health *health.Server
	// Metrics, when set, counts every call first in the chain.
	Metrics *metrics.Metrics
	// Auth authenticates and authorizes calls; nil means authentication
	// is off (every caller is anonymous, with every role).
	Auth *auth.Authorizer
	// NoReflection closes server reflection.
	NoReflection bool
	// DefaultTimeout bounds unary calls that bring no deadline of their own
	// (WaitOperation, which has its own timeout, and streams excepted);
	// 0 means 2 minutes.
	DefaultTimeout time.Duration
	// Extra server options (credentials, keepalive) added by the caller.
	ServerOptions []grpc.ServerOption
}

// NewGRPCServer builds the gRPC server with certsync's interceptor chain,
// health and reflection registered.
//
// The chain runs outermost first: metrics count every call, refusals
// included; logging writes one line per call with its final status code;
// audit sits outside authentication so that it records refused calls too;
// authentication and authorization come before validation, so that nothing
// is parsed for a caller who may not call; validation refuses malformed
// requests before any handler work; panic recovery is innermost so that a
// panic in a handler becomes a generic INTERNAL (its stack goes to the
// server log only) and is still logged, audited and counted as such.
func (s *Server) NewGRPCServer(o GRPCOptions) *grpc.Server {
	authz := o.Auth
	if authz == nil {
		authz, _ = auth.New(auth.Options{OpenHealth: true, OpenReflection: true, OnAuthenticated: NoteIdentity})
	}
	timeout := o.DefaultTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	mapErr := func(ctx context.Context, err error) error { return toStatus(ctx, s.log, err) }
	logOpts := []logging.Option{
		// Only the end of each call: one line per call, with code and duration.
		// Payloads are never logged: they may hold certificates.
		logging.WithLogOnEvents(logging.FinishCall),
	}
	recoveryOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(s.recoverPanic)}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if o.Metrics != nil {
		unary = append(unary, o.Metrics.GRPC.UnaryServerInterceptor())
		stream = append(stream, o.Metrics.GRPC.StreamServerInterceptor())
	}
	unary = append(unary,
		logging.UnaryServerInterceptor(slogAdapter(s.log), logOpts...),
		defaultDeadline(timeout),
		s.auditUnary,
		authz.UnaryInterceptor(mapErr),
		s.validationUnary,
		recovery.UnaryServerInterceptor(recoveryOpts...),
	)
	stream = append(stream,
		logging.StreamServerInterceptor(slogAdapter(s.log), logOpts...),
		s.auditStream,
		authz.StreamInterceptor(mapErr),
		s.validationStream,
		recovery.StreamServerInterceptor(recoveryOpts...),
	)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(o.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Bounded resources per connection, and clients that ping too
		// often are sent away rather than allowed to keep the server busy.
		grpc.MaxConcurrentStreams(256),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
	opts = append(opts, o.ServerOptions...)
	g := grpc.NewServer(opts...)
	certsyncv1.RegisterCertSyncServiceServer(g, s)
	if o.Health != nil {
		healthpb.RegisterHealthServer(g, o.Health)
	}
	if !o.NoReflection {
		reflection.Register(g)
	}
	if o.Metrics != nil {
		o.Metrics.GRPC.InitializeMetrics(g)
	}
	return g
}

// defaultDeadline gives unary calls that bring no deadline one, so that no
// call can hold server resources forever; WaitOperation carries its own
// timeout.
func defaultDeadline(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, ok := ctx.Deadline(); ok || info.FullMethod == certsyncv1.CertSyncService_WaitOperation_FullMethodName {
			return handler(ctx, req)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return handler(ctx, req)
	}
}

func (s *Server) recoverPanic(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error; the server log has the details")
}

// slogAdapter lets go-grpc-middleware log through slog; its levels have the
// same numeric values as slog's.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
