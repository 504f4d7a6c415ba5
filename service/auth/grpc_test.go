package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/tlsreload"
)

// testService answers a few RPCs with OK and tells the client, in a header,
// which identity the handler saw.
type testService struct {
	certsyncv1.UnimplementedCertSyncServiceServer
}

func sawIdentity(ctx context.Context) {
	id, ok := FromContext(ctx)
	v := "none"
	if ok {
		v = fmt.Sprintf("%s|%s|%s", id.Name, id.Method, id.Role)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-identity", v))
}

func (testService) CheckGate(ctx context.Context, _ *certsyncv1.CheckGateRequest) (*certsyncv1.CheckGateResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.CheckGateResponse{}, nil
}

func (testService) CompareFingerprints(ctx context.Context, _ *certsyncv1.CompareFingerprintsRequest) (*certsyncv1.CompareFingerprintsResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.CompareFingerprintsResponse{}, nil
}

func (testService) ReregisterCertificate(ctx context.Context, _ *certsyncv1.ReregisterCertificateRequest) (*certsyncv1.ReregisterCertificateResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.ReregisterCertificateResponse{}, nil
}

func (testService) ProbeScimAuth(ctx context.Context, _ *certsyncv1.ProbeScimAuthRequest) (*certsyncv1.ProbeScimAuthResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.ProbeScimAuthResponse{}, nil
}

func (testService) ApproveOperation(ctx context.Context, _ *certsyncv1.ApproveOperationRequest) (*certsyncv1.ApproveOperationResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.ApproveOperationResponse{}, nil
}

func (testService) ListOperations(ctx context.Context, _ *certsyncv1.ListOperationsRequest) (*certsyncv1.ListOperationsResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.ListOperationsResponse{}, nil
}

func (testService) VerifyAuditLog(ctx context.Context, _ *certsyncv1.VerifyAuditLogRequest) (*certsyncv1.VerifyAuditLogResponse, error) {
	sawIdentity(ctx)
	return &certsyncv1.VerifyAuditLogResponse{}, nil
}

// GetOperation shows the handler-side check for operation-scoped RPCs: every
// operation here belongs to connection dev-1.
func (testService) GetOperation(ctx context.Context, req *certsyncv1.GetOperationRequest) (*certsyncv1.GetOperationResponse, error) {
	if err := CheckAccess(ctx, req.GetName(), "dev-1"); err != nil {
		return nil, statusMapper(ctx, err)
	}
	sawIdentity(ctx)
	return &certsyncv1.GetOperationResponse{}, nil
}

func (testService) WatchGate(_ *certsyncv1.WatchGateRequest, stream grpc.ServerStreamingServer[certsyncv1.WatchGateResponse]) error {
	sawIdentity(stream.Context())
	return stream.Send(&certsyncv1.WatchGateResponse{})
}

// env is a real gRPC server on a loopback TCP port with TLS from tlsreload
// and the interceptors under test.
type env struct {
	addr      string
	serverCA  *x509.CertPool
	clientCA  *pki.CA
	otherCA   *pki.CA
	health    *health.Server
	clock     *fakeClock
	tokens    map[string]string // name -> raw token
	authz     *Authorizer
	observed  sync.Map // identity names OnAuthenticated saw
	plaintext bool
}

type envOptions struct {
	closedHealth, closedReflection bool
	notRequired                    bool // plaintext, no tokens: loopback development
}

func newEnv(t *testing.T, eo envOptions) *env {
	t.Helper()
	now := time.Now()
	e := &env{clock: newFakeClock(), tokens: map[string]string{}}
	dir := t.TempDir()

	serverCA, err := pki.NewCA("test server CA", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverLeaf, err := serverCA.Issue(pki.LeafOptions{
		Subject:   pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		Usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.serverCA = x509.NewCertPool()
	e.serverCA.AddCert(serverCA.Cert)
	if e.clientCA, err = pki.NewCA("test client CA", now, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.otherCA, err = pki.NewCA("someone else's CA", now, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(serverLeaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "client-ca.crt")
	for name, data := range map[string][]byte{certFile: pki.CertPEM(serverLeaf.Cert), keyFile: keyPEM, caFile: pki.CertPEM(e.clientCA.Cert)} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	var specs []tokenSpec
	for _, s := range []tokenSpec{
		{name: "gate-caller", role: "viewer"},
		{name: "ops-person", role: "operator"},
		{name: "approver-person", role: "approver"},
		{name: "prod-viewer", role: "viewer", connections: []string{"prod-*"}},
		{name: "prod-operator", role: "operator", connections: []string{"connections/prod-*"}},
	} {
		tok := newToken(t)
		e.tokens[s.name] = tok
		s.hash = HashToken(tok)
		specs = append(specs, s)
	}
	tokensFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, []byte(tokensYAML(specs...)), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(tokensFile)
	if err != nil {
		t.Fatal(err)
	}

	o := DefaultOptions()
	o.Required = true
	o.Tokens = tokens
	o.Bindings = []Binding{
		{ID: "spiffe://example.org/ops", Role: RoleOperator},
		{ID: "cn-viewer", Role: RoleViewer},
		{ID: "spiffe://example.org/prod-gate", Role: RoleViewer, Connections: []string{"prod-*"}},
	}
	o.OpenHealth = !eo.closedHealth
	o.OpenReflection = !eo.closedReflection
	o.Now = e.clock.Now
	o.Logger = testLogger
	o.OnAuthenticated = func(_ context.Context, id Identity) { e.observed.Store(id.Name, id.Method) }
	if eo.notRequired {
		o.Required, o.Tokens, o.Bindings = false, nil, nil
	}
	if e.authz, err = New(o); err != nil {
		t.Fatal(err)
	}

	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(e.authz.UnaryInterceptor(statusMapper)),
		grpc.ChainStreamInterceptor(e.authz.StreamInterceptor(statusMapper)),
	}
	if eo.notRequired {
		e.plaintext = true
	} else {
		reloader, err := tlsreload.New(tlsreload.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, Logger: testLogger})
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(reloader.TLSConfig())))
	}
	srv := grpc.NewServer(opts...)
	certsyncv1.RegisterCertSyncServiceServer(srv, testService{})
	e.health = health.NewServer()
	e.health.SetServingStatus("connections/prod-1", healthpb.HealthCheckResponse_SERVING)
	e.health.SetServingStatus("connections/dev-1", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, e.health)
	reflection.Register(srv)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		e.health.Shutdown()
		srv.Stop()
		<-done
	})
	return e
}

