// Package metrics exposes certsync's Prometheus metrics: the gRPC server's,
// from go-grpc-middleware's provider, and the domain's: certificate expiry
// per connection and side, fingerprint agreement, probe outcomes and
// latency, gate decisions, re-registrations, and when each connection was
// last checked successfully or not.
package metrics

import (
	"net/http"
	"runtime"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector, registered in a registry of its own so that
// tests can build as many as they like.
type Metrics struct {
	reg  *prometheus.Registry
	GRPC *grpcprom.ServerMetrics

	notAfter        *prometheus.GaugeVec
	fingerprints    *prometheus.GaugeVec
	probes          *prometheus.CounterVec
	probeLatency    *prometheus.HistogramVec
	gateDecisions   *prometheus.CounterVec
	gateDecision    *prometheus.GaugeVec
	reregistrations *prometheus.CounterVec
	lastSuccess     *prometheus.GaugeVec
	lastFailure     *prometheus.GaugeVec
	manualAwaiting  *prometheus.GaugeVec
}

// Decisions in the order of the gate_decision gauge's values.
var decisions = []string{"ALLOW", "DENY", "INCONCLUSIVE"}

// New registers every collector.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		GRPC: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}))),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certsync_certificate_not_after_timestamp_seconds",
			Help: "When a certificate expires, per connection and side (ips: IPS's active certificate; sf: the certificate SF maps; probe: the probe's own).",
		}, []string{"connection", "side"}),
		fingerprints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certsync_fingerprints_match",
			Help: "1 when SF maps exactly IPS's active certificate, 0 when it does not, per connection (absent until compared).",
		}, []string{"connection"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certsync_probes_total",
			Help: "SCIM probes by outcome.",
		}, []string{"connection", "outcome"}),
		probeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "certsync_probe_duration_seconds",
			Help:    "How long SCIM probes took.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"connection"}),
		gateDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certsync_gate_decisions_total",
			Help: "Gate answers by decision.",
		}, []string{"connection", "decision"}),
		gateDecision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certsync_gate_decision",
			Help: "1 for the connection's current gate decision, 0 for the others.",
		}, []string{"connection", "decision"}),
		reregistrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certsync_reregistrations_total",
			Help: "Finished re-registrations by result (SUCCEEDED, FAILED, ROLLED_BACK, CANCELLED).",
		}, []string{"connection", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certsync_last_successful_check_timestamp_seconds",
			Help: "When the connection's evidence last showed a working certificate (probe authenticated).",
		}, []string{"connection"}),
		lastFailure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certsync_last_failed_check_timestamp_seconds",
			Help: "When the connection's evidence last showed a failure or could not be gathered.",
		}, []string{"connection"}),
		manualAwaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certsync_manual_step_awaiting",
			Help: "1 while a step of a manual re-registration waits for a person (DELETE_MAPPING, UPLOAD_CERTIFICATE), 0 otherwise.",
		}, []string{"connection", "step"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "certsync_build_info",
		Help: "Always 1; the labels say which build runs.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.GRPC, m.notAfter, m.fingerprints, m.probes, m.probeLatency, m.gateDecisions, m.gateDecision,
		m.reregistrations, m.lastSuccess, m.lastFailure, m.manualAwaiting, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the registry, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CertificateExpiry records when a connection's certificate on one side
// expires ("ips", "sf", "probe").
func (m *Metrics) CertificateExpiry(conn, side string, notAfter time.Time) {
	m.notAfter.WithLabelValues(conn, side).Set(float64(notAfter.Unix()))
}

// FingerprintsMatch records a comparison's outcome.
func (m *Metrics) FingerprintsMatch(conn string, match bool) {
	v := 0.0
	if match {
		v = 1
	}
	m.fingerprints.WithLabelValues(conn).Set(v)
}

// Probe records one probe.
func (m *Metrics) Probe(conn, outcome string, latency time.Duration, at time.Time) {
	m.probes.WithLabelValues(conn, outcome).Inc()
	m.probeLatency.WithLabelValues(conn).Observe(latency.Seconds())
	if outcome == "AUTHENTICATED" {
		m.lastSuccess.WithLabelValues(conn).Set(float64(at.Unix()))
	} else {
		m.lastFailure.WithLabelValues(conn).Set(float64(at.Unix()))
	}
}

// GateAnswer counts one gate answer.
func (m *Metrics) GateAnswer(conn, decision string) {
	m.gateDecisions.WithLabelValues(conn, decision).Inc()
}

// GateDecision records a connection's current decision.
func (m *Metrics) GateDecision(conn, decision string) {
	for _, d := range decisions {
		v := 0.0
		if d == decision {
			v = 1
		}
		m.gateDecision.WithLabelValues(conn, d).Set(v)
	}
}

// ManualStep says whether a manual re-registration's step waits for a
// person: an upload waiting means SF has no mapping for IPS.
func (m *Metrics) ManualStep(conn, step string, awaiting bool) {
	v := 0.0
	if awaiting {
		v = 1
	}
	m.manualAwaiting.WithLabelValues(conn, step).Set(v)
}

// Reregistration counts one finished re-registration.
func (m *Metrics) Reregistration(conn, result string) {
	m.reregistrations.WithLabelValues(conn, result).Inc()
}
