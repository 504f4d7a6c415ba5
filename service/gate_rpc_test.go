package service_test

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/sandbox"
)

// gateClock is the gate's clock in these tests: evidence ages only when a
// test says so, so that budget and cache behave the same on a slow machine.
type gateClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *gateClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *gateClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// gateHarness serves the sandbox's demo connections with a gate, through
// the full interceptor chain over bufconn, and maps each connection's
// verdict onto its health status as certsyncd does.
type gateHarness struct {
	client certsyncv1.CertSyncServiceClient
	health healthpb.HealthClient
	sb     *sandbox.Sandbox
	gate   *gate.Gate
	clock  *gateClock
}

// healthStatus is DESIGN.md's mapping of a decision onto grpc.health.v1.
func healthStatus(d gate.Decision) healthpb.HealthCheckResponse_ServingStatus {
	switch d {
	case gate.Allow:
		return healthpb.HealthCheckResponse_SERVING
	case gate.Deny:
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return healthpb.HealthCheckResponse_UNKNOWN
}

// newGateHarness builds the harness. o.Now nil means the harness's fake
// clock; pass time.Now for the background refresh.
func newGateHarness(tb testing.TB, invOpts inventory.Options, o gate.Options) *gateHarness {
	tb.Helper()
	check := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	check(err)
	check(sb.Start())
	tb.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(tb.TempDir())
	check(err)
	cfg := &config.Config{Connections: conns}
	cfg.ApplyDefaults()
	problems := cfg.Validate()
	if errs := problems.Errors(); len(errs) > 0 {
		tb.Fatalf("sandbox configuration invalid: %v", errs)
	}
	if invOpts.ProbeTimeout == 0 {
		invOpts.ProbeTimeout = 5 * time.Second
	}
	inv, err := inventory.Build(cfg.Connections, problems, invOpts)
	check(err)
	tb.Cleanup(inv.Close)

	h := &gateHarness{sb: sb, clock: &gateClock{t: time.Now()}}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	// Until a connection has a verdict, its health is UNKNOWN.
	for _, c := range inv.All() {
		hs.SetServingStatus(c.Name(), healthpb.HealthCheckResponse_UNKNOWN)
	}
	o.Inventory = inv
	if o.Now == nil {
		o.Now = h.clock.Now
	}
	o.OnVerdict = func(id string, d gate.Decision) { hs.SetServingStatus("connections/"+id, healthStatus(d)) }
	h.gate = gate.New(o)
	tb.Cleanup(h.gate.Close)

	srv := service.New(service.Options{Inventory: inv, Gate: h.gate})
	g := srv.NewGRPCServer(service.GRPCOptions{MaxMessageBytes: config.DefaultMaxMessageBytes, Health: hs})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	check(err)
	tb.Cleanup(func() {
		conn.Close()
		g.Stop()
	})
	h.client = certsyncv1.NewCertSyncServiceClient(conn)
	h.health = healthpb.NewHealthClient(conn)
	return h
}

func (h *gateHarness) check(t *testing.T, conn string, maxAge *durationpb.Duration) *certsyncv1.CheckGateResponse {
	t.Helper()
	r, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "connections/" + conn, MaxEvidenceAge: maxAge, JobId: "job-" + conn})
	must(t, err)
	return r
}

func (h *gateHarness) counters(conn string) sandbox.Counters {
	return h.sb.State().Connections[conn].Counters
}

func (h *gateHarness) healthOf(t *testing.T, conn string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	r, err := h.health.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "connections/" + conn})
	must(t, err)
	return r.GetStatus()
}

func gateActions(r interface {
	GetRemediation() []*certsyncv1.RemediationStep
}) []string {
	var out []string
	for _, s := range r.GetRemediation() {
		out = append(out, s.GetAction().String())
	}
	return out
}

