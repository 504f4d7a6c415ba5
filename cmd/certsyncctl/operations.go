package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func operationName(arg string) string {
	if strings.HasPrefix(arg, "operations/") {
		return arg
	}
	return "operations/" + arg
}

func reregisterCommand() *command {
	var dryRun, wait bool
	var etag, mappingID, reason, requestID string
	var waitFor time.Duration
	return &command{
		name: "reregister", args: "NAME", summary: "delete SF's mapping and upload IPS's active certificate (journaled)",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&dryRun, "dry-run", false, "run every check, change nothing")
			fs.BoolVar(&wait, "wait", false, "wait until the operation is done or waits for a person; exit 0 succeeded, 1 ended otherwise, 2 not done")
			fs.DurationVar(&waitFor, "wait-timeout", 5*time.Minute, "how long --wait waits")
			fs.StringVar(&etag, "etag", "", "etag from compare: refuse if anything changed since")
			fs.StringVar(&mappingID, "mapping-id", "", "the mapping to replace (required when compare says AMBIGUOUS)")
			fs.StringVar(&reason, "reason", "", "why, e.g. a change ticket (kept on the operation)")
			fs.StringVar(&requestID, "request-id", "", "idempotency key: the same key returns the same operation")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			cctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.ReregisterCertificate(cctx, &certsyncv1.ReregisterCertificateRequest{
				Name: connectionName(args[0]), Etag: etag, ValidateOnly: dryRun, RequestId: requestID, MappingId: mappingID, Reason: reason,
			})
			if err != nil {
				return a.rpcFailed(err)
			}
			op := resp.GetOperation()
			if !wait {
				return a.printOperation(op)
			}
			if op, err = waitOperation(ctx, c, op, waitFor); err != nil {
				return a.rpcFailed(err)
			}
			return a.printWaited(op)
		},
	}
}

// awaitsPerson reports an operation that cannot go on by itself: it waits
// for an approver, or a step waits for a person's confirmation (manual
// registry).
func awaitsPerson(op *certsyncv1.Operation) bool {
	if op.GetState() == certsyncv1.OperationState_OPERATION_STATE_PENDING_APPROVAL {
		return true
	}
	for _, s := range op.GetSteps() {
		if s.GetState() == certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION && s.GetInstruction() != nil {
			return true
		}
	}
	return false
}

// waitSlice bounds one WaitOperation call: short enough to notice soon that
// a step waits for a person (WaitOperation answers at the end only), long
// enough not to poll.
const waitSlice = 2 * time.Second

// waitOperation calls WaitOperation until the operation is done, waits for
// a person, or total passes.
func waitOperation(ctx context.Context, c certsyncv1.CertSyncServiceClient, op *certsyncv1.Operation, total time.Duration) (*certsyncv1.Operation, error) {
	deadline := time.Now().Add(total)
	for !op.GetDone() && !awaitsPerson(op) {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		step := min(left, waitSlice)
		cctx, cancel := context.WithTimeout(ctx, step+10*time.Second)
		r, err := c.WaitOperation(cctx, &certsyncv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(step)})
		cancel()
		if err != nil {
			return nil, err
		}
		op = r.GetOperation()
	}
	return op, nil
}

// Exit statuses after --wait, in the spirit of the gate's: go, no, later.
const (
	exitSucceeded = 0 // the operation succeeded
	exitEnded     = 1 // it ended otherwise: failed, rolled back or cancelled
	exitNotDone   = 2 // it still runs, or waits for a person
)

// printWaited prints an operation --wait waited for and returns the exit
// status that tells a script how it stands.
func (a *app) printWaited(op *certsyncv1.Operation) int {
	if code := a.printOperation(op); code != 0 {
		return code
	}
	switch {
	case op.GetState() == certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED:
		return exitSucceeded
	case op.GetDone():
		return exitEnded
	default:
		return exitNotDone
	}
}

func (a *app) printOperation(op *certsyncv1.Operation) int {
	return a.print(op, func(w io.Writer) { writeOperation(w, op) })
}

func writeOperation(w io.Writer, op *certsyncv1.Operation) {
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-12s %s\n", k+":", v)
		}
	}
	row("Operation", op.GetName())
	row("Connection", op.GetConnection())
	row("State", strings.TrimPrefix(op.GetState().String(), "OPERATION_STATE_"))
	row("Summary", op.GetSummary())
	row("Reason", op.GetReason())
	row("Request id", op.GetRequestId())
	if op.GetValidateOnly() {
		row("Dry run", "yes")
	}
	// Past tense only for what happened: a dry run, or an upload not yet
	// done, says what it would do.
	replaced, uploaded := "Replaced", "Uploaded"
	if op.GetValidateOnly() || stepStateOf(op, certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING) != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
		replaced = "To replace"
	}
	if op.GetValidateOnly() || stepStateOf(op, certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE) != certsyncv1.StepState_STEP_STATE_SUCCEEDED {
		uploaded = "To upload"
	}
	row(replaced, op.GetMappingId())
	row("Previous", op.GetPreviousSha256())
	row(uploaded, op.GetSourceSha256())
	row("New mapping", op.GetNewMappingId())
	fmt.Fprintln(w, "Steps:")
	for _, s := range op.GetSteps() {
		fmt.Fprintf(w, "  %-22s %-10s %s\n", strings.TrimPrefix(s.GetKind().String(), "STEP_KIND_"), strings.TrimPrefix(s.GetState().String(), "STEP_STATE_"), s.GetMessage())
		writeStepDetails(w, op, s)
	}
	if e := op.GetError(); e != nil {
		fmt.Fprintf(w, "Error:       %s %s: %s\n", e.GetCode(), e.GetReason(), e.GetMessage())
	}
}

