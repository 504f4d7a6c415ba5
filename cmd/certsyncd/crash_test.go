package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/testutil"
)

// sandboxControl talks to a sandbox process's control API.
type sandboxControl struct {
	base   string
	client *http.Client
}

func newSandboxControl(t *testing.T, cfgPath string) *sandboxControl {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cn := cfg.Connections[0]
	caPEM, err := os.ReadFile(cn.SF.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	u, _ := url.Parse(cn.Registry.URL)
	return &sandboxControl{base: "https://" + u.Host, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

func (s *sandboxControl) fault(t *testing.T, body map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := s.client.Post(s.base+"/_sandbox/v1/faults", "application/json", bytes.NewReader(b))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("inject fault: %v %v", err, resp)
	}
	resp.Body.Close()
}

type sandboxState struct {
	Connections map[string]struct {
		IPSActiveSHA256 string `json:"ips_active_sha256"`
		Mappings        []struct {
			SHA256       string `json:"sha256"`
			Synchronized bool   `json:"synchronized"`
		} `json:"mappings"`
		Counters struct {
			IPSStartJob int `json:"ips_start_job"`
		} `json:"counters"`
	} `json:"connections"`
}

func (s *sandboxControl) state(t *testing.T) sandboxState {
	t.Helper()
	resp, err := s.client.Get(s.base + "/_sandbox/v1/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sandboxState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// server is one certsyncd serve process.
type server struct {
	cmd    *exec.Cmd
	done   chan struct{}
	client certsyncv1.CertSyncServiceClient
	conn   *grpc.ClientConn
	log    string
}

func startServer(t *testing.T, bin, cfgPath, dataDir, failpoint string) *server {
	t.Helper()
	return startServeProcess(t, bin, []string{"CERTSYNC_FAILPOINT=" + failpoint},
		"--config", cfgPath, "--data-dir", dataDir, "--settle-window", "5s")
}

// startServeProcess runs `certsyncd serve` as a process of its own on a free
// address, with a client connected; the process is killed at the end.
func startServeProcess(t *testing.T, bin string, env []string, args ...string) *server {
	t.Helper()
	addr := testutil.FreeAddr(t)
	s := &server{done: make(chan struct{}), log: filepath.Join(t.TempDir(), "serve.log")}
	logFile, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, append([]string{"serve", "--grpc-addr", addr, "--log-format", "json"}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); logFile.Close(); close(s.done) }()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("serve %v %v log:\n%s", env, args, b)
		}
	})
	testutil.WaitListening(t, addr, 30*time.Second)
	s.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	s.client = certsyncv1.NewCertSyncServiceClient(s.conn)
	return s
}

func (s *server) kill() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-s.done
}

// waitExit waits for the process to end on its own (a failpoint).
func (s *server) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop at its failpoint")
	}
}

// checkOneGoodMapping asserts the connection ended with exactly one mapping,
// IPS's certificate, and that the probe authenticates.
func checkOneGoodMapping(t *testing.T, sb *sandboxControl, s *server, conn string) {
	t.Helper()
	st := sb.state(t).Connections[conn]
	if len(st.Mappings) != 1 || st.Mappings[0].SHA256 != st.IPSActiveSHA256 {
		t.Errorf("%s: %d mappings %+v, want exactly IPS's %s", conn, len(st.Mappings), st.Mappings, st.IPSActiveSHA256)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pr, err := s.client.ProbeScimAuth(ctx, &certsyncv1.ProbeScimAuthRequest{Name: conn})
	if err != nil || pr.GetOutcome() != certsyncv1.ProbeOutcome_PROBE_OUTCOME_AUTHENTICATED {
		t.Errorf("%s: probe %v %v", conn, pr.GetOutcome(), err)
	}
}

func waitDone(t *testing.T, s *server, name string) *certsyncv1.Operation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		r, err := s.client.WaitOperation(ctx, &certsyncv1.WaitOperationRequest{Name: name, Timeout: durationpb.New(20 * time.Second)})
		if err != nil {
			t.Fatalf("wait %s: %v", name, err)
		}
		if r.GetOperation().GetDone() {
			return r.GetOperation()
		}
		if ctx.Err() != nil {
			t.Fatalf("%s not done: %v", name, r.GetOperation())
		}
	}
}

// TestCrashAtEveryStepBoundary kills the server with SIGKILL at each step
// boundary of a re-registration, restarts it, and checks that the operation
// completes on its own and the connection ends with exactly IPS's mapping.
func TestCrashAtEveryStepBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs separate processes")
	}
	bin := binary(t, "failpoints")
	cfgPath := filepath.Join(t.TempDir(), "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", cfgPath)
	waitFile(t, cfgPath, 30*time.Second)
	sb := newSandboxControl(t, cfgPath)

	const conn = "demo-desync"
	for _, fp := range []string{
		"before:DELETE_MAPPING", "after:DELETE_MAPPING",
		"before:UPLOAD_CERTIFICATE", "after:UPLOAD_CERTIFICATE",
		"before:VERIFY_READBACK", "after:VERIFY_READBACK",
		"before:PROBE", "after:PROBE",
	} {
		t.Run(fp, func(t *testing.T) {
			dataDir := t.TempDir()
			s := startServer(t, bin, cfgPath, dataDir, fp)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			// The process may die before its answer is on the wire: the
			// request id finds the operation again after the restart.
			req := &certsyncv1.ReregisterCertificateRequest{Name: conn, Reason: "crash test", RequestId: "crash-" + strings.ReplaceAll(fp, ":", "-")}
			_, _ = s.client.ReregisterCertificate(ctx, req)
			s.waitExit(t)

			s2 := startServer(t, bin, cfgPath, dataDir, "")
			r, err := s2.client.ReregisterCertificate(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			op := waitDone(t, s2, r.GetOperation().GetName())
			if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED {
				t.Errorf("after recovery: %v %s", op.GetState(), op.GetSummary())
			}
			checkOneGoodMapping(t, sb, s2, conn)
			s2.kill()
		})
	}
}

// TestKillDuringUpload is the scenario with an OS-level kill: an
// upload delay is injected, the server is killed after the delete was
// journaled and before the upload finished, and a restart completes it.
func TestKillDuringUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs separate processes")
	}
	cfgPath := filepath.Join(t.TempDir(), "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", cfgPath)
	waitFile(t, cfgPath, 30*time.Second)
	sb := newSandboxControl(t, cfgPath)
	const conn = "demo-mismatch"
	sb.fault(t, map[string]any{"connection": conn, "operation": "upload", "delay": "5s"})

	dataDir := t.TempDir()
	s := startServer(t, binary(t), cfgPath, dataDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := s.client.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: conn})
	if err != nil {
		t.Fatal(err)
	}
	name := r.GetOperation().GetName()
	for {
		g, err := s.client.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if stepState(g.GetOperation(), certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE) == certsyncv1.StepState_STEP_STATE_RUNNING {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(sb.state(t).Connections[conn].Mappings); n != 0 {
		t.Fatalf("the kill should land between delete and upload; SF holds %d mappings", n)
	}
	s.kill()

	s2 := startServer(t, binary(t), cfgPath, dataDir, "")
	op := waitDone(t, s2, name)
	if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Errorf("after recovery: %v %s", op.GetState(), op.GetSummary())
	}
	checkOneGoodMapping(t, sb, s2, conn)
}

func stepState(op *certsyncv1.Operation, kind certsyncv1.StepKind) certsyncv1.StepState {
	for _, s := range op.GetSteps() {
		if s.GetKind() == kind {
			return s.GetState()
		}
	}
	return certsyncv1.StepState_STEP_STATE_UNSPECIFIED
}
