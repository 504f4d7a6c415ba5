package gate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/source"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func cert(validFor time.Duration) *x509cert.Summary {
	return &x509cert.Summary{Subject: "CN=ips", Issuer: "CN=ca", SHA256: "AA:BB", ClientAuth: true,
		NotBefore: t0.Add(-day), NotAfter: t0.Add(validFor)}
}

func match() *compare.Comparison {
	return &compare.Comparison{Result: compare.ResultMatch, MappingID: "m1"}
}

func probe(o scim.Outcome, status int, code string) *scim.Result {
	r := &scim.Result{Outcome: o, HTTPStatus: status, ErrorCode: code}
	switch o {
	case scim.InvalidClientCertificate:
		r.Cause, r.ErrorMessage = diagnose.CauseInvalidClientCertificate, "[AUTH0032]Invalid client certificate"
	case scim.TLSRejected:
		r.Cause, r.ErrorMessage = diagnose.CauseTLSRejected, "The SSL certificate error"
	case scim.CredentialsRequired:
		r.Cause = diagnose.CauseCredentialsRequired
	case scim.PermissionDenied:
		r.Cause = diagnose.CausePermissionDenied
	case scim.Unreachable:
		r.Cause, r.ErrorMessage = diagnose.CauseServerError, "SF answered HTTP 503"
	}
	return r
}

// healthy is evidence on which every check passes; rows change one thing.
func healthy() *Evidence {
	return &Evidence{
		Connection:         "c",
		CheckedAt:          t0,
		Config:             config.Connection{ID: "c", SF: config.SF{URL: "https://api4.cert.successfactors.com", CompanyID: "ACME"}, Probe: config.Probe{Identity: "ips"}},
		Source:             cert(365 * day),
		RegistryConfigured: true,
		Comparison:         match(),
		Probe:              probe(scim.Authenticated, 200, ""),
		ProbeCert:          cert(365 * day),
	}
}

// readJob is IPS's READ job as ipsjobs records it: finished at end, with
// status Success or Finished with Error and the diagnosed cause.
func readJob(end time.Time, succeeded bool, cause string) *store.JobRecord {
	j := &store.JobRecord{Connection: "c", JobID: "job-1", Type: "READ", Done: true, Succeeded: succeeded, Cause: cause,
		StartedBy: "alice", StartTime: end.Add(-10 * time.Minute), UpdateTime: end, EndTime: end}
	if succeeded {
		j.Status, j.Summary = "Success", "IPS READ job job-1 finished with status Success"
	} else {
		j.Status, j.Summary = "Finished with Error", "IPS READ job job-1 finished with errors"
	}
	return j
}

func condition(v Verdict, typ string) (Condition, bool) {
	for _, c := range v.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return Condition{}, false
}

func actions(v Verdict) string {
	var out []string
	for _, s := range v.Remediation {
		out = append(out, s.Action.String())
	}
	return strings.Join(out, " ")
}