func gateCondition(conds []*certsyncv1.Condition, typ string) *certsyncv1.Condition {
	for _, c := range conds {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

// blocking returns the reasons of the conditions that decide: errors, and
// unknowns that keep the gate from allowing.
func gateReasons(conds []*certsyncv1.Condition) string {
	var out []string
	for _, c := range conds {
		if c.GetSeverity() >= certsyncv1.Severity_SEVERITY_WARNING {
			out = append(out, c.GetType()+"="+c.GetReason())
		}
	}
	return strings.Join(out, ",")
}

func TestCheckGateOnEveryDemoConnection(t *testing.T) {
	h := newGateHarness(t, inventory.Options{}, gate.Options{})
	const (
		allow = certsyncv1.GateDecision_GATE_DECISION_ALLOW
		deny  = certsyncv1.GateDecision_GATE_DECISION_DENY
	)
	tests := []struct {
		conn     string
		decision certsyncv1.GateDecision
		// first is the first remediation action ("" for none).
		first string
		// has is an action the remediation must contain.
		has string
		// warning is a condition type that must be a warning.
		warning, warningReason string
	}{
		{conn: "demo-healthy", decision: allow},
		{conn: "demo-desync", decision: deny, first: "REMEDIATION_ACTION_REREGISTER", has: "REMEDIATION_ACTION_ESCALATE"},
		{conn: "demo-mismatch", decision: deny, first: "REMEDIATION_ACTION_UPLOAD_ACTIVE_CERTIFICATE"},
		{conn: "demo-company-id", decision: deny, first: "REMEDIATION_ACTION_REREGISTER", has: "REMEDIATION_ACTION_FIX_COMPANY_ID"},
		{conn: "demo-stuck", decision: deny, first: "REMEDIATION_ACTION_REREGISTER", has: "REMEDIATION_ACTION_ESCALATE"},
		{conn: "demo-permission", decision: deny, first: "REMEDIATION_ACTION_FIX_MAPPING_FIELDS"},
		{conn: "demo-wrong-host", decision: deny, first: "REMEDIATION_ACTION_FIX_URL"},
		{conn: "demo-expiring", decision: allow, warning: "SourceCertificateExpiry", warningReason: "ExpiresWithin14Days"},
	}
	for _, tt := range tests {
		t.Run(tt.conn, func(t *testing.T) {
			r := h.check(t, tt.conn, nil)
			acts := gateActions(r)
			if r.GetDecision() != tt.decision {
				t.Fatalf("decision = %v, want %v: %s [%s]", r.GetDecision(), tt.decision, r.GetSummary(), gateReasons(r.GetConditions()))
			}
			if tt.first != "" && (len(acts) == 0 || acts[0] != tt.first) {
				t.Errorf("remediation = %v, want %s first", acts, tt.first)
			}
			if tt.has != "" && !strings.Contains(strings.Join(acts, " "), tt.has) {
				t.Errorf("remediation = %v lacks %s", acts, tt.has)
			}
			if tt.decision == allow && len(acts) > 0 {
				t.Errorf("ALLOW with remediation %v", acts)
			}
			if tt.warning != "" {
				c := gateCondition(r.GetConditions(), tt.warning)
				if c.GetSeverity() != certsyncv1.Severity_SEVERITY_WARNING || c.GetReason() != tt.warningReason {
					t.Errorf("%s = %v %s, want a warning %s", tt.warning, c.GetSeverity(), c.GetReason(), tt.warningReason)
				}
			}
			if r.GetConnection() != "connections/"+tt.conn || r.GetCheckedAt() == nil || r.GetEvidenceAge() == nil || r.GetSummary() == "" {
				t.Errorf("incomplete answer: %v", r)
			}
			if r.GetRetryAfter() != nil {
				t.Errorf("retry_after %v on a settled answer", r.GetRetryAfter().AsDuration())
			}
			for i, c := range r.GetConditions() {
				if c.GetReason() == "" || c.GetObservedTime() == nil || c.GetSource() == certsyncv1.EvidenceSource_EVIDENCE_SOURCE_UNSPECIFIED {
					t.Errorf("condition %s is incomplete: %v", c.GetType(), c)
				}
				if i > 0 && c.GetSeverity() > r.GetConditions()[i-1].GetSeverity() {
					t.Errorf("conditions are not ordered errors first: %s", gateReasons(r.GetConditions()))
				}
			}
			// The health status follows the verdict.
			want := healthpb.HealthCheckResponse_SERVING
			if tt.decision == deny {
				want = healthpb.HealthCheckResponse_NOT_SERVING
			}
			if got := h.healthOf(t, tt.conn); got != want {
				t.Errorf("health = %v, want %v", got, want)
			}
		})
	}
}

func TestCheckGateRefusals(t *testing.T) {
	h := newGateHarness(t, inventory.Options{}, gate.Options{})
	_, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "connections/missing"})
	if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "CONNECTION_NOT_FOUND" {
		t.Errorf("unknown connection: %v %s", code, reason)
	}
	_, err = h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "demo-healthy", MaxEvidenceAge: durationpb.New(-time.Second)})
	if code, _, fields := errorInfo(t, err); code != codes.InvalidArgument || strings.Join(fields, ",") != "max_evidence_age" {
		t.Errorf("negative age: %v %v", code, fields)
	}
	stream, err := h.client.WatchGate(ctx(t), &certsyncv1.WatchGateRequest{Name: "connections/missing"})
	must(t, err)
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound {
		t.Errorf("watching an unknown connection: %v", err)
	}

	// Without a gate, both RPCs say so.
	plain := newHarness(t, "demo")
	_, err = plain.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "demo"})
	if code, reason, _ := errorInfo(t, err); code != codes.Unimplemented || reason != "GATE_DISABLED" {
		t.Errorf("no gate: %v %s", code, reason)
	}
	ws, err := plain.client.WatchGate(ctx(t), &certsyncv1.WatchGateRequest{Name: "demo"})
	must(t, err)
	if _, err := ws.Recv(); status.Code(err) != codes.Unimplemented {
		t.Errorf("no gate, watching: %v", err)
	}
}