// dial connects with an optional client certificate.
func (e *env) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if !e.plaintext {
		cfg := &tls.Config{RootCAs: e.serverCA, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if cert != nil {
			// Present the certificate whatever CAs the server asks for: Go
			// clients otherwise withhold one the server would not accept.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ctxWith returns a context carrying the named token ("" for none).
func (e *env) ctxWith(t *testing.T, tokenName string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if tokenName == "" {
		return ctx
	}
	tok, ok := e.tokens[tokenName]
	if !ok {
		t.Fatalf("no token %q", tokenName)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// rpcs are the calls the tests make, by short name.
func callRPC(ctx context.Context, conn *grpc.ClientConn, rpc, name string) (string, error) {
	c := certsyncv1.NewCertSyncServiceClient(conn)
	var md metadata.MD
	var err error
	switch rpc {
	case "CheckGate":
		_, err = c.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: name}, grpc.Header(&md))
	case "CompareFingerprints":
		_, err = c.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: name}, grpc.Header(&md))
	case "ReregisterCertificate":
		_, err = c.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: name}, grpc.Header(&md))
	case "ProbeScimAuth":
		_, err = c.ProbeScimAuth(ctx, &certsyncv1.ProbeScimAuthRequest{Name: name}, grpc.Header(&md))
	case "ApproveOperation":
		_, err = c.ApproveOperation(ctx, &certsyncv1.ApproveOperationRequest{Name: name}, grpc.Header(&md))
	case "ListOperations":
		_, err = c.ListOperations(ctx, &certsyncv1.ListOperationsRequest{Connection: name}, grpc.Header(&md))
	case "VerifyAuditLog":
		_, err = c.VerifyAuditLog(ctx, &certsyncv1.VerifyAuditLogRequest{}, grpc.Header(&md))
	case "GetOperation":
		_, err = c.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: name}, grpc.Header(&md))
	case "WatchGate":
		var stream grpc.ServerStreamingClient[certsyncv1.WatchGateResponse]
		stream, err = c.WatchGate(ctx, &certsyncv1.WatchGateRequest{Name: name})
		if err == nil {
			_, err = stream.Recv()
			md, _ = stream.Header()
		}
	default:
		return "", fmt.Errorf("test has no rpc %s", rpc)
	}
	if v := md.Get("x-identity"); len(v) > 0 {
		return v[0], err
	}
	return "", err
}

