package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/sandbox"
)

// startSandbox runs the simulated IPS and SF in this process and returns the
// demo connections that reach it, with their keys in a fresh temporary
// directory that cleanup removes.
func startSandbox(addr string, log *slog.Logger) ([]config.Connection, func(), error) {
	sb, err := sandbox.New(sandbox.Options{Addr: addr, Logger: log.With("component", "sandbox")})
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := sb.Start(); err != nil {
		return nil, nil, fmt.Errorf("sandbox on %s: %w", addr, err)
	}
	dir, err := os.MkdirTemp("", "certsync-sandbox-")
	if err != nil {
		sb.Close()
		return nil, nil, err
	}
	cleanup := func() {
		sb.Close()
		os.RemoveAll(dir)
	}
	conns, err := sb.WriteFiles(dir)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("sandbox: %w", err)
	}
	log.Info("sandbox serving", "addr", sb.Addr(), "plain_api_addr", sb.PlainAddr(),
		"files", dir, "state", "https://"+sb.Addr()+"/_sandbox/v1/state", "connections", len(conns))
	return conns, cleanup, nil
}

// runSandbox is `certsyncd sandbox`: the simulator alone, in its own process.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certsyncd sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", config.DefaultSandboxAddr, "HTTPS listen address")
	writeConfig := fs.String("write-config", "", "once listening, write a configuration for `certsyncd serve --config` here (keys go to FILE.d/)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("sandbox takes no arguments, got %q", fs.Args())}
	}
	if *logFormat != "text" && *logFormat != "json" {
		return &usageError{"--log-format must be text or json"}
	}
	log := newLogger(config.Server{LogLevel: "info", LogFormat: *logFormat}, stderr)
	sb, err := sandbox.New(sandbox.Options{Addr: *addr, Logger: log})
	if err != nil {
		return err
	}
	if err := sb.Start(); err != nil {
		return fmt.Errorf("sandbox on %s: %w", *addr, err)
	}
	defer sb.Close()
	if *writeConfig != "" {
		if err := sb.WriteConfig(*writeConfig); err != nil {
			return err
		}
	}
	log.Info("sandbox serving", "addr", sb.Addr(), "plain_api_addr", sb.PlainAddr(), "config", *writeConfig,
		"state", "https://"+sb.Addr()+"/_sandbox/v1/state")
	fmt.Fprintf(stdout, "sandbox listening on https://%s\n", sb.Addr())
	<-ctx.Done()
	log.Info("sandbox stopped")
	return nil
}
