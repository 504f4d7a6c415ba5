package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func startJobCommand() *command {
	var force, resync bool
	var reason string
	return &command{
		name: "start-job", args: "NAME", summary: "start IPS's READ job (refused unless the gate allows, or --force with --reason)",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&force, "force", false, "start even though the gate does not allow (needs --reason)")
			fs.BoolVar(&resync, "resync", false, "a RESYNC job instead of READ")
			fs.StringVar(&reason, "reason", "", "why (kept in the audit)")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			req := &certsyncv1.StartProvisioningJobRequest{Name: connectionName(args[0]), Force: force, Reason: reason,
				Type: certsyncv1.ProvisioningJobType_PROVISIONING_JOB_TYPE_READ}
			if resync {
				req.Type = certsyncv1.ProvisioningJobType_PROVISIONING_JOB_TYPE_RESYNC
			}
			resp, err := c.StartProvisioningJob(ctx, req)
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "Job %s started for %s (%s); gate said %s\n", resp.GetJob().GetJobId(), resp.GetJob().GetConnection(),
					resp.GetJob().GetStatus(), strings.TrimPrefix(resp.GetGateDecision().String(), "GATE_DECISION_"))
			})
		},
	}
}

func jobCommand() *command {
	return &command{
		name: "job", args: "NAME JOB_ID", summary: "an IPS job's status and, when it failed, its log diagnosed",
		minArgs: 2, maxArgs: 2,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.GetProvisioningJob(ctx, &certsyncv1.GetProvisioningJobRequest{Name: connectionName(args[0]), JobId: args[1]})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				j := resp.GetJob()
				fmt.Fprintf(w, "Job %s of %s: %s\n", j.GetJobId(), j.GetConnection(), j.GetStatus())
				if len(j.GetFindings()) > 0 {
					writeDiagnosis(w, &certsyncv1.DiagnoseJobErrorResponse{Findings: j.GetFindings(), Summary: "Its log shows:"})
				}
			})
		},
	}
}
