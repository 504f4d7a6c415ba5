package metrics

import (
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return string(b)
}

func TestDomainMetrics(t *testing.T) {
	m := New("v1.2.3")
	at := time.Unix(1_800_000_000, 0)
	m.CertificateExpiry("demo", "ips", at)
	m.FingerprintsMatch("demo", true)
	m.Probe("demo", "AUTHENTICATED", 20*time.Millisecond, at)
	m.Probe("demo", "INVALID_CLIENT_CERTIFICATE", 30*time.Millisecond, at.Add(time.Minute))
	m.GateAnswer("demo", "DENY")
	m.GateDecision("demo", "DENY")
	m.Reregistration("demo", "SUCCEEDED")
	m.ManualStep("demo", "DELETE_MAPPING", true)
	m.ManualStep("demo", "DELETE_MAPPING", false)
	m.ManualStep("demo", "UPLOAD_CERTIFICATE", true)
	out := scrape(t, m)
	for _, want := range []string{
		`certsync_certificate_not_after_timestamp_seconds{connection="demo",side="ips"} 1.8e+09`,
		`certsync_fingerprints_match{connection="demo"} 1`,
		`certsync_probes_total{connection="demo",outcome="AUTHENTICATED"} 1`,
		`certsync_probes_total{connection="demo",outcome="INVALID_CLIENT_CERTIFICATE"} 1`,
		`certsync_probe_duration_seconds_count{connection="demo"} 2`,
		`certsync_gate_decisions_total{connection="demo",decision="DENY"} 1`,
		`certsync_gate_decision{connection="demo",decision="DENY"} 1`,
		`certsync_gate_decision{connection="demo",decision="ALLOW"} 0`,
		`certsync_reregistrations_total{connection="demo",result="SUCCEEDED"} 1`,
		`certsync_last_successful_check_timestamp_seconds{connection="demo"} 1.8e+09`,
		`certsync_last_failed_check_timestamp_seconds{connection="demo"} 1.80000006e+09`,
		`certsync_manual_step_awaiting{connection="demo",step="DELETE_MAPPING"} 0`,
		`certsync_manual_step_awaiting{connection="demo",step="UPLOAD_CERTIFICATE"} 1`,
		`certsync_build_info{goversion="go`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAlertRulesUseRealMetrics keeps deploy/prometheus-rules.yaml in step
// with the metrics this package defines.
func TestAlertRulesUseRealMetrics(t *testing.T) {
	data, err := os.ReadFile("../../deploy/prometheus-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	m := New("test")
	m.CertificateExpiry("c", "ips", time.Now())
	m.FingerprintsMatch("c", true)
	m.Probe("c", "AUTHENTICATED", time.Millisecond, time.Now())
	m.Probe("c", "UNREACHABLE", time.Millisecond, time.Now())
	m.GateDecision("c", "ALLOW")
	m.ManualStep("c", "UPLOAD_CERTIFICATE", false)
	exposed := scrape(t, m)
	name := regexp.MustCompile(`certsync_[a-z_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, metric := range name.FindAllString(r.Expr, -1) {
				if !strings.Contains(exposed, "\n"+metric+"{") {
					t.Errorf("alert %s uses %s, which certsync does not expose", r.Alert, metric)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules found")
	}
}