func TestDecide(t *testing.T) {
	type want struct {
		decision Decision
		// typ/reason/status/severity: one condition that must be there.
		typ, reason string
		status      Status
		severity    Severity
		// actions is the remediation, space-separated; "-" means empty.
		actions string
		retry   bool
	}
	tests := []struct {
		name   string
		change func(ev *Evidence)
		policy Policy
		want   want
	}{
		{"healthy", func(*Evidence) {}, Policy{},
			want{Allow, TypeScimAuthentication, "Authenticated", True, Info, "-", false}},
		{"expiry beyond 30 days", func(ev *Evidence) { ev.Source = cert(31 * day) }, Policy{},
			want{Allow, TypeSourceCertificateExpiry, "NotExpiringSoon", True, Info, "-", false}},
		{"expiry within 30 days", func(ev *Evidence) { ev.Source = cert(20 * day) }, Policy{},
			want{Allow, TypeSourceCertificateExpiry, "ExpiresWithin30Days", True, Warning, "-", false}},
		{"expiry within 14 days", func(ev *Evidence) { ev.Source = cert(10 * day) }, Policy{},
			want{Allow, TypeSourceCertificateExpiry, "ExpiresWithin14Days", True, Warning, "-", false}},
		{"expiry within 3 days", func(ev *Evidence) { ev.Source = cert(2 * day) }, Policy{},
			want{Allow, TypeSourceCertificateExpiry, "ExpiresWithin3Days", True, Warning, "-", false}},
		{"expiry exactly at 14 days", func(ev *Evidence) { ev.Source = cert(14 * day) }, Policy{},
			want{Allow, TypeSourceCertificateExpiry, "ExpiresWithin14Days", True, Warning, "-", false}},
		{"configured thresholds", func(ev *Evidence) { ev.Source = cert(50 * day) }, Policy{Expiry: ExpiryThresholds{Warning: 60 * day, Soon: 20 * day, Urgent: 5 * day}},
			want{Allow, TypeSourceCertificateExpiry, "ExpiresWithin60Days", True, Warning, "-", false}},
		{"expired", func(ev *Evidence) {
			ev.Source = cert(-day)
			ev.Probe = probe(scim.TLSRejected, 400, "")
		}, Policy{},
			want{Deny, TypeSourceCertificateExpiry, "Expired", False, Error, "RenewCertificate UploadActiveCertificate", false}},
		{"not yet valid", func(ev *Evidence) { ev.Source.NotBefore = t0.Add(time.Hour) }, Policy{},
			want{Deny, TypeSourceCertificateExpiry, "NotYetValid", False, Error, "RenewCertificate UploadActiveCertificate", false}},
		{"source missing", func(ev *Evidence) {
			ev.Source, ev.SourceErr = nil, errors.New("no such file")
			ev.Comparison = &compare.Comparison{Result: compare.ResultSourceMissing}
		}, Policy{},
			want{Deny, TypeSourceCertificatePresent, "SourceCertificateMissing", False, Error, "-", false}},
		{"no client auth usage", func(ev *Evidence) { ev.Source.ClientAuth = false }, Policy{},
			want{Deny, TypeSourceCertificateValid, "NoClientAuthUsage", False, Error, "RenewCertificate", false}},
		{"pinned subject differs", func(ev *Evidence) { ev.Config.PinnedSubject = "CN=other" }, Policy{},
			want{Deny, TypeSourceCertificateValid, "PinnedSubjectDiffers", False, Error, "-", false}},
		// DOMAIN.md's first row: fingerprints match and AUTH0032: re-register.
		{"AUTH0032 with matching fingerprints", func(ev *Evidence) { ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032") }, Policy{},
			want{Deny, TypeScimAuthentication, "InvalidClientCertificate", False, Error, "Reregister FixCompanyID Escalate", false}},
		// Second row: AUTH0032 and fingerprints differ: upload the active one.
		{"AUTH0032 with differing fingerprints", func(ev *Evidence) {
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
			ev.Comparison = &compare.Comparison{Result: compare.ResultMismatch, MappingID: "m1"}
		}, Policy{},
			want{Deny, TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, "UploadActiveCertificate", false}},
		// Third row: a re-registration did not help: company id, then escalate.
		{"AUTH0032 after a failed re-registration", func(ev *Evidence) {
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
			ev.LastReregistration = &Reregistration{State: "FAILED", Ended: t0.Add(-time.Hour)}
		}, Policy{},
			want{Deny, TypeScimAuthentication, "InvalidClientCertificate", False, Error, "FixCompanyID Escalate", false}},
		{"rolled back re-registration is no failed fix", func(ev *Evidence) {
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
			ev.LastReregistration = &Reregistration{State: "ROLLED_BACK", Ended: t0.Add(-time.Hour)}
		}, Policy{},
			want{Deny, TypeScimAuthentication, "InvalidClientCertificate", False, Error, "Reregister FixCompanyID Escalate", false}},
		{"TLS rejected with mismatch", func(ev *Evidence) {
			ev.Probe = probe(scim.TLSRejected, 400, "")
			ev.Comparison = &compare.Comparison{Result: compare.ResultMismatch, MappingID: "m1"}
		}, Policy{},
			want{Deny, TypeScimAuthentication, "TLSRejected", False, Error, "UploadActiveCertificate RenewCertificate", false}},
		{"credentials required on a plain host", func(ev *Evidence) {
			ev.Config.SF.URL = "https://api4.successfactors.com"
			ev.Probe = probe(scim.CredentialsRequired, 401, "LGN0011")
		}, Policy{},
			want{Deny, TypeScimAuthentication, "CredentialsRequired", False, Error, "FixURL FixCompanyID", false}},
		{"credentials required on the cert host", func(ev *Evidence) { ev.Probe = probe(scim.CredentialsRequired, 401, "LGN0011") }, Policy{},
			want{Deny, TypeScimAuthentication, "CredentialsRequired", False, Error, "FixCompanyID FixURL", false}},
		{"permission denied", func(ev *Evidence) {
			ev.Probe = probe(scim.PermissionDenied, 403, "Forbidden")
			ev.Comparison.Findings = []compare.Finding{{Code: "INTEGRATION_NAME_WRONG", Severity: compare.Error, Message: "wrong integration name"}}
		}, Policy{},
			want{Deny, TypeMappingFieldsValid, "IntegrationNameWrong", False, Error, "FixMappingFields", false}},
		{"login name empty is a warning", func(ev *Evidence) {
			ev.Comparison.Findings = []compare.Finding{{Code: "LOGIN_NAME_EMPTY", Severity: compare.Warning, Message: "no login name"}}
		}, Policy{},
			want{Allow, TypeMappingFieldsValid, "LoginNameEmpty", True, Warning, "-", false}},
		{"target missing", func(ev *Evidence) { ev.Comparison = &compare.Comparison{Result: compare.ResultTargetMissing} }, Policy{},
			want{Deny, TypeMappingPresent, "MappingMissing", False, Error, "UploadActiveCertificate", false}},
		{"ambiguous", func(ev *Evidence) { ev.Comparison = &compare.Comparison{Result: compare.ResultAmbiguous} }, Policy{},
			want{Deny, TypeMappingPresent, "MappingAmbiguous", False, Error, "CompareFingerprints", false}},
		// SF could not be reached: never ALLOW, never DENY on that alone.
		{"probe unreachable", func(ev *Evidence) { ev.Probe = probe(scim.Unreachable, 503, "") }, Policy{},
			want{Inconclusive, TypeScimAuthentication, ReasonUnreachable, Unknown, Warning, "RetryLater", true}},
		{"probe unexpected response", func(ev *Evidence) { ev.Probe = &scim.Result{Outcome: scim.UnexpectedResponse, HTTPStatus: 418} }, Policy{},
			want{Inconclusive, TypeScimAuthentication, ReasonUnexpectedResponse, Unknown, Warning, "CompareFingerprints RetryLater", true}},
		{"unreachable but the comparison shows a mismatch", func(ev *Evidence) {
			ev.Probe = probe(scim.Unreachable, 0, "")
			ev.Comparison = &compare.Comparison{Result: compare.ResultMismatch, MappingID: "m1"}
		}, Policy{},
			want{Deny, TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, "UploadActiveCertificate", false}},
		{"registry unreachable", func(ev *Evidence) {
			ev.Comparison = nil
			ev.RegistryErr = &registry.Error{Step: registry.StepList, Status: 503, Transient: true}
		}, Policy{},
			want{Inconclusive, TypeMappingPresent, "RegistryUnreachable", Unknown, Warning, "RetryLater", true}},
		{"registry refused", func(ev *Evidence) {
			ev.Comparison = nil
			ev.RegistryErr = &registry.Error{Step: registry.StepList, Status: 401}
		}, Policy{},
			want{Inconclusive, TypeFingerprintsMatch, "RegistryRefused", Unknown, Warning, "FixRegistryAccess", true}},
		{"manual registry", func(ev *Evidence) { ev.Comparison, ev.RegistryConfigured = nil, false }, Policy{},
			want{Inconclusive, TypeFingerprintsMatch, "ManualRegistry", Unknown, Warning, "-", true}},
		// A probe failing because of its own certificate: fix the probe,
		// never DENY.
		{"probe certificate expired", func(ev *Evidence) {
			ev.ProbeCert = cert(-day)
			ev.Probe = probe(scim.TLSRejected, 400, "")
		}, Policy{},
			want{Inconclusive, TypeScimAuthentication, ReasonProbeCertificateInvalid, Unknown, Warning, "FixProbeCertificate", true}},
		{"probe certificate not yet valid", func(ev *Evidence) {
			ev.ProbeCert = cert(day)
			ev.ProbeCert.NotBefore = t0.Add(time.Hour)
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
		}, Policy{},
			want{Inconclusive, TypeProbeCertificateValid, "NotYetValid", False, Warning, "FixProbeCertificate", true}},
		{"probe certificate expiring", func(ev *Evidence) { ev.ProbeCert = cert(2 * day) }, Policy{},
			want{Allow, TypeProbeCertificateValid, "ExpiresWithin3Days", True, Warning, "-", false}},
		{"separate identity without IPS evidence", func(ev *Evidence) { ev.Config.Probe.Identity = "separate" }, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity accepting platform-only evidence", func(ev *Evidence) {
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
		}, Policy{},
			want{Allow, TypeIpsMappingAuthenticates, ReasonPlatformOnlyEvidence, Unknown, Warning, "-", false}},
		{"separate identity refused is the probe's problem", func(ev *Evidence) {
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
		}, Policy{},
			want{Inconclusive, TypeScimAuthentication, ReasonProbeCertificateInvalid, Unknown, Warning, "FixProbeCertificate", true}},
		{"separate identity with a wrong URL still denies", func(ev *Evidence) {
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.Config.SF.URL = "https://api4.successfactors.com"
			ev.Probe = probe(scim.CredentialsRequired, 401, "LGN0011")
		}, Policy{},
			want{Deny, TypeScimAuthentication, "CredentialsRequired", False, Error, "FixURL FixCompanyID", false}},
		{"re-registration running", func(ev *Evidence) { ev.Running = "op1" }, Policy{RunningRetryAfter: 7 * time.Second},
			want{Inconclusive, TypeNoReregistrationRunning, ReasonReregistrationRunning, False, Warning, "RetryLater", true}},
		// The fix is running: the job waits for it (no other remediation:
		// "re-register" would only be refused as busy).
		{"re-registration running while the job would fail", func(ev *Evidence) {
			ev.Running = "op1"
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
		}, Policy{},
			want{Inconclusive, TypeScimAuthentication, "InvalidClientCertificate", False, Error, "RetryLater", true}},
		// IPS's latest READ job speaks for IPS's own mapping when the probe
		// uses a separate identity.
		{"separate identity with a recent successful READ job", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-2*time.Hour), true, "")
		}, Policy{},
			want{Allow, TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, "-", false}},
		{"separate identity with a READ job older than JobMaxAge", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-DefaultJobMaxAge-time.Minute), true, "")
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a READ job exactly JobMaxAge old", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-DefaultJobMaxAge), true, "")
		}, Policy{},
			want{Allow, TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, "-", false}},
		{"separate identity with a READ job older than a configured JobMaxAge", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-2*time.Hour), true, "")
		}, Policy{JobMaxAge: time.Hour},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a READ job that ended before the last re-registration", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-2*time.Hour), true, "")
			ev.LastReregistration = &Reregistration{State: "SUCCEEDED", Ended: t0.Add(-time.Hour)}
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a READ job that ended after the last re-registration", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			ev.LastReregistration = &Reregistration{State: "SUCCEEDED", Ended: t0.Add(-2 * time.Hour)}
		}, Policy{},
			want{Allow, TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, "-", false}},
		// The job that verified the last re-registration ran inside it:
		// it speaks for the mapping that re-registration left.
		{"separate identity with the READ job that verified the last re-registration", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			ev.IPSJob.Operation = "op-7"
			ev.LastReregistration = &Reregistration{ID: "op-7", State: "SUCCEEDED", Ended: t0.Add(-time.Hour + time.Millisecond)}
		}, Policy{},
			want{Allow, TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, "-", false}},
		// A job started before the last change ran, in part, against the
		// mapping it replaced: it proves nothing about the new one.
		{"separate identity with a READ job that started before the last re-registration ended", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			ev.LastReregistration = &Reregistration{ID: "op-7", State: "SUCCEEDED", Ended: t0.Add(-time.Hour - time.Minute)}
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with the READ job of an older re-registration", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			ev.IPSJob.Operation = "op-6"
			ev.LastReregistration = &Reregistration{ID: "op-7", State: "FAILED", Ended: t0.Add(-time.Hour + time.Millisecond)}
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a READ job still running", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(time.Time{}, false, "")
			ev.IPSJob.Done, ev.IPSJob.Status = false, "Running"
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RetryLater", true}},
		// A job still running has no end: the errors it met so far are no
		// verdict on IPS's mapping.
		{"separate identity with a READ job running with AUTH0032 errors", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(time.Time{}, false, diagnose.CauseInvalidClientCertificate.String())
			ev.IPSJob.Done, ev.IPSJob.Status = false, "Running with Error"
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RetryLater", true}},
		// DOMAIN.md's first row again, told by IPS's own job: the mapping
		// matches, so re-register.
		{"separate identity with a recent READ job failing with AUTH0032", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseInvalidClientCertificate.String())
		}, Policy{},
			want{Deny, TypeIpsMappingAuthenticates, "ReadJobFailed", False, Error, "Reregister FixCompanyID Escalate", false}},
		{"separate identity accepting platform-only evidence with a READ job failing with AUTH0032", func(ev *Evidence) {
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseInvalidClientCertificate.String())
		}, Policy{},
			want{Deny, TypeIpsMappingAuthenticates, "ReadJobFailed", False, Error, "Reregister FixCompanyID Escalate", false}},
		{"separate identity with a failed READ job and differing fingerprints", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseInvalidClientCertificate.String())
			ev.Comparison = &compare.Comparison{Result: compare.ResultMismatch, MappingID: "m1"}
		}, Policy{},
			want{Deny, TypeIpsMappingAuthenticates, "ReadJobFailed", False, Error, "UploadActiveCertificate", false}},
		// A job that failed in an outage is no evidence either way: as if
		// there were none (else the gate would hold back the very job
		// that could prove the mapping).
		{"separate identity with a READ job failing with a server error", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseServerError.String())
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity accepting platform-only evidence with a READ job failing with a transport error", func(ev *Evidence) {
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseTransportError.String())
		}, Policy{},
			want{Allow, TypeIpsMappingAuthenticates, ReasonPlatformOnlyEvidence, Unknown, Warning, "-", false}},
		// An answer nobody understands is no proof of a bad mapping.
		{"separate identity with a READ job failing with an unrecognized answer", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseUnrecognizedResponse.String())
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, "ReadJobFailedUnclear", Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a failed READ job older than JobMaxAge", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-2*DefaultJobMaxAge), false, diagnose.CauseInvalidClientCertificate.String())
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a failed READ job before the last re-registration", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-2*time.Hour), false, diagnose.CauseInvalidClientCertificate.String())
			ev.LastReregistration = &Reregistration{State: "SUCCEEDED", Ended: t0.Add(-time.Hour)}
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, "RunReadJob", true}},
		{"separate identity with a failed READ job nobody diagnosed", func(ev *Evidence) {
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, "")
		}, Policy{},
			want{Inconclusive, TypeIpsMappingAuthenticates, "ReadJobFailedUnclear", Unknown, Warning, "RunReadJob", true}},
		{"a probe with IPS's own identity ignores a failed READ job", func(ev *Evidence) {
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseInvalidClientCertificate.String())
		}, Policy{},
			want{Allow, TypeScimAuthentication, "Authenticated", True, Info, "-", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := healthy()
			tt.change(ev)
			v := Decide(ev, tt.policy)
			w := tt.want
			if v.Decision != w.decision {
				t.Errorf("decision = %v, want %v; %s", v.Decision, w.decision, v.Summary)
			}
			c, ok := condition(v, w.typ)
			if !ok {
				t.Fatalf("no %s condition in %+v", w.typ, v.Conditions)
			}
			if c.Reason != w.reason || c.Status != w.status || c.Severity != w.severity {
				t.Errorf("%s = %v %v %s (%s), want %v %v %s", w.typ, c.Status, c.Severity, c.Reason, c.Message, w.status, w.severity, w.reason)
			}
			got := actions(v)
			if got == "" {
				got = "-"
			}
			if got != w.actions {
				t.Errorf("remediation = %s, want %s", got, w.actions)
			}
			if (v.RetryAfter > 0) != w.retry {
				t.Errorf("retry_after = %v, want set=%v", v.RetryAfter, w.retry)
			}
			checkInvariants(t, v)
		})
	}
}

