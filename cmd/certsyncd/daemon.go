package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/autofix"
	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/httpgate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/metrics"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/tlsreload"
)

// daemon is a running certsyncd: what start built, in the order close
// undoes it.
type daemon struct {
	cfg *config.Config
	log *slog.Logger

	closers []func() // run in reverse order by close

	inv      *inventory.Inventory
	st       store.Store
	ops      *reregister.Manager
	gt       *gate.Gate
	metrics  *metrics.Metrics
	hs       *health.Server
	grpc     *grpc.Server
	lis      net.Listener
	metrHTTP *http.Server
	metrLis  net.Listener

	// The HTTP/JSON gateway: an HTTP server whose handlers call the gRPC
	// port through gwConn, so that every interceptor applies.
	gwHTTP *http.Server
	gwLis  net.Listener
	gwConn interface{ Close() error }
	tlsr   *tlsreload.Reloader // the gRPC port's certificates, when TLS is on

	healthGRPC *grpc.Server
	hsPublic   *health.Server // the health port's: the process only
	healthLis  net.Listener
	tokens     *auth.Tokens

	background    context.Context // the refresh and recovery loops
	stopBackround context.CancelFunc
	loops         chan struct{} // closed when both loops returned
}

func (d *daemon) onClose(f func()) { d.closers = append(d.closers, f) }

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// start builds every component and binds the listeners; nothing is served
// yet. On failure it closes what it opened.
func start(ctx context.Context, cfg *config.Config, problems config.Problems, log *slog.Logger) (d *daemon, err error) {
	d = &daemon{cfg: cfg, log: log, metrics: metrics.New(buildVersion()), hs: health.NewServer()}
	defer func() {
		if err != nil {
			d.close()
			d = nil
		}
	}()
	m := d.metrics

	// The store comes first: connections whose source.type is "imported"
	// read IPS's certificate from it, so it must outlive the inventory
	// (closers run in reverse).
	dataDir, err := resolveDataDir(cfg.Server.DataDir)
	if err != nil {
		return nil, err
	}
	replica, unlock, err := replicaIdentity(cfg.Server.Store, dataDir)
	if err != nil {
		return nil, err
	}
	d.onClose(unlock)
	d.st, err = store.Open(ctx, cfg.Server.Store, dataDir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	d.onClose(func() { d.st.Close() })

	d.inv, err = inventory.Build(cfg.Connections, problems, inventory.Options{
		ProbeTimeout: time.Duration(cfg.Server.ProbeTimeout),
		UserAgent:    "certsync/" + buildVersion(),
		OnProbe: func(id string, r scim.Result) {
			m.Probe(id, r.Outcome.String(), r.Latency, r.CheckedAt)
		},
		Store: d.st,
	})
	if err != nil {
		return nil, err
	}
	d.onClose(d.inv.Close)

	// The gate and the re-registrations know each other: the gate asks
	// what runs, and an ended re-registration drops the gate's evidence.
	d.ops = reregister.New(reregister.Options{
		Store: d.st, Inventory: d.inv, Logger: log.With("component", "reregister"), Replica: replica,
		SettleWindow: time.Duration(cfg.Server.SettleWindow), LockTTL: time.Duration(cfg.Server.LockTTL),
		ManualStepTimeout: time.Duration(cfg.Server.ManualStepTimeout),
		OnAwait: func(id string, step store.StepKind, awaiting bool) {
			m.ManualStep(id, string(step), awaiting)
		},
		OnFinish: func(id, state string) {
			m.Reregistration(id, state)
			if d.gt != nil {
				d.gt.Invalidate(id)
			}
		},
	})
	d.onClose(d.ops.Close)
	rem, err := autofix.New(autofix.Options{Ops: d.ops, Store: d.st, Connections: cfg.Connections,
		RefreshInterval: time.Duration(*cfg.Server.RefreshInterval), Logger: log.With("component", "autofix")})
	if err != nil {
		return nil, err
	}
	d.gt = gate.New(gate.Options{
		Inventory:       d.inv,
		Operations:      d.ops,
		Jobs:            &ipsjobs.Tracker{Store: d.st, Log: log.With("component", "ipsjobs")},
		Locker:          store.Leases{Store: d.st, Owner: replica},
		ProbeInterval:   time.Duration(cfg.Server.GateProbeInterval),
		RefreshInterval: time.Duration(*cfg.Server.RefreshInterval),
		Logger:          log.With("component", "gate"),
		OnVerdict: func(id string, dec gate.Decision) {
			d.hs.SetServingStatus(connectionPrefix+id, healthStatus(dec))
			m.GateDecision(id, dec.String())
		},
		OnEvidence:          func(ev *gate.Evidence) { observeEvidence(m, ev) },
		OnBackgroundRefresh: rem.Observe,
	})
	d.onClose(d.gt.Close)

	// Operations a crash left behind resume before anything new is accepted.
	if err := d.ops.Recover(ctx); err != nil {
		return nil, fmt.Errorf("recover operations: %w", err)
	}

	authz, serverOpts, err := d.security(cfg)
	if err != nil {
		return nil, err
	}
	srv := service.New(service.Options{Inventory: d.inv, Operations: d.ops, Gate: d.gt, Metrics: m, Store: d.st, Logger: log})
	d.grpc = srv.NewGRPCServer(service.GRPCOptions{
		MaxMessageBytes: cfg.Server.MaxMessageBytes, Health: d.hs, Metrics: m,
		Auth: authz, NoReflection: cfg.Server.NoReflection, ServerOptions: serverOpts,
	})
	d.lis, err = net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Server.GRPCAddr, err)
	}
	d.onClose(func() { d.lis.Close() })
	if a := cfg.Server.HealthAddr; a != "" {
		// Kubernetes probes can send neither a client certificate nor a
		// token: health alone, in plain text, on a port of its own.
		// Only the process's own status: per-connection statuses reveal
		// the inventory and need a viewer's credentials on the main port.
		d.healthGRPC = grpc.NewServer()
		d.hsPublic = health.NewServer()
		healthpb.RegisterHealthServer(d.healthGRPC, d.hsPublic)
		d.healthLis, err = net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (health): %w", a, err)
		}
		d.onClose(func() { d.healthLis.Close() })
	}
	if a := cfg.Server.MetricsAddr; a != "" {
		d.metrLis, err = net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (metrics): %w", a, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		d.metrHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		d.onClose(func() { d.metrHTTP.Close() })
	}

	if a := cfg.Server.HTTPAddr; a != "" {
		if err := d.startGateway(ctx, a); err != nil {
			return nil, err
		}
	}

	// Health: the process is up; each connection is UNKNOWN until its first
	// verdict (a health check never starts a probe).
	for _, hs := range []*health.Server{d.hs, d.hsPublic} {
		if hs != nil {
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus(certsyncv1.CertSyncService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		}
	}
	for _, c := range d.inv.All() {
		d.hs.SetServingStatus(c.Name(), healthpb.HealthCheckResponse_UNKNOWN)
	}
	return d, nil
}

