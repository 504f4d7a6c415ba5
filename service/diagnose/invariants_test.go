package diagnose

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/certsync/certsync/service/sfhost"
)

// checkResult asserts what must hold for any input, so that the table tests
// and the fuzz targets guard the same promises: every string fits a proto
// string field, every finding is actionable, and fields agree with each other.
func checkResult(t *testing.T, r Result) {
	t.Helper()
	if !utf8.ValidString(r.Summary) || !utf8.ValidString(r.TenantID) {
		t.Errorf("invalid UTF-8 in result: %q %q", r.Summary, r.TenantID)
	}
	if r.Summary == "" {
		t.Error("empty summary")
	}
	for i, f := range r.Findings {
		checkFinding(t, i, f, r.TenantID)
	}
}

func checkFinding(t *testing.T, i int, f Finding, tenant string) {
	t.Helper()
	strs := []string{f.URL, f.Host, f.Path, f.Body, f.ErrorCode, f.ErrorMessage, f.TenantID, f.Explanation, f.SupportComponent, f.LoadMode, f.Evidence}
	strs = append(strs, f.Query...)
	strs = append(strs, f.KBAs...)
	for _, a := range f.Actions {
		strs = append(strs, a.Text, a.SupportComponent)
		strs = append(strs, a.KBAs...)
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("finding %d: invalid UTF-8 %q", i, s)
		}
	}
	switch {
	case f.CertHost && f.Host == "":
		t.Errorf("finding %d: CertHost without Host", i)
	case f.Host != "" && f.URL == "":
		t.Errorf("finding %d: Host %q without URL", i, f.Host)
	case f.SCIMUsers && f.URL == "":
		t.Errorf("finding %d: SCIMUsers without URL", i)
	case f.Path != "" && f.URL == "":
		t.Errorf("finding %d: Path without URL", i)
	case f.HTTPStatus != 0 && (f.HTTPStatus < 100 || f.HTTPStatus > 599):
		t.Errorf("finding %d: HTTPStatus %d", i, f.HTTPStatus)
	case f.HTTPStatus != 0 && f.URL == "":
		t.Errorf("finding %d: status without URL", i)
	case f.Body != "" && f.HTTPStatus == 0:
		t.Errorf("finding %d: body without status", i)
	case f.Cause <= CauseUnspecified || f.Cause > CauseUnrecognizedResponse:
		t.Errorf("finding %d: cause %v", i, f.Cause)
	case f.Cause == CauseCompanyIDMissing && f.URL != "":
		t.Errorf("finding %d: configuration error with URL %q", i, f.URL)
	case len(f.Actions) == 0:
		t.Errorf("finding %d: no actions", i)
	case f.Explanation == "":
		t.Errorf("finding %d: no explanation", i)
	case f.SupportComponent != EscalationComponent(f.Actions):
		t.Errorf("finding %d: SupportComponent %q, steps say %q", i, f.SupportComponent, EscalationComponent(f.Actions))
	case len(f.Body) > maxExcerptBytes || len(f.Evidence) > maxExcerptBytes:
		t.Errorf("finding %d: body %d or evidence %d bytes", i, len(f.Body), len(f.Evidence))
	case f.Body != strings.TrimSpace(f.Body) || f.Evidence != strings.TrimSpace(f.Evidence):
		t.Errorf("finding %d: untrimmed body or evidence", i)
	case f.Evidence == "":
		t.Errorf("finding %d: no evidence", i)
	case f.TenantID != tenant:
		t.Errorf("finding %d: tenant %q, result says %q", i, f.TenantID, tenant)
	case f.LoadMode != "" && f.LoadMode != "delta" && f.LoadMode != "full":
		t.Errorf("finding %d: load mode %q", i, f.LoadMode)
	case f.RetryAfter < 0:
		t.Errorf("finding %d: RetryAfter %v", i, f.RetryAfter)
	case f.CertHost != (f.Host != "" && sfhost.Classify(f.Host) == sfhost.KindCertHost):
		t.Errorf("finding %d: CertHost %v for host %q", i, f.CertHost, f.Host)
	}
	if f.Cause.Transient() {
		for _, a := range f.Actions {
			if a.Action != ActionRetryLater {
				t.Errorf("finding %d: transient cause %v recommends %v", i, f.Cause, a.Action)
			}
		}
	}
	known := map[string]bool{}
	for _, k := range KBAs(f.Cause) {
		known[k] = true
	}
	for _, k := range f.KBAs {
		if !known[k] {
			t.Errorf("finding %d: KBA %s not among KBAs(%v)", i, k, f.Cause)
		}
	}
}

func checkClassification(t *testing.T, r Response, c Classification) {
	t.Helper()
	if c.Cause < CauseUnspecified || c.Cause > CauseUnrecognizedResponse {
		t.Errorf("cause %v out of range", c.Cause)
	}
	if (c.Cause == CauseUnspecified) != (r.Status >= 200 && r.Status <= 299) {
		t.Errorf("status %d gave cause %v", r.Status, c.Cause)
	}
	if c.Cause == CauseCompanyIDMissing || c.Cause == CauseTransportError {
		t.Errorf("an HTTP answer cannot be %v", c.Cause)
	}
	if c.RetryAfter < 0 || c.RetryAfter > maxRetryAfter {
		t.Errorf("RetryAfter %v", c.RetryAfter)
	}
	if !utf8.ValidString(c.ErrorCode) || !utf8.ValidString(c.ErrorMessage) {
		t.Errorf("invalid UTF-8: %q %q", c.ErrorCode, c.ErrorMessage)
	}
	if len(c.ErrorMessage) > maxMessageBytes {
		t.Errorf("message of %d bytes", len(c.ErrorMessage))
	}
}