// checkInvariants holds for every verdict: errors first, ERROR only on
// conditions that do not hold, the decision follows from the conditions,
// one sentence of summary.
func checkInvariants(t *testing.T, v Verdict) {
	t.Helper()
	var errs, open int
	running := false
	for i, c := range v.Conditions {
		if c.Type == TypeNoReregistrationRunning && c.Status == False {
			running = true
		}
		if i > 0 && c.Severity > v.Conditions[i-1].Severity {
			t.Errorf("condition %d (%s %v) after a lower severity", i, c.Type, c.Severity)
		}
		if c.Severity == Error && c.Status != False {
			t.Errorf("%s: severity ERROR with status %v", c.Type, c.Status)
		}
		if c.Inconclusive && c.Severity == Error {
			t.Errorf("%s: inconclusive and ERROR", c.Type)
		}
		if c.Reason == "" || c.Message == "" || c.ObservedTime.IsZero() || c.Source == FromUnspecified {
			t.Errorf("%s: incomplete condition %+v", c.Type, c)
		}
		if c.Severity == Error {
			errs++
		}
		if c.Inconclusive {
			open++
		}
	}
	want := Allow
	switch {
	case running:
		want = Inconclusive // the evidence is about to change
	case errs > 0:
		want = Deny
	case open > 0:
		want = Inconclusive
	}
	if v.Decision != want {
		t.Errorf("decision %v does not follow from %d errors and %d inconclusive conditions", v.Decision, errs, open)
	}
	if v.Decision == Allow && len(v.Remediation) > 0 {
		t.Errorf("ALLOW with remediation %s", actions(v))
	}
	if v.Decision == Inconclusive && v.RetryAfter <= 0 {
		t.Error("INCONCLUSIVE without retry_after")
	}
	if v.Summary == "" || strings.Count(v.Summary, ". ") > 0 || !strings.HasSuffix(v.Summary, ".") {
		t.Errorf("summary is not one sentence: %q", v.Summary)
	}
}

