package service

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
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
	// Extra server options (credentials, keepalive) added by the caller.
	ServerOptions []grpc.ServerOption
}

// NewGRPCServer builds the gRPC server with certsync's interceptor chain,
// health and reflection registered.
//
// The chain runs outermost first: logging sees every call with its final
// status code, including refusals by the later interceptors; validation
// refuses malformed requests before any handler work; panic recovery is
// innermost so that a panic in a handler becomes a generic INTERNAL (its
// stack goes to the server log only) and is still logged and counted as such
// by the interceptors outside it. Metrics go first and authentication goes
// between logging and validation once they exist, so that every call is
// counted and nothing is validated for an unauthenticated caller.
func (s *Server) NewGRPCServer(o GRPCOptions) *grpc.Server {
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
		s.validationUnary,
		recovery.UnaryServerInterceptor(recoveryOpts...),
	)
	stream = append(stream,
		logging.StreamServerInterceptor(slogAdapter(s.log), logOpts...),
		s.validationStream,
		recovery.StreamServerInterceptor(recoveryOpts...),
	)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(o.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	opts = append(opts, o.ServerOptions...)
	g := grpc.NewServer(opts...)
	certsyncv1.RegisterCertSyncServiceServer(g, s)
	if o.Health != nil {
		healthpb.RegisterHealthServer(g, o.Health)
	}
	reflection.Register(g)
	if o.Metrics != nil {
		o.Metrics.GRPC.InitializeMetrics(g)
	}
	return g
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
