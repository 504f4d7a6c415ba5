package service_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/sandbox"
)

// sandboxHarness serves the sandbox's demo connections.
func sandboxHarness(t *testing.T, o inventory.Options) (*harness, *sandbox.Sandbox) {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(t.TempDir())
	must(t, err)
	return newHarnessWith(t, conns, o), sb
}

func findingCodes(r *certsyncv1.CompareFingerprintsResponse) []string {
	var out []string
	for _, f := range r.GetFindings() {
		out = append(out, f.GetCode())
	}
	return out
}

func TestReadPathOnEveryDemoConnection(t *testing.T) {
	h, sb := sandboxHarness(t, inventory.Options{ProbeTimeout: 5 * time.Second})
	P := certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED
	tests := []struct {
		conn    string
		result  certsyncv1.ComparisonResult
		finding string // a finding code compare must report, if any
		outcome certsyncv1.ProbeOutcome
		status  int32
		code    string
	}{
		{"demo-healthy", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "", P, 200, ""},
		{"demo-desync", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "", certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE, 401, "AUTH0032"},
		{"demo-mismatch", certsyncv1.ComparisonResult_COMPARISON_RESULT_MISMATCH, "RENEWAL_NOT_UPLOADED", certsyncv1.ProbeOutcome_PROBE_OUTCOME_TLS_REJECTED, 400, ""},
		{"demo-company-id", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "", certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE, 401, "AUTH0032"},
		{"demo-stuck", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "", certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE, 401, "AUTH0032"},
		{"demo-permission", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "INTEGRATION_NAME_WRONG", certsyncv1.ProbeOutcome_PROBE_OUTCOME_PERMISSION_DENIED, 403, "Forbidden"},
		{"demo-wrong-host", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "", certsyncv1.ProbeOutcome_PROBE_OUTCOME_CREDENTIALS_REQUIRED, 401, "LGN0011"},
		{"demo-expiring", certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, "SOURCE_EXPIRES_SOON", P, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.conn, func(t *testing.T) {
			cmp, err := h.client.CompareFingerprints(ctx(t), &certsyncv1.CompareFingerprintsRequest{Name: "connections/" + tt.conn})
			must(t, err)
			if cmp.GetResult() != tt.result {
				t.Errorf("compare = %v, want %v (%s)", cmp.GetResult(), tt.result, cmp.GetSummary())
			}
			if tt.finding != "" && !strings.Contains(strings.Join(findingCodes(cmp), ","), tt.finding) {
				t.Errorf("findings %v lack %s", findingCodes(cmp), tt.finding)
			}
			if tt.result == certsyncv1.ComparisonResult_COMPARISON_RESULT_MISMATCH && (!cmp.GetSameSubjectAndIssuer() || !cmp.GetPublicKeyDiffers()) {
				t.Errorf("mismatch: same subject and issuer %v, key differs %v", cmp.GetSameSubjectAndIssuer(), cmp.GetPublicKeyDiffers())
			}
			if cmp.GetEtag() == "" || cmp.GetMappingId() == "" {
				t.Errorf("etag %q mapping %q", cmp.GetEtag(), cmp.GetMappingId())
			}
			// Every reported fingerprint is the hash of the DER reported with it.
			summaries := []*certsyncv1.CertificateSummary{cmp.GetSource()}
			for _, tg := range cmp.GetTargets() {
				summaries = append(summaries, tg.GetCertificate())
			}
			for _, s := range summaries {
				s1, s256 := sha1.Sum(s.GetDer()), sha256.Sum256(s.GetDer())
				if s.GetSha1Fingerprint() != fingerprint(s1[:]) || s.GetSha256Fingerprint() != fingerprint(s256[:]) {
					t.Errorf("%s: fingerprints do not match the DER", s.GetSubject())
				}
			}
			// The sandbox's own view agrees with the comparison.
			state := sb.State().Connections[tt.conn]
			if cmp.GetSource().GetSha256Fingerprint() != state.IPSActiveSHA256 {
				t.Errorf("source %s, sandbox's IPS active %s", cmp.GetSource().GetSha256Fingerprint(), state.IPSActiveSHA256)
			}

			pr, err := h.client.ProbeScimAuth(ctx(t), &certsyncv1.ProbeScimAuthRequest{Name: tt.conn})
			must(t, err)
			if pr.GetOutcome() != tt.outcome || pr.GetHttpStatus() != tt.status || pr.GetErrorCode() != tt.code {
				t.Errorf("probe = %v %d %q (%s), want %v %d %q", pr.GetOutcome(), pr.GetHttpStatus(), pr.GetErrorCode(), pr.GetErrorMessage(), tt.outcome, tt.status, tt.code)
			}
			if pr.GetClientCertificateSha256() != cmp.GetSource().GetSha256Fingerprint() {
				t.Errorf("the probe presented %s, not IPS's active certificate", pr.GetClientCertificateSha256())
			}
			if !strings.Contains(pr.GetRequestUrl(), "/rest/iam/scim/v2/Users?startId=initial&count=1&filter=") || pr.GetLatency().AsDuration() <= 0 {
				t.Errorf("probe request %s latency %v", pr.GetRequestUrl(), pr.GetLatency().AsDuration())
			}
		})
	}
}

