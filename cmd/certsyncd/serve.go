package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/store"
)

// serverFlags are the flags of serve; each overrides the configuration file.
type serverFlags struct {
	configFile  string
	cfg         config.Server
	sandbox     bool
	sandboxAddr string
	dataDir     string
	storeSpec   string
}

func newServeFlagSet(stderr io.Writer) (*flag.FlagSet, *serverFlags) {
	f := &serverFlags{}
	fs := flag.NewFlagSet("certsyncd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.configFile, "config", "", "YAML configuration file (optional; flags override it)")
	fs.StringVar(&f.cfg.GRPCAddr, "grpc-addr", config.DefaultGRPCAddr, "gRPC listen address HOST:PORT")
	fs.StringVar(&f.cfg.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&f.cfg.MaxMessageBytes, "max-message-bytes", config.DefaultMaxMessageBytes, "largest request message accepted, in bytes")
	fs.Func("shutdown-grace", "how long shutdown waits for running calls (default 15s)", durationFlag(&f.cfg.ShutdownGrace))
	fs.Func("probe-timeout", "overall timeout of one SCIM probe (default 10s)", durationFlag(&f.cfg.ProbeTimeout))
	fs.StringVar(&f.cfg.DataDir, "data-dir", "", "directory of the SQLite database (default $XDG_STATE_HOME/certsync; with --sandbox a fresh temporary directory)")
	fs.StringVar(&f.cfg.Store, "store", "", "sqlite:PATH or postgres://... (default: SQLite in --data-dir)")
	fs.Func("lock-ttl", "lease on what a running re-registration touches; another replica recovers the operation once it expires (default 30s)", durationFlag(&f.cfg.LockTTL))
	fs.Func("settle-window", "how long a re-registration keeps probing after the upload (default 2m)", durationFlag(&f.cfg.SettleWindow))
	fs.BoolVar(&f.sandbox, "sandbox", false, "also run the simulated IPS and SF in this process and serve its demo connections")
	fs.StringVar(&f.sandboxAddr, "sandbox-addr", config.DefaultSandboxAddr, "HTTPS address of the in-process sandbox (with --sandbox)")
	return fs, f
}

func durationFlag(d *config.Duration) func(string) error {
	return func(s string) error {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (use e.g. 30s, 2m)", s)
		}
		*d = config.Duration(v)
		return nil
	}
}

// loadConfig reads the file (if any), lets the flags that were set override
// it, applies defaults and validates. It returns the problems found; errors
// among them mean the configuration must not be used.
func loadConfig(fs *flag.FlagSet, f *serverFlags) (*config.Config, config.Problems, error) {
	cfg := &config.Config{}
	if f.configFile != "" {
		c, err := config.Load(f.configFile)
		if err != nil {
			return nil, nil, &usageError{err.Error()}
		}
		cfg = c
		cfg.ResolvePaths(filepath.Dir(f.configFile))
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "grpc-addr":
			cfg.Server.GRPCAddr = f.cfg.GRPCAddr
		case "log-level":
			cfg.Server.LogLevel = f.cfg.LogLevel
		case "log-format":
			cfg.Server.LogFormat = f.cfg.LogFormat
		case "max-message-bytes":
			cfg.Server.MaxMessageBytes = f.cfg.MaxMessageBytes
		case "shutdown-grace":
			cfg.Server.ShutdownGrace = f.cfg.ShutdownGrace
		case "probe-timeout":
			cfg.Server.ProbeTimeout = f.cfg.ProbeTimeout
		case "data-dir":
			cfg.Server.DataDir = f.cfg.DataDir
		case "store":
			cfg.Server.Store = f.cfg.Store
		case "settle-window":
			cfg.Server.SettleWindow = f.cfg.SettleWindow
		case "lock-ttl":
			cfg.Server.LockTTL = f.cfg.LockTTL
		}
	})
	cfg.ApplyDefaults()
	return cfg, cfg.Validate(), nil
}