func TestCheckGateWhenSFIsUnreachable(t *testing.T) {
	h := newGateHarness(t, inventory.Options{ProbeTimeout: time.Second}, gate.Options{})
	const conn = "demo-healthy"
	inconclusive := certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE
	for _, f := range []sandbox.Fault{
		{Operation: "scim", Status: 503},
		{Operation: "scim", Delay: 5 * time.Second},
	} {
		f.Connection = conn
		must(t, h.sb.InjectFault(f))
		h.clock.Advance(2 * time.Second) // past the budget
		before := h.counters(conn).SCIM
		r := h.check(t, conn, nil)
		if r.GetDecision() != inconclusive || r.GetRetryAfter().AsDuration() <= 0 {
			t.Fatalf("%+v: %v retry %v: %s", f, r.GetDecision(), r.GetRetryAfter().AsDuration(), r.GetSummary())
		}
		if c := gateCondition(r.GetConditions(), "ScimAuthentication"); c.GetStatus() != certsyncv1.ConditionStatus_CONDITION_STATUS_UNKNOWN || c.GetReason() != "Unreachable" {
			t.Errorf("%+v: ScimAuthentication = %v %s", f, c.GetStatus(), c.GetReason())
		}
		if a := gateActions(r); len(a) != 1 || a[0] != "REMEDIATION_ACTION_RETRY_LATER" {
			t.Errorf("%+v: remediation %v", f, a)
		}
		if got := h.healthOf(t, conn); got != healthpb.HealthCheckResponse_UNKNOWN {
			t.Errorf("%+v: health %v", f, got)
		}
		// Within the budget the failure explains the answer: the fault is
		// gone, but the gate neither probes again nor turns it into ALLOW.
		h.clock.Advance(100 * time.Millisecond)
		if r := h.check(t, conn, nil); r.GetDecision() != inconclusive || r.GetRetryAfter().AsDuration() <= 0 {
			t.Errorf("%+v: within the budget: %v", f, r.GetDecision())
		}
		if got := h.counters(conn).SCIM - before; got != 1 {
			t.Errorf("%+v: %d SCIM calls, want 1", f, got)
		}
	}
	// Past the budget the next caller probes again: the failure was not
	// cached as an answer.
	h.clock.Advance(2 * time.Second)
	if r := h.check(t, conn, nil); r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Fatalf("after the faults: %v %s", r.GetDecision(), r.GetSummary())
	}
	if got := h.healthOf(t, conn); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the faults: %v", got)
	}
}

func TestCheckGateCoalescesConcurrentCalls(t *testing.T) {
	h := newGateHarness(t, inventory.Options{}, gate.Options{})
	const conn, n = "demo-desync", 200
	before := h.counters(conn)
	answers := make(chan *certsyncv1.CheckGateResponse, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: conn})
			if err != nil {
				errs <- err
				return
			}
			answers <- r
		}()
	}
	wg.Wait()
	close(answers)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := h.counters(conn)
	if scim, list := after.SCIM-before.SCIM, after.List-before.List; scim != 1 || list != 1 {
		t.Fatalf("%d concurrent calls made %d SCIM requests and %d registry reads, want 1 and 1", n, scim, list)
	}
	var first *certsyncv1.CheckGateResponse
	for r := range answers {
		if first == nil {
			first = r
		}
		if !r.GetCheckedAt().AsTime().Equal(first.GetCheckedAt().AsTime()) || r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_DENY {
			t.Fatalf("answers differ: %v at %v, %v at %v", r.GetDecision(), r.GetCheckedAt().AsTime(), first.GetDecision(), first.GetCheckedAt().AsTime())
		}
	}
}

