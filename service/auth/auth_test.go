package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/reflect/protoreflect"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/fault"
)

func TestParseRole(t *testing.T) {
	for in, want := range map[string]Role{"viewer": RoleViewer, "Operator": RoleOperator, " approver ": RoleApprover} {
		if got, err := ParseRole(in); err != nil || got != want {
			t.Errorf("ParseRole(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "none", "admin", "viewers"} {
		if _, err := ParseRole(in); err == nil {
			t.Errorf("ParseRole(%q) accepted", in)
		}
	}
}

func TestRoleIncludes(t *testing.T) {
	tests := []struct {
		have, need Role
		want       bool
	}{
		{RoleViewer, RoleViewer, true},
		{RoleViewer, RoleOperator, false},
		{RoleOperator, RoleViewer, true},
		{RoleOperator, RoleApprover, false},
		{RoleApprover, RoleOperator, true},
		{RoleNone, RoleNone, false},
		{Role(99), RoleViewer, false},
	}
	for _, tc := range tests {
		if got := tc.have.Includes(tc.need); got != tc.want {
			t.Errorf("%v.Includes(%v) = %v", tc.have, tc.need, got)
		}
	}
}

func TestMayAccess(t *testing.T) {
	scoped := Identity{Name: "x", Role: RoleViewer, Connections: []string{"prod-*", "shared"}}
	tests := []struct {
		id   Identity
		conn string
		want bool
	}{
		{scoped, "prod-1", true},
		{scoped, "connections/prod-1", true},
		{scoped, "shared", true},
		{scoped, "dev-1", false},
		{scoped, "", false},
		{scoped, "prod-1/../dev-1", false},
		{Identity{Role: RoleViewer}, "anything", true},
		{Identity{Role: RoleViewer}, "", true},
		{Identity{Role: RoleNone}, "prod-1", false},
		{Anonymous(), "dev-1", true},
	}
	for _, tc := range tests {
		if got := tc.id.MayAccess(tc.conn); got != tc.want {
			t.Errorf("%v.MayAccess(%q) = %v", tc.id.Connections, tc.conn, got)
		}
	}
}

func writeTokens(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadTokens(t *testing.T) {
	tok := newToken(t)
	upper := strings.ToUpper(HashToken(tok))
	path := writeTokens(t, tokensYAML(
		tokenSpec{name: "gate-caller", role: "viewer", hash: upper, connections: []string{"prod-*"}},
		tokenSpec{name: "ops", role: "operator", hash: HashToken(newToken(t))},
	))
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := tokens.Names(); len(got) != 2 || got["gate-caller"] != RoleViewer || got["ops"] != RoleOperator {
		t.Fatalf("Names() = %v", got)
	}
	rec, ok := tokens.lookup(tok)
	if !ok || rec.name != "gate-caller" || len(rec.connections) != 1 || rec.connections[0] != "prod-*" {
		t.Fatalf("lookup = %+v, %v (upper-case hash must work)", rec, ok)
	}
	if _, ok := tokens.lookup(tok + "x"); ok {
		t.Fatal("a different token matched")
	}
	none, err := LoadTokens(writeTokens(t, "tokens: []\n"))
	if err != nil {
		t.Fatalf("an explicitly empty list: %v", err)
	}
	if _, ok := none.lookup(tok); ok {
		t.Fatal("an empty set matched")
	}
}

func TestLoadTokensErrors(t *testing.T) {
	good := HashToken("irrelevant")
	pasted := newToken(t) // someone pastes the token instead of its hash
	tests := []struct {
		name, content string
		want          []string
	}{
		{"short hash", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: good[:63]}), []string{"tokens[0] (a)", "64 hex digits", "found 63"}},
		{"long hash", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: good + "0"}), []string{"64 hex digits"}},
		{"token pasted as hash", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: pasted}), []string{"64 hex digits"}},
		{"not hex", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: strings.Repeat("g", 64)}), []string{"64 hex digits"}},
		{"unknown role", tokensYAML(tokenSpec{name: "a", role: "admin", hash: good}), []string{`role "admin" is unknown`}},
		{"missing role", tokensYAML(tokenSpec{name: "a", role: `""`, hash: good}), []string{"role is missing"}},
		{"duplicate name", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: good}, tokenSpec{name: "a", role: "viewer", hash: HashToken("other")}), []string{"tokens[1] (a)", "also used by tokens[0]"}},
		{"duplicate hash", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: good}, tokenSpec{name: "b", role: "viewer", hash: good}), []string{"same as tokens[0]"}},
		{"bad pattern", tokensYAML(tokenSpec{name: "a", role: "viewer", hash: good, connections: []string{"prod-["}}), []string{"connection pattern"}},
		{"missing name", tokensYAML(tokenSpec{name: `""`, role: "viewer", hash: good}), []string{"name is missing"}},
		{"misspelt field", "tokens:\n  - name: a\n    role: viewer\n    sha256: " + good + "\n    connection: [prod-*]\n", []string{"connection"}},
		{"scalar instead of list", "tokens: " + pasted + "\n", []string{"not a valid tokens file"}},
		{"empty file", "", []string{"no tokens: list"}},
		{"two problems at once", tokensYAML(tokenSpec{name: "a", role: "admin", hash: "abc"}), []string{"unknown", "64 hex digits"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadTokens(writeTokens(t, tc.content))
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), pasted) || strings.Contains(err.Error(), pasted[:7]) || strings.Contains(err.Error(), good) {
				t.Errorf("error echoes a token or hash: %q", err)
			}
		})
	}
	if _, err := LoadTokens(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

// TestTokensReload: a changed file is picked up by Run; a broken one is
// reported and the last good set stays in force.
func TestTokensReload(t *testing.T) {
	first, second := newToken(t), newToken(t)
	path := writeTokens(t, tokensYAML(tokenSpec{name: "first", role: "viewer", hash: HashToken(first)}))
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Required: true, Tokens: tokens, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	who := func(tok string) string {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
		id, err := a.Authenticate(ctx)
		if err != nil {
			return ""
		}
		return id.Name
	}
	reloads := make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tokens.Run(ctx, 5*time.Millisecond, func(err error) { reloads <- err })
	}()
	defer func() { cancel(); <-done }()
	next := func() error {
		t.Helper()
		select {
		case err := <-reloads:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("no reload within 5s")
			return nil
		}
	}

	writeAtomic(t, path, tokensYAML(
		tokenSpec{name: "first", role: "viewer", hash: HashToken(first)},
		tokenSpec{name: "second", role: "operator", hash: HashToken(second)},
	))
	if err := next(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if who(second) != "second" {
		t.Fatal("the new token is not accepted after reload")
	}

	writeAtomic(t, path, tokensYAML(tokenSpec{name: "first", role: "superuser", hash: HashToken(first)}))
	err = next()
	if err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Fatalf("broken reload reported %v", err)
	}
	if who(first) != "first" || who(second) != "second" {
		t.Fatal("a broken reload dropped the last good tokens")
	}
	// The broken version is reported once, not on every tick.
	select {
	case err := <-reloads:
		t.Fatalf("unchanged broken file reloaded again: %v", err)
	case <-time.After(50 * time.Millisecond):
	}

	// An in-place edit (same inode) is noticed too, and revokes.
	time.Sleep(20 * time.Millisecond) // step past coarse file-system timestamps
	if err := os.WriteFile(path, []byte(tokensYAML(tokenSpec{name: "second", role: "operator", hash: HashToken(second)})), 0o600); err != nil {
		t.Fatal(err)
	}
	// Run may read the file half-written first; wait for the final state.
	for who(first) != "" || who(second) != "second" {
		if err := next(); err != nil {
			t.Logf("reload of a half-written file: %v", err)
		}
	}
	// Reload on demand keeps the last good set as well.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := tokens.Reload(); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	if who(second) != "second" {
		t.Fatal("a failed Reload dropped the last good tokens")
	}
}

