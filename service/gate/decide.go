package gate

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/sfhost"
	"github.com/certsync/certsync/service/source"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// ExpiryThresholds say when a certificate's coming expiry is reported, and
// how sharply. The defaults are IPS's own: it warns 30 days before expiry
// and mails at 30, 14 and 3 days (KBA 3423003).
type ExpiryThresholds struct {
	Warning, Soon, Urgent time.Duration
}

// DefaultExpiry are IPS's thresholds.
var DefaultExpiry = ExpiryThresholds{Warning: 30 * day, Soon: 14 * day, Urgent: 3 * day}

const day = 24 * time.Hour

// Policy is what Decide needs besides the evidence.
type Policy struct {
	Expiry ExpiryThresholds
	// TransientRetryAfter is the retry hint when SF or the registry could
	// not be reached and SF gave none.
	TransientRetryAfter time.Duration
	// RunningRetryAfter is the retry hint while a re-registration runs.
	RunningRetryAfter time.Duration
	// ActionRetryAfter is the retry hint while the answer waits for
	// someone to act (record a mapping, run a READ job, fix the registry's
	// credentials): asking every few seconds would change nothing.
	ActionRetryAfter time.Duration
	// JobMaxAge is how old an IPS READ job may be and still speak for
	// IPS's own mapping; 0 means DefaultJobMaxAge.
	JobMaxAge time.Duration
}

// Policy defaults.
const (
	DefaultTransientRetryAfter = 5 * time.Second
	DefaultRunningRetryAfter   = 15 * time.Second
	DefaultActionRetryAfter    = time.Minute
	// DefaultJobMaxAge: IPS jobs typically run daily or more often.
	DefaultJobMaxAge = 24 * time.Hour
)

func (p Policy) withDefaults() Policy {
	if p.Expiry.Warning <= 0 {
		p.Expiry.Warning = DefaultExpiry.Warning
	}
	if p.Expiry.Soon <= 0 {
		p.Expiry.Soon = min(DefaultExpiry.Soon, p.Expiry.Warning)
	}
	if p.Expiry.Urgent <= 0 {
		p.Expiry.Urgent = min(DefaultExpiry.Urgent, p.Expiry.Soon)
	}
	if p.TransientRetryAfter <= 0 {
		p.TransientRetryAfter = DefaultTransientRetryAfter
	}
	if p.RunningRetryAfter <= 0 {
		p.RunningRetryAfter = DefaultRunningRetryAfter
	}
	if p.ActionRetryAfter <= 0 {
		p.ActionRetryAfter = DefaultActionRetryAfter
	}
	if p.JobMaxAge <= 0 {
		p.JobMaxAge = DefaultJobMaxAge
	}
	return p
}

// Decide turns evidence into a verdict. It is a pure function: each check
// yields one condition, then DESIGN.md's rule decides:
//
//   - DENY when any condition has severity Error (the evidence shows the job
//     would fail);
//   - otherwise INCONCLUSIVE when any condition is Inconclusive (evidence
//     missing, SF unreachable, a re-registration running);
//   - otherwise ALLOW, with the warnings listed.
//
// A transport failure only ever yields Inconclusive conditions, so it can
// never DENY on its own, and it can never ALLOW either.
func Decide(ev *Evidence, p Policy) Verdict {
	d := &decider{ev: ev, p: p.withDefaults()}
	d.configuration()
	d.sourceCertificate()
	d.registry()
	d.probe()
	d.operations()
	return d.verdict()
}

// Remediation buckets: steps are listed bucket by bucket, so that the most
// pressing fix comes first whatever order the checks ran in. An expired
// certificate must be renewed before anything can be uploaded; what SF said
// outranks what the comparison suggests; retrying comes last.
const (
	bucketSource = iota
	bucketProbe
	bucketRegistry
	bucketProbeCert
	bucketEvidence // what would give the missing evidence; never on a DENY
	bucketRetry
	nBuckets
)

type decider struct {
	ev      *Evidence
	p       Policy
	conds   []Condition
	steps   [nBuckets][]diagnose.Step
	retry   time.Duration
	running bool
	// sourceExpired says the source certificate is outside its validity
	// period, which changes what "upload the active certificate" means.
	sourceExpired bool
}

func (d *decider) add(c Condition) {
	if c.ObservedTime.IsZero() {
		c.ObservedTime = d.ev.CheckedAt
	}
	d.conds = append(d.conds, c)
}

func (d *decider) remedy(bucket int, steps ...diagnose.Step) {
	d.steps[bucket] = append(d.steps[bucket], steps...)
}

func (d *decider) retryAfter(r time.Duration) { d.retry = max(d.retry, r) }

// configuration: the configuration was validated before anything listened,
// so it holds; its warnings are for information only.
func (d *decider) configuration() {
	c := Condition{Type: TypeConfigurationValid, Status: True, Severity: Info, Source: FromConfiguration,
		Reason: "Valid", Message: "the connection's configuration is valid"}
	if len(d.ev.ConfigWarnings) > 0 {
		c.Reason = "ValidWithWarnings"
		c.Message = "the connection's configuration is valid, with warnings: " + strings.Join(d.ev.ConfigWarnings, "; ")
	}
	d.add(c)
}

