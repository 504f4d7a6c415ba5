package service

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// GetEscalationBundle implements certsync.v1.CertSyncService: what a ticket
// on LOD-SF-PLT-IAS needs, gathered now (one probe, one registry read) and
// from the operations tried. It carries certificates (public) and SF's
// error bodies, never keys, tokens or a successful answer's employee data.
func (s *Server) GetEscalationBundle(ctx context.Context, req *certsyncv1.GetEscalationBundleRequest) (*certsyncv1.GetEscalationBundleResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	now := s.now()
	b := &certsyncv1.EscalationBundle{
		Connection:       c.Name(),
		TenantId:         c.Config.IPS.TenantID,
		CompanyId:        c.Config.SF.CompanyID,
		SfUrl:            c.Config.SF.URL,
		SupportComponent: diagnose.SupportComponentSFIAS,
		GenerateTime:     timestamppb.New(now),
	}
	r := c.Read(ctx, now, 0)
	var notes []string
	var cmp *compare.Comparison
	switch {
	case r.RegistryErr != nil:
		notes = append(notes, "SF's mappings could not be read: "+r.RegistryErr.Error())
	case r.Comparison != nil:
		cmp = r.Comparison
		full := comparisonProto(c, *cmp, now)
		b.SourceCertificate, b.TargetMappings = full.GetSource(), full.GetTargets()
		notes = append(notes, fmt.Sprintf("comparison: %s", cmp.Summary))
	default:
		notes = append(notes, "the connection uses the manual registry driver: SF's mappings are not readable by certsync")
	}
	if b.SourceCertificate == nil && r.Source != nil {
		b.SourceCertificate = summaryProto(x509cert.Summarize(r.Source), now)
	}

	res := c.Prober.Probe(ctx)
	b.Probes = append(b.Probes, &certsyncv1.ProbeTranscript{
		RequestLine: "GET " + res.RequestURL + " (header successfactors-companyid: " + c.Config.SF.CompanyID + ")",
		Result:      probeProto(c, res),
		ErrorBody:   res.ErrorBody,
	})
	notes = append(notes, fmt.Sprintf("probe: %s", res.Outcome))

	if s.ops != nil {
		ops, _, err := s.ops.List(ctx, store.ListFilter{Connection: c.Config.ID, PageSize: 20})
		if err == nil {
			for _, op := range ops {
				if !op.ValidateOnly {
					b.Operations = append(b.Operations, operationProto(op))
				}
			}
		}
		if n := len(b.Operations); n > 0 {
			notes = append(notes, fmt.Sprintf("%d re-registration(s) tried, the latest %s", n, strings.ToLower(b.Operations[0].GetState().String()[len("OPERATION_STATE_"):])))
		}
	}
	situation := diagnose.Situation{ReregistrationFailed: len(b.Operations) > 0 && b.Operations[0].GetState() == certsyncv1.OperationState_OPERATION_STATE_FAILED}
	if cmp != nil && cmp.Result != compare.ResultSourceMissing {
		situation.FingerprintsKnown, situation.FingerprintsMatch = true, cmp.Result == compare.ResultMatch
	}
	kbas := map[string]bool{"KBA 3505973": true}
	for _, k := range diagnose.KBAs(res.Cause) {
		kbas[k] = true
	}
	for _, st := range diagnose.Remediation(res.Cause, situation) {
		for _, k := range st.KBAs {
			kbas[k] = true
		}
	}
	for k := range kbas {
		b.KbaReferences = append(b.KbaReferences, k)
	}
	sort.Strings(b.KbaReferences)
	switch id := s.latestJob(ctx, c.Config.ID); {
	case c.IPS == nil:
		notes = append(notes, "IPS job-log lines: not available (the IPS Tenant Admin API is not configured for this connection)")
	case id == "":
		notes = append(notes, "IPS job-log lines: no job was started through certsync yet (StartProvisioningJob)")
	default:
		text, err := c.IPS.JobLogText(ctx, id)
		var logRes diagnose.Result
		if err == nil {
			logRes, err = ipsjobs.DiagnoseLog(text)
		}
		if err != nil {
			notes = append(notes, "IPS job-log lines of job "+id+": not available: "+err.Error())
		} else {
			for _, f := range logRes.Findings {
				b.JobLogLines = append(b.JobLogLines, f.Evidence)
			}
			notes = append(notes, fmt.Sprintf("IPS job %s: %d failing call(s) in its log", id, len(logRes.Findings)))
		}
	}
	b.Summary = fmt.Sprintf("IPS (tenant %s) reads SF company %s at %s with client-certificate authentication. %s.",
		orUnknown(b.TenantId), b.CompanyId, b.SfUrl, strings.Join(notes, "; "))
	if res.Cause != diagnose.CauseUnspecified {
		b.Summary += " " + diagnose.Explanation(res.Cause, situation)
	}
	return &certsyncv1.GetEscalationBundleResponse{Bundle: b}, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