func TestFaultsAnswerWithinTimeouts(t *testing.T) {
	const probeTimeout = time.Second
	h, sb := sandboxHarness(t, inventory.Options{ProbeTimeout: probeTimeout, RegistryTimeout: time.Second})
	const conn = "demo-healthy"
	probe := func() *certsyncv1.ProbeScimAuthResponse {
		t.Helper()
		start := time.Now()
		pr, err := h.client.ProbeScimAuth(ctx(t), &certsyncv1.ProbeScimAuthRequest{Name: conn})
		must(t, err)
		if el := time.Since(start); el > 3*probeTimeout {
			t.Errorf("probe took %s with a %s timeout", el, probeTimeout)
		}
		return pr
	}
	inject := func(f sandbox.Fault) {
		t.Helper()
		f.Connection = conn
		must(t, sb.InjectFault(f))
	}
	unreachable := certsyncv1.ProbeOutcome_PROBE_OUTCOME_UNREACHABLE

	inject(sandbox.Fault{Operation: "scim", Delay: 5 * time.Second})
	if pr := probe(); pr.GetOutcome() != unreachable || !strings.Contains(pr.GetErrorMessage(), "no answer from SF within 1s") {
		t.Errorf("delay: %v %s", pr.GetOutcome(), pr.GetErrorMessage())
	}
	inject(sandbox.Fault{Operation: "scim", Status: 503})
	if pr := probe(); pr.GetOutcome() != unreachable || pr.GetHttpStatus() != 503 {
		t.Errorf("503: %v %d", pr.GetOutcome(), pr.GetHttpStatus())
	}
	// Go's HTTP client repeats a GET once when a reused connection breaks
	// before any answer, so two resets make the probe fail.
	inject(sandbox.Fault{Operation: "scim", Reset: true, Times: 2})
	if pr := probe(); pr.GetOutcome() != unreachable || pr.GetHttpStatus() != 0 {
		t.Errorf("reset: %v %d %s", pr.GetOutcome(), pr.GetHttpStatus(), pr.GetErrorMessage())
	}
	if pr := probe(); pr.GetOutcome() != certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED {
		t.Errorf("after the faults: %v %s", pr.GetOutcome(), pr.GetErrorMessage())
	}

	// The registry: one 503 is retried away; a lasting one is UNAVAILABLE
	// naming the step, with a retry hint.
	before := sb.State().Connections[conn].Counters.List
	inject(sandbox.Fault{Operation: "list", Status: 503})
	if _, err := h.client.CompareFingerprints(ctx(t), &certsyncv1.CompareFingerprintsRequest{Name: conn}); err != nil {
		t.Errorf("one 503 was not retried: %v", err)
	}
	if got := sb.State().Connections[conn].Counters.List - before; got != 2 {
		t.Errorf("list calls = %d, want 2", got)
	}
	for _, f := range []sandbox.Fault{{Operation: "list", Status: 503, Times: 3}, {Operation: "list", Delay: 5 * time.Second, Times: 3}, {Operation: "list", Reset: true, Times: 6}} {
		inject(f)
		start := time.Now()
		_, err := h.client.CompareFingerprints(ctx(t), &certsyncv1.CompareFingerprintsRequest{Name: conn})
		st := status.Convert(err)
		var step string
		var retry bool
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				step = d.GetMetadata()["step"]
			case *errdetails.RetryInfo:
				retry = d.GetRetryDelay().AsDuration() > 0
			}
		}
		if st.Code() != codes.Unavailable || step != "list" || !retry {
			t.Errorf("%+v: %v step=%q retry=%v: %s", f, st.Code(), step, retry, st.Message())
		}
		if el := time.Since(start); el > 8*time.Second {
			t.Errorf("%+v: compare took %s", f, el)
		}
		sb.ClearFaults()
	}
	// The server goes on serving.
	if _, err := h.client.CompareFingerprints(ctx(t), &certsyncv1.CompareFingerprintsRequest{Name: conn}); err != nil {
		t.Errorf("after the faults: %v", err)
	}
}