func (d *decider) sourceCertificate() {
	ev := d.ev
	if ev.Source == nil {
		msg := "IPS's active certificate could not be read"
		if ev.SourceErr != nil {
			msg += ": " + ev.SourceErr.Error()
		}
		if source.IsTransient(ev.SourceErr) {
			// A network or store outage says nothing about the
			// certificate: ask again, do not fail the job.
			d.add(Condition{Type: TypeSourceCertificatePresent, Status: Unknown, Severity: Warning, Source: FromSourceCertificate,
				Reason: "SourceUnreachable", Message: msg + "; this says nothing about the certificate", Inconclusive: true})
			d.retryAfter(d.p.TransientRetryAfter)
			d.remedy(bucketRetry, pick(diagnose.CauseServerError, diagnose.Situation{}, diagnose.ActionRetryLater)...)
			return
		}
		d.add(Condition{Type: TypeSourceCertificatePresent, Status: False, Severity: Error, Source: FromSourceCertificate,
			Reason: "SourceCertificateMissing", Message: msg})
		return
	}
	s := *ev.Source
	d.add(Condition{Type: TypeSourceCertificatePresent, Status: True, Severity: Info, Source: FromSourceCertificate,
		Reason: "Present", Message: fmt.Sprintf("IPS's active certificate was read (subject %s, SHA-256 %s)", s.Subject, s.SHA256)})

	var problems []string
	reason := ""
	fail := func(r, msg string) {
		if reason == "" {
			reason = r
		}
		problems = append(problems, msg)
	}
	if !s.ClientAuth {
		fail("NoClientAuthUsage", "its extended key usage does not allow TLS client authentication")
	}
	if pin := ev.Config.PinnedSubject; pin != "" && s.Subject != pin {
		fail("PinnedSubjectDiffers", fmt.Sprintf("its subject %q is not the pinned %q, so certsync will not upload it", s.Subject, pin))
	}
	if pin := ev.Config.PinnedIssuer; pin != "" && s.Issuer != pin {
		fail("PinnedIssuerDiffers", fmt.Sprintf("its issuer %q is not the pinned %q, so certsync will not upload it", s.Issuer, pin))
	}
	if reason != "" {
		d.add(Condition{Type: TypeSourceCertificateValid, Status: False, Severity: Error, Source: FromSourceCertificate,
			Reason: reason, Message: "IPS's active certificate is not usable: " + strings.Join(problems, "; ")})
		if !s.ClientAuth {
			// Only a new certificate from IPS fixes its key usage.
			d.remedy(bucketSource, pick(diagnose.CauseTLSRejected, diagnose.Situation{}, diagnose.ActionRenewCertificate)...)
		}
	} else {
		d.add(Condition{Type: TypeSourceCertificateValid, Status: True, Severity: Info, Source: FromSourceCertificate,
			Reason: "Valid", Message: "IPS's active certificate allows TLS client authentication and matches the pinned names, if any"})
	}

	c := expiry(s, ev.CheckedAt, d.p.Expiry, "IPS's active certificate",
		"; renew it in IPS > Source System > Outbound Certificate and upload the renewed one to SF, which does not pick it up by itself (KBA 3419621)")
	c.Type, c.Source = TypeSourceCertificateExpiry, FromSourceCertificate
	d.add(c)
	if c.Status == False {
		d.sourceExpired = true
		// Renew first: uploading an expired certificate fixes nothing.
		d.remedy(bucketSource, pick(diagnose.CauseTLSRejected, diagnose.Situation{}, diagnose.ActionRenewCertificate, diagnose.ActionUploadActiveCertificate)...)
	}
}

// expiry judges a certificate's validity period at time at: an error
// outside it, warnings from thresholds.Warning before the end, with sharper
// wording at Soon and Urgent. Messages carry dates and thresholds, never a
// day count, so that they change only when a threshold is crossed.
func expiry(s x509cert.Summary, at time.Time, th ExpiryThresholds, what, advice string) Condition {
	notAfter := s.NotAfter.UTC().Format("2006-01-02 15:04 MST")
	left := s.NotAfter.Sub(at)
	switch {
	case s.NotYetValid(at):
		return Condition{Status: False, Severity: Error, Reason: "NotYetValid",
			Message: fmt.Sprintf("%s is not valid before %s", what, s.NotBefore.UTC().Format("2006-01-02 15:04 MST"))}
	case s.Expired(at):
		return Condition{Status: False, Severity: Error, Reason: "Expired",
			Message: fmt.Sprintf("%s expired on %s%s", what, notAfter, advice)}
	case left <= th.Urgent:
		return Condition{Status: True, Severity: Warning, Reason: withinDays(th.Urgent),
			Message: fmt.Sprintf("%s expires on %s, within %s: act now%s", what, notAfter, days(th.Urgent), advice)}
	case left <= th.Soon:
		return Condition{Status: True, Severity: Warning, Reason: withinDays(th.Soon),
			Message: fmt.Sprintf("%s expires on %s, within %s: act soon%s", what, notAfter, days(th.Soon), advice)}
	case left <= th.Warning:
		return Condition{Status: True, Severity: Warning, Reason: withinDays(th.Warning),
			Message: fmt.Sprintf("%s expires on %s, within %s%s", what, notAfter, days(th.Warning), advice)}
	}
	return Condition{Status: True, Severity: Info, Reason: "NotExpiringSoon",
		Message: fmt.Sprintf("%s is valid until %s", what, notAfter)}
}