func TestDecideEscalatesAfterFailedReregistration(t *testing.T) {
	ev := healthy()
	ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
	ev.LastReregistration = &Reregistration{State: StateFailed, Ended: t0.Add(-time.Hour)}
	v := Decide(ev, Policy{})
	if len(v.Remediation) == 0 {
		t.Fatal("no remediation")
	}
	last := v.Remediation[len(v.Remediation)-1]
	if last.Action != diagnose.ActionEscalate || last.SupportComponent != "LOD-SF-PLT-IAS" {
		t.Errorf("last step = %v %q, want Escalate to LOD-SF-PLT-IAS", last.Action, last.SupportComponent)
	}
	if v.Remediation[0].Action != diagnose.ActionFixCompanyID {
		t.Errorf("first step = %v, want FixCompanyID", v.Remediation[0].Action)
	}
	if c, _ := condition(v, TypeNoReregistrationRunning); !strings.Contains(c.Message, "FAILED") {
		t.Errorf("the failed re-registration is not mentioned: %q", c.Message)
	}
}

func TestDecideIsStableAndSameAsIgnoresTimestamps(t *testing.T) {
	a := healthy()
	b := healthy()
	b.CheckedAt = t0.Add(time.Minute)
	va, vb := Decide(a, Policy{}), Decide(b, Policy{})
	if !va.SameAs(vb) {
		t.Errorf("the same evidence a minute later differs:\n%+v\n%+v", va.Conditions, vb.Conditions)
	}
	b.Probe = probe(scim.Unreachable, 503, "")
	if vc := Decide(b, Policy{}); va.SameAs(vc) {
		t.Error("a changed probe outcome is not a change")
	}
	// Crossing a threshold is a change; the passing days are not.
	a.Source, b.Source = cert(20*day), cert(20*day)
	b.Probe = a.Probe
	b.CheckedAt = t0.Add(5 * day) // 15 days left: still "within 30 days"
	if !Decide(a, Policy{}).SameAs(Decide(b, Policy{})) {
		t.Error("the same certificate five days later reads differently")
	}
	b.CheckedAt = t0.Add(7 * day) // 13 days left
	if Decide(a, Policy{}).SameAs(Decide(b, Policy{})) {
		t.Error("crossing the 14-day threshold is not a change")
	}
}

