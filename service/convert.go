package service

import (
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/sfhost"
	"github.com/certsync/certsync/service/x509cert"
)

// This file maps domain values to API messages. Enum values are mapped by
// name, never by number, so that the domain and the API can evolve apart.

func connectionProto(c *inventory.Connection) *certsyncv1.Connection {
	cfg := c.Config
	p := &certsyncv1.Connection{
		Name:                       connectionPrefix + cfg.ID,
		Description:                cfg.Description,
		SfUrl:                      cfg.SF.URL,
		CompanyId:                  cfg.SF.CompanyID,
		RequiresApproval:           cfg.RequiresApproval,
		PinnedSubject:              cfg.PinnedSubject,
		PinnedIssuer:               cfg.PinnedIssuer,
		AcceptPlatformOnlyEvidence: cfg.Probe.AcceptPlatformOnlyEvidence,
		Warnings:                   c.Warnings,
		IntegrationName:            cfg.Registry.IntegrationName,
	}
	if u, err := url.Parse(cfg.SF.URL); err == nil {
		p.CertHost = sfhost.Classify(u.Hostname()) == sfhost.KindCertHost
	}
	switch cfg.Source.Type {
	case "file":
		p.SourceKind = certsyncv1.SourceKind_SOURCE_KIND_FILE
	case "sandbox":
		p.SourceKind = certsyncv1.SourceKind_SOURCE_KIND_SANDBOX
	case "imported":
		p.SourceKind = certsyncv1.SourceKind_SOURCE_KIND_IMPORTED
	}
	switch cfg.Registry.Driver {
	case "http":
		p.RegistryDriver = certsyncv1.RegistryDriver_REGISTRY_DRIVER_HTTP
	case "manual":
		p.RegistryDriver = certsyncv1.RegistryDriver_REGISTRY_DRIVER_MANUAL
	}
	p.ProbeIdentity = probeIdentityProto(cfg.Probe.Identity)
	return p
}

func probeIdentityProto(identity string) certsyncv1.ProbeIdentity {
	switch identity {
	case "ips":
		return certsyncv1.ProbeIdentity_PROBE_IDENTITY_IPS
	case "separate":
		return certsyncv1.ProbeIdentity_PROBE_IDENTITY_SEPARATE
	}
	return certsyncv1.ProbeIdentity_PROBE_IDENTITY_UNSPECIFIED
}

func itoa(n int) string { return strconv.Itoa(n) }

func summaryProto(s x509cert.Summary, now time.Time) *certsyncv1.CertificateSummary {
	return &certsyncv1.CertificateSummary{
		Subject:               s.Subject,
		Issuer:                s.Issuer,
		SerialNumber:          s.SerialNumber,
		NotBefore:             timestamppb.New(s.NotBefore),
		NotAfter:              timestamppb.New(s.NotAfter),
		Sha1Fingerprint:       s.SHA1,
		Sha256Fingerprint:     s.SHA256,
		SpkiSha256Fingerprint: s.SPKISHA256,
		KeyAlgorithm:          s.KeyAlgorithm,
		KeyBits:               int32(s.KeyBits),
		KeyCurve:              s.KeyCurve,
		SignatureAlgorithm:    s.SignatureAlgorithm,
		ClientAuth:            s.ClientAuth,
		DaysUntilExpiry:       int32(s.DaysUntilExpiry(now)),
		Der:                   s.DER,
		IsCa:                  s.IsCA,
		Expired:               s.Expired(now),
		NotYetValid:           s.NotYetValid(now),
		SubjectAltNames:       s.SubjectAltNames,
	}
}

