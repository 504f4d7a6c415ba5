package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

const defaultAddr = "127.0.0.1:50051"

type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	addr    string
	output  string
	timeout time.Duration

	cacert, cert, key, tokenFile string
}

// command is one subcommand: its flags, its positional arguments and what it
// does with a client.
type command struct {
	name    string
	args    string // usage of positional arguments
	summary string
	minArgs int
	maxArgs int
	flags   func(fs *flag.FlagSet)
	run     func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int
}

func (a *app) commands() []*command {
	return []*command{
		inspectCommand(),
		diagnoseCommand(),
		connectionsCommand(),
		connectionCommand(),
		compareCommand(),
		probeCommand(),
		reregisterCommand(),
		operationsCommand(),
		operationCommand(),
		cancelCommand(),
		gateCommand(),
		watchCommand(),
		approveCommand(),
		auditCommand(),
		escalateCommand(),
		startJobCommand(),
		jobCommand(),
		importCommand(), sourceCertificatesCommand(),
		confirmCommand(), recordMappingCommand(),
	}
}

func (a *app) usage() string {
	var b strings.Builder
	b.WriteString("usage: certsyncctl [--addr HOST:PORT] [-o text|json] COMMAND [ARGS] [flags]\n\ncommands:\n")
	cmds := a.commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-28s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	b.WriteString("\nflags (before or after the command's arguments):\n" +
		"  --addr HOST:PORT   server address (default " + defaultAddr + ")\n" +
		"  -o text|json       output format (default text)\n" +
		"  --timeout DURATION per-call timeout (default 30s)\n" +
		"  --cacert FILE      TLS: verify the server against this CA bundle\n" +
		"  --cert, --key FILE TLS client certificate and key (mTLS)\n" +
		"  --token-file FILE  bearer token (default: the CERTSYNC_TOKEN environment variable)\n" +
		"\nexit status: 0 answer; 3 no answer (could not connect, bad usage, server error);\n" +
		"for gate: 0 allow, 1 deny, 2 inconclusive, 3 no answer\n")
	return b.String()
}

func (a *app) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.addr, "addr", defaultAddr, "server address HOST:PORT")
	fs.StringVar(&a.output, "o", "text", "output format: text or json")
	fs.DurationVar(&a.timeout, "timeout", 30*time.Second, "per-call timeout")
	fs.StringVar(&a.cacert, "cacert", "", "verify the server's TLS certificate against this CA bundle (turns TLS on)")
	fs.StringVar(&a.cert, "cert", "", "client certificate for mTLS (with --key; turns TLS on)")
	fs.StringVar(&a.key, "key", "", "the client certificate's key")
	fs.StringVar(&a.tokenFile, "token-file", "", "bearer token file (default: $CERTSYNC_TOKEN)")
}

func (a *app) fail(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "certsyncctl: "+format+"\n", args...)
	return exitNoAnswer
}

func (a *app) run(ctx context.Context, args []string) int {
	name, rest := splitCommand(args)
	if name == "" || name == "help" || name == "-h" || name == "--help" {
		fmt.Fprint(a.stderr, a.usage())
		if name == "" {
			return exitNoAnswer
		}
		return exitOK
	}
	var cmd *command
	for _, c := range a.commands() {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		return a.fail("unknown command %q\n\n%s", name, a.usage())
	}
	fs := flag.NewFlagSet("certsyncctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.globalFlags(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(a.stderr, "usage: certsyncctl %s %s [flags]\n", cmd.name, cmd.args)
			fs.SetOutput(a.stderr)
			fs.PrintDefaults()
			return exitOK
		}
		return a.fail("%s: %v", name, err)
	}
	if a.output != "text" && a.output != "json" {
		return a.fail("-o must be text or json, not %q", a.output)
	}
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		return a.fail("usage: certsyncctl %s %s", cmd.name, cmd.args)
	}
	dialOpts, err := a.dialOptions()
	if err != nil {
		return a.fail("%v", err)
	}
	conn, err := grpc.NewClient(a.addr, dialOpts...)
	if err != nil {
		return a.fail("cannot use address %q: %v", a.addr, err)
	}
	defer conn.Close()
	return cmd.run(ctx, a, certsyncv1.NewCertSyncServiceClient(conn), pos)
}

// splitCommand finds the command name: the first argument that is neither a
// global flag nor a global flag's value.
func splitCommand(args []string) (string, []string) {
	valueFlags := map[string]bool{"addr": true, "o": true, "timeout": true, "cacert": true, "cert": true, "key": true, "token-file": true}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			rest := append(append([]string{}, args[:i]...), args[i+1:]...)
			return arg, rest
		}
		name := strings.TrimLeft(arg, "-")
		if name == "h" || name == "help" {
			return "help", nil
		}
		if !strings.Contains(name, "=") && valueFlags[name] {
			i++ // skip the value
		}
	}
	return "", args
}

// parseInterspersed lets flags come before or after positional arguments,
// as operators type them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			pos = append(pos, arg)
			continue
		}
		flags = append(flags, arg)
		name := strings.TrimLeft(arg, "-")
		if strings.Contains(name, "=") || name == "h" || name == "help" {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, fmt.Errorf("unknown flag %s", arg)
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("flag %s needs a value", arg)
		}
		i++
		flags = append(flags, args[i])
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return pos, nil
}

func (a *app) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// rpcFailed prints a failed call's status and its details, and returns the
// no-answer exit status.
func (a *app) rpcFailed(err error) int {
	st, _ := status.FromError(err)
	fmt.Fprintf(a.stderr, "certsyncctl: %s: %s\n", st.Code(), st.Message())
	for _, d := range describeDetails(st) {
		fmt.Fprintf(a.stderr, "  %s\n", d)
	}
	return exitNoAnswer
}

// print writes a response as JSON or with the given text renderer.
func (a *app) print(m proto.Message, text func(w io.Writer)) int {
	if a.output == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
		if err != nil {
			return a.fail("encode JSON: %v", err)
		}
		fmt.Fprintln(a.stdout, string(b))
		return exitOK
	}
	text(a.stdout)
	return exitOK
}

// readInput reads a file argument, or standard input for "-" or no argument.
func (a *app) readInput(args []string, limit int64) ([]byte, error) {
	var r io.Reader = a.stdin
	name := "standard input"
	if len(args) > 0 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, args[0]
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, nil
}

// connectionName accepts "demo-healthy" or "connections/demo-healthy".
func connectionName(arg string) string {
	if strings.HasPrefix(arg, "connections/") {
		return arg
	}
	return "connections/" + arg
}
