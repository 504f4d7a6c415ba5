package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func approveCommand() *command {
	var reason string
	return &command{
		name: "approve", args: "ID", summary: "approve an operation that waits for approval (approver role; not your own)",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) { fs.StringVar(&reason, "reason", "", "why (kept in the audit)") },
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.ApproveOperation(ctx, &certsyncv1.ApproveOperationRequest{Name: operationName(args[0]), Reason: reason})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.printOperation(resp.GetOperation())
		},
	}
}

func auditCommand() *command {
	var conn string
	var limit int
	return &command{
		name: "audit", args: "[verify]", summary: "list audit events (newest first), or verify the hash chain",
		minArgs: 0, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&conn, "connection", "", "only this connection's events")
			fs.IntVar(&limit, "limit", 100, "at most this many events")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			if len(args) == 1 {
				if args[0] != "verify" {
					return a.fail("usage: certsyncctl audit [verify]")
				}
				resp, err := c.VerifyAuditLog(ctx, &certsyncv1.VerifyAuditLogRequest{})
				if err != nil {
					return a.rpcFailed(err)
				}
				code := a.print(resp, func(w io.Writer) {
					if resp.GetIntact() {
						fmt.Fprintf(w, "audit log intact: %d events checked\n", resp.GetEventsChecked())
					} else {
						fmt.Fprintf(w, "audit log BROKEN at event %d: %s\n", resp.GetFirstBadSequence(), resp.GetMessage())
					}
				})
				if code == exitOK && !resp.GetIntact() {
					return exitDeny // a broken chain is an answer, and a failing one
				}
				return code
			}
			req := &certsyncv1.ListAuditEventsRequest{PageSize: int32(min(limit, 500))}
			if conn != "" {
				req.Connection = connectionName(conn)
			}
			resp, err := c.ListAuditEvents(ctx, req)
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "%-6s %-20s %-22s %-9s %-24s %-18s %-28s %s\n", "SEQ", "TIME", "IDENTITY", "ROLE", "RPC", "OUTCOME", "CONNECTION", "OPERATION")
				for _, e := range resp.GetEvents() {
					rpc := e.GetRpc()
					if i := len("/certsync.v1.CertSyncService/"); len(rpc) > i {
						rpc = rpc[i:]
					}
					fmt.Fprintf(w, "%-6d %-20s %-22s %-9s %-24s %-18s %-28s %s\n", e.GetSequence(), e.GetTime().AsTime().UTC().Format(time.DateTime),
						e.GetIdentity(), e.GetRole(), rpc, e.GetOutcome(), e.GetConnection(), e.GetOperation())
				}
			})
		},
	}
}