func TestCheckGateBudgetAndInvalidate(t *testing.T) {
	h := newGateHarness(t, inventory.Options{}, gate.Options{})
	const conn = "demo-healthy"
	before := h.counters(conn).SCIM
	first := h.check(t, conn, durationpb.New(0))
	if first.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Fatalf("first: %v", first.GetDecision())
	}
	// A second caller who accepts no old evidence, within the budget.
	h.clock.Advance(100 * time.Millisecond)
	r := h.check(t, conn, durationpb.New(0))
	c := gateCondition(r.GetConditions(), "EvidenceFresh")
	if r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE || c.GetReason() != "EvidenceStale" ||
		r.GetRetryAfter().AsDuration() != 900*time.Millisecond {
		t.Fatalf("over budget: %v %s retry %v", r.GetDecision(), c.GetReason(), r.GetRetryAfter().AsDuration())
	}
	if r.GetEvidenceAge().AsDuration() != 100*time.Millisecond {
		t.Errorf("evidence_age = %v", r.GetEvidenceAge().AsDuration())
	}
	// The default age accepts the evidence; nothing is probed.
	if r := h.check(t, conn, nil); r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW || !r.GetCheckedAt().AsTime().Equal(first.GetCheckedAt().AsTime()) {
		t.Fatalf("cached: %v", r.GetDecision())
	}
	if got := h.counters(conn).SCIM - before; got != 1 {
		t.Fatalf("%d SCIM requests, want 1", got)
	}

	// Invalidate drops the evidence: within the budget nothing replaces it.
	h.gate.Invalidate(conn)
	if r := h.check(t, conn, nil); r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE {
		t.Fatalf("after Invalidate: %v", r.GetDecision())
	}
	if got := h.healthOf(t, conn); got != healthpb.HealthCheckResponse_UNKNOWN {
		t.Errorf("health after Invalidate: %v", got)
	}
	// Past the budget it gathers again, once.
	h.clock.Advance(2 * time.Second)
	h.gate.Invalidate(conn)
	if r := h.check(t, conn, nil); r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW || r.GetCheckedAt().AsTime().Equal(first.GetCheckedAt().AsTime()) {
		t.Fatalf("after Invalidate past the budget: %v at %v", r.GetDecision(), r.GetCheckedAt().AsTime())
	}
	if got := h.counters(conn).SCIM - before; got != 2 {
		t.Fatalf("%d SCIM requests, want 2", got)
	}
}

func TestWatchGate(t *testing.T) {
	h := newGateHarness(t, inventory.Options{ProbeTimeout: time.Second}, gate.Options{})
	const conn = "demo-healthy"
	sctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	stream, err := h.client.WatchGate(sctx, &certsyncv1.WatchGateRequest{Name: conn, View: certsyncv1.GateView_GATE_VIEW_FULL})
	must(t, err)
	recv := func() *certsyncv1.WatchGateResponse {
		t.Helper()
		r, err := stream.Recv()
		must(t, err)
		return r
	}
	r := recv()
	if r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW || r.GetConnection() != "connections/"+conn || len(r.GetConditions()) == 0 {
		t.Fatalf("current: %v %s", r.GetDecision(), r.GetSummary())
	}
	// Evidence gathered again with the same result: timestamps only, no
	// message. The next message must be the change that follows.
	h.clock.Advance(2 * time.Second)
	if _, err := h.gate.Refresh(ctx(t), conn); err != nil {
		t.Fatal(err)
	}
	must(t, h.sb.InjectFault(sandbox.Fault{Connection: conn, Operation: "scim", Status: 503}))
	h.clock.Advance(2 * time.Second)
	if _, err := h.gate.Refresh(ctx(t), conn); err != nil {
		t.Fatal(err)
	}
	r = recv()
	if r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE || r.GetRetryAfter() == nil {
		t.Fatalf("after the fault: %v (a timestamp-only change was sent?) %s", r.GetDecision(), r.GetSummary())
	}
	h.clock.Advance(2 * time.Second)
	if _, err := h.gate.Refresh(ctx(t), conn); err != nil {
		t.Fatal(err)
	}
	if r = recv(); r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Fatalf("after the fault cleared: %v", r.GetDecision())
	}
	// The client leaves; the server's handler ends (goleak checks that).
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled && !errors.Is(err, io.EOF) {
		t.Errorf("after cancel: %v", err)
	}
}