// TestLookupIsConstantTime guards the comparison: digests are compared with
// subtle.ConstantTimeCompare over every record, with no early exit.
func TestLookupIsConstantTime(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "tokens.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if d, ok := d.(*ast.FuncDecl); ok && d.Name.Name == "lookup" {
			fn = d
		}
	}
	if fn == nil {
		t.Fatal("no lookup function")
	}
	var compares, loops int
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && x.Name == "subtle" && n.Sel.Name == "ConstantTimeCompare" {
				compares++
			}
			if x, ok := n.X.(*ast.Ident); ok && x.Name == "bytes" && n.Sel.Name == "Equal" {
				t.Error("lookup uses bytes.Equal")
			}
		case *ast.RangeStmt:
			loops++
			ast.Inspect(n.Body, func(m ast.Node) bool {
				switch m := m.(type) {
				case *ast.ReturnStmt, *ast.BranchStmt:
					t.Errorf("lookup leaves its loop early at %v", m.Pos())
				case *ast.IfStmt:
					t.Errorf("lookup branches inside its loop at %v", m.Pos())
				}
				return true
			})
		case *ast.BinaryExpr:
			if n.Op == token.EQL {
				if _, isLit := n.Y.(*ast.BasicLit); !isLit {
					if id, ok := n.Y.(*ast.Ident); !ok || id.Name != "nil" {
						t.Errorf("lookup compares with == at %v", n.Pos())
					}
				}
			}
		}
		return true
	})
	if compares != 1 || loops != 1 {
		t.Fatalf("lookup has %d ConstantTimeCompare calls in %d loops", compares, loops)
	}
}