func TestNoCredentialsIsUnauthenticated(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	for _, rpc := range []string{"CheckGate", "ReregisterCertificate", "WatchGate", "VerifyAuditLog"} {
		_, err := callRPC(e.ctxWith(t, ""), conn, rpc, "connections/prod-1")
		code, info, _ := errInfo(t, err)
		if code != codes.Unauthenticated || info.GetReason() != "UNAUTHENTICATED" {
			t.Fatalf("%s without credentials: %v, want UNAUTHENTICATED", rpc, err)
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, "bearer token") || !strings.Contains(msg, "client certificate") {
			t.Errorf("message does not say how to authenticate: %q", msg)
		}
	}
}

func TestBadTokensAreUnauthenticated(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	unknown := newToken(t)
	for name, value := range map[string]string{
		"unknown token":   "Bearer " + unknown,
		"wrong scheme":    "Basic " + unknown,
		"no token":        "Bearer ",
		"token with junk": "Bearer " + unknown + " extra",
	} {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(e.ctxWith(t, ""), "authorization", value)
			_, err := callRPC(ctx, conn, "CheckGate", "connections/prod-1")
			if code, info, _ := errInfo(t, err); code != codes.Unauthenticated || info.GetReason() != "UNAUTHENTICATED" {
				t.Fatalf("got %v, want UNAUTHENTICATED", err)
			}
			if strings.Contains(err.Error(), unknown) {
				t.Fatal("the error echoes the token")
			}
		})
	}
}

func TestRolesByToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	tests := []struct {
		token, rpc string
		wantRole   string // "" when the call must succeed
	}{
		{"gate-caller", "CheckGate", ""},
		{"gate-caller", "CompareFingerprints", ""},
		{"gate-caller", "WatchGate", ""},
		{"gate-caller", "ReregisterCertificate", "operator"},
		{"gate-caller", "VerifyAuditLog", "operator"},
		{"ops-person", "ReregisterCertificate", ""},
		{"ops-person", "VerifyAuditLog", ""},
		{"ops-person", "ApproveOperation", "approver"},
		{"approver-person", "ApproveOperation", ""},
		{"approver-person", "ReregisterCertificate", ""},
	}
	for _, tc := range tests {
		t.Run(tc.token+"/"+tc.rpc, func(t *testing.T) {
			name := "connections/prod-1"
			if tc.rpc == "ApproveOperation" {
				name = "operations/op-1"
			}
			seen, err := callRPC(e.ctxWith(t, tc.token), conn, tc.rpc, name)
			if tc.wantRole == "" {
				if err != nil {
					t.Fatalf("got %v, want OK", err)
				}
				if !strings.HasPrefix(seen, tc.token+"|token|") {
					t.Fatalf("handler saw identity %q", seen)
				}
				return
			}
			code, info, _ := errInfo(t, err)
			if code != codes.PermissionDenied || info.GetReason() != "ROLE_REQUIRED" {
				t.Fatalf("got %v, want PERMISSION_DENIED ROLE_REQUIRED", err)
			}
			want := map[string]string{"required_role": tc.wantRole, "identity": tc.token, "rpc": tc.rpc}
			for k, v := range want {
				if info.GetMetadata()[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, info.GetMetadata()[k], v)
				}
			}
			if info.GetMetadata()["role"] == "" {
				t.Error("metadata lacks the caller's role")
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "requires the "+tc.wantRole+" role") {
				t.Errorf("message does not name the required role: %q", msg)
			}
		})
	}
	if _, ok := e.observed.Load("gate-caller"); !ok {
		t.Error("OnAuthenticated was not called")
	}
}

