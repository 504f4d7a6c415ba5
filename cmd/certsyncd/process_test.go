package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/testutil"
)

// builds holds one certsyncd build per set of build tags, made once per
// test run, for tests that need separate OS processes.
var builds sync.Map // tags -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// binary builds certsyncd (with the given build tags) once per test run.
func binary(t *testing.T, tags ...string) string {
	t.Helper()
	key := strings.Join(tags, ",")
	v, _ := builds.LoadOrStore(key, &build{})
	b := v.(*build)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "certsyncd-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "certsyncd")
		args := []string{"build", "-o", b.path}
		if key != "" {
			args = append(args, "-tags", key)
		}
		if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("build certsyncd %s: %v", key, b.err)
	}
	return b.path
}

// startProcess runs the binary and stops it (SIGTERM, then SIGKILL) at the
// end of the test.
func startProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "process.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("%s log:\n%s", args[0], b)
		}
	})
	return cmd
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSandboxInItsOwnProcess runs the simulator and the server as separate
// processes, connected only by the configuration the sandbox writes, and
// checks they give the same answers as serve --sandbox.
func TestSandboxInItsOwnProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs separate processes")
	}
	cfgPath := filepath.Join(t.TempDir(), "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", cfgPath)
	waitFile(t, cfgPath, 30*time.Second)
	grpcAddr := testutil.FreeAddr(t)
	startProcess(t, "serve", "--config", cfgPath, "--grpc-addr", grpcAddr)
	testutil.WaitListening(t, grpcAddr, 30*time.Second)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := certsyncv1.NewCertSyncServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	want := map[string]struct {
		result  certsyncv1.ComparisonResult
		outcome certsyncv1.ProbeOutcome
	}{
		"demo-healthy":    {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED},
		"demo-desync":     {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE},
		"demo-mismatch":   {certsyncv1.ComparisonResult_COMPARISON_RESULT_MISMATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_TLS_REJECTED},
		"demo-company-id": {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE},
		"demo-stuck":      {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_INVALID_CLIENT_CERTIFICATE},
		"demo-permission": {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_PERMISSION_DENIED},
		"demo-wrong-host": {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_CREDENTIALS_REQUIRED},
		"demo-expiring":   {certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH, certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED},
	}
	list, err := c.ListConnections(ctx, &certsyncv1.ListConnectionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetConnections()) != len(want) {
		t.Errorf("%d connections, want %d", len(list.GetConnections()), len(want))
	}
	for id, w := range want {
		cmp, err := c.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: id})
		if err != nil {
			t.Errorf("%s compare: %v", id, err)
			continue
		}
		pr, err := c.ProbeScimAuth(ctx, &certsyncv1.ProbeScimAuthRequest{Name: id})
		if err != nil {
			t.Errorf("%s probe: %v", id, err)
			continue
		}
		if cmp.GetResult() != w.result || pr.GetOutcome() != w.outcome {
			t.Errorf("%s: compare %v probe %v, want %v %v", id, cmp.GetResult(), pr.GetOutcome(), w.result, w.outcome)
		}
	}
}
