package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// Gate exit statuses: schedulers fail on 1, retry on 2 and 3, and decide for
// themselves whether "could not ask" (3) blocks.
const (
	exitDeny         = 1
	exitInconclusive = 2
)

func gateExit(d certsyncv1.GateDecision) int {
	switch d {
	case certsyncv1.GateDecision_GATE_DECISION_ALLOW:
		return exitOK
	case certsyncv1.GateDecision_GATE_DECISION_DENY:
		return exitDeny
	case certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE:
		return exitInconclusive
	}
	return exitNoAnswer
}

func gateCommand() *command {
	var maxAge *time.Duration // nil: the server's default; 0s: fresh evidence only
	var jobID string
	return &command{
		name: "gate", args: "NAME", summary: "may a provisioning job run now? exit 0 allow, 1 deny, 2 inconclusive, 3 no answer",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.Func("max-age", "oldest evidence accepted, e.g. 5m; 0s asks for fresh evidence (default: the server's, 2m)", func(v string) error {
				d, err := time.ParseDuration(v)
				if err != nil || d < 0 {
					return fmt.Errorf("%q is not a duration such as 30s or 5m", v)
				}
				maxAge = &d
				return nil
			})
			fs.StringVar(&jobID, "job-id", "", "your job's id, for the server's logs")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			req := &certsyncv1.CheckGateRequest{Name: connectionName(args[0]), JobId: jobID}
			if maxAge != nil {
				req.MaxEvidenceAge = durationpb.New(*maxAge)
			}
			resp, err := c.CheckGate(ctx, req)
			if err != nil {
				return a.rpcFailed(err)
			}
			if code := a.print(resp, func(w io.Writer) { writeVerdict(w, resp) }); code != exitOK {
				return code
			}
			return gateExit(resp.GetDecision())
		},
	}
}

func writeVerdict(w io.Writer, r *certsyncv1.CheckGateResponse) {
	fmt.Fprintf(w, "%s: %s\n", r.GetConnection(), strings.TrimPrefix(r.GetDecision().String(), "GATE_DECISION_"))
	if r.GetSummary() != "" {
		fmt.Fprintln(w, r.GetSummary())
	}
	fmt.Fprintf(w, "Evidence from %s (%s old)\n", r.GetCheckedAt().AsTime().UTC().Format(time.RFC3339), r.GetEvidenceAge().AsDuration().Round(time.Millisecond))
	if ra := r.GetRetryAfter(); ra != nil {
		fmt.Fprintf(w, "Ask again in %s\n", ra.AsDuration().Round(time.Second))
	}
	if len(r.GetConditions()) > 0 { // a plain ALLOW in the basic view has none
		fmt.Fprintln(w, "Conditions:")
	}
	for _, c := range r.GetConditions() {
		fmt.Fprintf(w, "  %-7s %-5s %-28s %s: %s\n", strings.TrimPrefix(c.GetSeverity().String(), "SEVERITY_"),
			strings.TrimPrefix(c.GetStatus().String(), "CONDITION_STATUS_"), c.GetType(), c.GetReason(), c.GetMessage())
	}
	if len(r.GetRemediation()) > 0 {
		fmt.Fprintln(w, "What to do:")
		writeSteps(w, r.GetRemediation(), "  ")
	}
}

func watchCommand() *command {
	return &command{
		name: "watch", args: "NAME", summary: "print the gate's verdict, then every change, until interrupted",
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			stream, err := c.WatchGate(ctx, &certsyncv1.WatchGateRequest{Name: connectionName(args[0])})
			if err != nil {
				return a.rpcFailed(err)
			}
			for {
				msg, err := stream.Recv()
				if err != nil {
					if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
						return exitOK
					}
					return a.rpcFailed(err)
				}
				v := &certsyncv1.CheckGateResponse{Decision: msg.GetDecision(), Conditions: msg.GetConditions(), CheckedAt: msg.GetCheckedAt(),
					EvidenceAge: msg.GetEvidenceAge(), RetryAfter: msg.GetRetryAfter(), Remediation: msg.GetRemediation(), Connection: msg.GetConnection(), Summary: msg.GetSummary()}
				if a.output == "json" {
					// One verdict per line, so that scripts can read the stream.
					b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
					if err != nil {
						return a.fail("encode JSON: %v", err)
					}
					fmt.Fprintln(a.stdout, string(b))
				} else {
					fmt.Fprintf(a.stdout, "--- %s\n", time.Now().UTC().Format(time.RFC3339))
					writeVerdict(a.stdout, v)
				}
			}
		},
	}
}
