package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certsync/certsync/service/config"
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
	fs.StringVar(&f.cfg.Store, "store", "", "sqlite:PATH or postgres://... (default: $CERTSYNC_STORE, else SQLite in --data-dir); prefer the variable for a URL with a password, which must not show in process listings")
	fs.StringVar(&f.cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
	fs.Func("refresh-interval", "how often each connection's evidence is refreshed in the background; 0 disables (default 1m)", func(v string) error {
		var d config.Duration
		if err := durationFlag(&d)(v); err != nil {
			return err
		}
		f.cfg.RefreshInterval = &d
		return nil
	})
	fs.Func("gate-probe-interval", "least time between two gatherings of a connection's evidence for the gate (default 1s)", durationFlag(&f.cfg.GateProbeInterval))
	fs.StringVar(&f.cfg.TLSCert, "tls-cert", "", "serve gRPC over TLS with this certificate (PEM; re-read when it changes)")
	fs.StringVar(&f.cfg.TLSKey, "tls-key", "", "the TLS certificate's private key (PEM)")
	fs.StringVar(&f.cfg.ClientCA, "client-ca", "", "verify client certificates against this CA bundle; their identities get roles from auth.identities")
	fs.BoolVar(&f.cfg.RequireClientCert, "require-client-cert", false, "demand a client certificate at the TLS handshake")
	fs.StringVar(&f.cfg.TokensFile, "tokens", "", "bearer tokens file (names, roles, SHA-256 hashes; re-read when it changes)")
	fs.StringVar(&f.cfg.HealthAddr, "health-addr", "", "serve grpc.health.v1 alone here, without TLS or authentication (Kubernetes probes)")
	fs.StringVar(&f.cfg.HTTPAddr, "http-addr", "", "serve the gate, compare and diagnosis as HTTP/JSON here (HTTPS when TLS is on; bearer tokens); default: off")
	fs.BoolVar(&f.cfg.NoReflection, "no-reflection", false, "close server reflection on the main port")
	fs.BoolVar(&f.cfg.InsecureNoTLS, "insecure-no-tls", false, "allow a non-loopback --grpc-addr without TLS")
	fs.BoolVar(&f.cfg.InsecureNoAuth, "insecure-no-auth", false, "allow a non-loopback --grpc-addr without authentication")
	fs.Func("audit-retention", "prune audit events older than this (e.g. 8760h); 0 keeps every event (default 0)", durationFlag(&f.cfg.AuditRetention))
	fs.Func("lock-ttl", "lease on what a running re-registration touches; another replica recovers the operation once it expires (default 30s)", durationFlag(&f.cfg.LockTTL))
	fs.Func("manual-step-timeout", "how long a manual re-registration's step waits for a person's confirmation (default 4h)", durationFlag(&f.cfg.ManualStepTimeout))
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
		case "manual-step-timeout":
			cfg.Server.ManualStepTimeout = f.cfg.ManualStepTimeout
		case "settle-window":
			cfg.Server.SettleWindow = f.cfg.SettleWindow
		case "lock-ttl":
			cfg.Server.LockTTL = f.cfg.LockTTL
		case "audit-retention":
			cfg.Server.AuditRetention = f.cfg.AuditRetention
		case "metrics-addr":
			cfg.Server.MetricsAddr = f.cfg.MetricsAddr
		case "refresh-interval":
			cfg.Server.RefreshInterval = f.cfg.RefreshInterval
		case "gate-probe-interval":
			cfg.Server.GateProbeInterval = f.cfg.GateProbeInterval
		case "tls-cert":
			cfg.Server.TLSCert = f.cfg.TLSCert
		case "tls-key":
			cfg.Server.TLSKey = f.cfg.TLSKey
		case "client-ca":
			cfg.Server.ClientCA = f.cfg.ClientCA
		case "require-client-cert":
			cfg.Server.RequireClientCert = f.cfg.RequireClientCert
		case "tokens":
			cfg.Server.TokensFile = f.cfg.TokensFile
		case "health-addr":
			cfg.Server.HealthAddr = f.cfg.HealthAddr
		case "http-addr":
			cfg.Server.HTTPAddr = f.cfg.HTTPAddr
		case "no-reflection":
			cfg.Server.NoReflection = f.cfg.NoReflection
		case "insecure-no-tls":
			cfg.Server.InsecureNoTLS = f.cfg.InsecureNoTLS
		case "insecure-no-auth":
			cfg.Server.InsecureNoAuth = f.cfg.InsecureNoAuth
		}
	})
	// A database URL may carry a password: it can come from the
	// environment instead of the command line, where process listings
	// would show it.
	if cfg.Server.Store == "" {
		cfg.Server.Store = os.Getenv("CERTSYNC_STORE")
	}
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

	d, err := start(ctx, cfg, problems, log)
	if err != nil {
		return err
	}
	defer d.close()
	return d.serve(ctx)
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