var causeProto = map[diagnose.Cause]certsyncv1.FailureCause{
	diagnose.CauseUnspecified:              certsyncv1.FailureCause_FAILURE_CAUSE_UNSPECIFIED,
	diagnose.CauseInvalidClientCertificate: certsyncv1.FailureCause_FAILURE_CAUSE_INVALID_CLIENT_CERTIFICATE,
	diagnose.CauseTLSRejected:              certsyncv1.FailureCause_FAILURE_CAUSE_TLS_REJECTED,
	diagnose.CauseCredentialsRequired:      certsyncv1.FailureCause_FAILURE_CAUSE_CREDENTIALS_REQUIRED,
	diagnose.CausePermissionDenied:         certsyncv1.FailureCause_FAILURE_CAUSE_PERMISSION_DENIED,
	diagnose.CauseCompanyIDMissing:         certsyncv1.FailureCause_FAILURE_CAUSE_COMPANY_ID_MISSING,
	diagnose.CauseRateLimited:              certsyncv1.FailureCause_FAILURE_CAUSE_RATE_LIMITED,
	diagnose.CauseServerError:              certsyncv1.FailureCause_FAILURE_CAUSE_SERVER_ERROR,
	diagnose.CauseTransportError:           certsyncv1.FailureCause_FAILURE_CAUSE_TRANSPORT_ERROR,
	diagnose.CauseUnrecognizedResponse:     certsyncv1.FailureCause_FAILURE_CAUSE_UNRECOGNIZED_RESPONSE,
}

var actionProto = map[diagnose.Action]certsyncv1.RemediationAction{
	diagnose.ActionUnspecified:             certsyncv1.RemediationAction_REMEDIATION_ACTION_UNSPECIFIED,
	diagnose.ActionReregister:              certsyncv1.RemediationAction_REMEDIATION_ACTION_REREGISTER,
	diagnose.ActionUploadActiveCertificate: certsyncv1.RemediationAction_REMEDIATION_ACTION_UPLOAD_ACTIVE_CERTIFICATE,
	diagnose.ActionFixCompanyID:            certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_COMPANY_ID,
	diagnose.ActionFixURL:                  certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_URL,
	diagnose.ActionFixMappingFields:        certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_MAPPING_FIELDS,
	diagnose.ActionRenewCertificate:        certsyncv1.RemediationAction_REMEDIATION_ACTION_RENEW_CERTIFICATE,
	diagnose.ActionEscalate:                certsyncv1.RemediationAction_REMEDIATION_ACTION_ESCALATE,
	diagnose.ActionRetryLater:              certsyncv1.RemediationAction_REMEDIATION_ACTION_RETRY_LATER,
	diagnose.ActionCompareFingerprints:     certsyncv1.RemediationAction_REMEDIATION_ACTION_COMPARE_FINGERPRINTS,
	diagnose.ActionFixProbeCertificate:     certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_PROBE_CERTIFICATE,
	diagnose.ActionFixRegistryAccess:       certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_REGISTRY_ACCESS,
	diagnose.ActionRunReadJob:              certsyncv1.RemediationAction_REMEDIATION_ACTION_RUN_READ_JOB,
	diagnose.ActionRecordMapping:           certsyncv1.RemediationAction_REMEDIATION_ACTION_RECORD_MAPPING,
}

func stepsProto(steps []diagnose.Step) []*certsyncv1.RemediationStep {
	out := make([]*certsyncv1.RemediationStep, 0, len(steps))
	for _, st := range steps {
		out = append(out, &certsyncv1.RemediationStep{
			Action:           actionProto[st.Action],
			Text:             st.Text,
			KbaReferences:    st.KBAs,
			SupportComponent: st.SupportComponent,
		})
	}
	return out
}

func findingProto(f diagnose.Finding) *certsyncv1.Finding {
	return &certsyncv1.Finding{
		Url:                f.URL,
		Host:               f.Host,
		CertHost:           f.CertHost,
		HttpStatus:         int32(f.HTTPStatus),
		Body:               f.Body,
		ErrorCode:          f.ErrorCode,
		TenantId:           f.TenantID,
		Cause:              causeProto[f.Cause],
		Explanation:        f.Explanation,
		RecommendedActions: stepsProto(f.Actions),
		KbaReferences:      f.KBAs,
		SupportComponent:   f.SupportComponent,
		Path:               f.Path,
		Query:              f.Query,
		ErrorMessage:       f.ErrorMessage,
		LoadMode:           f.LoadMode,
		Evidence:           f.Evidence,
		ScimUsersEndpoint:  f.SCIMUsers,
	}
}