// withPeer makes a context as grpc does for a TLS connection.
func withPeer(chains [][]*x509.Certificate, presented []*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
		VerifiedChains:   chains,
		PeerCertificates: presented,
	}}})
}

func TestAuthenticateCertificate(t *testing.T) {
	clock := newFakeClock()
	a, err := New(Options{Required: true, Now: clock.Now, Bindings: []Binding{
		{ID: "spiffe://example.org/ops", Role: RoleOperator, Connections: []string{"connections/prod-*"}},
		{ID: "batch-host", Role: RoleViewer},
	}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://example.org/ops")
	other, _ := url.Parse("spiffe://example.org/other")
	notAfter := clock.Now().Add(time.Hour)
	leaf := func(cn string, uris ...*url.URL) *x509.Certificate {
		c := &x509.Certificate{URIs: uris, NotAfter: notAfter}
		c.Subject.CommonName = cn
		return c
	}
	tests := []struct {
		name     string
		ctx      context.Context
		wantName string
		wantRole Role
		wantErr  bool
	}{
		{"URI SAN wins over CN", withPeer([][]*x509.Certificate{{leaf("batch-host", u)}}, nil), "spiffe://example.org/ops", RoleOperator, false},
		{"first URI SAN only", withPeer([][]*x509.Certificate{{leaf("", other, u)}}, nil), "spiffe://example.org/other", RoleNone, false},
		{"CN", withPeer([][]*x509.Certificate{{leaf("batch-host")}}, nil), "batch-host", RoleViewer, false},
		{"CN spelling a URI", withPeer([][]*x509.Certificate{{leaf("spiffe://example.org/ops")}}, nil), "spiffe://example.org/ops", RoleNone, false},
		{"presented but not verified", withPeer(nil, []*x509.Certificate{leaf("batch-host", u)}), "", RoleNone, true},
		{"no identity in the certificate", withPeer([][]*x509.Certificate{{leaf("")}}, nil), "", RoleNone, true},
		{"no peer", context.Background(), "", RoleNone, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(tc.ctx)
			if tc.wantErr {
				if fe, ok := fault.As(err); !ok || fe.Kind != fault.Unauthenticated {
					t.Fatalf("got %+v, %v; want Unauthenticated", id, err)
				}
				return
			}
			if err != nil || id.Name != tc.wantName || id.Role != tc.wantRole || id.Method != MethodCertificate {
				t.Fatalf("got %+v, %v", id, err)
			}
		})
	}
	id, _ := a.Authenticate(withPeer([][]*x509.Certificate{{leaf("", u)}}, nil))
	if !id.MayAccess("prod-1") || id.MayAccess("dev-1") {
		t.Fatalf("binding patterns not applied: %v", id.Connections)
	}
	// A connection can outlive its certificate; calls on it stop when it
	// expires.
	clock.Advance(2 * time.Hour)
	if _, err := a.Authenticate(withPeer([][]*x509.Certificate{{leaf("", u)}}, nil)); err == nil {
		t.Fatal("an expired certificate authenticated")
	}
}

func TestAuthenticateTokenDetails(t *testing.T) {
	tok := newToken(t)
	tokens, err := LoadTokens(writeTokens(t, tokensYAML(tokenSpec{name: "gate", role: "viewer", hash: HashToken(tok)})))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Required: true, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	for _, md := range []metadata.MD{
		metadata.Pairs("authorization", "bearer "+tok),
		metadata.Pairs("authorization", "Bearer  "+tok+" "),
	} {
		if id, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), md)); err != nil || id.Name != "gate" || id.Method != MethodToken {
			t.Errorf("%v: %+v %v", md, id, err)
		}
	}
	two := metadata.MD{"authorization": {"Bearer " + tok, "Bearer " + tok}}
	if _, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), two)); err == nil {
		t.Error("two authorization values accepted")
	}
	// A token that fails does not fall back to a valid certificate.
	u, _ := url.Parse("spiffe://example.org/ops")
	ctx := metadata.NewIncomingContext(withPeer([][]*x509.Certificate{{{URIs: []*url.URL{u}, NotAfter: time.Now().Add(time.Hour)}}}, nil), metadata.Pairs("authorization", "Bearer wrong"))
	if _, err := a.Authenticate(ctx); err == nil {
		t.Error("a wrong token fell back to the certificate")
	}
	// Without tokens configured, a token is refused with a clear message.
	b, _ := New(Options{Required: true})
	_, err = b.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok)))
	if err == nil || !strings.Contains(err.Error(), "accepts no bearer tokens") {
		t.Errorf("got %v", err)
	}
}