func TestCompleteness(t *testing.T) {
	if !healthy().Complete() {
		t.Error("healthy evidence is incomplete")
	}
	for name, change := range map[string]func(*Evidence){
		"unreachable":         func(ev *Evidence) { ev.Probe = probe(scim.Unreachable, 0, "") },
		"unexpected":          func(ev *Evidence) { ev.Probe = &scim.Result{Outcome: scim.UnexpectedResponse} },
		"registry failed":     func(ev *Evidence) { ev.RegistryErr = &registry.Error{Transient: true} },
		"no probe":            func(ev *Evidence) { ev.Probe = nil },
		"nil evidence panics": nil,
	} {
		if change == nil {
			var ev *Evidence
			if ev.Complete() {
				t.Errorf("%s: nil evidence is complete", name)
			}
			continue
		}
		ev := healthy()
		change(ev)
		if ev.Complete() {
			t.Errorf("%s: complete", name)
		}
	}
	// A refusal is an answer, and so is a missing source.
	ev := healthy()
	ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
	ev.Source = nil
	if !ev.Complete() {
		t.Error("a refusal is incomplete")
	}
}

// TestAutomaticRemediationInTheVerdict: what certsync did by itself shows in
// the verdict of a connection that has automatic remediation on: a fix in
// the last day as a warning (SF drifted), a fix that did not help as a
// warning that it will not try again, a running one named as its own.
func TestAutomaticRemediationInTheVerdict(t *testing.T) {
	at := func(state string, ago time.Duration) *Evidence {
		ev := healthy()
		ev.Config.AutoRemediation = config.AutoRemediation{Enabled: true, MaxPerDay: 2}
		if state != "" {
			ev.LastReregistration = &Reregistration{ID: "op-9", State: state, Ended: t0.Add(-ago), Automatic: true,
				Reason: "automatic remediation: fingerprints match but SF answers AUTH0032 (KBA 3505973)"}
		}
		return ev
	}
	for _, tc := range []struct {
		name     string
		ev       *Evidence
		status   Status
		severity Severity
		reason   string
	}{
		{"nothing done", at("", 0), True, Info, "Armed"},
		{"fixed an hour ago", at("SUCCEEDED", time.Hour), True, Warning, "AutomaticallyReregistered"},
		{"fixed two days ago", at("SUCCEEDED", 48*time.Hour), True, Info, "Armed"},
		{"did not help", at("FAILED", time.Hour), False, Warning, "AutomaticRemediationFailed"},
		{"rolled back", at("ROLLED_BACK", time.Hour), False, Warning, "AutomaticRemediationFailed"},
	} {
		v := Decide(tc.ev, Policy{}.withDefaults())
		c, ok := condition(v, TypeAutomaticRemediation)
		if !ok || c.Status != tc.status || c.Severity != tc.severity || c.Reason != tc.reason || c.Source != FromOperation {
			t.Errorf("%s: %+v (present %v)", tc.name, c, ok)
		}
		if v.Decision != Allow {
			t.Errorf("%s: %v; a warning alone does not block", tc.name, v.Decision)
		}
	}
	if c, ok := condition(verdictOf(at("SUCCEEDED", time.Hour)), TypeAutomaticRemediation); !ok || !strings.Contains(c.Message, "operations/op-9") || !strings.Contains(c.Message, "AUTH0032") {
		t.Errorf("message: %q", c.Message)
	}
	off := healthy()
	off.LastReregistration = &Reregistration{ID: "op-9", State: "SUCCEEDED", Ended: t0.Add(-time.Hour), Automatic: true}
	if _, ok := condition(Decide(off, Policy{}.withDefaults()), TypeAutomaticRemediation); ok {
		t.Error("a condition for a connection without automatic remediation")
	}
	running := at("", 0)
	running.Running, running.RunningAutomatic = "op-10", true
	r := Decide(running, Policy{}.withDefaults())
	if c, _ := condition(r, TypeNoReregistrationRunning); r.Decision != Inconclusive || !strings.Contains(c.Message, "started by certsync itself") {
		t.Errorf("running: %v %q", r.Decision, c.Message)
	}
}