func TestGateViews(t *testing.T) {
	h := newGateHarness(t, inventory.Options{ProbeTimeout: time.Second}, gate.Options{})
	count := func(conn string, v certsyncv1.GateView) (int, []string) {
		t.Helper()
		r, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: conn, View: v})
		must(t, err)
		var reasons []string
		for _, c := range r.GetConditions() {
			reasons = append(reasons, c.GetReason())
		}
		return len(r.GetConditions()), reasons
	}
	// A plain ALLOW: the basic view carries no conditions, the full one all.
	if n, rs := count("demo-healthy", certsyncv1.GateView_GATE_VIEW_UNSPECIFIED); n != 0 {
		t.Errorf("basic view of an ALLOW has conditions %v", rs)
	}
	if n, _ := count("demo-healthy", certsyncv1.GateView_GATE_VIEW_FULL); n < 5 {
		t.Errorf("full view of an ALLOW has %d conditions", n)
	}
	// Warnings and errors are in every view.
	if _, rs := count("demo-expiring", certsyncv1.GateView_GATE_VIEW_BASIC); len(rs) == 0 {
		t.Error("basic view of demo-expiring lacks its warning")
	}
	if _, rs := count("demo-desync", certsyncv1.GateView_GATE_VIEW_BASIC); len(rs) == 0 || rs[0] != "InvalidClientCertificate" {
		t.Errorf("basic view of demo-desync: %v", rs)
	}
}

func TestGateBackgroundRefresh(t *testing.T) {
	h := newGateHarness(t, inventory.Options{}, gate.Options{Now: time.Now, RefreshInterval: 50 * time.Millisecond, ProbeInterval: 10 * time.Millisecond})
	runCtx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- h.gate.Run(runCtx) }()
	running := true
	defer func() {
		if running {
			stop()
			<-stopped
		}
	}()
	// Without any CheckGate, health follows the refreshed verdicts.
	deadline := time.Now().Add(20 * time.Second)
	for h.counters("demo-healthy").SCIM < 3 || h.healthOf(t, "demo-healthy") != healthpb.HealthCheckResponse_SERVING ||
		h.healthOf(t, "demo-desync") != healthpb.HealthCheckResponse_NOT_SERVING {
		if time.Now().After(deadline) {
			t.Fatalf("no refresh: %d SCIM requests, health %v / %v", h.counters("demo-healthy").SCIM,
				h.healthOf(t, "demo-healthy"), h.healthOf(t, "demo-desync"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	running = false
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v", err)
	}
	// With the refresh stopped, health checks never probe.
	before := h.counters("demo-healthy").SCIM
	for range 20 {
		h.healthOf(t, "demo-healthy")
	}
	if got := h.counters("demo-healthy").SCIM; got != before {
		t.Errorf("health checks made %d SCIM requests", got-before)
	}
	if v, ok := h.gate.Latest("demo-healthy"); !ok || v.Decision != gate.Allow {
		t.Errorf("Latest = %v %v", v.Decision, ok)
	}
}

// BenchmarkCachedCheckGateVsHealth compares a cached CheckGate with a
// grpc.health.v1 check, both through the full interceptor chain over
// bufconn, in one run: the gate's answer from cache should cost the same
// order as a health check, since schedulers call it before every job.
func BenchmarkCachedCheckGateVsHealth(b *testing.B) {
	h := newGateHarness(b, inventory.Options{}, gate.Options{})
	const conn = "demo-healthy"
	bctx := context.Background()
	// An hour's max age and a frozen clock: every call below is a cache
	// hit, which is what this measures.
	req := &certsyncv1.CheckGateRequest{Name: "connections/" + conn, MaxEvidenceAge: durationpb.New(time.Hour)}
	warm, err := h.client.CheckGate(bctx, req)
	if err != nil || warm.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		b.Fatalf("warming the cache: %v %v", warm.GetDecision(), err)
	}
	scimBefore := h.counters(conn).SCIM
	// SetParallelism multiplies GOMAXPROCS; this gives about 50 goroutines.
	parallelism := max(1, (50+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
	var gateNs, healthNs float64
	b.Run("CheckGate", func(b *testing.B) {
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := h.client.CheckGate(bctx, req)
				if err != nil || r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
					b.Errorf("CheckGate: %v %v", r.GetDecision(), err)
					return
				}
			}
		})
		gateNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	hreq := &healthpb.HealthCheckRequest{Service: "connections/" + conn}
	b.Run("Health", func(b *testing.B) {
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := h.health.Check(bctx, hreq)
				if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					b.Errorf("Health: %v %v", r.GetStatus(), err)
					return
				}
			}
		})
		healthNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if gateNs > 0 {
			b.ReportMetric(gateNs/healthNs, "checkgate/health")
		}
	})
	if gateNs > 0 && healthNs > 0 {
		b.Logf("%d goroutines: cached CheckGate %.0f ns/op, Health/Check %.0f ns/op, ratio %.2f",
			parallelism*runtime.GOMAXPROCS(0), gateNs, healthNs, gateNs/healthNs)
	}
	if got := h.counters(conn).SCIM - scimBefore; got != 0 {
		b.Errorf("the cached benchmark probed SF %d times", got)
	}
}