func withinDays(d time.Duration) string { return fmt.Sprintf("ExpiresWithin%dDays", int(d/day)) }

func days(d time.Duration) string {
	if n := int(d / day); n != 1 {
		return fmt.Sprintf("%d days", n)
	}
	return "1 day"
}

// registry: what SF maps, from the comparison.
func (d *decider) registry() {
	ev := d.ev
	cmpr := ev.Comparison
	if cmpr == nil {
		// Without the mappings nothing shows which certificate SF holds:
		// the evidence is missing, never an error.
		reason, msg := "ManualRegistry", "the connection uses the manual registry driver, so certsync cannot read SF's mappings itself"
		if errors.Is(ev.RegistryErr, registry.ErrNotRecorded) {
			// Nothing recorded: missing evidence, which blocks only when
			// nothing else proves IPS's mapping.
			msg = "the connection uses the manual registry driver and nobody has recorded what SF shows (certsyncctl record-mapping)"
			blocks := !d.ipsMappingProven()
			for _, t := range []string{TypeMappingPresent, TypeFingerprintsMatch} {
				d.add(Condition{Type: t, Status: Unknown, Severity: Warning, Source: FromPerson, Reason: "NotRecorded", Message: msg, Inconclusive: blocks})
			}
			if blocks {
				d.retryAfter(d.p.ActionRetryAfter)
				d.remedy(bucketEvidence, diagnose.RecordMappingStep())
			}
			return
		}
		if ev.RegistryErr != nil {
			reason, msg = registryReason(ev.RegistryErr), "SF's mappings could not be read: "+ev.RegistryErr.Error()
			if reason == "RegistryRefused" {
				// A refused token does not mend itself in seconds.
				d.retryAfter(d.p.ActionRetryAfter)
				d.remedy(bucketEvidence, diagnose.RegistryAccessStep())
			} else {
				d.retryAfter(d.p.TransientRetryAfter)
				d.remedy(bucketRetry, pick(diagnose.CauseServerError, diagnose.Situation{}, diagnose.ActionRetryLater)...)
			}
		}
		for _, t := range []string{TypeMappingPresent, TypeFingerprintsMatch} {
			d.add(Condition{Type: t, Status: Unknown, Severity: Warning, Source: FromRegistry, Reason: reason, Message: msg, Inconclusive: true})
		}
		return
	}
	src := FromRegistry
	if d.personSide() {
		src = FromPerson
	}
	// A person's record contradicted by proof is only a warning (see
	// addRecorded): it calls for recording again, not for changing SF.
	contradicted := src == FromPerson && d.ipsMappingProven()
	present := Condition{Type: TypeMappingPresent, Source: src}
	fps := Condition{Type: TypeFingerprintsMatch, Source: src}
	switch cmpr.Result {
	case compare.ResultSourceMissing:
		// The source condition is the error; which mapping is IPS's cannot
		// be told without it.
		present.Status, present.Severity, present.Reason = Unknown, Info, "SourceCertificateMissing"
		present.Message = "which mapping is IPS's cannot be told without IPS's active certificate"
		fps.Status, fps.Severity, fps.Reason, fps.Message = present.Status, present.Severity, present.Reason, present.Message
	case compare.ResultTargetMissing:
		present.Status, present.Severity, present.Reason = False, Error, "MappingMissing"
		present.Message = findingMessage(cmpr, "TARGET_MISSING", "SF maps no certificate with IPS's issuer and subject")
		fps.Status, fps.Severity, fps.Reason, fps.Message = Unknown, Info, "MappingMissing", "there is no mapping to compare with"
		if !contradicted {
			d.remedy(bucketRegistry, uploadActive()...)
		}
	case compare.ResultAmbiguous:
		present.Status, present.Severity, present.Reason = False, Error, "MappingAmbiguous"
		present.Message = findingMessage(cmpr, "AMBIGUOUS", "several mappings could be IPS's")
		fps.Status, fps.Severity, fps.Reason, fps.Message = Unknown, Info, "MappingAmbiguous", "several mappings could be IPS's, so there is no single one to compare with"
		if !contradicted {
			d.remedy(bucketRegistry, pick(diagnose.CauseUnrecognizedResponse, diagnose.Situation{}, diagnose.ActionCompareFingerprints)...)
		}
	case compare.ResultMatch, compare.ResultMismatch:
		present.Status, present.Severity, present.Reason = True, Info, "Present"
		present.Message = fmt.Sprintf("SF maps IPS's issuer and subject in mapping %s", cmpr.MappingID)
		if cmpr.Result == compare.ResultMatch {
			fps.Status, fps.Severity, fps.Reason = True, Info, "Match"
			fps.Message = fmt.Sprintf("SF's mapping %s holds exactly IPS's active certificate", cmpr.MappingID)
		} else {
			fps.Status, fps.Severity, fps.Reason = False, Error, "FingerprintsDiffer"
			fps.Message = findingMessage(cmpr, "RENEWAL_NOT_UPLOADED", "SF maps another certificate than IPS's active one")
			if !contradicted {
				d.remedy(bucketRegistry, uploadActive()...)
			}
		}
	default:
		present.Status, present.Severity, present.Reason, present.Message = Unknown, Warning, "NotCompared", "the comparison gave no result"
		present.Inconclusive = true
		fps.Status, fps.Severity, fps.Reason, fps.Message, fps.Inconclusive = present.Status, present.Severity, present.Reason, present.Message, true
	}
	d.addRecorded(present)
	d.mappingFields(cmpr, src, contradicted)
	d.addRecorded(fps)
}

