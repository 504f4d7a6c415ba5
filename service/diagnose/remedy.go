package diagnose

import (
	"fmt"
	"time"
)

// Situation is what else is known besides the failed call; it decides
// between the remedies of one cause. The zero value means "nothing else is
// known", which is what a job error alone gives.
type Situation struct {
	// FingerprintsKnown says whether FingerprintsMatch is meaningful.
	FingerprintsKnown bool
	// FingerprintsMatch: IPS's Active certificate is the one SF maps.
	FingerprintsMatch bool
	// ReregistrationFailed: a re-registration already put the right
	// certificate in place and authentication still fails.
	ReregistrationFailed bool
	// HostKnown says whether CertHost is meaningful (the host is on a known
	// SF domain).
	HostKnown bool
	// CertHost: the URL's host is SF's `cert.` mTLS host.
	CertHost bool
	// SuggestedCertHost is the cert host to name in a FixURL step, if known.
	SuggestedCertHost string
	// RetryAfter is how long SF asked callers to wait, if it said.
	RetryAfter time.Duration
}

// Remediation returns the steps for a cause, in the order to try them.
// Transient causes get only RetryLater: DOMAIN.md forbids remediating on an
// outage, since changing the mapping then can only make things worse.
func Remediation(c Cause, s Situation) []Step {
	switch c {
	case CauseInvalidClientCertificate:
		switch {
		case s.FingerprintsKnown && !s.FingerprintsMatch:
			// Current fingerprints outrank an earlier re-registration: if
			// they differ now, SF holds another certificate, whatever
			// happened before.
			return []Step{stepUploadActive()}
		case s.ReregistrationFailed:
			return []Step{stepCheckCompanyIDHeader(), stepEscalate()}
		case s.FingerprintsKnown:
			return []Step{stepReregister(), stepCheckCompanyIDHeader(), stepEscalate()}
		default:
			// The seed's resolution, verbatim in order: compare,
			// re-register, escalate.
			return []Step{stepCompareFingerprints(), stepReregister(), stepEscalate()}
		}
	case CauseTLSRejected:
		return []Step{stepUploadActive(), stepRenew()}
	case CauseCredentialsRequired:
		if s.HostKnown && s.CertHost {
			// The host is right, so the missing company id is the likelier
			// culprit.
			return []Step{stepSetCompanyID(), stepFixURL(s.SuggestedCertHost)}
		}
		return []Step{stepFixURL(s.SuggestedCertHost), stepSetCompanyID()}
	case CausePermissionDenied:
		return []Step{stepFixMapping()}
	case CauseCompanyIDMissing:
		return []Step{stepSetCompanyID()}
	case CauseRateLimited, CauseServerError, CauseTransportError:
		return []Step{stepRetryLater(c, s.RetryAfter)}
	case CauseUnrecognizedResponse:
		return []Step{stepCompareFingerprints(), stepRetryLater(c, s.RetryAfter)}
	}
	return nil
}

// EscalationComponent returns the support component to open a ticket on when
// the steps include an escalation, and "" otherwise.
func EscalationComponent(steps []Step) string {
	for _, st := range steps {
		if st.Action == ActionEscalate {
			if st.SupportComponent != "" {
				return st.SupportComponent
			}
			return SupportComponentSFIAS
		}
	}
	return ""
}

// KBAs returns every KBA relevant to the cause in any situation, as
// "KBA 3505973". The result is a fresh slice.
func KBAs(c Cause) []string {
	switch c {
	case CauseInvalidClientCertificate:
		return []string{kbaNotSynchronized, kbaClientCert401, kbaCompanyIDHeader, kbaAutoRegeneration, kbaDuplicateUpload}
	case CauseTLSRejected:
		return []string{kbaAutoRegeneration, kbaValidity, kbaDuplicateUpload}
	case CauseCredentialsRequired, CauseCompanyIDMissing:
		return []string{kbaCompanyIDRequired}
	case CausePermissionDenied:
		return []string{kbaForbidden, kbaLoginName}
	case CauseUnrecognizedResponse:
		return []string{kbaNotSynchronized}
	}
	return nil
}

// explanationKBAs are the articles an explanation cites; together with the
// steps' KBAs they make a finding's references.
func explanationKBAs(c Cause, s Situation) []string {
	switch c {
	case CauseInvalidClientCertificate:
		switch {
		case s.FingerprintsKnown && !s.FingerprintsMatch:
			return []string{kbaAutoRegeneration}
		case s.ReregistrationFailed:
			return []string{kbaCompanyIDHeader, kbaNotSynchronized}
		}
		return []string{kbaNotSynchronized, kbaClientCert401}
	case CauseTLSRejected:
		return []string{kbaAutoRegeneration}
	case CauseCredentialsRequired, CauseCompanyIDMissing:
		return []string{kbaCompanyIDRequired}
	case CausePermissionDenied:
		return []string{kbaForbidden, kbaLoginName}
	}
	return nil
}