const connectionPrefix = "connections/"

func healthStatus(dec gate.Decision) healthpb.HealthCheckResponse_ServingStatus {
	switch dec {
	case gate.Allow:
		return healthpb.HealthCheckResponse_SERVING
	case gate.Deny:
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return healthpb.HealthCheckResponse_UNKNOWN
}

// observeEvidence turns a gathering into the domain's gauges.
func observeEvidence(m *metrics.Metrics, ev *gate.Evidence) {
	if ev.Source != nil {
		m.CertificateExpiry(ev.Connection, "ips", ev.Source.NotAfter)
	}
	if ev.ProbeCert != nil {
		m.CertificateExpiry(ev.Connection, "probe", ev.ProbeCert.NotAfter)
	}
	if c := ev.Comparison; c != nil && c.Result != compare.ResultSourceMissing {
		m.FingerprintsMatch(ev.Connection, c.Result == compare.ResultMatch)
		for _, t := range c.Targets {
			if t.Candidate && t.Mapping.ID == c.MappingID && t.Mapping.Certificate != nil {
				m.CertificateExpiry(ev.Connection, "sf", t.Summary.NotAfter)
			}
		}
	}
}

// serve runs until ctx ends, then shuts down within the grace period.
func (d *daemon) serve(ctx context.Context) error {
	d.background, d.stopBackround = context.WithCancel(context.Background())
	d.loops = make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); d.ops.Run(d.background) }()
		if d.tokens != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.tokens.Run(d.background, time.Second, func(err error) {
					if err != nil {
						d.log.Error("tokens file not reloaded; the last good one stays in force", "file", d.tokens.Path(), "err", err)
					} else {
						d.log.Info("tokens file reloaded", "file", d.tokens.Path())
					}
				})
			}()
		}
		if r := time.Duration(d.cfg.Server.AuditRetention); r > 0 {
			wg.Add(1)
			go func() { defer wg.Done(); d.pruneAudit(r) }()
		}
		_ = d.gt.Run(d.background)
		wg.Wait()
		close(d.loops)
	}()
	serveErr := make(chan error, 4)
	go func() { serveErr <- d.grpc.Serve(d.lis) }()
	if d.healthGRPC != nil {
		go func() { serveErr <- d.healthGRPC.Serve(d.healthLis) }()
	}

	if d.metrHTTP != nil {
		go func() {
			if err := d.metrHTTP.Serve(d.metrLis); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}
	if d.gwHTTP != nil {
		go func() {
			var err error
			if d.gwHTTP.TLSConfig != nil {
				err = d.gwHTTP.ServeTLS(d.gwLis, "", "")
			} else {
				err = d.gwHTTP.Serve(d.gwLis)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("http gateway: %w", err)
			}
		}()
	}
	d.log.Info("certsyncd serving", "grpc_addr", d.lis.Addr().String(), "metrics_addr", d.cfg.Server.MetricsAddr,
		"http_addr", d.cfg.Server.HTTPAddr,
		"version", buildVersion(), "connections", len(d.inv.All()))

	var failed error
	select {
	case err := <-serveErr:
		failed = fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	d.shutdown()
	return failed
}

// shutdown: health checks see NOT_SERVING first, so that load balancers
// drain this replica while running calls finish; running re-registrations
// get what is left of the grace period, then stop at their next journaled
// boundary and resume at the next start (an upload in flight is finished
// first).
func (d *daemon) shutdown() {
	d.hs.Shutdown()
	if d.hsPublic != nil {
		d.hsPublic.Shutdown()
	}
	grace := time.Duration(d.cfg.Server.ShutdownGrace)
	d.log.Info("shutting down", "grace", grace.String())
	deadline := time.Now().Add(grace)
	if d.gwHTTP != nil {
		// HTTP first: its running requests are gRPC calls, which the
		// gRPC server's graceful stop below would otherwise wait for
		// while no new ones may start.
		shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := d.gwHTTP.Shutdown(shutCtx); err != nil {
			_ = d.gwHTTP.Close()
		}
		cancel()
		_ = d.gwConn.Close()
	}
	stopped := make(chan struct{})
	go func() { d.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		d.log.Warn("grace period over; closing remaining calls")
		d.grpc.Stop()
		<-stopped
	}
	drainCtx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	d.ops.Drain(drainCtx)
	cancel()
	if d.healthGRPC != nil {
		d.healthGRPC.Stop()
	}
	d.stopBackround()
	<-d.loops
	if d.metrHTTP != nil {
		shutCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = d.metrHTTP.Shutdown(shutCtx)
		cancel()
	}
	d.log.Info("stopped")
}

// security builds TLS and authentication from the configuration, validated
// before: TLS with certificate files re-read on change; tokens re-read on
// change; identities from client certificates bound to roles.
func (d *daemon) security(cfg *config.Config) (*auth.Authorizer, []grpc.ServerOption, error) {
	s := cfg.Server
	var opts []grpc.ServerOption
	if s.TLS() {
		r, err := tlsreload.New(tlsreload.Options{CertFile: s.TLSCert, KeyFile: s.TLSKey, ClientCAFile: s.ClientCA,
			RequireClientCert: s.RequireClientCert, Logger: d.log.With("component", "tls")})
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.TLSConfig())))
		d.tlsr = r
	}
	o := auth.DefaultOptions()
	o.Required = s.AuthRequired()
	o.Bindings = cfg.Auth.Identities
	o.OpenReflection = !s.NoReflection
	o.Logger = d.log.With("component", "auth")
	o.OnAuthenticated = func(ctx context.Context, id auth.Identity) {
		service.NoteIdentity(ctx, id)
		// The caller's name on the call's log line (never a token).
		logging.AddFields(ctx, logging.Fields{"auth.identity", id.Name, "auth.method", id.Method})
	}
	if s.TokensFile != "" {
		t, err := auth.LoadTokens(s.TokensFile)
		if err != nil {
			return nil, nil, err
		}
		d.tokens, o.Tokens = t, t
	}
	authz, err := auth.New(o)
	if err != nil {
		return nil, nil, err
	}
	if s.InsecureNoTLS {
		d.log.Warn("serving without TLS on a non-loopback address (--insecure-no-tls)", "grpc_addr", s.GRPCAddr)
	}
	if s.InsecureNoAuth {
		d.log.Warn("serving without authentication (--insecure-no-auth): every caller has every role", "grpc_addr", s.GRPCAddr)
	}
	return authz, opts, nil
}