// addRecorded adds a condition about SF's mapping. What a person recorded
// may be outdated: when it says the job would fail but the probe or a READ
// job proves IPS's mapping authenticates, the proof wins and the record is
// only a warning to record again.
func (d *decider) addRecorded(c Condition) {
	if c.Source == FromPerson && c.Severity == Error && d.ipsMappingProven() {
		c.Severity = Warning
		c.Message = "a person's record says: " + c.Message + "; but IPS's own mapping was proven to authenticate since, so the record is probably outdated: record what SF shows again"
		c.Reason = "RecordContradicted"
	}
	d.add(c)
}

// personSide: SF's side of this connection is what a person recorded (the
// manual registry driver), including a record that SF shows no mapping.
func (d *decider) personSide() bool {
	if d.ev.Config.Registry.Driver == "manual" {
		return true
	}
	return d.ev.Comparison != nil && d.ev.Comparison.Recorded()
}

// ipsMappingProven: something other than a person's record shows that IPS's
// own mapping authenticates: the probe presenting IPS's active certificate
// (identity ips; a probe whose certificate lags behind a renewal proves the
// old mapping only), or a recent READ job that succeeded.
func (d *decider) ipsMappingProven() bool {
	ev := d.ev
	if ev.ProbePresentsSource() && ev.Probe.Outcome == scim.Authenticated {
		return true
	}
	job := d.recentJob()
	return job != nil && job.Succeeded
}

// recentJob is IPS's latest READ job when it speaks for the mapping as it
// is now: finished after the last re-registration, and not older than the
// policy allows.
func (d *decider) recentJob() *store.JobRecord {
	job := d.ev.IPSJob
	if job == nil || !job.Done || job.EndTime.IsZero() {
		return nil
	}
	// A job speaks for the mapping SF holds since the last change: the one
	// that verified that change, or one started after it ended (a job
	// started before a delete may end after the new upload).
	if last := d.ev.LastReregistration; last != nil && (job.Operation == "" || job.Operation != last.ID) && job.StartTime.Before(last.Ended) {
		return nil
	}
	if d.ev.CheckedAt.Sub(job.EndTime) > d.p.JobMaxAge {
		return nil
	}
	if src := d.ev.Source; src != nil {
		// A job ran with the certificate IPS had active when it started:
		// certsync notes which one for the jobs it starts. IPS may
		// generate a certificate long before it activates it, so
		// NotBefore only bounds the jobs of unknown certificate.
		if job.SourceSHA256 != "" && job.SourceSHA256 != src.SHA256 {
			return nil
		}
		if job.EndTime.Before(src.NotBefore) {
			return nil // it ran with an older certificate than IPS's active one
		}
	}
	return job
}

// mappingFields reports the fields SF checks after the certificate: the
// integration name (403 unless it is IPS's, KBA 3417151) and the login name.
func (d *decider) mappingFields(cmpr *compare.Comparison, src EvidenceSource, contradicted bool) {
	if cmpr.Result != compare.ResultMatch && cmpr.Result != compare.ResultMismatch {
		return
	}
	c := Condition{Type: TypeMappingFieldsValid, Source: src, Status: True, Severity: Info, Reason: "Valid",
		Message: fmt.Sprintf("mapping %s has integration name %q and a login name", cmpr.MappingID, compare.ExpectedIntegrationName)}
	var warn *compare.Finding
	for i, f := range cmpr.Findings {
		switch f.Code {
		case "INTEGRATION_NAME_WRONG":
			c.Status, c.Severity, c.Reason, c.Message = False, Error, "IntegrationNameWrong", f.Message
			if !contradicted {
				d.remedy(bucketRegistry, diagnose.Remediation(diagnose.CausePermissionDenied, diagnose.Situation{})...)
			}
		case "LOGIN_NAME_EMPTY":
			warn = &cmpr.Findings[i]
		}
	}
	if c.Status == True && warn != nil {
		c.Severity, c.Reason, c.Message = Warning, "LoginNameEmpty", warn.Message
	}
	d.addRecorded(c)
}

