package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/testutil"
)

// startReplica runs one certsyncd serve process on a shared PostgreSQL.
func startReplica(t *testing.T, cfgPath, storeURL string) *server {
	t.Helper()
	return startServeProcess(t, binary(t), nil, "--config", cfgPath, "--store", storeURL, "--lock-ttl", "3s", "--settle-window", "5s")
}

// TestTwoReplicasOnePostgres sends the same re-registration to two server
// processes sharing one PostgreSQL at once: exactly one runs it. Killing
// that one mid-upload lets the other finish it once the lease expires.
func TestTwoReplicasOnePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs separate processes")
	}
	storeURL := testutil.PostgresDatabase(t)
	cfgPath := filepath.Join(t.TempDir(), "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", cfgPath)
	waitFile(t, cfgPath, 30*time.Second)
	sb := newSandboxControl(t, cfgPath)
	const conn = "demo-mismatch"
	sb.fault(t, map[string]any{"connection": conn, "operation": "upload", "delay": "8s"})

	replicas := []*server{startReplica(t, cfgPath, storeURL), startReplica(t, cfgPath, storeURL)}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The same request to both at once, without a request id: one runs it,
	// the other is told which operation runs.
	type answer struct {
		op  *certsyncv1.Operation
		err error
	}
	answers := make([]answer, 2)
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := r.client.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: conn})
			answers[i] = answer{resp.GetOperation(), err}
		}()
	}
	wg.Wait()
	runner, other := -1, -1
	for i, a := range answers {
		switch {
		case a.err == nil && runner == -1:
			runner = i
		case status.Code(a.err) == codes.Aborted:
			other = i
		default:
			t.Fatalf("replica %d answered %v", i, a.err)
		}
	}
	if runner == -1 || other == -1 {
		t.Fatalf("want one operation and one ABORTED, got %+v", answers)
	}
	name := answers[runner].op.GetName()
	if st := status.Convert(answers[other].err); !containsAll(st.Message(), name) {
		t.Errorf("ABORTED does not name %s: %s", name, st.Message())
	}
	// The same request id on both gives the same operation.
	// (Checked on a second connection, which has no running operation.)
	a, err := replicas[0].client.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "demo-desync", RequestId: "same-on-both"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := replicas[1].client.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "demo-desync", RequestId: "same-on-both"})
	if err != nil || b.GetOperation().GetName() != a.GetOperation().GetName() {
		t.Fatalf("same request id: %v %v vs %v", err, b.GetOperation().GetName(), a.GetOperation().GetName())
	}

	// Operations are visible from any replica.
	if _, err := replicas[other].client.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: name}); err != nil {
		t.Fatalf("the other replica cannot see %s: %v", name, err)
	}
	// Kill the runner while the upload is delayed; the other recovers.
	for {
		g, err := replicas[other].client.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if stepState(g.GetOperation(), certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE) == certsyncv1.StepState_STEP_STATE_RUNNING {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	replicas[runner].kill()
	op := waitDone(t, replicas[other], name)
	if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Errorf("after the runner died: %v %s", op.GetState(), op.GetSummary())
	}
	checkOneGoodMapping(t, sb, replicas[other], conn)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
