package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/config"
)

// TestAutomaticRemediation turns automatic remediation on for demo-desync
// (the seed's pattern, which re-registration fixes) and demo-stuck (where it
// does not help): the background refresh re-registers demo-desync on its
// own, under the service's identity and audited; demo-stuck is tried once,
// and never again after that did not help; demo-company-id, without opt-in,
// is left alone.
func TestAutomaticRemediation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a sandbox process")
	}
	dir := t.TempDir()
	sbPath := filepath.Join(dir, "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", sbPath)
	waitFile(t, sbPath, 30*time.Second)
	cfg, err := config.Load(sbPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Connections {
		switch cfg.Connections[i].ID {
		case "demo-desync", "demo-stuck":
			cfg.Connections[i].AutoRemediation = config.AutoRemediation{Enabled: true, MaxPerDay: 3}
		}
	}
	data, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "certsync.yaml")
	writePEM(t, cfgPath, data)
	s := startServeProcess(t, binary(t), nil, "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
		"--refresh-interval", "1s", "--settle-window", "2s")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opsOf := func(conn string) []*certsyncv1.Operation {
		r, err := s.client.ListOperations(ctx, &certsyncv1.ListOperationsRequest{Connection: conn})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetOperations()
	}
	// demo-desync: fixed on its own.
	for {
		if ops := opsOf("demo-desync"); len(ops) > 0 && ops[0].GetDone() {
			op := ops[0]
			if !op.GetAutomatic() || op.GetRequestedBy() != "certsync" || op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED {
				t.Fatalf("demo-desync: %v automatic=%v by %q", op.GetState(), op.GetAutomatic(), op.GetRequestedBy())
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("demo-desync was not remediated")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The operation's end drops the evidence; ask as a scheduler would,
	// again after retry_after while the answer is INCONCLUSIVE.
	for {
		g, err := s.client.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: "demo-desync"})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE || ctx.Err() != nil {
			if g.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
				t.Errorf("gate after automatic remediation: %v %s", g.GetDecision(), g.GetSummary())
			}
			// The verdict says what certsync did by itself (a warning:
			// SF had drifted), even in the default view.
			if !hasCondition(g.GetConditions(), "AutomaticRemediation", "AutomaticallyReregistered") {
				t.Errorf("the verdict does not show the automatic re-registration: %v", g.GetConditions())
			}
			break
		}
		time.Sleep(max(g.GetRetryAfter().AsDuration(), 100*time.Millisecond))
	}
	// demo-stuck: one attempt that fails, then no more, whatever the budget.
	for {
		if ops := opsOf("demo-stuck"); len(ops) > 0 && ops[0].GetDone() {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("demo-stuck was never tried")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // several more refreshes
	if ops := opsOf("demo-stuck"); len(ops) != 1 || ops[0].GetState() != certsyncv1.OperationState_OPERATION_STATE_FAILED {
		t.Errorf("demo-stuck: %d operations, latest %v", len(ops), ops[0].GetState())
	}
	if g, err := s.client.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: "demo-stuck"}); err != nil ||
		!hasCondition(g.GetConditions(), "AutomaticRemediation", "AutomaticRemediationFailed") {
		t.Errorf("demo-stuck's verdict does not say that its automatic re-registration did not help: %v %v", g.GetConditions(), err)
	}
	if ops := opsOf("demo-company-id"); len(ops) != 0 {
		t.Errorf("demo-company-id was touched without opt-in: %d operations", len(ops))
	}
	events, err := s.client.ListAuditEvents(ctx, &certsyncv1.ListAuditEventsRequest{Connection: "demo-desync"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.GetEvents() {
		if e.GetIdentity() == "certsync" && e.GetRpc() == "automatic-remediation" && e.GetOperation() != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit event for the automatic remediation: %v", events.GetEvents())
	}
}

func hasCondition(cs []*certsyncv1.Condition, typ, reason string) bool {
	for _, c := range cs {
		if c.GetType() == typ && c.GetReason() == reason {
			return true
		}
	}
	return false
}