// registryReason tells a registry that did not answer from one that
// refused (a bad token, say): neither is evidence about SF's mapping.
func registryReason(err error) string {
	var re *registry.Error
	if errors.As(err, &re) && !re.Transient {
		return "RegistryRefused"
	}
	return "RegistryUnreachable"
}

func findingMessage(c *compare.Comparison, code, fallback string) string {
	for _, f := range c.Findings {
		if f.Code == code {
			return f.Message
		}
	}
	return fallback
}

// probe: the probe's own certificate, what SF answered it, and, for a
// separate probe identity, whether anything speaks for IPS's own mapping.
func (d *decider) probe() {
	ev := d.ev
	separate := ev.Config.Probe.Identity == "separate"
	// A probe meant to present IPS's own key pair that presents another
	// certificate (not given IPS's renewed one yet) speaks for that
	// certificate only: judged like a separate identity, it never
	// denies IPS's jobs, nor proves IPS's mapping.
	notActive := !separate && ev.probeCertNotActive()
	separate = separate || notActive

	probeCertBad := false
	pc := Condition{Type: TypeProbeCertificateValid, Source: FromProbe}
	if ev.ProbeCert == nil {
		msg := "the probe's certificate could not be read"
		if ev.ProbeCertErr != nil {
			msg += ": " + ev.ProbeCertErr.Error()
		}
		pc.Status, pc.Severity, pc.Reason, pc.Message = Unknown, Warning, "ProbeCertificateUnreadable", msg
	} else {
		advice := "; renew the probe's certificate and key (probe.cert_file, probe.key_file)"
		if !separate {
			advice = "; the probe presents IPS's own key pair (probe.identity ips), so once IPS's certificate is renewed, give the probe the new certificate and key (probe.cert_file, probe.key_file)"
		}
		c := expiry(*ev.ProbeCert, ev.CheckedAt, d.p.Expiry, "the probe's certificate", advice)
		pc.Status, pc.Severity, pc.Reason, pc.Message = c.Status, c.Severity, c.Reason, c.Message
		if notActive && c.Status == True {
			pc.Status, pc.Severity, pc.Reason = False, Warning, "ProbeCertificateNotActive"
			pc.Message = fmt.Sprintf("the probe presents IPS's key pair (probe.identity ips), but its certificate (SHA-256 %s) is not IPS's active one (SHA-256 %s): its answers speak for that certificate only; give the probe IPS's active certificate and key (probe.cert_file, probe.key_file)",
				ev.ProbeCert.SHA256, ev.Source.SHA256)
			d.remedy(bucketProbeCert, diagnose.ProbeCertificateStep())
		}
		if c.Status == False {
			// A probe with a certificate outside its validity proves nothing
			// about IPS: never DENY on it (DESIGN.md, the probe's identity).
			probeCertBad = true
			pc.Severity, pc.Inconclusive = Warning, true
			d.remedy(bucketProbeCert, diagnose.ProbeCertificateStep())
		}
	}

	r := ev.Probe
	sa := Condition{Type: TypeScimAuthentication, Source: FromProbe}
	if r == nil {
		sa.Status, sa.Severity, sa.Reason, sa.Message, sa.Inconclusive = Unknown, Warning, "NoProbe", "the connection has no SCIM probe", true
		d.add(sa)
		d.add(pc)
		d.ipsMapping(separate)
		return
	}
	sit := d.situation()
	cause := r.Cause
	switch r.Outcome {
	case scim.Authenticated:
		sa.Status, sa.Severity, sa.Reason = True, Info, "Authenticated"
		sa.Message = "SF's SCIM Users endpoint accepted the probe's client certificate"
		if separate {
			sa.Message += " (the probe's own certificate: this proves SF's mTLS host, the company id and the platform, not IPS's mapping)"
		}
	case scim.Unreachable:
		if cause == diagnose.CauseUnspecified {
			cause = diagnose.CauseTransportError
		}
		sa.Status, sa.Severity, sa.Reason, sa.Inconclusive = Unknown, Warning, ReasonUnreachable, true
		sa.Message = "SF could not be reached: " + answer(r) + "; this says nothing about the certificate"
		d.retryAfter(max(r.RetryAfter, d.p.TransientRetryAfter))
		d.remedy(bucketRetry, diagnose.Remediation(cause, sit)...)
	case scim.InvalidClientCertificate, scim.TLSRejected, scim.CredentialsRequired, scim.PermissionDenied:
		if cause == diagnose.CauseUnspecified {
			cause = outcomeCause[r.Outcome]
		}
		reason := outcomeReason[r.Outcome]
		switch {
		case probeCertBad:
			sa.Status, sa.Severity, sa.Reason, sa.Inconclusive = Unknown, Warning, ReasonProbeCertificateInvalid, true
			sa.Message = fmt.Sprintf("SF refused the probe (%s: %s), but the probe's own certificate is not valid now, so this says nothing about IPS's certificate; fix the probe's certificate", reason, answer(r))
		case separate && r.Outcome != scim.CredentialsRequired:
			// The probe presented its own certificate: a refusal of that
			// certificate or of its mapping is the probe's problem. Only
			// a wrong URL or company id would fail IPS the same way.
			sa.Status, sa.Severity, sa.Reason, sa.Inconclusive = Unknown, Warning, ReasonProbeCertificateInvalid, true
			sa.Message = fmt.Sprintf("SF refused the probe's own (separate) certificate (%s: %s); this says nothing about IPS's certificate; fix the probe's certificate or its mapping", reason, answer(r))
			d.remedy(bucketProbeCert, diagnose.ProbeCertificateStep())
		default:
			sa.Status, sa.Severity, sa.Reason = False, Error, reason
			sa.Message = fmt.Sprintf("SF refused the probe (%s): %s", answer(r), diagnose.Explanation(cause, sit))
			steps := diagnose.Remediation(cause, sit)
			if d.sourceExpired {
				steps = pick(diagnose.CauseTLSRejected, diagnose.Situation{}, diagnose.ActionRenewCertificate)
			}
			d.remedy(bucketProbe, steps...)
		}
	default:
		sa.Status, sa.Severity, sa.Reason, sa.Inconclusive = Unknown, Warning, ReasonUnexpectedResponse, true
		sa.Message = "SF's answer to the probe matches no known pattern: " + answer(r)
		d.retryAfter(max(r.RetryAfter, d.p.TransientRetryAfter))
		d.remedy(bucketRetry, diagnose.Remediation(diagnose.CauseUnrecognizedResponse, sit)...)
	}
	d.add(sa)
	d.add(pc)
	d.ipsMapping(separate)
}