// references is the union of the explanation's and the steps' KBAs, in the
// order they are first cited.
func references(c Cause, s Situation, steps []Step) []string {
	var out []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range explanationKBAs(c, s) {
		add(k)
	}
	for _, st := range steps {
		for _, k := range st.KBAs {
			add(k)
		}
	}
	return out
}

// Explanation says why the cause is the probable one, for people, in one to
// three sentences.
func Explanation(c Cause, s Situation) string {
	switch c {
	case CauseInvalidClientCertificate:
		switch {
		case s.FingerprintsKnown && !s.FingerprintsMatch:
			return "SF's authentication service rejected IPS's client certificate ([AUTH0032]) because the certificate mapped in SF is not IPS's Active one: IPS regenerated its certificate, or another file was uploaded (KBA 3419621)."
		case s.ReregistrationFailed:
			return "SF rejects IPS's client certificate ([AUTH0032]) although the right certificate was uploaded again, so the mapping is not the problem: the company id IPS sends in successfactors-companyid (sf.company.id) may be missing or wrong (KBA 3333286), or the fault is on SF's side (KBA 3505973)."
		case s.FingerprintsKnown:
			return "SF's authentication service rejected IPS's client certificate ([AUTH0032]) although SF maps the same certificate: the mapping in SF Security Center was not synchronized to the authentication service (KBA 3505973, KBA 3312844)."
		}
		return "SF's authentication service rejected IPS's client certificate ([AUTH0032]). Usually the mapping in SF Security Center was not synchronized to the authentication service even though the fingerprints match (KBA 3505973, KBA 3312844); if they differ, SF holds another certificate than IPS's Active one."
	case CauseTLSRejected:
		return "SF's TLS layer rejected the client certificate before SF looked at the request (\"The SSL certificate error\"): it is not IPS's Active certificate, it has expired, or IPS regenerated it and SF still maps the old one (KBA 3419621)."
	case CauseCredentialsRequired:
		switch {
		case s.HostKnown && !s.CertHost:
			host := "SF's cert. mTLS host"
			if s.SuggestedCertHost != "" {
				host = s.SuggestedCertHost
			}
			return fmt.Sprintf("SF asked for a user name, password and company id, so it did not authenticate with the client certificate: the URL names SF's plain API host, and certificate authentication works only on %s (KBA 3737619).", host)
		case s.HostKnown && s.CertHost:
			return "SF asked for a user name, password and company id although the URL is SF's cert. mTLS host, so the company id is the likely gap: sf.company.id is missing or wrong (KBA 3737619)."
		}
		return "SF asked for a user name, password and company id, so it did not authenticate with the client certificate: either the URL is not SF's cert. mTLS host or no company id was sent (KBA 3737619)."
	case CausePermissionDenied:
		return "SF accepted the certificate but the user it maps to may not read users: the mapping's Login Name lacks permissions (a blank one means a built-in technical user that may lack them, KBA 3363735), or its Integration Name is not \"Identity Provisioning Service\" (KBA 3417151)."
	case CauseCompanyIDMissing:
		return "The source system has no sf.company.id property, which ClientCertificateAuthentication requires: IPS sends it to SF as the successfactors-companyid header on every mTLS call (KBA 3737619)."
	case CauseRateLimited:
		return "SF limits how often one user may call it (about 20 calls per second) and asked IPS to slow down. This is transient and says nothing about the certificate."
	case CauseServerError:
		return "SF answered with a server error: an outage or fault on SF's side, not a problem with the certificate or its mapping."
	case CauseTransportError:
		return "IPS could not complete the call to SF (a timeout, a reset connection, a DNS or server-certificate failure): SF or the network was unreachable, which says nothing about IPS's certificate."
	case CauseUnrecognizedResponse:
		return "SF's answer matches none of the known failure patterns. Comparing the fingerprints on both sides rules out the most common cause, a certificate SF does not hold; otherwise try again later."
	}
	return ""
}

// ProbeCertificateStep is what to do when certsync's own probe certificate
// is the problem: a certsync configuration matter, not an SF or IPS failure.
func ProbeCertificateStep() Step {
	return Step{
		Action: ActionFixProbeCertificate,
		Text: "Fix the probe's own certificate: renew or replace the key pair in the connection's probe.cert_file and probe.key_file " +
			"(with a separate probe identity, also map the new certificate in SF Security Center). This says nothing about IPS's certificate.",
	}
}