func verdictOf(ev *Evidence) Verdict { return Decide(ev, Policy{}.withDefaults()) }

// TestSourceOutageIsInconclusive: IPS's certificate that cannot be fetched
// for a while (network, a 5xx, the store down) is no reason to fail a job:
// INCONCLUSIVE with a retry, and such evidence is never cached as complete;
// a certificate that is missing for good is a DENY.
func TestSourceOutageIsInconclusive(t *testing.T) {
	ev := healthy()
	ev.Source, ev.SourceErr = nil, &source.Error{Where: "https://ips.example/cert", Message: "IPS answered HTTP 503", Transient: true}
	v := Decide(ev, Policy{}.withDefaults())
	c, _ := condition(v, TypeSourceCertificatePresent)
	if v.Decision != Inconclusive || c.Reason != "SourceUnreachable" || v.RetryAfter <= 0 {
		t.Errorf("outage: %v %s retry %v", v.Decision, c.Reason, v.RetryAfter)
	}
	if ev.Complete() {
		t.Error("evidence with the source unreachable counts as complete")
	}
	checkInvariants(t, v)
	ev.SourceErr = &source.Error{Where: "/etc/ips.pem", Message: "no such file"}
	v = Decide(ev, Policy{}.withDefaults())
	if c, _ := condition(v, TypeSourceCertificatePresent); v.Decision != Deny || c.Reason != "SourceCertificateMissing" {
		t.Errorf("missing: %v %s", v.Decision, c.Reason)
	}
}

