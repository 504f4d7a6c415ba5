package service_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/sandbox"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// importEnv serves the sandbox's demo connections with a store, the gate,
// re-registration and token authentication; demo-mismatch reads IPS's
// certificate from imports (source.type imported).
type importEnv struct {
	h  *harness
	sb *sandbox.Sandbox
	st store.Store
	// oldPEM and newPEM are demo-mismatch's IPS slots: the inactive one SF
	// still maps, and the Active one IPS renewed to (same subject and
	// issuer).
	oldPEM, newPEM []byte
	// healthyPEM is demo-healthy's Active certificate, which SF maps.
	healthyPEM []byte
	caPEM      []byte
}

const (
	operatorToken = "operator-token-0123456789"
	viewerToken   = "viewer-token-0123456789"
	mismatch      = "connections/demo-mismatch"
)

// ipsSlots reads an IPS system's certificate slots from the simulated IPS
// (real IPS has no such API; an operator downloads them).
func ipsSlots(t *testing.T, slotsURL, caFile string) (old, active []byte) {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	must(t, err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA in " + caFile)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(slotsURL)
	must(t, err)
	defer resp.Body.Close()
	var list struct {
		Certificates []struct {
			Active         bool   `json:"active"`
			CertificatePEM string `json:"certificate_pem"`
		} `json:"certificates"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&list))
	for _, sl := range list.Certificates {
		if sl.Active {
			active = []byte(sl.CertificatePEM)
		} else {
			old = []byte(sl.CertificatePEM)
		}
	}
	if resp.StatusCode != http.StatusOK || old == nil || active == nil {
		t.Fatalf("slots of %s: HTTP %d, %d slots", slotsURL, resp.StatusCode, len(list.Certificates))
	}
	return old, active
}

func newImportEnv(t *testing.T) *importEnv {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	dir := t.TempDir()
	conns, err := sb.WriteFiles(dir)
	must(t, err)
	e := &importEnv{sb: sb}
	for i, c := range conns {
		switch c.ID {
		case "demo-mismatch":
			e.oldPEM, e.newPEM = ipsSlots(t, strings.TrimSuffix(c.Source.URL, "/active"), c.Source.CAFile)
			conns[i].Source = config.Source{Type: "imported"}
		case "demo-healthy":
			e.healthyPEM, err = os.ReadFile(c.Probe.CertFile) // the Active slot's certificate
			must(t, err)
			e.caPEM, err = os.ReadFile(c.Source.CAFile)
			must(t, err)
		}
	}
	if e.oldPEM == nil || e.healthyPEM == nil {
		t.Fatal("the sandbox lacks demo-mismatch or demo-healthy")
	}
	e.st, err = store.Open(context.Background(), "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { e.st.Close() })

	cfg := &config.Config{Connections: conns}
	cfg.ApplyDefaults()
	problems := cfg.Validate()
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("configuration invalid: %v", errs)
	}
	inv, err := inventory.Build(cfg.Connections, problems, inventory.Options{ProbeTimeout: 5 * time.Second, Store: e.st})
	must(t, err)
	t.Cleanup(inv.Close)
	var g *gate.Gate
	m := reregister.New(reregister.Options{Store: e.st, Inventory: inv, SettleWindow: 2 * time.Second, ProbeInterval: 200 * time.Millisecond,
		OnFinish: func(id, _ string) { g.Invalidate(id) }})
	t.Cleanup(m.Close)
	g = gate.New(gate.Options{Inventory: inv, Operations: m, ProbeInterval: 10 * time.Millisecond})
	t.Cleanup(g.Close)

	tokensFile := filepath.Join(dir, "tokens.yaml")
	must(t, os.WriteFile(tokensFile, fmt.Appendf(nil, "tokens:\n"+
		"  - {name: ops-alice, role: operator, sha256: %s}\n"+
		"  - {name: viewer-bob, role: viewer, sha256: %s}\n", auth.HashToken(operatorToken), auth.HashToken(viewerToken)), 0o600))
	tokens, err := auth.LoadTokens(tokensFile)
	must(t, err)
	o := auth.DefaultOptions()
	o.Required, o.Tokens, o.OnAuthenticated = true, tokens, service.NoteIdentity
	authz, err := auth.New(o)
	must(t, err)

	srv := service.New(service.Options{Inventory: inv, Operations: m, Gate: g, Store: e.st})
	gs := srv.NewGRPCServer(service.GRPCOptions{MaxMessageBytes: config.DefaultMaxMessageBytes, Health: health.NewServer(), Auth: authz})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			// The operator unless the call names someone else.
			if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get("authorization")) == 0 {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+operatorToken)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	must(t, err)
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	e.h = &harness{client: certsyncv1.NewCertSyncServiceClient(conn), conn: conn}
	return e
}

func (e *importEnv) importCert(t *testing.T, name string, pemData []byte, active bool, reason string) *certsyncv1.ImportSourceCertificateResponse {
	t.Helper()
	r, err := e.h.client.ImportSourceCertificate(ctx(t), &certsyncv1.ImportSourceCertificateRequest{Name: name, Certificate: pemData, Active: active, Reason: reason})
	must(t, err)
	return r
}

func (e *importEnv) list(t *testing.T, name string, size int32) []*certsyncv1.SourceCertificate {
	t.Helper()
	var out []*certsyncv1.SourceCertificate
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		r, err := e.h.client.ListSourceCertificates(ctx(t), &certsyncv1.ListSourceCertificatesRequest{Name: name, PageSize: size, PageToken: tok})
		must(t, err)
		if size > 0 && len(r.GetSourceCertificates()) > int(size) {
			t.Fatalf("page of %d, size %d", len(r.GetSourceCertificates()), size)
		}
		out = append(out, r.GetSourceCertificates()...)
		if tok = r.GetNextPageToken(); tok == "" {
			return out
		}
	}
}

// gateDecision asks the gate until it has settled (an import or a
// re-registration drops its evidence).
func (e *importEnv) gateDecision(t *testing.T, name string) *certsyncv1.CheckGateResponse {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := e.h.client.CheckGate(ctx(t), &certsyncv1.CheckGateRequest{Name: name})
		must(t, err)
		if r.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func importFindingCodes(r *certsyncv1.ImportSourceCertificateResponse) []string {
	var out []string
	for _, f := range r.GetFindings() {
		out = append(out, f.GetCode())
	}
	return out
}

// sha256Of is a PEM certificate's SHA-256 fingerprint as certsync prints it.
func sha256Of(t *testing.T, pemData []byte) string {
	t.Helper()
	b, _ := pem.Decode(pemData)
	if b == nil {
		t.Fatal("no PEM block")
	}
	sum := sha256.Sum256(b.Bytes)
	return x509cert.FormatFingerprint(sum[:])
}

// TestImportSourceCertificateVersions walks through IPS renewing its
// certificate: the operator imports the certificate SF maps (MATCH), then
// the renewal IPS shows as Active (RENEWAL_NOT_UPLOADED, MISMATCH, the gate
// denies), and re-registration uploads the imported renewal.
func TestImportSourceCertificateVersions(t *testing.T) {
	e := newImportEnv(t)
	h := e.h
	oldSHA, newSHA := sha256Of(t, e.oldPEM), sha256Of(t, e.newPEM)

	// Nothing imported yet: IPS's certificate is missing, and says how to
	// import it.
	cmp := h.compare(t, mismatch)
	if cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_SOURCE_MISSING ||
		!strings.Contains(cmp.GetFindings()[0].GetMessage(), "no active certificate imported yet: run certsyncctl import demo-mismatch FILE --active") {
		t.Fatalf("before any import: %v %v", cmp.GetResult(), cmp.GetFindings())
	}
	if got := e.list(t, mismatch, 0); len(got) != 0 {
		t.Fatalf("listed %d versions before any import", len(got))
	}

	// A viewer may list but not import.
	viewer := metadata.AppendToOutgoingContext(ctx(t), "authorization", "Bearer "+viewerToken)
	if _, err := h.client.ImportSourceCertificate(viewer, &certsyncv1.ImportSourceCertificateRequest{Name: mismatch, Certificate: e.oldPEM, Active: true}); err == nil {
		t.Fatal("a viewer imported a certificate")
	} else if code, _, _ := errorInfo(t, err); code != codes.PermissionDenied {
		t.Fatalf("viewer import: %v", err)
	}
	if _, err := h.client.ListSourceCertificates(viewer, &certsyncv1.ListSourceCertificatesRequest{Name: mismatch}); err != nil {
		t.Fatalf("viewer list: %v", err)
	}

	// The certificate SF maps, as IPS's Active one: SF and IPS agree.
	r := e.importCert(t, mismatch, e.oldPEM, true, "CHG-1 current certificate")
	v1 := r.GetSourceCertificate()
	if v1.GetId() == "" || !v1.GetActive() || v1.GetImportedBy() != "ops-alice" || v1.GetImportTime() == nil ||
		v1.GetCertificate().GetSha256Fingerprint() != oldSHA || !strings.Contains(v1.GetCertificate().GetSubject(), "CN=ips-outbound-demo-mismatch") {
		t.Fatalf("imported: %v", v1)
	}
	if codes := strings.Join(importFindingCodes(r), ","); codes != "MAPPED_IN_SF" {
		t.Errorf("findings of the first import: %s %v", codes, r.GetFindings())
	}
	cmp = h.compare(t, mismatch)
	if cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH || cmp.GetSource().GetSha256Fingerprint() != oldSHA {
		t.Fatalf("after importing the mapped certificate: %v %v", cmp.GetResult(), cmp.GetFindings())
	}

	// IPS renewed: the new Active certificate has the same subject and
	// issuer, and SF still maps the old one.
	r = e.importCert(t, mismatch, e.newPEM, true, "CHG-2 IPS renewed")
	v2 := r.GetSourceCertificate()
	if v2.GetId() == v1.GetId() || !v2.GetActive() || v2.GetCertificate().GetSha256Fingerprint() != newSHA {
		t.Fatalf("imported the renewal: %v", v2)
	}
	if len(r.GetFindings()) == 0 || r.GetFindings()[0].GetCode() != "RENEWAL_NOT_UPLOADED" {
		t.Fatalf("findings of the renewal: %v", importFindingCodes(r))
	}
	f := r.GetFindings()[0]
	if f.GetSeverity() != certsyncv1.Severity_SEVERITY_ERROR || f.GetMappingId() != cmp.GetMappingId() ||
		!strings.Contains(f.GetMessage(), "must be uploaded to SF") || !strings.Contains(f.GetMessage(), "certsyncctl reregister demo-mismatch") ||
		!strings.Contains(f.GetMessage(), oldSHA) || !strings.Contains(f.GetMessage(), newSHA) {
		t.Errorf("RENEWAL_NOT_UPLOADED: %v", f)
	}
	cmp = h.compare(t, mismatch)
	if cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MISMATCH || !cmp.GetSameSubjectAndIssuer() ||
		cmp.GetSource().GetSha256Fingerprint() != newSHA || !strings.Contains(strings.Join(findingCodes(cmp), ","), "RENEWAL_NOT_UPLOADED") {
		t.Fatalf("after importing the renewal: %v same DN %v %v", cmp.GetResult(), cmp.GetSameSubjectAndIssuer(), findingCodes(cmp))
	}
	g := e.gateDecision(t, mismatch)
	if acts := gateActions(g); g.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_DENY || len(acts) == 0 || acts[0] != "REMEDIATION_ACTION_UPLOAD_ACTIVE_CERTIFICATE" {
		t.Errorf("gate after the renewal: %v %v [%s]", g.GetDecision(), acts, gateReasons(g.GetConditions()))
	}

	// Both versions, newest first; only the renewal is Active.
	for _, size := range []int32{0, 1} {
		got := e.list(t, mismatch, size)
		if len(got) != 2 || got[0].GetId() != v2.GetId() || !got[0].GetActive() || got[1].GetId() != v1.GetId() || got[1].GetActive() ||
			got[1].GetCertificate().GetSha256Fingerprint() != oldSHA || got[1].GetImportedBy() != "ops-alice" {
			t.Errorf("listed (page size %d): %v", size, got)
		}
	}
	if got := e.list(t, "connections/demo-healthy", 0); len(got) != 0 {
		t.Errorf("demo-healthy lists %d versions", len(got))
	}

	// Importing a version again updates it rather than adding one.
	r = e.importCert(t, mismatch, e.oldPEM, false, "CHG-3 tidy up")
	if r.GetSourceCertificate().GetId() != v1.GetId() || r.GetSourceCertificate().GetActive() || !strings.Contains(strings.Join(importFindingCodes(r), ","), "ALREADY_IMPORTED") {
		t.Errorf("re-import of the old version: %v %v", r.GetSourceCertificate(), importFindingCodes(r))
	}
	if got := e.list(t, mismatch, 0); len(got) != 2 || !got[0].GetActive() {
		t.Errorf("after the re-import: %v", got)
	}

	// The imports are in the audit, with who made them and why, and so is
	// the viewer's refused attempt.
	ev, err := h.client.ListAuditEvents(ctx(t), &certsyncv1.ListAuditEventsRequest{Connection: mismatch})
	must(t, err)
	var got []string
	for _, a := range ev.GetEvents() {
		if a.GetRpc() == certsyncv1.CertSyncService_ImportSourceCertificate_FullMethodName {
			got = append(got, a.GetIdentity()+"/"+a.GetRole()+"/"+a.GetOutcome()+"/"+a.GetReason())
		}
	}
	want := "ops-alice/operator/OK/CHG-3 tidy up|ops-alice/operator/OK/CHG-2 IPS renewed|ops-alice/operator/OK/CHG-1 current certificate|viewer-bob/viewer/PermissionDenied/"
	if strings.Join(got, "|") != want {
		t.Errorf("audit:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	if v, err := h.client.VerifyAuditLog(ctx(t), &certsyncv1.VerifyAuditLogRequest{}); err != nil || !v.GetIntact() {
		t.Errorf("audit chain: %v %v", v, err)
	}

	// Re-registration uploads the imported Active certificate.
	op := h.reregister(t, &certsyncv1.ReregisterCertificateRequest{Name: mismatch, Etag: cmp.GetEtag(), Reason: "CHG-2 upload renewal"})
	op = h.wait(t, op.GetName())
	if op.GetState() != certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED || op.GetSourceSha256() != newSHA {
		t.Fatalf("re-registration: %v %s %v", op.GetState(), op.GetSummary(), op.GetSteps())
	}
	state := e.sb.State().Connections["demo-mismatch"]
	if len(state.Mappings) != 1 || state.Mappings[0].SHA256 != state.IPSActiveSHA256 {
		t.Errorf("SF maps %+v, IPS's Active is %s", state.Mappings, state.IPSActiveSHA256)
	}
	if cmp := h.compare(t, mismatch); cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH {
		t.Errorf("compare after re-registration: %v", cmp.GetResult())
	}
	if g := e.gateDecision(t, mismatch); g.GetDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Errorf("gate after re-registration: %v [%s]", g.GetDecision(), gateReasons(g.GetConditions()))
	}
}

// TestImportSourceCertificateFindings imports into a connection whose
// source is not "imported": versions are kept, and the findings say what
// each one means for SF.
func TestImportSourceCertificateFindings(t *testing.T) {
	e := newImportEnv(t)
	const healthy = "connections/demo-healthy"
	ca, err := pki.NewCA("other CA", time.Now().Add(-time.Hour), 48*time.Hour)
	must(t, err)
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-outbound-elsewhere"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	must(t, err)

	tests := []struct {
		name   string
		pem    []byte
		active bool
		codes  []string // codes that must be among the findings
		not    []string // codes that must not
	}{
		{"the mapped certificate, active", e.healthyPEM, true, []string{"SOURCE_NOT_IMPORTED", "MAPPED_IN_SF"}, []string{"RENEWAL_NOT_UPLOADED", "SF_MAPS_INACTIVE"}},
		{"the mapped certificate, inactive", e.healthyPEM, false, []string{"SOURCE_NOT_IMPORTED", "ALREADY_IMPORTED", "SF_MAPS_INACTIVE"}, []string{"MAPPED_IN_SF"}},
		{"another DN, expiring", pki.CertPEM(leaf.Cert), true, []string{"TARGET_MISSING", "SOURCE_EXPIRES_SOON"}, []string{"ALREADY_IMPORTED"}},
		{"a CA", e.caPEM, false, []string{"CA_CERTIFICATE"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.importCert(t, healthy, tt.pem, tt.active, "")
			codes := "," + strings.Join(importFindingCodes(r), ",") + ","
			for _, c := range tt.codes {
				if !strings.Contains(codes, ","+c+",") {
					t.Errorf("findings %s lack %s", codes, c)
				}
			}
			for _, c := range tt.not {
				if strings.Contains(codes, ","+c+",") {
					t.Errorf("findings %s include %s", codes, c)
				}
			}
			for i, f := range r.GetFindings() {
				if f.GetMessage() == "" || (i > 0 && f.GetSeverity() > r.GetFindings()[i-1].GetSeverity()) {
					t.Errorf("finding %d: %v (errors first, each with a message)", i, f)
				}
			}
		})
	}
	// The connection's own source still decides: a MATCH with SF.
	if cmp := e.h.compare(t, healthy); cmp.GetResult() != certsyncv1.ComparisonResult_COMPARISON_RESULT_MATCH {
		t.Errorf("demo-healthy after imports: %v", cmp.GetResult())
	}
	if got := e.list(t, healthy, 0); len(got) != 3 {
		t.Errorf("demo-healthy lists %d versions, want 3", len(got))
	}
}

func TestImportSourceCertificateRefusals(t *testing.T) {
	e := newImportEnv(t)
	ca, err := pki.NewCA("refusal CA", time.Now(), time.Hour)
	must(t, err)
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
	must(t, err)
	keyPEM, err := pki.KeyPEM(leaf.Key)
	must(t, err)
	certPEM := pki.CertPEM(leaf.Cert)
	tests := []struct {
		name   string
		req    *certsyncv1.ImportSourceCertificateRequest
		code   codes.Code
		reason string
		field  string
		text   string
	}{
		{"empty", &certsyncv1.ImportSourceCertificateRequest{Name: mismatch}, codes.InvalidArgument, "EMPTY_INPUT", "certificate", "empty"},
		{"private key", &certsyncv1.ImportSourceCertificateRequest{Name: mismatch, Certificate: keyPEM, Active: true}, codes.InvalidArgument, "PRIVATE_KEY_REFUSED", "certificate", "private key"},
		{"certificate and key", &certsyncv1.ImportSourceCertificateRequest{Name: mismatch, Certificate: append(append([]byte{}, certPEM...), keyPEM...)}, codes.InvalidArgument, "PRIVATE_KEY_REFUSED", "certificate", "private key"},
		{"chain", &certsyncv1.ImportSourceCertificateRequest{Name: mismatch, Certificate: append(append([]byte{}, certPEM...), pki.CertPEM(ca.Cert)...)}, codes.InvalidArgument, "TOO_MANY_CERTIFICATES", "certificate", "holds 2 certificates"},
		{"garbage", &certsyncv1.ImportSourceCertificateRequest{Name: mismatch, Certificate: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}, codes.InvalidArgument, "", "certificate", ""},
		{"unknown connection", &certsyncv1.ImportSourceCertificateRequest{Name: "connections/nope", Certificate: certPEM}, codes.NotFound, "CONNECTION_NOT_FOUND", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.h.client.ImportSourceCertificate(ctx(t), tt.req)
			code, reason, fields := errorInfo(t, err)
			if code != tt.code || (tt.reason != "" && reason != tt.reason) || strings.Join(fields, ",") != tt.field {
				t.Errorf("%v: code %v reason %s fields %v", err, code, reason, fields)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("message %q lacks %q", err, tt.text)
			}
			body := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[2]
			if strings.Contains(err.Error(), body) {
				t.Error("the error repeats the private key")
			}
		})
	}
	if got := e.list(t, mismatch, 0); len(got) != 0 {
		t.Errorf("refused imports stored %d versions", len(got))
	}
	// Each refusal is audited by the interceptor.
	ev, err := e.h.client.ListAuditEvents(ctx(t), &certsyncv1.ListAuditEventsRequest{Connection: mismatch})
	must(t, err)
	if n := len(ev.GetEvents()); n != 5 {
		t.Errorf("%d audit events for the refused imports, want 5", n)
	}
	for _, a := range ev.GetEvents() {
		if a.GetOutcome() != "InvalidArgument" || a.GetIdentity() != "ops-alice" {
			t.Errorf("audit event %v", a)
		}
	}

	_, err = e.h.client.ListSourceCertificates(ctx(t), &certsyncv1.ListSourceCertificatesRequest{Name: mismatch, PageToken: "garbage"})
	if code, reason, fields := errorInfo(t, err); code != codes.InvalidArgument || reason != "INVALID_PAGE_TOKEN" || strings.Join(fields, ",") != "page_token" {
		t.Errorf("garbage page token: %v", err)
	}
	_, err = e.h.client.ListSourceCertificates(ctx(t), &certsyncv1.ListSourceCertificatesRequest{Name: "connections/nope"})
	if code, _, _ := errorInfo(t, err); code != codes.NotFound {
		t.Errorf("unknown connection: %v", err)
	}

	// Without a store, imports cannot be kept.
	h := newHarness(t, "a")
	_, err = h.client.ImportSourceCertificate(ctx(t), &certsyncv1.ImportSourceCertificateRequest{Name: "connections/a", Certificate: certPEM})
	if code, reason, _ := errorInfo(t, err); code != codes.Unimplemented || reason != "NO_STORE" {
		t.Errorf("import without a store: %v", err)
	}
	_, err = h.client.ListSourceCertificates(ctx(t), &certsyncv1.ListSourceCertificatesRequest{Name: "connections/a"})
	if code, reason, _ := errorInfo(t, err); code != codes.Unimplemented || reason != "NO_STORE" {
		t.Errorf("list without a store: %v", err)
	}
}
