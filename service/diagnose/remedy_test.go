package diagnose

import (
	"reflect"
	"strings"
	"testing"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

func TestRemediation(t *testing.T) {
	tests := []struct {
		name      string
		c         Cause
		s         Situation
		want      []Action
		component string
		text      string // some step mentions it
	}{
		{"seed: fingerprints unknown", CauseInvalidClientCertificate, Situation{}, seedActions, SupportComponentSFIAS, "upload the same certificate again"},
		{"fingerprints match", CauseInvalidClientCertificate, Situation{FingerprintsKnown: true, FingerprintsMatch: true},
			[]Action{ActionReregister, ActionFixCompanyID, ActionEscalate}, SupportComponentSFIAS, "successfactors-companyid"},
		{"fingerprints differ", CauseInvalidClientCertificate, Situation{FingerprintsKnown: true},
			[]Action{ActionUploadActiveCertificate}, "", "Active"},
		{"re-registration failed", CauseInvalidClientCertificate, Situation{FingerprintsKnown: true, FingerprintsMatch: true, ReregistrationFailed: true},
			[]Action{ActionFixCompanyID, ActionEscalate}, SupportComponentSFIAS, "LOD-SF-PLT-IAS"},
		{"re-registration failed, fingerprints not rechecked", CauseInvalidClientCertificate, Situation{ReregistrationFailed: true},
			[]Action{ActionFixCompanyID, ActionEscalate}, SupportComponentSFIAS, "sf.company.id"},
		{"fingerprints differ now, whatever happened before", CauseInvalidClientCertificate, Situation{FingerprintsKnown: true, ReregistrationFailed: true},
			[]Action{ActionUploadActiveCertificate}, "", ""},
		{"TLS rejected", CauseTLSRejected, Situation{}, []Action{ActionUploadActiveCertificate, ActionRenewCertificate}, "", "expired"},
		{"credentials, plain host", CauseCredentialsRequired, Situation{HostKnown: true, SuggestedCertHost: "api4.cert.successfactors.com"},
			[]Action{ActionFixURL, ActionFixCompanyID}, "", "api4.cert.successfactors.com"},
		{"credentials, cert host", CauseCredentialsRequired, Situation{HostKnown: true, CertHost: true},
			[]Action{ActionFixCompanyID, ActionFixURL}, "", "sf.company.id"},
		{"credentials, host unknown", CauseCredentialsRequired, Situation{}, []Action{ActionFixURL, ActionFixCompanyID}, "", "cert."},
		{"permission", CausePermissionDenied, Situation{}, []Action{ActionFixMappingFields}, "", `"Identity Provisioning Service"`},
		{"company id missing", CauseCompanyIDMissing, Situation{}, []Action{ActionFixCompanyID}, "", "sf.company.id"},
		{"rate limited", CauseRateLimited, Situation{RetryAfter: 30 * time.Second}, retryActions, "", "30s"},
		{"server error", CauseServerError, Situation{FingerprintsKnown: true}, retryActions, "", "later"},
		{"transport", CauseTransportError, Situation{ReregistrationFailed: true}, retryActions, "", "later"},
		{"unrecognized", CauseUnrecognizedResponse, Situation{}, unknownActions, "", "fingerprint"},
		{"unspecified", CauseUnspecified, Situation{}, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := Remediation(tt.c, tt.s)
			if got := actionsOf(steps); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("actions = %v, want %v", got, tt.want)
			}
			if got := EscalationComponent(steps); got != tt.component {
				t.Errorf("EscalationComponent = %q, want %q", got, tt.component)
			}
			var texts []string
			for _, st := range steps {
				if st.Text == "" {
					t.Errorf("step %v without text", st.Action)
				}
				if (st.Action == ActionEscalate) != (st.SupportComponent != "") {
					t.Errorf("step %v has support component %q", st.Action, st.SupportComponent)
				}
				for _, k := range st.KBAs {
					if !strings.HasPrefix(k, "KBA ") || len(k) != len("KBA 3505973") {
						t.Errorf("malformed KBA %q", k)
					}
				}
				texts = append(texts, st.Text)
			}
			if !strings.Contains(strings.Join(texts, "\n"), tt.text) {
				t.Errorf("no step mentions %q: %q", tt.text, texts)
			}
		})
	}
}

