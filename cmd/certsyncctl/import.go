package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func importCommand() *command {
	var active bool
	var reason string
	return &command{
		name: "import", args: "NAME FILE|-",
		summary: "import IPS's certificate as downloaded from IPS > Outbound Certificate (--active when IPS shows it as Active)",
		minArgs: 2, maxArgs: 2,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&active, "active", false, "IPS shows this certificate as Active (it replaces the previous active one)")
			fs.StringVar(&reason, "reason", "", "why, e.g. a change ticket (kept in the audit)")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			data, err := a.readInput(args[1:], maxInputBytes)
			if err != nil {
				return a.fail("%v", err)
			}
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.ImportSourceCertificate(ctx, &certsyncv1.ImportSourceCertificateRequest{
				Name: connectionName(args[0]), Certificate: data, Active: active, Reason: reason,
			})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				v := resp.GetSourceCertificate()
				state := "inactive"
				if v.GetActive() {
					state = "Active"
				}
				fmt.Fprintf(w, "%s: version %s (%s), imported %s by %s\n", connectionName(args[0]), v.GetId(), state,
					v.GetImportTime().AsTime().UTC().Format(time.RFC3339), v.GetImportedBy())
				if v.GetCertificate() != nil {
					writeSummary(w, v.GetCertificate(), "  ")
				}
				if len(resp.GetFindings()) > 0 {
					fmt.Fprintln(w, "\nFindings:")
					for _, f := range resp.GetFindings() {
						fmt.Fprintf(w, "  %-7s %s: %s\n", strings.TrimPrefix(f.GetSeverity().String(), "SEVERITY_"), f.GetCode(), f.GetMessage())
					}
				}
			})
		},
	}
}

func sourceCertificatesCommand() *command {
	var limit int
	return &command{
		name: "source-certificates", args: "NAME", summary: "list the imported versions of IPS's certificate, newest first",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&limit, "limit", 100, "at most this many versions")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			if limit <= 0 {
				return a.fail("--limit must be positive")
			}
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			all := &certsyncv1.ListSourceCertificatesResponse{}
			for {
				resp, err := c.ListSourceCertificates(ctx, &certsyncv1.ListSourceCertificatesRequest{
					Name: connectionName(args[0]), PageSize: int32(min(limit-len(all.SourceCertificates), 500)), PageToken: all.NextPageToken,
				})
				if err != nil {
					return a.rpcFailed(err)
				}
				all.SourceCertificates = append(all.SourceCertificates, resp.GetSourceCertificates()...)
				all.NextPageToken = resp.GetNextPageToken()
				if all.NextPageToken == "" || len(all.SourceCertificates) >= limit {
					break
				}
			}
			return a.print(all, func(w io.Writer) {
				fmt.Fprintf(w, "%-32s %-6s %-20s %-20s %-10s %s\n", "ID", "ACTIVE", "IMPORTED", "BY", "EXPIRES", "SHA-256")
				for _, v := range all.GetSourceCertificates() {
					act := ""
					if v.GetActive() {
						act = "yes"
					}
					expires := ""
					if na := v.GetCertificate().GetNotAfter(); na != nil {
						expires = na.AsTime().UTC().Format(time.DateOnly)
					}
					fmt.Fprintf(w, "%-32s %-6s %-20s %-20s %-10s %s\n", v.GetId(), act, v.GetImportTime().AsTime().UTC().Format(time.DateTime),
						v.GetImportedBy(), expires, v.GetCertificate().GetSha256Fingerprint())
				}
				if all.GetNextPageToken() != "" {
					fmt.Fprintf(w, "(more than %d; raise --limit to see them)\n", limit)
				}
			})
		},
	}
}