// writeStepDetails adds, under a step, who confirmed it and, while it waits
// for a person, what to do. The certificate's PEM is left out: it is long,
// and --write-certificate saves it.
func writeStepDetails(w io.Writer, op *certsyncv1.Operation, s *certsyncv1.OperationStep) {
	const indent = "      "
	row := func(k, v string) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%s%-14s %s", indent, k+":", v), " "))
	}
	if s.GetConfirmedBy() != "" {
		row("Confirmed by", s.GetConfirmedBy())
	}
	if s.GetState() != certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION {
		return
	}
	if d := s.GetDeadline(); d != nil {
		left := time.Until(d.AsTime()).Round(time.Minute)
		when := "in " + strings.TrimSuffix(left.String(), "0s")
		if left <= 0 {
			when = "passed"
		}
		row("Deadline", fmt.Sprintf("%s (%s)", d.AsTime().UTC().Format(time.RFC3339), when))
	}
	in := s.GetInstruction()
	if in == nil {
		return
	}
	if in.GetConfigurationName() != "" || in.GetIntegrationName() != "" || in.GetLoginName() != "" {
		row("Configuration", in.GetConfigurationName())
		row("Integration", in.GetIntegrationName())
		login := in.GetLoginName()
		if login == "" {
			login = "(empty: SF's built-in technical user)"
		}
		row("Login name", login)
	}
	if in.GetSha256Fingerprint() != "" {
		row("SHA-256", in.GetSha256Fingerprint())
	}
	if in.GetCertificatePem() != "" {
		row("Certificate", "attached; save it with: certsyncctl operation "+strings.TrimPrefix(op.GetName(), "operations/")+" --write-certificate FILE")
	}
	if text := strings.TrimSpace(in.GetText()); text != "" {
		fmt.Fprintf(w, "%sInstructions:\n", indent)
		for _, line := range strings.Split(text, "\n") {
			fmt.Fprintf(w, "%s  %s\n", indent, strings.TrimRight(line, " \t\r"))
		}
	}
}

func operationsCommand() *command {
	var conn string
	return &command{
		name: "operations", summary: "list operations, newest first",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&conn, "connection", "", "only this connection's")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, _ []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			req := &certsyncv1.ListOperationsRequest{PageSize: 100}
			if conn != "" {
				req.Connection = connectionName(conn)
			}
			resp, err := c.ListOperations(ctx, req)
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "%-44s %-28s %-12s %-20s %s\n", "NAME", "CONNECTION", "STATE", "CREATED", "SUMMARY")
				for _, op := range resp.GetOperations() {
					fmt.Fprintf(w, "%-44s %-28s %-12s %-20s %s\n", op.GetName(), op.GetConnection(), strings.TrimPrefix(op.GetState().String(), "OPERATION_STATE_"),
						op.GetCreateTime().AsTime().UTC().Format(time.DateTime), op.GetSummary())
				}
			})
		},
	}
}

func operationCommand() *command {
	var certFile string
	var force, wait bool
	var waitFor time.Duration
	return &command{
		name: "operation", args: "ID", summary: "show one operation and its steps (--write-certificate FILE: save the certificate a manual upload step waits for)",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&certFile, "write-certificate", "", "save the certificate to upload (step awaiting confirmation) to this file, PEM")
			fs.BoolVar(&force, "force", false, "with --write-certificate: replace an existing file")
			fs.BoolVar(&wait, "wait", false, "wait until the operation is done or waits for a person; exit 0 succeeded, 1 ended otherwise, 2 not done")
			fs.DurationVar(&waitFor, "wait-timeout", 5*time.Minute, "how long --wait waits")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			if force && certFile == "" {
				return a.fail("operation: --force goes with --write-certificate FILE")
			}
			cctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.GetOperation(cctx, &certsyncv1.GetOperationRequest{Name: operationName(args[0])})
			if err != nil {
				return a.rpcFailed(err)
			}
			if wait { // bounded by --wait-timeout, not by --timeout
				op, err := waitOperation(ctx, c, resp.GetOperation(), waitFor)
				if err != nil {
					return a.rpcFailed(err)
				}
				resp.Operation = op
			}
			if certFile != "" {
				if err := a.writeCertificate(resp.GetOperation(), certFile, force); err != nil {
					return a.fail("%v", err)
				}
			}
			if wait {
				return a.printWaited(resp.GetOperation())
			}
			return a.printOperation(resp.GetOperation())
		},
	}
}

func cancelCommand() *command {
	var reason string
	return &command{
		name: "cancel", args: "ID", summary: "stop an operation before its next side effect",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) { fs.StringVar(&reason, "reason", "", "why") },
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.CancelOperation(ctx, &certsyncv1.CancelOperationRequest{Name: operationName(args[0]), Reason: reason})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.printOperation(resp.GetOperation())
		},
	}
}

func stepStateOf(op *certsyncv1.Operation, kind certsyncv1.StepKind) certsyncv1.StepState {
	for _, st := range op.GetSteps() {
		if st.GetKind() == kind {
			return st.GetState()
		}
	}
	return certsyncv1.StepState_STEP_STATE_UNSPECIFIED
}