func TestValidateBindings(t *testing.T) {
	tests := []struct {
		name     string
		bindings []Binding
		want     string
	}{
		{"ok", []Binding{{ID: "spiffe://x/a", Role: RoleViewer, Connections: []string{"prod-*", "connections/shared"}}}, ""},
		{"missing id", []Binding{{Role: RoleViewer}}, "id is missing"},
		{"duplicate", []Binding{{ID: "a", Role: RoleViewer}, {ID: "a", Role: RoleOperator}}, "bound twice"},
		{"no role", []Binding{{ID: "a"}}, "role is missing"},
		{"bad pattern", []Binding{{ID: "a", Role: RoleViewer, Connections: []string{"["}}}, "pattern"},
		{"slash in pattern", []Binding{{ID: "a", Role: RoleViewer, Connections: []string{"x/*"}}}, "'/'"},
		{"spaces", []Binding{{ID: " a", Role: RoleViewer}}, "spaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateBindings(tc.bindings)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := New(Options{Bindings: tc.bindings}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if _, err := New(Options{Bindings: tc.bindings}); err == nil {
				t.Fatal("New accepted invalid bindings")
			}
		})
	}
}

// TestBindingYAML: configuration files can hold bindings directly.
func TestBindingYAML(t *testing.T) {
	var got []Binding
	src := "- id: spiffe://example.org/ops\n  role: operator\n  connections: [\"prod-*\"]\n- id: batch-host\n  role: viewer\n"
	if err := yaml.Unmarshal([]byte(src), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Role != RoleOperator || got[1].Role != RoleViewer || got[0].Connections[0] != "prod-*" {
		t.Fatalf("got %+v", got)
	}
	if err := yaml.Unmarshal([]byte("- id: a\n  role: admin\n"), &got); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("unknown role: %v", err)
	}
}

