package service

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/scim"
)

// registryRetryAfter is the hint given when the registry could not be reached.
const registryRetryAfter = 5 * time.Second

// CompareFingerprints implements certsync.v1.CertSyncService.
func (s *Server) CompareFingerprints(ctx context.Context, req *certsyncv1.CompareFingerprintsRequest) (*certsyncv1.CompareFingerprintsResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	cmp, err := s.compare(ctx, c)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return comparisonProto(c, cmp, s.now()), nil
}

// compare reads both sides and compares them. A source that cannot be read
// is an answer (SOURCE_MISSING); a registry that cannot be read is an error,
// since nothing can be said about SF's side.
func (s *Server) compare(ctx context.Context, c *inventory.Connection) (compare.Comparison, error) {
	r := c.Read(ctx, s.now(), 0)
	if errors.Is(r.RegistryErr, registry.ErrNotRecorded) {
		return compare.Comparison{}, fault.New(fault.FailedPrecondition, "MAPPING_NOT_RECORDED",
			"%s uses the manual registry driver and nobody has recorded what SF shows yet: record it with RecordTargetMapping (certsyncctl record-mapping %s --fingerprint ...)", c.Name(), c.Config.ID).With("connection", c.Name())
	}
	if r.RegistryErr != nil {
		return compare.Comparison{}, registryFault(c, r.RegistryErr)
	}
	return *r.Comparison, nil
}

// registryFault explains a registry failure: transient ones are UNAVAILABLE
// with a retry hint; refusals (a bad token, a missing mapping) are
// FAILED_PRECONDITION, since retrying will not help.
func registryFault(c *inventory.Connection, err error) error {
	var re *registry.Error
	if !errors.As(err, &re) {
		return err
	}
	var fe *fault.Error
	if re.Transient {
		fe = fault.New(fault.Unavailable, "REGISTRY_UNAVAILABLE", "SF's certificate registry could not be reached (step %s): %s", re.Step, re.Message)
		fe.RetryAfter = registryRetryAfter
	} else {
		fe = fault.New(fault.FailedPrecondition, "REGISTRY_REFUSED", "SF's certificate registry refused step %s: %s", re.Step, re.Message)
	}
	fe.Cause = err
	fe = fe.With("connection", c.Name()).With("step", string(re.Step))
	if re.Status != 0 {
		fe = fe.With("http_status", itoa(re.Status))
	}
	return fe
}

// ProbeScimAuth implements certsync.v1.CertSyncService.
func (s *Server) ProbeScimAuth(ctx context.Context, req *certsyncv1.ProbeScimAuthRequest) (*certsyncv1.ProbeScimAuthResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	res := c.Prober.Probe(ctx)
	s.log.InfoContext(ctx, "probe", "connection", c.Name(), "outcome", res.Outcome.String(), "http_status", res.HTTPStatus,
		"error_code", res.ErrorCode, "latency", res.Latency.String())
	return probeProto(c, res), nil
}

var outcomeProto = map[scim.Outcome]certsyncv1.ProbeOutcome{
	scim.Authenticated:            certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED,
	scim.InvalidClientCertificate: certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE,
	scim.TLSRejected:              certsyncv1.ProbeOutcome_PROBE_OUTCOME_TLS_REJECTED,
	scim.CredentialsRequired:      certsyncv1.ProbeOutcome_PROBE_OUTCOME_CREDENTIALS_REQUIRED,
	scim.PermissionDenied:         certsyncv1.ProbeOutcome_PROBE_OUTCOME_PERMISSION_DENIED,
	scim.Unreachable:              certsyncv1.ProbeOutcome_PROBE_OUTCOME_UNREACHABLE,
	scim.UnexpectedResponse:       certsyncv1.ProbeOutcome_PROBE_OUTCOME_UNEXPECTED_RESPONSE,
}

func probeProto(c *inventory.Connection, r scim.Result) *certsyncv1.ProbeScimAuthResponse {
	return &certsyncv1.ProbeScimAuthResponse{
		Outcome:                 outcomeProto[r.Outcome],
		HttpStatus:              int32(r.HTTPStatus),
		ErrorCode:               r.ErrorCode,
		ErrorMessage:            r.ErrorMessage,
		RequestUrl:              r.RequestURL,
		Latency:                 durationpb.New(r.Latency),
		ClientCertificateSha256: r.ClientCertSHA256,
		CheckedAt:               timestamppb.New(r.CheckedAt),
		Connection:              c.Name(),
		ProbeIdentity:           probeIdentityProto(c.Config.Probe.Identity),
		TotalResults:            int32(r.TotalResults),
		Cause:                   causeProto[r.Cause],
	}
}

var comparisonResultProto = map[compare.Result]certsyncv1.ComparisonResult{
	compare.ResultMatch:         certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH,
	compare.ResultMismatch:      certsyncv1.ComparisonResult_COMPARISON_RESULT_MISMATCH,
	compare.ResultTargetMissing: certsyncv1.ComparisonResult_COMPARISON_RESULT_TARGET_MISSING,
	compare.ResultSourceMissing: certsyncv1.ComparisonResult_COMPARISON_RESULT_SOURCE_MISSING,
	compare.ResultAmbiguous:     certsyncv1.ComparisonResult_COMPARISON_RESULT_AMBIGUOUS,
}

var severityProto = map[compare.Severity]certsyncv1.Severity{
	compare.Info:    certsyncv1.Severity_SEVERITY_INFO,
	compare.Warning: certsyncv1.Severity_SEVERITY_WARNING,
	compare.Error:   certsyncv1.Severity_SEVERITY_ERROR,
}

func comparisonProto(c *inventory.Connection, cmp compare.Comparison, now time.Time) *certsyncv1.CompareFingerprintsResponse {
	resp := &certsyncv1.CompareFingerprintsResponse{
		Result:               comparisonResultProto[cmp.Result],
		Etag:                 cmp.Etag,
		CheckedAt:            timestamppb.New(now),
		SameSubjectAndIssuer: cmp.SameSubjectAndIssuer,
		PublicKeyDiffers:     cmp.PublicKeyDiffers,
		MappingId:            cmp.MappingID,
		Connection:           c.Name(),
		Summary:              cmp.Summary,
	}
	if cmp.Source != nil {
		resp.Source = summaryProto(*cmp.Source, now)
	}
	for _, t := range cmp.Targets {
		tm := &certsyncv1.TargetMapping{
			Id:                t.Mapping.ID,
			ConfigurationName: t.Mapping.ConfigurationName,
			IntegrationName:   t.Mapping.IntegrationName,
			LoginName:         t.Mapping.LoginName,
			Candidate:         t.Candidate,
			MatchesSource:     t.MatchesSource,
			Source:            certsyncv1.EvidenceSource_EVIDENCE_SOURCE_REGISTRY,
		}
		if t.Mapping.Record != nil {
			tm.Source = certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PERSON
		}
		if t.Mapping.Certificate != nil {
			tm.Certificate = summaryProto(t.Summary, now)
		} else if t.Summary.SHA256 != "" || t.Summary.SHA1 != "" {
			tm.Certificate = &certsyncv1.CertificateSummary{Sha256Fingerprint: t.Summary.SHA256, Sha1Fingerprint: t.Summary.SHA1}
		}
		resp.Targets = append(resp.Targets, tm)
	}
	for _, f := range cmp.Findings {
		resp.Findings = append(resp.Findings, &certsyncv1.ComparisonFinding{
			Code: f.Code, Severity: severityProto[f.Severity], Message: f.Message, MappingId: f.MappingID,
		})
	}
	return resp
}