// startGateway binds the HTTP/JSON gateway (service/httpgate). Its
// handlers call the gRPC port over a client connection, with the caller's
// Authorization header as metadata. With TLS the HTTP port serves HTTPS
// with the gRPC port's certificate (re-read on change, as there) and the
// connection to the gRPC port accepts only that certificate.
func (d *daemon) startGateway(ctx context.Context, addr string) error {
	var pin func() *x509.Certificate
	if d.tlsr != nil {
		pin = d.tlsr.Leaf
	}
	conn, err := httpgate.Dial(d.lis.Addr().String(), pin)
	if err != nil {
		return fmt.Errorf("http gateway: %w", err)
	}
	d.gwConn = conn
	d.onClose(func() { conn.Close() })
	h, err := httpgate.New(ctx, certsyncv1.NewCertSyncServiceClient(conn))
	if err != nil {
		return fmt.Errorf("http gateway: %w", err)
	}
	d.gwHTTP = &http.Server{
		Handler:           http.MaxBytesHandler(h, int64(d.cfg.Server.MaxMessageBytes)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.With("component", "http").Handler(), slog.LevelWarn),
	}
	if d.tlsr != nil {
		base := d.tlsr.TLSConfig()
		d.gwHTTP.TLSConfig = &tls.Config{
			MinVersion:     base.MinVersion,
			CipherSuites:   base.CipherSuites,
			GetCertificate: base.GetCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
		}
	}
	d.gwLis, err = net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (http): %w", addr, err)
	}
	d.onClose(func() { d.gwHTTP.Close(); d.gwLis.Close() })
	return nil
}

// pruneAudit applies the audit retention at start and then hourly. With
// several replicas each prunes; pruning is idempotent and serialized by the
// store.
func (d *daemon) pruneAudit(retention time.Duration) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := d.st.PruneAudit(d.background, time.Now().Add(-retention))
		switch {
		case err != nil && d.background.Err() == nil:
			d.log.Error("audit retention: events not pruned", "err", err)
		case n > 0:
			d.log.Info("audit retention: pruned old events", "events", n, "retention", retention.String())
		}
		select {
		case <-d.background.Done():
			return
		case <-t.C:
		}
	}
}
