package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// maxInputBytes bounds what the CLI reads before sending; the server applies
// its own, smaller limits and says so.
const maxInputBytes = 4 << 20

func inspectCommand() *command {
	return &command{
		name: "inspect", args: "FILE|-", summary: "summarise certificates (PEM or DER) and their fingerprints",
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			data, err := a.readInput(args, maxInputBytes)
			if err != nil {
				return a.fail("%v", err)
			}
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.InspectCertificate(ctx, &certsyncv1.InspectCertificateRequest{Data: data})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				for i, s := range resp.GetCertificates() {
					if len(resp.GetCertificates()) > 1 {
						fmt.Fprintf(w, "Certificate %d of %d\n", i+1, len(resp.GetCertificates()))
					}
					writeSummary(w, s, "  ")
				}
			})
		},
	}
}

func writeSummary(w io.Writer, s *certsyncv1.CertificateSummary, indent string) {
	row := func(k, v string) { fmt.Fprintf(w, "%s%-14s %s\n", indent, k+":", v) }
	if s.GetSubject() == "" && s.GetNotAfter() == nil {
		// Only fingerprints are known: what a person read off SF's screen.
		if s.GetSha1Fingerprint() != "" {
			row("SHA-1", s.GetSha1Fingerprint())
		}
		if s.GetSha256Fingerprint() != "" {
			row("SHA-256", s.GetSha256Fingerprint())
		}
		row("Certificate", "not known: only its fingerprint was recorded")
		return
	}
	row("Subject", s.GetSubject())
	row("Issuer", s.GetIssuer())
	row("Serial", s.GetSerialNumber())
	validity := fmt.Sprintf("%s to %s", s.GetNotBefore().AsTime().Format(time.RFC3339), s.GetNotAfter().AsTime().Format(time.RFC3339))
	switch d := s.GetDaysUntilExpiry(); {
	case s.GetExpired():
		validity += fmt.Sprintf(" (EXPIRED %d days ago)", -d)
	case s.GetNotYetValid():
		validity += " (NOT YET VALID)"
	default:
		validity += fmt.Sprintf(" (%d days left)", d)
	}
	row("Valid", validity)
	row("SHA-1", s.GetSha1Fingerprint())
	row("SHA-256", s.GetSha256Fingerprint())
	row("SPKI SHA-256", s.GetSpkiSha256Fingerprint())
	key := s.GetKeyAlgorithm()
	if s.GetKeyCurve() != "" {
		key += " " + s.GetKeyCurve()
	}
	if s.GetKeyBits() > 0 {
		key += fmt.Sprintf(" (%d bits)", s.GetKeyBits())
	}
	row("Key", key)
	row("Signature", s.GetSignatureAlgorithm())
	row("Client auth", yesNo(s.GetClientAuth()))
	if s.GetIsCa() {
		row("CA", "yes")
	}
	if len(s.GetSubjectAltNames()) > 0 {
		row("Alt names", strings.Join(s.GetSubjectAltNames(), ", "))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func diagnoseCommand() *command {
	return &command{
		name: "diagnose", args: "[FILE|-]", summary: "explain an IPS job error and what fixes it",
		minArgs: 0, maxArgs: 1,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			data, err := a.readInput(args, maxInputBytes)
			if err != nil {
				return a.fail("%v", err)
			}
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.DiagnoseJobError(ctx, &certsyncv1.DiagnoseJobErrorRequest{Text: string(data)})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) { writeDiagnosis(w, resp) })
		},
	}
}

func writeDiagnosis(w io.Writer, resp *certsyncv1.DiagnoseJobErrorResponse) {
	fmt.Fprintln(w, resp.GetSummary())
	for i, f := range resp.GetFindings() {
		fmt.Fprintf(w, "\nFinding %d: %s\n", i+1, strings.TrimPrefix(f.GetCause().String(), "FAILURE_CAUSE_"))
		row := func(k, v string) {
			if v != "" {
				fmt.Fprintf(w, "  %-10s %s\n", k+":", v)
			}
		}
		row("URL", f.GetUrl())
		if f.GetHost() != "" {
			kind := "not SF's mTLS host"
			if f.GetCertHost() {
				kind = "SF mTLS host"
			}
			row("Host", fmt.Sprintf("%s (%s)", f.GetHost(), kind))
		}
		if f.GetHttpStatus() != 0 {
			row("Status", fmt.Sprint(f.GetHttpStatus()))
		}
		row("Code", f.GetErrorCode())
		row("Message", f.GetErrorMessage())
		row("Tenant", f.GetTenantId())
		row("Why", f.GetExplanation())
		if len(f.GetRecommendedActions()) > 0 {
			fmt.Fprintln(w, "  What to do:")
			writeSteps(w, f.GetRecommendedActions(), "    ")
		}
		row("Escalate", f.GetSupportComponent())
	}
}

func writeSteps(w io.Writer, steps []*certsyncv1.RemediationStep, indent string) {
	for i, st := range steps {
		line := fmt.Sprintf("%s%d. %s", indent, i+1, st.GetText())
		if len(st.GetKbaReferences()) > 0 {
			line += " (" + strings.Join(st.GetKbaReferences(), ", ") + ")"
		}
		fmt.Fprintln(w, line)
	}
}

func connectionsCommand() *command {
	return &command{
		name: "connections", summary: "list the configured connections",
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, _ []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			all := &certsyncv1.ListConnectionsResponse{}
			for token := ""; ; {
				resp, err := c.ListConnections(ctx, &certsyncv1.ListConnectionsRequest{PageSize: 500, PageToken: token})
				if err != nil {
					return a.rpcFailed(err)
				}
				all.Connections = append(all.Connections, resp.GetConnections()...)
				all.TotalSize = resp.GetTotalSize()
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			return a.print(all, func(w io.Writer) {
				fmt.Fprintf(w, "%-28s %-14s %-40s %s\n", "NAME", "VERDICT", "SF URL", "COMPANY")
				for _, cn := range all.GetConnections() {
					verdict := "-"
					if v := cn.GetLatestVerdict(); v != nil {
						verdict = strings.TrimPrefix(v.GetDecision().String(), "GATE_DECISION_")
					}
					fmt.Fprintf(w, "%-28s %-14s %-40s %s\n", cn.GetName(), verdict, cn.GetSfUrl(), cn.GetCompanyId())
				}
			})
		},
	}
}

func connectionCommand() *command {
	return &command{
		name: "connection", args: "NAME", summary: "show one connection",
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.GetConnection(ctx, &certsyncv1.GetConnectionRequest{Name: connectionName(args[0])})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				cn := resp.GetConnection()
				row := func(k, v string) { fmt.Fprintf(w, "%-18s %s\n", k+":", v) }
				row("Name", cn.GetName())
				if cn.GetDescription() != "" {
					row("Description", cn.GetDescription())
				}
				row("SF URL", fmt.Sprintf("%s (cert host: %s)", cn.GetSfUrl(), yesNo(cn.GetCertHost())))
				row("Company id", cn.GetCompanyId())
				row("Source", strings.TrimPrefix(cn.GetSourceKind().String(), "SOURCE_KIND_"))
				row("Registry", strings.TrimPrefix(cn.GetRegistryDriver().String(), "REGISTRY_DRIVER_"))
				row("Probe identity", strings.TrimPrefix(cn.GetProbeIdentity().String(), "PROBE_IDENTITY_"))
				row("Integration name", cn.GetIntegrationName())
				for _, wn := range cn.GetWarnings() {
					row("Warning", wn)
				}
			})
		},
	}
}
