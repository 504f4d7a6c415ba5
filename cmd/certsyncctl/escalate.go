package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func escalateCommand() *command {
	var dir string
	return &command{
		name: "escalate", args: "NAME", summary: "write what a ticket on LOD-SF-PLT-IAS needs, as text and JSON",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", ".", "directory for NAME-escalation.txt and NAME-escalation.json")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.GetEscalationBundle(ctx, &certsyncv1.GetEscalationBundleRequest{Name: connectionName(args[0])})
			if err != nil {
				return a.rpcFailed(err)
			}
			b := resp.GetBundle()
			base := filepath.Join(dir, strings.TrimPrefix(b.GetConnection(), "connections/")+"-escalation")
			js, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(b)
			if err != nil {
				return a.fail("encode JSON: %v", err)
			}
			var text strings.Builder
			writeBundle(&text, b)
			for _, f := range []struct {
				path string
				data []byte
			}{{base + ".json", js}, {base + ".txt", []byte(text.String())}} {
				if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
					return a.fail("%v", err)
				}
			}
			if a.output == "json" {
				fmt.Fprintln(a.stdout, string(js))
			} else {
				fmt.Fprint(a.stdout, text.String())
			}
			fmt.Fprintf(a.stderr, "wrote %s.txt and %s.json\n", base, base)
			return exitOK
		},
	}
}

func writeBundle(w io.Writer, b *certsyncv1.EscalationBundle) {
	fmt.Fprintf(w, "Escalation for SAP support component %s\n", b.GetSupportComponent())
	fmt.Fprintf(w, "Generated %s by certsync for %s\n\n", b.GetGenerateTime().AsTime().UTC().Format(time.RFC3339), b.GetConnection())
	fmt.Fprintln(w, b.GetSummary())
	fmt.Fprintf(w, "\nIPS tenant:     %s\nSF company id:  %s\nSF URL:         %s\n", b.GetTenantId(), b.GetCompanyId(), b.GetSfUrl())
	if s := b.GetSourceCertificate(); s != nil {
		fmt.Fprintln(w, "\nIPS active certificate:")
		writeSummary(w, s, "  ")
	}
	for _, t := range b.GetTargetMappings() {
		fmt.Fprintf(w, "\nSF mapping %s (configuration %q, integration %q, login %q):\n", t.GetId(), t.GetConfigurationName(), t.GetIntegrationName(), t.GetLoginName())
		if t.GetCertificate() != nil {
			writeSummary(w, t.GetCertificate(), "  ")
		}
	}
	for _, p := range b.GetProbes() {
		r := p.GetResult()
		fmt.Fprintf(w, "\nProbe at %s:\n  %s\n  -> %s, HTTP %d %s (%s)\n", r.GetCheckedAt().AsTime().UTC().Format(time.RFC3339), p.GetRequestLine(),
			strings.TrimPrefix(r.GetOutcome().String(), "PROBE_OUTCOME_"), r.GetHttpStatus(), r.GetErrorCode(), r.GetLatency().AsDuration())
		if p.GetErrorBody() != "" {
			fmt.Fprintf(w, "  body: %s\n", p.GetErrorBody())
		}
	}
	for _, op := range b.GetOperations() {
		fmt.Fprintln(w)
		writeOperation(w, op)
	}
	if len(b.GetJobLogLines()) > 0 {
		fmt.Fprintln(w, "\nIPS job log:")
		for _, l := range b.GetJobLogLines() {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	fmt.Fprintf(w, "\nReferences: %s\n", strings.Join(b.GetKbaReferences(), ", "))
}