// ipsMapping: a separate probe identity proves the platform, not IPS's own
// mapping; that needs IPS's latest READ job. Without a recent one the
// condition stays unknown and the gate cannot ALLOW, unless the connection
// explicitly accepts platform-only evidence, and even then not when SF's
// side is only a person's record.
func (d *decider) ipsMapping(separate bool) {
	if !separate {
		return
	}
	c := Condition{Type: TypeIpsMappingAuthenticates, Status: Unknown, Severity: Warning, Source: FromIPSJob}
	job := d.recentJob()
	cause := jobCause(job)
	outage := ""
	if job != nil && !job.Succeeded && cause.Transient() {
		// A job that met an outage neither proves nor disproves the
		// mapping: as if there were none (holding jobs back until the
		// next READ job succeeds would hold that job back too).
		outage = fmt.Sprintf(" (IPS's READ job %s failed in an outage, %s, which says nothing either way)", job.JobID, cause)
		job = nil
	}
	recorded := d.personSide()
	switch {
	case job != nil && job.Succeeded:
		c.Status, c.Severity, c.Reason = True, Info, "ReadJobSucceeded"
		c.Message = fmt.Sprintf("IPS's READ job %s finished with status Success on %s: IPS's own mapping authenticates", job.JobID, job.EndTime.UTC().Format("2006-01-02 15:04 MST"))
		c.ObservedTime = job.EndTime
	case job != nil && cause != diagnose.CauseUnspecified && cause != diagnose.CauseUnrecognizedResponse:
		c.Status, c.Severity, c.Reason = False, Error, "ReadJobFailed"
		c.Message = fmt.Sprintf("IPS's READ job %s failed (%s): %s", job.JobID, cause, job.Summary)
		c.ObservedTime = job.EndTime
		d.remedy(bucketProbe, diagnose.Remediation(cause, d.situation())...)
	case job != nil && !job.Succeeded:
		// A job that failed for a reason nobody could tell (or an outage)
		// neither proves nor disproves the mapping, but the platform alone
		// is no answer to it either.
		c.Reason, c.Inconclusive = "ReadJobFailedUnclear", true
		c.Message = fmt.Sprintf("IPS's READ job %s failed and its log names no certificate problem (%s); run it again or look at it in IPS", job.JobID, job.Summary)
		c.ObservedTime = job.EndTime
		d.retryAfter(d.p.ActionRetryAfter)
		d.remedy(bucketEvidence, diagnose.RunReadJobStep())
	case d.ev.Config.Probe.AcceptPlatformOnlyEvidence && recorded:
		c.Reason, c.Inconclusive = "PersonRecordOnly", true
		c.Message = "only a person's record speaks for IPS's own mapping (manual registry, separate probe identity, no recent IPS READ job): a person's record never allows on its own; run a READ job (StartProvisioningJob with force) or let one run"
		c.Source = FromPerson
		d.retryAfter(d.p.ActionRetryAfter)
		d.remedy(bucketEvidence, diagnose.RunReadJobStep())
	case d.ev.Config.Probe.AcceptPlatformOnlyEvidence:
		c.Reason = ReasonPlatformOnlyEvidence
		c.Message = "nothing proves that IPS's own mapping authenticates (the probe uses its own certificate); the connection accepts platform-only evidence"
	default:
		c.Reason, c.Inconclusive = ReasonNoIPSEvidence, true
		c.Message = "nothing proves that IPS's own mapping authenticates (the probe uses its own certificate and there is no recent IPS READ job that succeeded); set probe.accept_platform_only_evidence to accept the platform probe alone"
		if j := d.ev.IPSJob; j != nil && !j.Done {
			// Its outcome will tell: wait for it rather than start another.
			c.Message += fmt.Sprintf("; IPS's READ job %s is running, and its outcome will tell", j.JobID)
			d.retryAfter(d.p.RunningRetryAfter)
			d.remedy(bucketRetry, pick(diagnose.CauseServerError, diagnose.Situation{}, diagnose.ActionRetryLater)...)
		} else {
			d.retryAfter(d.p.ActionRetryAfter)
			d.remedy(bucketEvidence, diagnose.RunReadJobStep())
		}
	}
	c.Message += outage
	d.add(c)
}