// TestPolicyTable: every RPC of the service has an explicit entry with the
// role the issue asks for, and the fields the scope checks read exist.
func TestPolicyTable(t *testing.T) {
	want := map[string]Role{
		"ListConnections": RoleViewer, "GetConnection": RoleViewer, "InspectCertificate": RoleViewer,
		"DiagnoseJobError": RoleViewer, "CompareFingerprints": RoleViewer, "ProbeScimAuth": RoleViewer,
		"CheckGate": RoleViewer, "WatchGate": RoleViewer, "GetOperation": RoleViewer, "ListOperations": RoleViewer,
		"WaitOperation": RoleViewer, "ListSourceCertificates": RoleViewer, "GetEscalationBundle": RoleViewer,
		"GetProvisioningJob":    RoleViewer,
		"ReregisterCertificate": RoleOperator, "CancelOperation": RoleOperator, "ConfirmOperationStep": RoleOperator,
		"RecordTargetMapping": RoleOperator, "ImportSourceCertificate": RoleOperator, "StartProvisioningJob": RoleOperator,
		"ListAuditEvents": RoleOperator, "VerifyAuditLog": RoleOperator,
		"ApproveOperation": RoleApprover,
	}
	sd := certsyncv1.File_certsync_v1_certsync_service_proto.Services().ByName("CertSyncService")
	methods := sd.Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		full := fmt.Sprintf("/%s/%s", sd.FullName(), m.Name())
		p, ok := policies[full]
		if !ok {
			t.Errorf("%s has no policy entry; add it to the table in policy.go", full)
			continue
		}
		if w, ok := want[string(m.Name())]; !ok || p.role != w {
			t.Errorf("%s needs %v, the issue says %v", m.Name(), p.role, w)
		}
		field := map[scope]string{scopeName: "name", scopeFilter: "connection"}[p.scope]
		if field != "" {
			fd := m.Input().Fields().ByName(protoreflect.Name(field))
			if fd == nil || fd.Kind() != protoreflect.StringKind {
				t.Errorf("%s: policy reads %s.%s, which is not a string field", m.Name(), m.Input().FullName(), field)
			}
		}
	}
	if len(want) != methods.Len() {
		t.Errorf("the service has %d methods, the expectation %d: update the test", methods.Len(), len(want))
	}
	if RequiredRole("/certsync.v1.CertSyncService/SomethingNew") != RoleApprover {
		t.Error("unknown methods must need an approver")
	}
	// Unknown methods also need an identity without connection patterns.
	a, _ := New(Options{Required: true})
	scopedApprover := Identity{Name: "x", Role: RoleApprover, Connections: []string{"prod-*"}}
	if err := a.authorize(context.Background(), "/x.Y/Z", scopedApprover, nil); err == nil {
		t.Error("a scoped approver may call an unknown method")
	}
	if err := a.authorize(context.Background(), "/x.Y/Z", Identity{Name: "y", Role: RoleApprover}, nil); err != nil {
		t.Error(err)
	}
}

func TestProbeLimiterMemoryIsBounded(t *testing.T) {
	clock := newFakeClock()
	l := newProbeLimiter(20)
	for i := range 1000 {
		if ok, _ := l.take(fmt.Sprintf("id-%d", i%10), fmt.Sprintf("c-%d", i), clock.Now()); !ok {
			t.Fatalf("fresh bucket %d refused", i)
		}
	}
	if l.size() != 1000 {
		t.Fatalf("size %d", l.size())
	}
	// Buckets idle for a minute are full again and dropped.
	clock.Advance(time.Minute)
	l.take("id-0", "c-0", clock.Now())
	if l.size() != 1 {
		t.Fatalf("after a minute idle: %d buckets, want 1", l.size())
	}
	// One identity cannot hold more than maxPerIdentity draining buckets;
	// its new keys wait instead of evicting (and refilling) others.
	for i := range maxPerIdentity {
		l.take("flooder", fmt.Sprintf("bogus-%d", i), clock.Now())
	}
	ok, retry := l.take("flooder", "one-more", clock.Now())
	if ok || retry <= 0 {
		t.Fatalf("identity over its bucket cap: ok=%v retry=%v", ok, retry)
	}
	if ok, _ := l.take("someone-else", "c-1", clock.Now()); !ok {
		t.Fatal("another identity is refused because of the flooder")
	}
}

