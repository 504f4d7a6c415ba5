package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// configCheck validates a configuration and prints what it holds, without
// serving: operators run it before a deployment.
func configCheck(args []string, stdout, stderr io.Writer) error {
	fs, f := newServeFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{}
	}
	if f.configFile == "" {
		return &usageError{"config check needs --config FILE"}
	}
	cfg, problems, err := loadConfig(fs, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "configuration %s\n", f.configFile)
	fmt.Fprintf(stdout, "  grpc_addr: %s\n", cfg.Server.GRPCAddr)
	fmt.Fprintf(stdout, "  connections: %d\n", len(cfg.Connections))
	for _, c := range cfg.Connections {
		fmt.Fprintf(stdout, "  - connections/%s: %s company %s, source %s, registry %s, probe identity %s\n",
			c.ID, c.SF.URL, c.SF.CompanyID, c.Source.Type, c.Registry.Driver, c.Probe.Identity)
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p.String())
	}
	if n := len(problems.Errors()); n > 0 {
		return &usageError{fmt.Sprintf("configuration invalid: %d error(s), %d warning(s)", n, len(problems.Warnings()))}
	}
	fmt.Fprintf(stdout, "configuration valid: %d warning(s)\n", len(problems.Warnings()))
	return nil
}