// jobCause is the diagnosed cause of a failed job.
func jobCause(job *store.JobRecord) diagnose.Cause {
	if job == nil || job.Succeeded {
		return diagnose.CauseUnspecified
	}
	return diagnose.ParseCause(job.Cause)
}

func (d *decider) operations() {
	ev := d.ev
	c := Condition{Type: TypeNoReregistrationRunning, Source: FromOperation}
	if ev.Running != "" {
		d.running = true
		c.Status, c.Severity, c.Reason, c.Inconclusive = False, Warning, ReasonReregistrationRunning, true
		who := ""
		if ev.RunningAutomatic {
			who = ", started by certsync itself (automatic remediation),"
		}
		c.Message = fmt.Sprintf("re-registration operations/%s%s is running: SF's mapping may be missing or unsynchronized until it ends", ev.Running, who)
		d.retryAfter(d.p.RunningRetryAfter)
		d.remedy(bucketRetry, pick(diagnose.CauseServerError, diagnose.Situation{}, diagnose.ActionRetryLater)...)
	} else {
		c.Status, c.Severity, c.Reason, c.Message = True, Info, "NoneRunning", "no re-registration of this connection is running"
		if last := ev.LastReregistration; last != nil && last.State == StateFailed {
			c.Message += fmt.Sprintf("; the last one ended FAILED on %s", last.Ended.UTC().Format("2006-01-02 15:04 MST"))
		}
	}
	d.add(c)
	d.automaticRemediation()
}

// automaticRemediation shows, for a connection that has it on, what
// certsync did by itself in the last day: a person reading the verdict
// learns that SF drifted and was fixed, or that the fix did not help.
func (d *decider) automaticRemediation() {
	ev := d.ev
	ar := ev.Config.AutoRemediation
	if !ar.Enabled {
		return
	}
	c := Condition{Type: TypeAutomaticRemediation, Source: FromOperation}
	last := ev.LastReregistration
	recent := last != nil && last.Automatic && ev.CheckedAt.Sub(last.Ended) < 24*time.Hour
	switch {
	case ev.Running != "" && ev.RunningAutomatic:
		return // NoReregistrationRunning says it
	case recent && last.State == string(store.StateSucceeded):
		c.Status, c.Severity, c.Reason = True, Warning, "AutomaticallyReregistered"
		c.Message = fmt.Sprintf("certsync re-registered IPS's certificate by itself at %s (operations/%s, %s): SF had drifted; if this repeats, escalate to LOD-SF-PLT-IAS",
			last.Ended.UTC().Format("2006-01-02 15:04 MST"), last.ID, last.Reason)
	case recent && (last.State == StateFailed || last.State == string(store.StateRolledBack)):
		c.Status, c.Severity, c.Reason = False, Warning, "AutomaticRemediationFailed"
		c.Message = fmt.Sprintf("certsync's own re-registration operations/%s at %s ended %s (%s): it does not try again within 24 hours; follow the remediation",
			last.ID, last.Ended.UTC().Format("2006-01-02 15:04 MST"), last.State, last.Reason)
	default:
		c.Status, c.Severity, c.Reason = True, Info, "Armed"
		c.Message = fmt.Sprintf("automatic remediation is on (at most %d a day", max(ar.MaxPerDay, 1))
		if len(ar.Windows) > 0 {
			c.Message += ", within " + strings.Join(ar.Windows, "; ") + " UTC"
		}
		c.Message += ")"
		if last != nil && !last.Automatic {
			c.Message += "; the latest re-registration was not certsync's own"
		}
	}
	d.add(c)
}

// StateFailed is the final state of a re-registration that put the right
// certificate in place without making authentication work.
const StateFailed = "FAILED"

// situation is what the probe's remedies depend on besides the cause.
func (d *decider) situation() diagnose.Situation {
	ev := d.ev
	var s diagnose.Situation
	if c := ev.Comparison; c != nil && (c.Result == compare.ResultMatch || c.Result == compare.ResultMismatch) {
		s.FingerprintsKnown = true
		s.FingerprintsMatch = c.Result == compare.ResultMatch
	}
	s.ReregistrationFailed = ev.LastReregistration != nil && ev.LastReregistration.State == StateFailed
	if u, err := url.Parse(ev.Config.SF.URL); err == nil {
		kind := sfhost.Classify(u.Hostname())
		s.HostKnown = kind != sfhost.KindUnknownDomain
		s.CertHost = kind == sfhost.KindCertHost
		s.SuggestedCertHost = sfhost.CertHostFor(u.Hostname())
	}
	if ev.Probe != nil {
		s.RetryAfter = ev.Probe.RetryAfter
	}
	return s
}

