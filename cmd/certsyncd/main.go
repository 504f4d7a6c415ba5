// Command certsyncd is the certsync server: `serve` runs the gRPC service,
// `config check` validates a configuration without serving.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=..."; without
// it, the module version from the build info is used.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a mistake in how the command was called, including an
// invalid configuration: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintln(stderr, ue.msg)
		}
		return 2
	}
	fmt.Fprintln(stderr, "certsyncd:", err)
	return 1
}

const usage = `usage: certsyncd COMMAND [flags]

commands:
  serve          run the gRPC service (--sandbox: with the simulated IPS and SF)
  sandbox        run the simulated IPS and SF alone (--write-config FILE)
  config check   validate a configuration file and print what it holds

flags common to all commands:
  --version      print the version and exit

run "certsyncd COMMAND -h" for a command's flags.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{usage}
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, "certsyncd", buildVersion())
		return nil
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "sandbox":
		return runSandbox(ctx, args[1:], stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			return &usageError{"usage: certsyncd config check --config FILE"}
		}
		return configCheck(args[2:], stdout, stderr)
	}
	return &usageError{fmt.Sprintf("unknown command %q\n\n%s", args[0], usage)}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