func TestProbeLimiterRefill(t *testing.T) {
	clock := newFakeClock()
	l := newProbeLimiter(20)
	for range 20 {
		if ok, _ := l.take("a", "c", clock.Now()); !ok {
			t.Fatal("burst refused")
		}
	}
	ok, retry := l.take("a", "c", clock.Now())
	if ok || retry < 3*time.Second-time.Millisecond || retry > 3*time.Second+time.Millisecond {
		t.Fatalf("ok=%v retry=%v, want about 3s", ok, retry)
	}
	clock.Advance(time.Second)
	if _, r := l.take("a", "c", clock.Now()); r < 2*time.Second-time.Millisecond || r > 2*time.Second+time.Millisecond {
		t.Fatalf("retry after 1s = %v, want about 2s", r)
	}
	// Time going backwards (an injected clock) adds nothing.
	clock.Advance(-time.Hour)
	if ok, _ := l.take("a", "c", clock.Now()); ok {
		t.Fatal("a clock step back refilled the bucket")
	}
}

func TestProbeLimitOptions(t *testing.T) {
	clock := newFakeClock()
	ctx := context.Background()
	viewer := Identity{Name: "v", Role: RoleViewer, Method: MethodToken}
	req := &certsyncv1.ProbeScimAuthRequest{Name: "connections/c"}
	method := certsyncv1.CertSyncService_ProbeScimAuth_FullMethodName
	a, _ := New(Options{Required: true, ProbesPerMinute: 2, Now: clock.Now})
	for range 2 {
		if err := a.authorize(ctx, method, viewer, req); err != nil {
			t.Fatal(err)
		}
	}
	err := a.authorize(ctx, method, viewer, req)
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.ResourceExhausted || fe.Reason != "RATE_LIMITED" || fe.RetryAfter <= 0 {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(fe.Message, "2 probes per minute") {
		t.Errorf("message %q", fe.Message)
	}
	// A negative limit turns the limit off.
	off, _ := New(Options{Required: true, ProbesPerMinute: -1})
	for range 100 {
		if err := off.authorize(ctx, method, viewer, req); err != nil {
			t.Fatal(err)
		}
	}
	// Invalid names longer than any id share a small key.
	long := &certsyncv1.ProbeScimAuthRequest{Name: strings.Repeat("x", 10000)}
	if err := a.authorize(ctx, method, viewer, long); err != nil {
		t.Fatal(err)
	}
	for k := range a.limiter.buckets {
		if len(k.conn) > 64 {
			t.Fatalf("limiter keeps a %d-byte key", len(k.conn))
		}
	}
}

func TestCheckAccess(t *testing.T) {
	if err := CheckAccess(context.Background(), "operations/x", "prod-1"); err == nil {
		t.Fatal("a context without identity passed")
	}
	ctx := NewContext(context.Background(), Identity{Name: "p", Role: RoleViewer, Method: MethodToken, Connections: []string{"prod-*"}})
	if err := CheckAccess(ctx, "operations/x", "prod-1"); err != nil {
		t.Fatal(err)
	}
	err := CheckAccess(ctx, "operations/x", "dev-1")
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.PermissionDenied || fe.Reason != "CONNECTION_NOT_ALLOWED" {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(fe.Message, "dev-1") {
		t.Errorf("the refusal names the connection the caller may not see: %q", fe.Message)
	}
	if !errors.Is(err, err) || !strings.Contains(fe.Message, "operations/x") {
		t.Errorf("message %q", fe.Message)
	}
}