var outcomeReason = map[scim.Outcome]string{
	scim.InvalidClientCertificate: "InvalidClientCertificate",
	scim.TLSRejected:              "TLSRejected",
	scim.CredentialsRequired:      "CredentialsRequired",
	scim.PermissionDenied:         "PermissionDenied",
}

var outcomeCause = map[scim.Outcome]diagnose.Cause{
	scim.InvalidClientCertificate: diagnose.CauseInvalidClientCertificate,
	scim.TLSRejected:              diagnose.CauseTLSRejected,
	scim.CredentialsRequired:      diagnose.CauseCredentialsRequired,
	scim.PermissionDenied:         diagnose.CausePermissionDenied,
}

// answer describes what SF answered, without latency or body.
func answer(r *scim.Result) string {
	var parts []string
	if r.HTTPStatus != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", r.HTTPStatus))
	}
	if r.ErrorCode != "" && !strings.Contains(r.ErrorMessage, r.ErrorCode) {
		parts = append(parts, r.ErrorCode)
	}
	if r.ErrorMessage != "" {
		parts = append(parts, r.ErrorMessage)
	}
	if len(parts) == 0 {
		return "no details"
	}
	return strings.Join(parts, " ")
}

// pick returns the steps of diagnose.Remediation(c, s) whose action is one of
// actions, in the order given: the gate composes its remediation from the one
// place that holds remediation texts and KBAs.
func pick(c diagnose.Cause, s diagnose.Situation, actions ...diagnose.Action) []diagnose.Step {
	all := diagnose.Remediation(c, s)
	var out []diagnose.Step
	for _, a := range actions {
		for _, st := range all {
			if st.Action == a {
				out = append(out, st)
				break
			}
		}
	}
	return out
}

// uploadActive is DOMAIN.md's fix for SF holding another certificate.
func uploadActive() []diagnose.Step {
	return diagnose.Remediation(diagnose.CauseInvalidClientCertificate, diagnose.Situation{FingerprintsKnown: true, FingerprintsMatch: false})
}

func (d *decider) verdict() Verdict {
	ev := d.ev
	conds := d.conds
	// Errors first, then warnings, then information; checks keep their
	// order within a severity, so answers are stable.
	slices.SortStableFunc(conds, func(a, b Condition) int { return cmp.Compare(b.Severity, a.Severity) })
	v := Verdict{Connection: ev.Connection, Conditions: conds, CheckedAt: ev.CheckedAt, Decision: Allow}
	var errs, open, warns []string
	for _, c := range conds {
		switch {
		case c.Severity == Error:
			errs = append(errs, c.Reason)
		case c.Inconclusive:
			open = append(open, c.Reason)
		case c.Severity == Warning:
			warns = append(warns, c.Reason)
		}
	}
	switch {
	case d.running:
		// While a re-registration runs, what the evidence shows is on its
		// way to change (DESIGN.md): the job should wait, not fail.
		v.Decision = Inconclusive
	case len(errs) > 0:
		v.Decision = Deny
	case len(open) > 0:
		v.Decision = Inconclusive
	}

	seen := map[diagnose.Action]bool{}
	for b, steps := range d.steps {
		for _, st := range steps {
			// Retrying is no remedy for a job that would fail; while the
			// fix runs, waiting for it is the only one.
			if (b == bucketRetry || b == bucketEvidence) && v.Decision == Deny {
				continue
			}
			if d.running && b != bucketRetry {
				continue
			}
			if v.Decision == Allow || seen[st.Action] {
				continue
			}
			seen[st.Action] = true
			v.Remediation = append(v.Remediation, st)
		}
	}
	if v.Decision == Inconclusive {
		v.RetryAfter = max(d.retry, d.p.TransientRetryAfter)
	}

	switch v.Decision {
	case Allow:
		v.Summary = "The job may run: every check passed"
		if len(warns) > 0 {
			v.Summary += fmt.Sprintf(", with %s (%s)", plural(len(warns), "warning"), strings.Join(uniq(warns), ", "))
		}
		v.Summary += "."
	case Deny:
		v.Summary = fmt.Sprintf("The job would fail (%s)", strings.Join(uniq(errs), ", "))
		if len(v.Remediation) > 0 {
			v.Summary += "; first step: " + v.Remediation[0].Action.String()
		}
		v.Summary += "."
	case Inconclusive:
		v.Summary = fmt.Sprintf("Cannot tell whether the job would succeed (%s); ask again after retry_after.", strings.Join(uniq(open), ", "))
	}
	return v
}

// uniq keeps the first of each reason: two certificates expiring within
// 14 days are two warnings, but one reason to read.
func uniq(reasons []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range reasons {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
