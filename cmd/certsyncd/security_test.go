package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/testutil"
)

// secrets are the test's tokens; none may ever appear in a log line.
var secrets = map[string]string{
	"viewer":   "viewer-token-7f3a9c1e2b4d6f80",
	"operator": "operator-token-1a2b3c4d5e6f7a8b",
	"approver": "approver-token-9e8d7c6b5a4f3e2d",
}

type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

func writePEM(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecurity starts the server with TLS, a client CA, a tokens file and a
// health port, against a sandbox in its own process, and walks through who
// may do what, the audit log and its tamper check, and approval.
func TestSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a sandbox process")
	}
	dir := t.TempDir()
	now := time.Now()
	// Server certificate, client CA with an operator's SPIFFE certificate,
	// and a certificate from another CA.
	serverCA, _ := pki.NewCA("server CA", now, 24*time.Hour)
	srvLeaf, err := serverCA.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "certsync"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	clientCA, _ := pki.NewCA("client CA", now, 24*time.Hour)
	opsURI, _ := url.Parse("spiffe://example.org/ops")
	opsLeaf, err := clientCA.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ops-robot"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), URIs: []*url.URL{opsURI}})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := pki.NewCA("other CA", now, 24*time.Hour)
	strangerLeaf, _ := otherCA.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "stranger"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), URIs: []*url.URL{opsURI}})
	srvKey, _ := pki.KeyPEM(srvLeaf.Key)
	writePEM(t, filepath.Join(dir, "server.crt"), pki.CertPEM(srvLeaf.Cert))
	writePEM(t, filepath.Join(dir, "server.key"), srvKey)
	writePEM(t, filepath.Join(dir, "client-ca.pem"), pki.CertPEM(clientCA.Cert))
	var tokens strings.Builder
	tokens.WriteString("tokens:\n")
	for role, tok := range secrets {
		tokens.WriteString("  - {name: " + role + "-caller, role: " + role + ", sha256: \"" + auth.HashToken(tok) + "\"}\n")
	}
	writePEM(t, filepath.Join(dir, "tokens.yaml"), []byte(tokens.String()))

	// The sandbox in its own process writes its configuration; the test
	// adds the security settings and marks one connection for approval.
	sbPath := filepath.Join(dir, "sandbox.yaml")
	startProcess(t, "sandbox", "--addr", "127.0.0.1:0", "--write-config", sbPath)
	waitFile(t, sbPath, 30*time.Second)
	cfg, err := config.Load(sbPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Connections {
		if cfg.Connections[i].ID == "demo-mismatch" {
			cfg.Connections[i].RequiresApproval = true
		}
	}
	cfg.Server.TLSCert, cfg.Server.TLSKey = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	cfg.Server.ClientCA, cfg.Server.TokensFile = filepath.Join(dir, "client-ca.pem"), filepath.Join(dir, "tokens.yaml")
	cfg.Auth.Identities = []auth.Binding{{ID: "spiffe://example.org/ops", Role: auth.RoleOperator}}
	data, err := config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "certsync.yaml")
	writePEM(t, cfgPath, data)

	healthAddr, httpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	dataDir := filepath.Join(dir, "data")
	addr, logs, stop := startServe(t, "--config", cfgPath, "--health-addr", healthAddr, "--http-addr", httpAddr, "--data-dir", dataDir, "--settle-window", "3s", "--refresh-interval", "0")
	defer stop()

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	dial := func(cert *pki.Leaf, token string) certsyncv1.CertSyncServiceClient {
		t.Helper()
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			// Present the certificate whatever CAs the server names, as a
			// hostile client would (Go's client otherwise sends none that
			// the server would not accept).
			c := cert.TLSCertificate()
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds(token)))
		}
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return certsyncv1.NewCertSyncServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reason := func(err error) string {
		for _, d := range status.Convert(err).Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok {
				return ei.GetReason()
			}
		}
		return ""
	}

	anon, viewer, operator, approver := dial(nil, ""), dial(nil, secrets["viewer"]), dial(nil, secrets["operator"]), dial(nil, secrets["approver"])
	if _, err := anon.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: "demo-healthy"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credentials: %v", err)
	}
	if _, err := viewer.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: "demo-healthy"}); err != nil {
		t.Errorf("viewer gate: %v", err)
	}
	if _, err := viewer.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: "demo-desync"}); err != nil {
		t.Errorf("viewer compare: %v", err)
	}
	// The HTTP gateway serves HTTPS with the same certificate, and calls
	// the gRPC port (TLS, pinned to that certificate) with the token.
	testutil.WaitListening(t, httpAddr, 10*time.Second)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	for tok, want := range map[string]int{"": http.StatusUnauthorized, secrets["viewer"]: http.StatusOK} {
		req, _ := http.NewRequest("GET", "https://"+httpAddr+"/v1/connections/demo-healthy:checkGate", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("https gate: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("https gate (token %t): %d, want %d", tok != "", resp.StatusCode, want)
		}
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + httpAddr + "/v1/connections/demo-healthy:checkGate"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the HTTPS port: %d", resp.StatusCode)
		}
	}
	_, err = viewer.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "demo-desync", Reason: "viewer tries"})
	if status.Code(err) != codes.PermissionDenied || reason(err) != "ROLE_REQUIRED" || !strings.Contains(status.Convert(err).Message(), "operator") {
		t.Errorf("viewer re-register: %v", err)
	}
	op, err := operator.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "demo-desync", Reason: "CHG-1"})
	if err != nil {
		t.Fatalf("operator re-register: %v", err)
	}
	if done := waitOp(t, operator, op.GetOperation().GetName()); done.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED || done.GetRequestedBy() != "operator-caller" {
		t.Errorf("operator's operation: %v by %q", done.GetState(), done.GetRequestedBy())
	}
	mtls := dial(opsLeaf, "")
	op2, err := mtls.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "demo-permission", Reason: "CHG-2"})
	if err != nil {
		t.Fatalf("mTLS operator re-register: %v", err)
	}
	if done := waitOp(t, mtls, op2.GetOperation().GetName()); done.GetRequestedBy() != "spiffe://example.org/ops" {
		t.Errorf("mTLS operation requested by %q", done.GetRequestedBy())
	}
	if _, err := dial(strangerLeaf, "").CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: "demo-healthy"}); status.Code(err) != codes.Unavailable {
		t.Errorf("a certificate from another CA: %v (want the handshake to fail)", err)
	}

	// Health on its own port, without TLS or credentials.
	hconn, err := grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hconn.Close()
	if r, err := healthpb.NewHealthClient(hconn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health port: %v %v", r, err)
	}
	// The open port tells nothing about the inventory.
	if _, err := healthpb.NewHealthClient(hconn).Check(ctx, &healthpb.HealthCheckRequest{Service: "connections/demo-healthy"}); status.Code(err) != codes.NotFound {
		t.Errorf("health port answers a connection's status: %v", err)
	}

	// Approval: the operator's request waits; the operator cannot approve
	// it; the approver can, and it runs.
	pending, err := operator.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: "demo-mismatch", Reason: "CHG-3"})
	if err != nil || pending.GetOperation().GetState() != certsyncv1.OperationState_OPERATION_STATE_PENDING_APPROVAL {
		t.Fatalf("approval-required request: %v %v", pending.GetOperation().GetState(), err)
	}
	name := pending.GetOperation().GetName()
	if _, err := operator.ApproveOperation(ctx, &certsyncv1.ApproveOperationRequest{Name: name}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator approving: %v", err)
	}
	if got, _ := operator.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: name}); got.GetOperation().GetState() != certsyncv1.OperationState_OPERATION_STATE_PENDING_APPROVAL {
		t.Errorf("after the refused approval: %v", got.GetOperation().GetState())
	}
	if _, err := approver.ApproveOperation(ctx, &certsyncv1.ApproveOperationRequest{Name: name, Reason: "looks right"}); err != nil {
		t.Fatalf("approver approving: %v", err)
	}
	if done := waitOp(t, approver, name); done.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED || done.GetApprovedBy() != "approver-caller" {
		t.Errorf("approved operation: %v approved by %q", done.GetState(), done.GetApprovedBy())
	}

	// The audit log shows each call with its caller and outcome.
	events, err := operator.ListAuditEvents(ctx, &certsyncv1.ListAuditEventsRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range events.GetEvents() {
		lines = append(lines, e.GetIdentity()+" "+e.GetRpc()[strings.LastIndex(e.GetRpc(), "/")+1:]+" "+e.GetOutcome())
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"unauthenticated CheckGate Unauthenticated",
		"viewer-caller ReregisterCertificate PermissionDenied",
		"operator-caller ReregisterCertificate OK",
		"spiffe://example.org/ops ReregisterCertificate OK",
		"operator-caller ApproveOperation PermissionDenied",
		"approver-caller ApproveOperation OK",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("audit lacks %q:\n%s", want, all)
		}
	}
	if _, err := viewer.ListAuditEvents(ctx, &certsyncv1.ListAuditEventsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer listing audit: %v", err)
	}
	v, err := operator.VerifyAuditLog(ctx, &certsyncv1.VerifyAuditLogRequest{})
	if err != nil || !v.GetIntact() || v.GetEventsChecked() < 6 {
		t.Fatalf("verify: %v %v", v, err)
	}
	// Someone edits an event in the database: verify names it.
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "certsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DROP TRIGGER audit_events_no_update`, `UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 3`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	v, err = operator.VerifyAuditLog(ctx, &certsyncv1.VerifyAuditLogRequest{})
	if err != nil || v.GetIntact() || v.GetFirstBadSequence() != 3 {
		t.Errorf("verify after tampering: %v %v", v, err)
	}

	stop()
	for role, tok := range secrets {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the %s token appears in the log", role)
		}
	}
	if bytes.Contains([]byte(logs.String()), []byte("PRIVATE KEY")) {
		t.Error("key material appears in the log")
	}
	if !strings.Contains(logs.String(), `"msg":"audit"`) {
		t.Error("audit events are not in the log stream")
	}
}

func waitOp(t *testing.T, c certsyncv1.CertSyncServiceClient, name string) *certsyncv1.Operation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		r, err := c.WaitOperation(ctx, &certsyncv1.WaitOperationRequest{Name: name})
		if err != nil {
			t.Fatalf("wait %s: %v", name, err)
		}
		if r.GetOperation().GetDone() {
			return r.GetOperation()
		}
	}
}

func TestRefusesInsecureSetups(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-addr", "0.0.0.0:0"}, "is not a loopback address and TLS is off"},
		{[]string{"--grpc-addr", "0.0.0.0:0", "--insecure-no-tls"}, "is not a loopback address and authentication is off"},
		{[]string{"--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"}, "server.tls_key: cannot use"},
		{[]string{"--require-client-cert"}, "needs server.client_ca"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"serve"}, tt.args...), &out, &errOut)
		if code := exitCode(err, &errOut); code != 2 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut.String(), tt.want)
		}
	}
}
