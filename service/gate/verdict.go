package gate

import (
	"strconv"
	"time"

	"github.com/certsync/certsync/service/diagnose"
)

// Decision is the gate's answer to "may this provisioning job run now?".
type Decision int

// Decisions, as DESIGN.md's "Gate decisions" defines them.
const (
	DecisionUnspecified Decision = iota
	// Allow: the evidence shows the job would authenticate; warnings may be
	// listed.
	Allow
	// Deny: the evidence shows the job would fail.
	Deny
	// Inconclusive: evidence is missing or too old, SF could not be reached,
	// or a re-registration is running. Never a reason to remediate.
	Inconclusive
)

var decisionNames = [...]string{"UNSPECIFIED", "ALLOW", "DENY", "INCONCLUSIVE"}

func (d Decision) String() string {
	if d >= 0 && int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return "Decision(" + strconv.Itoa(int(d)) + ")"
}

// Status says whether a condition holds.
type Status int

// Statuses.
const (
	StatusUnspecified Status = iota
	True
	False
	// Unknown: the evidence for the condition is missing or could not be
	// gathered.
	Unknown
)

var statusNames = [...]string{"UNSPECIFIED", "TRUE", "FALSE", "UNKNOWN"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Severity says how much a condition matters. Only Error blocks a job.
type Severity int

// Severities, in increasing order, so that sorting by Severity puts errors
// last (the gate sorts descending).
const (
	SeverityUnspecified Severity = iota
	Info
	Warning
	Error
)

var severityNames = [...]string{"UNSPECIFIED", "INFO", "WARNING", "ERROR"}

func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "Severity(" + strconv.Itoa(int(s)) + ")"
}

// EvidenceSource says where the evidence behind a condition came from;
// DESIGN.md wants every piece of evidence tagged with its source.
type EvidenceSource int

// Evidence sources, mirroring certsync.v1.EvidenceSource.
const (
	FromUnspecified EvidenceSource = iota
	FromConfiguration
	FromSourceCertificate
	FromRegistry
	FromProbe
	FromIPSJob
	FromPerson
	FromOperation
)

// Condition types, part of the API contract (operators script against them).
const (
	TypeConfigurationValid       = "ConfigurationValid"
	TypeSourceCertificatePresent = "SourceCertificatePresent"
	TypeSourceCertificateValid   = "SourceCertificateValid"
	TypeSourceCertificateExpiry  = "SourceCertificateExpiry"
	TypeMappingPresent           = "MappingPresent"
	TypeMappingFieldsValid       = "MappingFieldsValid"
	TypeFingerprintsMatch        = "FingerprintsMatch"
	TypeScimAuthentication       = "ScimAuthentication"
	TypeIpsMappingAuthenticates  = "IpsMappingAuthenticates"
	TypeProbeCertificateValid    = "ProbeCertificateValid"
	TypeNoReregistrationRunning  = "NoReregistrationRunning"
	TypeAutomaticRemediation     = "AutomaticRemediation"
	// TypeEvidenceFresh appears only when the gate answers without evidence
	// fresh enough for the caller.
	TypeEvidenceFresh = "EvidenceFresh"
)

// Reasons that callers and tests rely on; the others are listed where the
// checks produce them.
const (
	ReasonEvidenceStale           = "EvidenceStale"
	ReasonEvidenceMissing         = "EvidenceMissing"
	ReasonProbeCertificateInvalid = "ProbeCertificateInvalid"
	ReasonReregistrationRunning   = "ReregistrationRunning"
	ReasonPlatformOnlyEvidence    = "PlatformOnlyEvidence"
	ReasonNoIPSEvidence           = "NoIpsMappingEvidence"
	ReasonUnreachable             = "Unreachable"
	ReasonUnexpectedResponse      = "UnexpectedResponse"
)

// Condition is the result of one check.
type Condition struct {
	// Type is what was checked, CamelCase (the Type* constants).
	Type     string
	Status   Status
	Severity Severity
	// Reason is why, as one CamelCase word.
	Reason string
	// Message is why, for people. It never carries an age or a latency, so
	// that evidence gathered again with the same result reads the same and
	// watchers are not woken for nothing.
	Message string
	// ObservedTime is when the evidence behind the condition was gathered.
	ObservedTime time.Time
	Source       EvidenceSource
	// Inconclusive marks a condition that keeps the gate from answering
	// ALLOW although nothing shows the job would fail: evidence missing or
	// too old, SF unreachable, a re-registration running, a probe that
	// cannot speak for IPS. Such a condition is never an Error, because
	// DENY must rest on evidence, not on its absence.
	Inconclusive bool
}

// same compares what a watcher cares about: everything but the timestamp.
func (c Condition) same(o Condition) bool {
	return c.Type == o.Type && c.Status == o.Status && c.Severity == o.Severity &&
		c.Reason == o.Reason && c.Message == o.Message && c.Inconclusive == o.Inconclusive
}

// Verdict is the gate's answer for one connection.
type Verdict struct {
	// Connection is the connection's id (without "connections/").
	Connection string
	Decision   Decision
	// Conditions are every check's result, errors first. The slice is
	// shared between answers: never modify it.
	Conditions []Condition
	// CheckedAt is when the evidence was gathered; zero when there is none.
	CheckedAt time.Time
	// EvidenceAge is the evidence's age when the answer was given.
	EvidenceAge time.Duration
	// RetryAfter says when asking again makes sense; 0 when it does not.
	RetryAfter time.Duration
	// Remediation is the next steps, in order; empty on ALLOW.
	Remediation []diagnose.Step
	// Summary is one sentence for people.
	Summary string
}

// SameAs reports whether two verdicts say the same thing: the same
// decision and the same conditions. Timestamps, ages and retry hints alone
// are not a change (DESIGN.md's WatchGate).
func (v Verdict) SameAs(o Verdict) bool {
	if v.Decision != o.Decision || len(v.Conditions) != len(o.Conditions) {
		return false
	}
	for i := range v.Conditions {
		if !v.Conditions[i].same(o.Conditions[i]) {
			return false
		}
	}
	return true
}

// Reasons returns the reasons of the conditions with severity Warning or
// Error, in order: the short form shown with a connection.
func (v Verdict) Reasons() []string {
	var out []string
	for _, c := range v.Conditions {
		if c.Severity >= Warning {
			out = append(out, c.Reason)
		}
	}
	return out
}

// withAge stamps the answer time's age on a copy.
func (v Verdict) withAge(now time.Time) Verdict {
	if v.CheckedAt.IsZero() {
		v.EvidenceAge = 0
		return v
	}
	v.EvidenceAge = max(now.Sub(v.CheckedAt), 0)
	return v
}