// problemsError reports every error of a configuration, one line each.
func problemsError(ps config.Problems) error {
	lines := make([]string, 0, len(ps)+1)
	for _, p := range ps {
		lines = append(lines, p.String())
	}
	lines = append(lines, fmt.Sprintf("configuration invalid: %d error(s)", len(ps.Errors())))
	return &usageError{strings.Join(lines, "\n")}
}

func newLogger(s config.Server, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(s.LogLevel)) // validated before
	opts := &slog.HandlerOptions{Level: lvl}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs, f := newServeFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	cfg, problems, err := loadConfig(fs, f)
	if err != nil {
		return err
	}
	if len(problems.Errors()) > 0 {
		return problemsError(problems)
	}
	log := newLogger(cfg.Server, stderr)

	if f.sandbox {
		conns, cleanup, err := startSandbox(f.sandboxAddr, log)
		if err != nil {
			return err
		}
		defer cleanup()
		if cfg.Server.DataDir == "" && cfg.Server.Store == "" {
			// A fresh state each time, so that the demo starts as documented.
			dir, err := os.MkdirTemp("", "certsync-data-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cfg.Server.DataDir = dir
		}
		cfg.Connections = append(cfg.Connections, conns...)
		cfg.ApplyDefaults()
		if problems = cfg.Validate(); len(problems.Errors()) > 0 {
			return problemsError(problems)
		}
	}
	for _, p := range problems.Warnings() {
		log.Debug("configuration", "field", p.Field, "problem", p.Message)
	}
	if n := len(problems.Warnings()); n > 0 {
		log.Info("configuration has warnings; certsyncd config check lists them, GetConnection shows them", "warnings", n)
	}

	inv, err := inventory.Build(cfg.Connections, problems, inventory.Options{
		ProbeTimeout: time.Duration(cfg.Server.ProbeTimeout),
		UserAgent:    "certsync/" + buildVersion(),
	})
	if err != nil {
		return err
	}
	defer inv.Close()

	dataDir, err := resolveDataDir(cfg.Server.DataDir)
	if err != nil {
		return err
	}
	replica, unlock, err := replicaIdentity(cfg.Server.Store, dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := store.Open(ctx, cfg.Server.Store, dataDir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	ops := reregister.New(reregister.Options{
		Store: st, Inventory: inv, Logger: log.With("component", "reregister"), Replica: replica,
		SettleWindow: time.Duration(cfg.Server.SettleWindow), LockTTL: time.Duration(cfg.Server.LockTTL),
	})
	defer ops.Close()
	// Operations a crash left behind resume before anything new is accepted.
	if err := ops.Recover(ctx); err != nil {
		return fmt.Errorf("recover operations: %w", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go ops.Run(runCtx)

	srv := service.New(service.Options{Inventory: inv, Operations: ops, Logger: log})
	hs := health.NewServer()
	g := srv.NewGRPCServer(service.GRPCOptions{MaxMessageBytes: cfg.Server.MaxMessageBytes, Health: hs})

	lis, err := net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.GRPCAddr, err)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(certsyncv1.CertSyncService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	log.Info("certsyncd serving", "grpc_addr", lis.Addr().String(), "version", buildVersion(), "connections", len(cfg.Connections))

	select {
	case err := <-serveErr:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	// Health checks see NOT_SERVING first, so that load balancers drain us
	// while running calls finish.
	hs.Shutdown()
	grace := time.Duration(cfg.Server.ShutdownGrace)
	log.Info("shutting down", "grace", grace.String())
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	deadline := time.After(grace)
	select {
	case <-stopped:
	case <-deadline:
		log.Warn("grace period over; closing remaining calls")
		g.Stop()
		<-stopped
	}
	// Running re-registrations get what is left of the grace period; then
	// they stop at their next journaled boundary and resume at the next
	// start (an upload in flight is finished first).
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), grace)
	ops.Drain(drainCtx)
	cancelDrain()
	stopRun()
	ops.Close()
	log.Info("stopped")
	return nil
}

// resolveDataDir picks the data directory: the configured one, else the
// user's state directory.
func resolveDataDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "certsync"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --data-dir and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "certsync"), nil
}
