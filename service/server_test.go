package service_test

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/pki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is a server over an in-memory listener with a client.
type harness struct {
	client certsyncv1.CertSyncServiceClient
	health healthpb.HealthClient
	conn   *grpc.ClientConn
	ca     *pki.CA
}

// testConnections writes a probe key pair and returns n connections using it.
func testConnections(t *testing.T, ca *pki.CA, ids ...string) []config.Connection {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "probe"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "probe.crt"), filepath.Join(dir, "probe.key")
	must(t, os.WriteFile(certFile, pki.CertPEM(leaf.Cert), 0o600))
	must(t, os.WriteFile(keyFile, keyPEM, 0o600))
	var out []config.Connection
	for _, id := range ids {
		out = append(out, config.Connection{
			ID:       id,
			SF:       config.SF{URL: "https://api4.cert.successfactors.com", CompanyID: "ACME"},
			Source:   config.Source{Type: "file", File: certFile},
			Registry: config.Registry{Driver: "manual"},
			Probe:    config.Probe{Identity: "ips", CertFile: certFile, KeyFile: keyFile},
		})
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newHarness(t *testing.T, conns ...string) *harness {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Now(), 48*time.Hour)
	must(t, err)
	h := newHarnessWith(t, testConnections(t, ca, conns...), inventory.Options{})
	h.ca = ca
	return h
}

// newHarnessWith serves the given connections.
func newHarnessWith(t *testing.T, conns []config.Connection, o inventory.Options) *harness {
	t.Helper()
	return newHarnessFull(t, conns, o, nil)
}

// newHarnessFull serves the given connections with the server options that
// options returns (Inventory is set by the harness).
func newHarnessFull(t *testing.T, conns []config.Connection, o inventory.Options, options func(*inventory.Inventory) service.Options) *harness {
	t.Helper()
	cfg := &config.Config{Connections: conns}
	cfg.ApplyDefaults()
	problems := cfg.Validate()
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("test configuration invalid: %v", errs)
	}
	inv, err := inventory.Build(cfg.Connections, problems, o)
	must(t, err)
	t.Cleanup(inv.Close)
	so := service.Options{}
	if options != nil {
		so = options(inv)
	}
	so.Inventory = inv
	srv := service.New(so)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	g := srv.NewGRPCServer(service.GRPCOptions{MaxMessageBytes: config.DefaultMaxMessageBytes, Health: hs})
	registerPanicService(g)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	must(t, err)
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
	})
	return &harness{client: certsyncv1.NewCertSyncServiceClient(conn), health: healthpb.NewHealthClient(conn), conn: conn}
}

// registerPanicService adds a method that panics, to prove the interceptor
// chain turns panics into a generic INTERNAL.
func registerPanicService(g *grpc.Server) {
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Panic",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Boom",
			Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
				req := new(emptypb.Empty)
				if err := dec(req); err != nil {
					return nil, err
				}
				h := func(context.Context, any) (any, error) { panic("secret-panic-value") }
				if in == nil {
					return h(ctx, req)
				}
				return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/test.Panic/Boom"}, h)
			},
		}},
	}, struct{}{})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// errorInfo returns the status code and ErrorInfo reason of err, and the
// fields named in its BadRequest detail.
func errorInfo(t *testing.T, err error) (codes.Code, string, []string) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got none")
	}
	st := status.Convert(err)
	var reason string
	var fields []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() != service.ErrorDomain {
				t.Errorf("ErrorInfo domain = %q, want %q", d.GetDomain(), service.ErrorDomain)
			}
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return st.Code(), reason, fields
}

func TestHealthServing(t *testing.T) {
	h := newHarness(t, "a")
	resp, err := h.health.Check(ctx(t), &healthpb.HealthCheckRequest{})
	must(t, err)
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, want SERVING", resp.GetStatus())
	}
}