func TestClientCertificates(t *testing.T) {
	e := newEnv(t, envOptions{})
	ops := issueClient(t, e.clientCA, "ops workload", "spiffe://example.org/ops")
	cnViewer := issueClient(t, e.clientCA, "cn-viewer", "")
	unbound := issueClient(t, e.clientCA, "nobody", "spiffe://example.org/nobody")
	// A CN that spells a bound URI must not get that URI's role.
	spoof := issueClient(t, e.clientCA, "spiffe://example.org/ops", "")
	foreign := issueClient(t, e.otherCA, "ops workload", "spiffe://example.org/ops")

	t.Run("URI SAN bound to operator", func(t *testing.T) {
		seen, err := callRPC(e.ctxWith(t, ""), e.dial(t, &ops), "ReregisterCertificate", "connections/prod-1")
		if err != nil || seen != "spiffe://example.org/ops|certificate|operator" {
			t.Fatalf("got %q, %v", seen, err)
		}
	})
	t.Run("CN bound to viewer", func(t *testing.T) {
		conn := e.dial(t, &cnViewer)
		if seen, err := callRPC(e.ctxWith(t, ""), conn, "CheckGate", "connections/prod-1"); err != nil || seen != "cn-viewer|certificate|viewer" {
			t.Fatalf("got %q, %v", seen, err)
		}
		_, err := callRPC(e.ctxWith(t, ""), conn, "ReregisterCertificate", "connections/prod-1")
		if code, info, _ := errInfo(t, err); code != codes.PermissionDenied || info.GetReason() != "ROLE_REQUIRED" {
			t.Fatalf("got %v, want ROLE_REQUIRED", err)
		}
	})
	for name, cert := range map[string]tls.Certificate{"unbound": unbound, "CN spelling a URI": spoof} {
		t.Run(name, func(t *testing.T) {
			_, err := callRPC(e.ctxWith(t, ""), e.dial(t, &cert), "CheckGate", "connections/prod-1")
			code, info, _ := errInfo(t, err)
			if code != codes.PermissionDenied || info.GetReason() != "ROLE_REQUIRED" || info.GetMetadata()["role"] != "none" {
				t.Fatalf("got %v, want ROLE_REQUIRED with role none", err)
			}
		})
	}
	t.Run("another CA fails the handshake", func(t *testing.T) {
		_, err := callRPC(e.ctxWith(t, ""), e.dial(t, &foreign), "CheckGate", "connections/prod-1")
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want UNAVAILABLE from a failed handshake", err)
		}
	})
	t.Run("a token wins over the certificate", func(t *testing.T) {
		seen, err := callRPC(e.ctxWith(t, "gate-caller"), e.dial(t, &ops), "CheckGate", "connections/prod-1")
		if err != nil || seen != "gate-caller|token|viewer" {
			t.Fatalf("got %q, %v", seen, err)
		}
	})
	t.Run("a scoped binding", func(t *testing.T) {
		cert := issueClient(t, e.clientCA, "gate", "spiffe://example.org/prod-gate")
		conn := e.dial(t, &cert)
		if _, err := callRPC(e.ctxWith(t, ""), conn, "CheckGate", "connections/prod-9"); err != nil {
			t.Fatal(err)
		}
		_, err := callRPC(e.ctxWith(t, ""), conn, "CheckGate", "connections/dev-1")
		if _, info, _ := errInfo(t, err); info.GetReason() != "CONNECTION_NOT_ALLOWED" {
			t.Fatalf("got %v, want CONNECTION_NOT_ALLOWED", err)
		}
	})
}