// TestWaitingForSomeoneAsksLessOften: an answer that waits for someone to
// act (run a READ job, fix the registry's token) will not change within
// seconds, so the retry hint says a minute, not five seconds; an outage
// keeps the short one.
func TestWaitingForSomeoneAsksLessOften(t *testing.T) {
	noJob := healthy()
	noJob.Config.Probe.Identity = "separate"
	refused := healthy()
	refused.Comparison, refused.RegistryErr = nil, &registry.Error{Status: 401, Message: "token expired"}
	outage := healthy()
	outage.Comparison, outage.RegistryErr = nil, &registry.Error{Status: 503, Message: "unavailable", Transient: true}
	for _, tc := range []struct {
		name string
		ev   *Evidence
		want time.Duration
	}{
		{"no READ job proves IPS's mapping", noJob, DefaultActionRetryAfter},
		{"the registry refuses certsync's token", refused, DefaultActionRetryAfter},
		{"the registry is unreachable", outage, DefaultTransientRetryAfter},
	} {
		v := Decide(tc.ev, Policy{}.withDefaults())
		if v.Decision != Inconclusive || v.RetryAfter != tc.want {
			t.Errorf("%s: %v, retry after %v, want %v", tc.name, v.Decision, v.RetryAfter, tc.want)
		}
	}
}