func TestListConnectionsPaging(t *testing.T) {
	h := newHarness(t, "c-three", "a-one", "b-two")
	var names []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, err := h.client.ListConnections(ctx(t), &certsyncv1.ListConnectionsRequest{PageSize: 2, PageToken: token})
		must(t, err)
		if resp.GetTotalSize() != 3 {
			t.Errorf("total_size = %d, want 3", resp.GetTotalSize())
		}
		for _, c := range resp.GetConnections() {
			names = append(names, c.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	want := "connections/a-one connections/b-two connections/c-three"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("connections = %s, want %s", got, want)
	}

	_, err := h.client.ListConnections(ctx(t), &certsyncv1.ListConnectionsRequest{PageToken: "not-a-token"})
	code, reason, fields := errorInfo(t, err)
	if code != codes.InvalidArgument || reason != "INVALID_PAGE_TOKEN" || strings.Join(fields, ",") != "page_token" {
		t.Fatalf("bad token: %v %s %v", code, reason, fields)
	}
	_, err = h.client.ListConnections(ctx(t), &certsyncv1.ListConnectionsRequest{PageSize: -1})
	if code, _, fields := errorInfo(t, err); code != codes.InvalidArgument || strings.Join(fields, ",") != "page_size" {
		t.Fatalf("negative page size: %v %v", code, fields)
	}
}

func TestGetConnection(t *testing.T) {
	h := newHarness(t, "demo")
	for _, name := range []string{"connections/demo", "demo"} {
		resp, err := h.client.GetConnection(ctx(t), &certsyncv1.GetConnectionRequest{Name: name})
		must(t, err)
		c := resp.GetConnection()
		if c.GetName() != "connections/demo" || !c.GetCertHost() || c.GetCompanyId() != "ACME" ||
			c.GetProbeIdentity() != certsyncv1.ProbeIdentity_PROBE_IDENTITY_IPS ||
			c.GetIntegrationName() != "Identity Provisioning Service" {
			t.Errorf("GetConnection(%q) = %v", name, c)
		}
	}
	tests := []struct {
		name, reason string
		code         codes.Code
		field        string
	}{
		{"connections/missing", "CONNECTION_NOT_FOUND", codes.NotFound, ""},
		{"", "INVALID_REQUEST", codes.InvalidArgument, "name"},
		{"connections/../etc/passwd", "INVALID_REQUEST", codes.InvalidArgument, "name"},
		{"connections/UPPER", "INVALID_REQUEST", codes.InvalidArgument, "name"},
		{"connections/a\x00b", "INVALID_REQUEST", codes.InvalidArgument, "name"},
		{strings.Repeat("x", 10000), "INVALID_REQUEST", codes.InvalidArgument, "name"},
	}
	for _, tt := range tests {
		_, err := h.client.GetConnection(ctx(t), &certsyncv1.GetConnectionRequest{Name: tt.name})
		code, reason, fields := errorInfo(t, err)
		if code != tt.code || reason != tt.reason || strings.Join(fields, ",") != tt.field {
			t.Errorf("GetConnection(%.40q) = %v %s %v, want %v %s %s", tt.name, code, reason, fields, tt.code, tt.reason, tt.field)
		}
		if msg := status.Convert(err).Message(); len(msg) > 300 {
			t.Errorf("message echoes too much input: %d bytes", len(msg))
		}
	}
}

func fingerprint(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func TestInspectCertificate(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	a, err := h.ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-a"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(240 * time.Hour)})
	must(t, err)
	b, err := h.ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-b"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour)})
	must(t, err)
	bundle := append(pki.CertPEM(a.Cert), pki.CertPEM(b.Cert)...)

	resp, err := h.client.InspectCertificate(ctx(t), &certsyncv1.InspectCertificateRequest{Data: bundle})
	must(t, err)
	if len(resp.GetCertificates()) != 2 {
		t.Fatalf("got %d certificates, want 2", len(resp.GetCertificates()))
	}
	for i, leaf := range []*pki.Leaf{a, b} {
		got := resp.GetCertificates()[i]
		s1, s256 := sha1.Sum(leaf.Cert.Raw), sha256.Sum256(leaf.Cert.Raw)
		if got.GetSha1Fingerprint() != fingerprint(s1[:]) || got.GetSha256Fingerprint() != fingerprint(s256[:]) {
			t.Errorf("cert %d fingerprints = %s / %s", i, got.GetSha1Fingerprint(), got.GetSha256Fingerprint())
		}
		if got.GetSubject() != "CN="+leaf.Cert.Subject.CommonName || !got.GetClientAuth() || string(got.GetDer()) != string(leaf.Cert.Raw) {
			t.Errorf("cert %d summary = %v", i, got)
		}
	}
	if d := resp.GetCertificates()[0].GetDaysUntilExpiry(); d != 9 {
		t.Errorf("days_until_expiry = %d, want 9", d)
	}

	// DER works too.
	resp, err = h.client.InspectCertificate(ctx(t), &certsyncv1.InspectCertificateRequest{Data: a.Cert.Raw})
	must(t, err)
	if len(resp.GetCertificates()) != 1 {
		t.Fatalf("DER: got %d certificates", len(resp.GetCertificates()))
	}

	keyPEM, err := pki.KeyPEM(a.Key)
	must(t, err)
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x00}})
	bad := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"whitespace", []byte(" \n\t"), "EMPTY_INPUT"},
		{"garbage", []byte("hello, this is not a certificate"), "UNRECOGNIZED_INPUT"},
		{"truncated PEM", pki.CertPEM(a.Cert)[:200], "TRUNCATED_PEM"},
		{"CSR block", csr, "NOT_A_CERTIFICATE"},
		{"private key", keyPEM, "PRIVATE_KEY_REFUSED"},
		{"cert and key", append(pki.CertPEM(a.Cert), keyPEM...), "PRIVATE_KEY_REFUSED"},
		{"too large", append(pki.CertPEM(a.Cert), make([]byte, 1<<20)...), "INPUT_TOO_LARGE"},
	}
	for _, tt := range bad {
		_, err := h.client.InspectCertificate(ctx(t), &certsyncv1.InspectCertificateRequest{Data: tt.data})
		code, reason, fields := errorInfo(t, err)
		if code != codes.InvalidArgument || reason != tt.reason || strings.Join(fields, ",") != "data" {
			t.Errorf("%s: got %v %s %v, want INVALID_ARGUMENT %s [data]", tt.name, code, reason, fields, tt.reason)
		}
		if strings.Contains(status.Convert(err).Message(), keyBody[:20]) {
			t.Errorf("%s: the error echoes the private key", tt.name)
		}
	}
	_, err = h.client.InspectCertificate(ctx(t), &certsyncv1.InspectCertificateRequest{})
	if code, reason, _ := errorInfo(t, err); code != codes.InvalidArgument || reason != "INVALID_REQUEST" {
		t.Errorf("empty data: %v %s", code, reason)
	}
	// Past the message size limit, gRPC itself refuses.
	_, err = h.client.InspectCertificate(ctx(t), &certsyncv1.InspectCertificateRequest{Data: make([]byte, config.DefaultMaxMessageBytes+1)})
	if code := status.Code(err); code != codes.ResourceExhausted {
		t.Errorf("oversized message: %v, want RESOURCE_EXHAUSTED", code)
	}
}