func TestConnectionScope(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	tests := []struct {
		token, rpc, name string
		allowed          bool
	}{
		{"prod-viewer", "CheckGate", "connections/prod-1", true},
		{"prod-viewer", "CheckGate", "prod-1", true},
		{"prod-viewer", "CheckGate", "connections/dev-1", false},
		{"prod-viewer", "CheckGate", "dev-1", false},
		{"prod-viewer", "CheckGate", "connections/prod-1/../dev-1", false},
		{"prod-viewer", "WatchGate", "connections/prod-1", true},
		{"prod-viewer", "WatchGate", "connections/dev-1", false},
		{"prod-viewer", "ListOperations", "connections/prod-2", true},
		{"prod-viewer", "ListOperations", "connections/dev-1", false},
		{"prod-viewer", "ListOperations", "", false}, // would list every connection's
		{"gate-caller", "ListOperations", "", true},
		{"prod-operator", "ReregisterCertificate", "connections/prod-1", true},
		{"prod-operator", "ReregisterCertificate", "connections/dev-1", false},
		{"prod-operator", "VerifyAuditLog", "", false}, // covers every connection
		{"ops-person", "VerifyAuditLog", "", true},
		// Operations: the handler checks once it knows the connection (dev-1).
		{"prod-viewer", "GetOperation", "operations/op-1", false},
		{"gate-caller", "GetOperation", "operations/op-1", true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s/%s", tc.token, tc.rpc, tc.name), func(t *testing.T) {
			_, err := callRPC(e.ctxWith(t, tc.token), conn, tc.rpc, tc.name)
			if tc.allowed {
				if err != nil {
					t.Fatalf("got %v, want OK", err)
				}
				return
			}
			code, info, _ := errInfo(t, err)
			if code != codes.PermissionDenied || info.GetReason() != "CONNECTION_NOT_ALLOWED" {
				t.Fatalf("got %v, want PERMISSION_DENIED CONNECTION_NOT_ALLOWED", err)
			}
			if info.GetMetadata()["identity"] != tc.token {
				t.Errorf("metadata identity = %q", info.GetMetadata()["identity"])
			}
		})
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	hc := healthpb.NewHealthClient(conn)
	check := func(token, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		resp, err := hc.Check(e.ctxWith(t, token), &healthpb.HealthCheckRequest{Service: service})
		return resp.GetStatus(), err
	}
	watch := func(token, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		ctx, cancel := context.WithCancel(e.ctxWith(t, token))
		defer cancel()
		stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return 0, err
		}
		resp, err := stream.Recv()
		return resp.GetStatus(), err
	}
	for name, fn := range map[string]func(string, string) (healthpb.HealthCheckResponse_ServingStatus, error){"Check": check, "Watch": watch} {
		t.Run(name, func(t *testing.T) {
			if st, err := fn("", ""); err != nil || st != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("overall health without credentials: %v %v, want SERVING", st, err)
			}
			if _, err := fn("", "connections/prod-1"); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("per-connection health without credentials: %v, want UNAUTHENTICATED", err)
			}
			if st, err := fn("gate-caller", "connections/prod-1"); err != nil || st != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("per-connection health as viewer: %v %v", st, err)
			}
			if st, err := fn("prod-viewer", "connections/prod-1"); err != nil || st != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("per-connection health as scoped viewer: %v %v", st, err)
			}
			_, err := fn("prod-viewer", "connections/dev-1")
			if _, info, _ := errInfo(t, err); status.Code(err) != codes.PermissionDenied || info.GetReason() != "CONNECTION_NOT_ALLOWED" {
				t.Fatalf("health of another connection: %v, want CONNECTION_NOT_ALLOWED", err)
			}
		})
	}
	t.Run("List", func(t *testing.T) {
		if _, err := hc.List(e.ctxWith(t, ""), &healthpb.HealthListRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("List without credentials: %v", err)
		}
		if _, err := hc.List(e.ctxWith(t, "prod-viewer"), &healthpb.HealthListRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("List as scoped viewer: %v (it would reveal every connection)", err)
		}
		if _, err := hc.List(e.ctxWith(t, "gate-caller"), &healthpb.HealthListRequest{}); err != nil {
			t.Fatalf("List as viewer: %v", err)
		}
	})
}

func TestHealthAndReflectionClosed(t *testing.T) {
	e := newEnv(t, envOptions{closedHealth: true, closedReflection: true})
	conn := e.dial(t, nil)
	if _, err := healthpb.NewHealthClient(conn).Check(e.ctxWith(t, ""), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("closed health without credentials: %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(e.ctxWith(t, "prod-viewer"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("closed health as viewer: %v", err)
	}
	if err := listServices(e.ctxWith(t, ""), conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("closed reflection without credentials: %v", err)
	}
	if err := listServices(e.ctxWith(t, "gate-caller"), conn); err != nil {
		t.Fatalf("closed reflection as viewer: %v", err)
	}
}

func TestReflectionOpen(t *testing.T) {
	e := newEnv(t, envOptions{})
	if err := listServices(e.ctxWith(t, ""), e.dial(t, nil)); err != nil {
		t.Fatalf("reflection without credentials: %v", err)
	}
}

func listServices(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	// A refused stream shows as io.EOF on Send; Recv has the status.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for _, s := range resp.GetListServicesResponse().GetService() {
		if s.GetName() == "certsync.v1.CertSyncService" {
			return nil
		}
	}
	return errors.New("reflection did not list certsync.v1.CertSyncService")
}

func TestProbeRateLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	probe := func(token, name string) error {
		_, err := callRPC(e.ctxWith(t, token), conn, "ProbeScimAuth", name)
		return err
	}
	for i := range DefaultProbesPerMinute {
		if err := probe("gate-caller", "connections/prod-1"); err != nil {
			t.Fatalf("probe %d: %v", i+1, err)
		}
	}
	// The bare id is the same connection, so the same bucket.
	err := probe("gate-caller", "prod-1")
	code, info, retry := errInfo(t, err)
	if code != codes.ResourceExhausted || info.GetReason() != "RATE_LIMITED" {
		t.Fatalf("21st probe: %v, want RESOURCE_EXHAUSTED RATE_LIMITED", err)
	}
	// 20 per minute refills one every 3 s.
	if retry <= 0 || retry > 3*time.Second+time.Millisecond {
		t.Fatalf("RetryInfo %v, want (0, 3s]", retry)
	}
	if info.GetMetadata()["connection"] != "connections/prod-1" || info.GetMetadata()["identity"] != "gate-caller" {
		t.Errorf("metadata %v", info.GetMetadata())
	}
	// Other connections and other callers have their own budgets; gates
	// and comparisons are not probes.
	if err := probe("gate-caller", "connections/prod-2"); err != nil {
		t.Fatalf("other connection: %v", err)
	}
	if err := probe("ops-person", "connections/prod-1"); err != nil {
		t.Fatalf("other caller: %v", err)
	}
	if _, err := callRPC(e.ctxWith(t, "gate-caller"), conn, "CheckGate", "connections/prod-1"); err != nil {
		t.Fatalf("gate while probes are limited: %v", err)
	}
	e.clock.Advance(retry)
	if err := probe("gate-caller", "connections/prod-1"); err != nil {
		t.Fatalf("after RetryInfo: %v", err)
	}
	if err := probe("gate-caller", "connections/prod-1"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("refill gave more than one token: %v", err)
	}
}

func TestNotRequiredIsAnonymousApprover(t *testing.T) {
	e := newEnv(t, envOptions{notRequired: true})
	conn := e.dial(t, nil)
	for _, rpc := range []string{"CheckGate", "ReregisterCertificate", "ApproveOperation", "VerifyAuditLog", "WatchGate"} {
		seen, err := callRPC(e.ctxWith(t, ""), conn, rpc, "connections/dev-1")
		if err != nil || seen != "anonymous|none|approver" {
			t.Fatalf("%s: %q %v", rpc, seen, err)
		}
	}
	// The probe budget still holds: it protects SF, not the server.
	for range DefaultProbesPerMinute {
		if _, err := callRPC(e.ctxWith(t, ""), conn, "ProbeScimAuth", "connections/dev-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := callRPC(e.ctxWith(t, ""), conn, "ProbeScimAuth", "connections/dev-1"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("21st anonymous probe: %v", err)
	}
}

// TestLogsHoldNoSecrets makes calls that log (refusals of every kind, with
// valid, wrong and malformed tokens) and checks that the log names
// identities and problems but holds no token. TestMain repeats the check
// over everything logged by every test.
func TestLogsHoldNoSecrets(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn := e.dial(t, nil)
	wrong := newToken(t)
	_, _ = callRPC(e.ctxWith(t, "gate-caller"), conn, "ReregisterCertificate", "connections/prod-1")
	_, _ = callRPC(e.ctxWith(t, "prod-viewer"), conn, "CheckGate", "connections/dev-1")
	for range DefaultProbesPerMinute + 1 {
		_, _ = callRPC(e.ctxWith(t, "gate-caller"), conn, "ProbeScimAuth", "connections/prod-1")
	}
	for _, v := range []string{"Bearer " + wrong, wrong, "Bearer " + wrong + " " + wrong} {
		ctx := metadata.AppendToOutgoingContext(e.ctxWith(t, ""), "authorization", v)
		_, _ = callRPC(ctx, conn, "CheckGate", "connections/prod-1")
	}
	logged := logBuf.String()
	for _, want := range []string{"authentication failed", "unknown token", "permission denied", "probe rate limited", "gate-caller"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the log lacks %q; the secrets check would be vacuous", want)
		}
	}
	if problems := secretsInLog(); len(problems) > 0 {
		t.Fatalf("the log holds %v", problems)
	}
}
