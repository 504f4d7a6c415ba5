// Package diagnose reads IPS job errors and SF responses and names the
// probable cause and the fix, following the failure table of DOMAIN.md.
//
// It is the one place that knows causes, their explanations, KBA numbers and
// recommended actions, so that the job-error diagnosis, the SCIM probe and the
// gate never tell an operator two different stories about the same answer.
// Everything here is a pure function of its input: no I/O, no clock.
package diagnose

import "strconv"

// Cause is the probable cause of a failed call. The values mirror the proto
// enum certsync.v1.FailureCause number for number, so handlers convert with a
// plain cast.
type Cause int

const (
	CauseUnspecified Cause = iota
	CauseInvalidClientCertificate
	CauseTLSRejected
	CauseCredentialsRequired
	CausePermissionDenied
	CauseCompanyIDMissing
	CauseRateLimited
	CauseServerError
	CauseTransportError
	CauseUnrecognizedResponse
)

var causeNames = [...]string{
	CauseUnspecified:              "Unspecified",
	CauseInvalidClientCertificate: "InvalidClientCertificate",
	CauseTLSRejected:              "TLSRejected",
	CauseCredentialsRequired:      "CredentialsRequired",
	CausePermissionDenied:         "PermissionDenied",
	CauseCompanyIDMissing:         "CompanyIDMissing",
	CauseRateLimited:              "RateLimited",
	CauseServerError:              "ServerError",
	CauseTransportError:           "TransportError",
	CauseUnrecognizedResponse:     "UnrecognizedResponse",
}

// String returns the cause in CamelCase, the form the gate uses for condition
// reasons.
func (c Cause) String() string {
	if c >= 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return "Cause(" + strconv.Itoa(int(c)) + ")"
}

// ParseCause reads back a cause's name as String writes it; an unknown
// name is CauseUnspecified.
func ParseCause(name string) Cause {
	for c := range Cause(len(causeNames)) {
		if c != CauseUnspecified && causeNames[c] == name {
			return c
		}
	}
	return CauseUnspecified
}

// Transient reports whether the cause is an outage rather than a fault in the
// configuration: DOMAIN.md says never to remediate on those.
func (c Cause) Transient() bool {
	return c == CauseRateLimited || c == CauseServerError || c == CauseTransportError
}

// Action is a typed remediation step. The values mirror the proto enum
// certsync.v1.RemediationAction number for number.
type Action int

const (
	ActionUnspecified Action = iota
	ActionReregister
	ActionUploadActiveCertificate
	ActionFixCompanyID
	ActionFixURL
	ActionFixMappingFields
	ActionRenewCertificate
	ActionEscalate
	ActionRetryLater
	ActionCompareFingerprints
	ActionFixProbeCertificate
	ActionFixRegistryAccess
	ActionRunReadJob
	ActionRecordMapping
)

var actionNames = [...]string{
	ActionUnspecified:             "Unspecified",
	ActionReregister:              "Reregister",
	ActionUploadActiveCertificate: "UploadActiveCertificate",
	ActionFixCompanyID:            "FixCompanyID",
	ActionFixURL:                  "FixURL",
	ActionFixMappingFields:        "FixMappingFields",
	ActionRenewCertificate:        "RenewCertificate",
	ActionEscalate:                "Escalate",
	ActionRetryLater:              "RetryLater",
	ActionCompareFingerprints:     "CompareFingerprints",
	ActionFixProbeCertificate:     "FixProbeCertificate",
	ActionFixRegistryAccess:       "FixRegistryAccess",
	ActionRunReadJob:              "RunReadJob",
	ActionRecordMapping:           "RecordMapping",
}

// String returns the action in CamelCase.
func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Step is one thing to do, in the order Remediation lists them.
type Step struct {
	Action Action
	// Text names the exact place in IPS or SF where the step is done.
	Text string
	// KBAs back the step, as "KBA 3505973".
	KBAs []string
	// SupportComponent is set on escalation steps only.
	SupportComponent string
}

// SupportComponentSFIAS is the SAP support component for SF's side of the
// IAS/IPS integration, the one the seed article (KBA 3505973) escalates to.
const SupportComponentSFIAS = "LOD-SF-PLT-IAS"

// KBA numbers, named once so that a typo cannot send someone to the wrong
// article.
const (
	kbaNotSynchronized   = "KBA 3505973" // the seed: mapping not synchronized
	kbaClientCert401     = "KBA 3312844" // 401 with client certificate authentication in IPS to SF
	kbaCompanyIDHeader   = "KBA 3333286" // missing or wrong successfactors-companyid
	kbaAutoRegeneration  = "KBA 3419621" // regenerated certificate must be uploaded to SF again
	kbaValidity          = "KBA 3423003" // one-year default validity
	kbaCompanyIDRequired = "KBA 3737619" // sf.company.id required for certificate authentication
	kbaForbidden         = "KBA 3417151" // 403 reading users: mapping fields
	kbaLoginName         = "KBA 3363735" // blank login name: technical user lacking permissions
	kbaDuplicateUpload   = "KBA 3574501" // same issuer and subject cannot be uploaded twice
)