func TestRemediationReturnsFreshSlices(t *testing.T) {
	a := Remediation(CauseInvalidClientCertificate, Situation{})
	a[0].KBAs[0] = "changed"
	b := Remediation(CauseInvalidClientCertificate, Situation{})
	if b[0].KBAs[0] == "changed" {
		t.Error("Remediation shares its KBA slices between calls")
	}
	k := KBAs(CauseInvalidClientCertificate)
	k[0] = "changed"
	if KBAs(CauseInvalidClientCertificate)[0] == "changed" {
		t.Error("KBAs shares its slice between calls")
	}
}

// situations spans every branch Remediation and Explanation take.
func situations() []Situation {
	var out []Situation
	for i := range 1 << 5 {
		s := Situation{
			FingerprintsKnown:    i&1 != 0,
			FingerprintsMatch:    i&2 != 0,
			ReregistrationFailed: i&4 != 0,
			HostKnown:            i&8 != 0,
			CertHost:             i&16 != 0,
		}
		out = append(out, s, Situation{HostKnown: true, SuggestedCertHost: "api4.cert.successfactors.com"})
	}
	return out
}

func allCauses() []Cause {
	var out []Cause
	for c := CauseUnspecified; c <= CauseUnrecognizedResponse; c++ {
		out = append(out, c)
	}
	return out
}

