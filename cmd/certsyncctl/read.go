package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func compareCommand() *command {
	return &command{
		name: "compare", args: "NAME", summary: "compare IPS's active certificate with SF's mapping",
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: connectionName(args[0])})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) { writeComparison(w, resp) })
		},
	}
}

func writeComparison(w io.Writer, r *certsyncv1.CompareFingerprintsResponse) {
	fmt.Fprintf(w, "%s: %s\n", r.GetConnection(), strings.TrimPrefix(r.GetResult().String(), "COMPARISON_RESULT_"))
	fmt.Fprintln(w, r.GetSummary())
	if r.GetSource() != nil {
		fmt.Fprintln(w, "\nIPS active certificate:")
		writeSummary(w, r.GetSource(), "  ")
	}
	for _, t := range r.GetTargets() {
		role := "other mapping"
		switch {
		case t.GetMatchesSource():
			role = "mapping (matches IPS)"
		case t.GetCandidate():
			role = "mapping (candidate, differs from IPS)"
		}
		if t.GetSource() == certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PERSON {
			role += ", as a person recorded it"
		}
		fmt.Fprintf(w, "\nSF %s %s:\n", role, t.GetId())
		fmt.Fprintf(w, "  %-14s %s\n", "Configuration:", t.GetConfigurationName())
		fmt.Fprintf(w, "  %-14s %s\n", "Integration:", t.GetIntegrationName())
		fmt.Fprintf(w, "  %-14s %s\n", "Login name:", t.GetLoginName())
		if t.GetCertificate() != nil {
			writeSummary(w, t.GetCertificate(), "  ")
		}
	}
	if r.GetResult() == certsyncv1.ComparisonResult_COMPARISON_RESULT_MISMATCH {
		fmt.Fprintf(w, "\nSame subject and issuer: %s; public key differs: %s\n", yesNo(r.GetSameSubjectAndIssuer()), yesNo(r.GetPublicKeyDiffers()))
	}
	if len(r.GetFindings()) > 0 {
		fmt.Fprintln(w, "\nFindings:")
		for _, f := range r.GetFindings() {
			fmt.Fprintf(w, "  %-7s %s: %s\n", strings.TrimPrefix(f.GetSeverity().String(), "SEVERITY_"), f.GetCode(), f.GetMessage())
		}
	}
	fmt.Fprintf(w, "\netag: %s\n", r.GetEtag())
}

func probeCommand() *command {
	return &command{
		name: "probe", args: "NAME", summary: "make one real SCIM request to SF and classify the answer",
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.ProbeScimAuth(ctx, &certsyncv1.ProbeScimAuthRequest{Name: connectionName(args[0])})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) {
				row := func(k, v string) {
					if v != "" {
						fmt.Fprintf(w, "%-14s %s\n", k+":", v)
					}
				}
				row("Connection", resp.GetConnection())
				row("Outcome", strings.TrimPrefix(resp.GetOutcome().String(), "PROBE_OUTCOME_"))
				if resp.GetHttpStatus() != 0 {
					row("HTTP status", fmt.Sprint(resp.GetHttpStatus()))
				}
				row("Error code", resp.GetErrorCode())
				row("Message", resp.GetErrorMessage())
				row("Request", "GET "+resp.GetRequestUrl())
				row("Latency", resp.GetLatency().AsDuration().String())
				row("Client cert", resp.GetClientCertificateSha256()+" (SHA-256)")
				row("Identity", strings.TrimPrefix(resp.GetProbeIdentity().String(), "PROBE_IDENTITY_"))
			})
		},
	}
}