// RegistryAccessStep is what to do when the registry bridge refuses
// certsync: its credentials, not SF, are the problem.
func RegistryAccessStep() Step {
	return Step{
		Action: ActionFixRegistryAccess,
		Text:   "The registry bridge refused certsync: check the connection's registry.token_file (a valid, unexpired token) and registry.ca_file, then ask again. This says nothing about SF's mapping.",
	}
}

// RunReadJobStep is what to do when nothing proves IPS's own mapping: an
// IPS READ job's outcome would.
func RunReadJobStep() Step {
	return Step{
		Action: ActionRunReadJob,
		Text:   "Run an IPS READ job for the source system (certsyncctl start-job NAME --force --reason TEXT, or in IPS) or let the next scheduled one run; its outcome proves or disproves IPS's own mapping.",
	}
}

// RecordMappingStep is what to do on a manual registry when nobody recorded
// what SF shows.
func RecordMappingStep() Step {
	return Step{
		Action: ActionRecordMapping,
		Text:   "Record what SF Admin Center > Security Center > X.509 Public Certificate Mapping shows for IPS's mapping: certsyncctl record-mapping NAME --fingerprint FINGERPRINT (or --certificate FILE).",
	}
}

func stepCompareFingerprints() Step {
	return Step{
		Action: ActionCompareFingerprints,
		Text:   "Compare the fingerprint of IPS's Active certificate (IPS > Source System > Outbound Certificate) with the certificate in SF Admin Center > Security Center > X.509 Public Certificate Mapping.",
		KBAs:   []string{kbaNotSynchronized},
	}
}

func stepReregister() Step {
	return Step{
		Action: ActionReregister,
		Text:   "In SF Admin Center > Security Center > X.509 Public Certificate Mapping, delete the mapping and upload the same certificate again, downloaded from IPS > Source System > Outbound Certificate, with the same Integration Name and Login Name.",
		KBAs:   []string{kbaNotSynchronized},
	}
}

func stepEscalate() Step {
	return Step{
		Action:           ActionEscalate,
		Text:             "If the error persists, raise a ticket with SAP support on component " + SupportComponentSFIAS + ", attaching the job error and both fingerprints.",
		KBAs:             []string{kbaNotSynchronized},
		SupportComponent: SupportComponentSFIAS,
	}
}

func stepCheckCompanyIDHeader() Step {
	return Step{
		Action: ActionFixCompanyID,
		Text:   "Check that the source system's sf.company.id property is SF's company id (case matters): IPS sends it as the successfactors-companyid header, and a missing or wrong one fails the same way.",
		KBAs:   []string{kbaCompanyIDHeader},
	}
}

func stepSetCompanyID() Step {
	return Step{
		Action: ActionFixCompanyID,
		Text:   "Set the source system's sf.company.id property to SF's company id; certificate authentication requires it.",
		KBAs:   []string{kbaCompanyIDRequired},
	}
}

func stepFixURL(suggested string) Step {
	target := "SF's cert. mTLS host (the API host with \"cert.\" after its first label)"
	if suggested != "" {
		target = "SF's cert. mTLS host, " + suggested
	}
	return Step{
		Action: ActionFixURL,
		Text:   "Point the source system's URL property at " + target + "; client certificates authenticate only there.",
		KBAs:   []string{kbaCompanyIDRequired},
	}
}

func stepUploadActive() Step {
	return Step{
		Action: ActionUploadActiveCertificate,
		Text:   "Download IPS's Active certificate from IPS > Source System > Outbound Certificate; in SF Security Center delete the old mapping first (SF refuses a second certificate with the same issuer and subject) and upload the Active one.",
		KBAs:   []string{kbaAutoRegeneration, kbaDuplicateUpload},
	}
}

func stepRenew() Step {
	return Step{
		Action: ActionRenewCertificate,
		Text:   "If IPS's Active certificate has expired, renew it in IPS > Source System > Outbound Certificate before uploading; SF does not pick up a renewed certificate by itself.",
		KBAs:   []string{kbaAutoRegeneration, kbaValidity},
	}
}

func stepFixMapping() Step {
	return Step{
		Action: ActionFixMappingFields,
		Text:   "In SF Security Center, delete the mapping and upload the certificate again with Integration Name \"Identity Provisioning Service\" and a Login Name whose user may read users; a blank Login Name uses a technical user that may lack permissions.",
		KBAs:   []string{kbaForbidden, kbaLoginName},
	}
}

func stepRetryLater(c Cause, after time.Duration) Step {
	text := "Run the job again later, with backoff; do not change the certificate or its mapping on this evidence."
	if c == CauseUnrecognizedResponse {
		text = "If the fingerprints match, run the job again later; if the answer repeats, keep it as evidence."
	}
	if after > 0 {
		text += fmt.Sprintf(" SF asked to wait %s.", after)
	}
	return Step{Action: ActionRetryLater, Text: text}
}