func TestKBAsCoverEverythingCited(t *testing.T) {
	for _, c := range allCauses() {
		known := map[string]bool{}
		for _, k := range KBAs(c) {
			known[k] = true
		}
		for _, s := range situations() {
			steps := Remediation(c, s)
			for _, k := range references(c, s, steps) {
				if !known[k] {
					t.Errorf("%v %+v cites %s, missing from KBAs", c, s, k)
				}
			}
			// Every KBA an explanation names in its text is in its references.
			exp := Explanation(c, s)
			for _, k := range []string{kbaNotSynchronized, kbaClientCert401, kbaCompanyIDHeader, kbaAutoRegeneration, kbaValidity, kbaCompanyIDRequired, kbaForbidden, kbaLoginName, kbaDuplicateUpload} {
				if strings.Contains(exp, k) && !contains(references(c, s, steps), k) {
					t.Errorf("%v %+v: explanation names %s, references do not", c, s, k)
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestExplanation(t *testing.T) {
	for _, c := range allCauses() {
		for _, s := range situations() {
			got := Explanation(c, s)
			if (got == "") != (c == CauseUnspecified) {
				t.Errorf("Explanation(%v, %+v) = %q", c, s, got)
			}
			if n := strings.Count(got, ". "); n > 2 {
				t.Errorf("Explanation(%v) has %d sentences", c, n+1)
			}
		}
	}
	if got := Explanation(CauseCredentialsRequired, Situation{HostKnown: true, SuggestedCertHost: "api4.cert.successfactors.com"}); !strings.Contains(got, "api4.cert.successfactors.com") {
		t.Errorf("plain-host explanation does not name the cert host: %q", got)
	}
	if got := Explanation(CauseInvalidClientCertificate, Situation{ReregistrationFailed: true}); !strings.Contains(got, "KBA 3333286") {
		t.Errorf("re-registration explanation does not cite KBA 3333286: %q", got)
	}
}

func TestEscalationComponent(t *testing.T) {
	if got := EscalationComponent(nil); got != "" {
		t.Errorf("nil steps: %q", got)
	}
	if got := EscalationComponent([]Step{{Action: ActionEscalate}}); got != SupportComponentSFIAS {
		t.Errorf("escalation without component: %q", got)
	}
	if got := EscalationComponent([]Step{{Action: ActionRetryLater}, {Action: ActionEscalate, SupportComponent: "X"}}); got != "X" {
		t.Errorf("named component: %q", got)
	}
}

// The handlers cast between these types and the proto enums; the numbers
// must agree.
func TestEnumsMatchProto(t *testing.T) {
	causes := map[Cause]certsyncv1.FailureCause{
		CauseUnspecified:              certsyncv1.FailureCause_FAILURE_CAUSE_UNSPECIFIED,
		CauseInvalidClientCertificate: certsyncv1.FailureCause_FAILURE_CAUSE_INVALID_CLIENT_CERTIFICATE,
		CauseTLSRejected:              certsyncv1.FailureCause_FAILURE_CAUSE_TLS_REJECTED,
		CauseCredentialsRequired:      certsyncv1.FailureCause_FAILURE_CAUSE_CREDENTIALS_REQUIRED,
		CausePermissionDenied:         certsyncv1.FailureCause_FAILURE_CAUSE_PERMISSION_DENIED,
		CauseCompanyIDMissing:         certsyncv1.FailureCause_FAILURE_CAUSE_COMPANY_ID_MISSING,
		CauseRateLimited:              certsyncv1.FailureCause_FAILURE_CAUSE_RATE_LIMITED,
		CauseServerError:              certsyncv1.FailureCause_FAILURE_CAUSE_SERVER_ERROR,
		CauseTransportError:           certsyncv1.FailureCause_FAILURE_CAUSE_TRANSPORT_ERROR,
		CauseUnrecognizedResponse:     certsyncv1.FailureCause_FAILURE_CAUSE_UNRECOGNIZED_RESPONSE,
	}
	if len(causes) != len(certsyncv1.FailureCause_name) {
		t.Errorf("%d causes, proto has %d", len(causes), len(certsyncv1.FailureCause_name))
	}
	for c, p := range causes {
		if int32(c) != int32(p) {
			t.Errorf("%v = %d, proto %v = %d", c, c, p, p)
		}
	}
	actions := map[Action]certsyncv1.RemediationAction{
		ActionUnspecified:             certsyncv1.RemediationAction_REMEDIATION_ACTION_UNSPECIFIED,
		ActionReregister:              certsyncv1.RemediationAction_REMEDIATION_ACTION_REREGISTER,
		ActionUploadActiveCertificate: certsyncv1.RemediationAction_REMEDIATION_ACTION_UPLOAD_ACTIVE_CERTIFICATE,
		ActionFixCompanyID:            certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_COMPANY_ID,
		ActionFixURL:                  certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_URL,
		ActionFixMappingFields:        certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_MAPPING_FIELDS,
		ActionRenewCertificate:        certsyncv1.RemediationAction_REMEDIATION_ACTION_RENEW_CERTIFICATE,
		ActionEscalate:                certsyncv1.RemediationAction_REMEDIATION_ACTION_ESCALATE,
		ActionRetryLater:              certsyncv1.RemediationAction_REMEDIATION_ACTION_RETRY_LATER,
		ActionCompareFingerprints:     certsyncv1.RemediationAction_REMEDIATION_ACTION_COMPARE_FINGERPRINTS,
		ActionFixProbeCertificate:     certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_PROBE_CERTIFICATE,
		ActionFixRegistryAccess:       certsyncv1.RemediationAction_REMEDIATION_ACTION_FIX_REGISTRY_ACCESS,
		ActionRunReadJob:              certsyncv1.RemediationAction_REMEDIATION_ACTION_RUN_READ_JOB,
		ActionRecordMapping:           certsyncv1.RemediationAction_REMEDIATION_ACTION_RECORD_MAPPING,
	}
	if len(actions) != len(certsyncv1.RemediationAction_name) {
		t.Errorf("%d actions, proto has %d", len(actions), len(certsyncv1.RemediationAction_name))
	}
	for a, p := range actions {
		if int32(a) != int32(p) {
			t.Errorf("%v = %d, proto %v = %d", a, a, p, p)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{CauseInvalidClientCertificate.String(), "InvalidClientCertificate"},
		{CauseUnrecognizedResponse.String(), "UnrecognizedResponse"},
		{Cause(99).String(), "Cause(99)"},
		{Cause(-1).String(), "Cause(-1)"},
		{ActionFixURL.String(), "FixURL"},
		{ActionFixProbeCertificate.String(), "FixProbeCertificate"},
		{ActionRecordMapping.String(), "RecordMapping"},
		{Action(99).String(), "Action(99)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	for _, c := range allCauses() {
		if strings.HasPrefix(c.String(), "Cause(") {
			t.Errorf("cause %d has no name", int(c))
		}
	}
}