func TestDiagnoseJobError(t *testing.T) {
	h := newHarness(t)
	seed, err := os.ReadFile("../../shared/seed/000_2c08482fcf6dad1b.txt")
	must(t, err)
	resp, err := h.client.DiagnoseJobError(ctx(t), &certsyncv1.DiagnoseJobErrorRequest{Text: string(seed)})
	must(t, err)
	if len(resp.GetFindings()) != 1 {
		t.Fatalf("findings = %d, want 1: %v", len(resp.GetFindings()), resp)
	}
	f := resp.GetFindings()[0]
	if f.GetHttpStatus() != 401 || f.GetErrorCode() != "AUTH0032" || f.GetHost() != "api15preview.cert.sapsf.cn" || !f.GetCertHost() ||
		f.GetCause() != certsyncv1.FailureCause_FAILURE_CAUSE_INVALID_CLIENT_CERTIFICATE || f.GetSupportComponent() != "LOD-SF-PLT-IAS" {
		t.Errorf("finding = %v", f)
	}
	var actions []string
	for _, a := range f.GetRecommendedActions() {
		actions = append(actions, a.GetAction().String())
	}
	want := "REMEDIATION_ACTION_COMPARE_FINGERPRINTS REMEDIATION_ACTION_REREGISTER REMEDIATION_ACTION_ESCALATE"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("actions = %s, want %s", got, want)
	}

	resp, err = h.client.DiagnoseJobError(ctx(t), &certsyncv1.DiagnoseJobErrorRequest{Text: "all fine, nothing to see"})
	must(t, err)
	if len(resp.GetFindings()) != 0 || resp.GetSummary() == "" {
		t.Errorf("unknown text: %v", resp)
	}

	_, err = h.client.DiagnoseJobError(ctx(t), &certsyncv1.DiagnoseJobErrorRequest{Text: strings.Repeat("Caused by: x\n", 30000)})
	if code, reason, fields := errorInfo(t, err); code != codes.InvalidArgument || reason != "TEXT_TOO_LONG" || strings.Join(fields, ",") != "text" {
		t.Errorf("too long: %v %s %v", code, reason, fields)
	}
	_, err = h.client.DiagnoseJobError(ctx(t), &certsyncv1.DiagnoseJobErrorRequest{})
	if code, _, fields := errorInfo(t, err); code != codes.InvalidArgument || strings.Join(fields, ",") != "text" {
		t.Errorf("empty: %v %v", code, fields)
	}
}

func TestValidationReportsEveryField(t *testing.T) {
	h := newHarness(t, "demo")
	_, err := h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: "bad name", JobId: "job\n1"})
	code, reason, fields := errorInfo(t, err)
	if code != codes.InvalidArgument || reason != "INVALID_REQUEST" || strings.Join(fields, ",") != "name,job_id" {
		t.Fatalf("got %v %s %v", code, reason, fields)
	}
}

func TestPanicBecomesGenericInternal(t *testing.T) {
	h := newHarness(t)
	err := h.conn.Invoke(ctx(t), "/test.Panic/Boom", &emptypb.Empty{}, &emptypb.Empty{})
	st := status.Convert(err)
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "secret-panic-value") {
		t.Fatalf("panic answered %v %q", st.Code(), st.Message())
	}
	// The server goes on serving.
	if _, err := h.health.Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("after panic: %v", err)
	}
}
