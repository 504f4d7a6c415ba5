package sandbox

import (
	"crypto/x509/pkix"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/pki"
)

const (
	wantCredentials = `{"error":{"code":"LGN0011","message":{"lang":"en-US","value":"Authentication credentials are required. Please provide a valid username, password, and company id"}}}`
	wantAUTH0032    = `{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}`
	wantForbidden   = `{"error":{"code":"Forbidden","message":"You don't have permission to view the user."}}`
	wantDuplicate   = `{"error":{"code":"DUPLICATE_CERTIFICATE","message":"This X.509 Certificate was already registered to the platform. Please upload a different one or cancel the certificate mapping."}}` + "\n"
	wantEmptyList   = `"totalResults":0,"itemsPerPage":0,"startId":"initial","nextId":"end","Resources":[]}`
)

// TestDemoConnections is DESIGN.md's demo table: each seed connection, probed
// as certsync's probe does, answers what its row says.
func TestDemoConnections(t *testing.T) {
	e := startEnv(t, Options{})
	tests := []struct {
		id         string
		wantStatus int
		wantBody   string // exact, except for the HTML page
	}{
		{"demo-healthy", http.StatusOK, ""},
		{"demo-desync", http.StatusUnauthorized, wantAUTH0032},
		{"demo-mismatch", http.StatusBadRequest, ""},
		{"demo-company-id", http.StatusUnauthorized, wantAUTH0032},
		{"demo-stuck", http.StatusUnauthorized, wantAUTH0032},
		{"demo-permission", http.StatusForbidden, wantForbidden},
		{"demo-wrong-host", http.StatusUnauthorized, wantCredentials},
		{"demo-expiring", http.StatusOK, ""},
	}
	if len(tests) != len(e.conns) {
		t.Errorf("seed has %d connections, table %d", len(e.conns), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			status, body := e.scim(e.probeClient(tc.id), tc.id, probeQuery)
			switch tc.wantStatus {
			case http.StatusOK:
				if status != http.StatusOK || !strings.Contains(body, wantEmptyList) {
					t.Errorf("got %d %s, want 200 with an empty list", status, body)
				}
			case http.StatusBadRequest:
				if !isSSLError(status, body) || strings.Count(body, "\n") < 3 {
					t.Errorf("got %d %q, want 400 multi-line HTML with The SSL certificate error", status, body)
				}
			default:
				wantStatusBody(t, tc.id, status, body, tc.wantStatus, tc.wantBody)
			}
		})
	}

	// Things only some rows show, checked through the configuration.
	if u := e.conn("demo-wrong-host").SF.URL; u != "https://"+e.sb.PlainAddr() {
		t.Errorf("demo-wrong-host URL %s, want the plain host %s", u, e.sb.PlainAddr())
	}
	if got := e.conn("demo-company-id").SF.CompanyID; got == e.sb.State().Connections["demo-company-id"].CompanyID {
		t.Errorf("demo-company-id sends its company's own id %s", got)
	}
	kp := e.probeClient("demo-expiring").Transport.(*http.Transport).TLSClientConfig.Certificates[0]
	if left := time.Until(kp.Leaf.NotAfter); left < 9*day || left > 11*day {
		t.Errorf("demo-expiring certificate expires in %v, want about 10 days", left)
	}
}

func TestSCIMRefusesUntrustedCertificates(t *testing.T) {
	clk := &clock{now: time.Now()}
	e := startEnv(t, Options{Now: clk.Now})

	t.Run("no client certificate", func(t *testing.T) {
		if status, body := e.scim(e.client(), "demo-healthy", probeQuery); !isSSLError(status, body) {
			t.Errorf("got %d %s", status, body)
		}
	})
	t.Run("another CA with the same subject", func(t *testing.T) {
		ca, err := pki.NewCA("not the sandbox", time.Now(), year)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := ca.Issue(pki.LeafOptions{
			Subject:   pkix.Name{CommonName: "ips-outbound-demo-healthy", OrganizationalUnit: []string{"IPS"}, Organization: []string{"Example Corp"}, Country: []string{"DE"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(day),
		})
		if err != nil {
			t.Fatal(err)
		}
		if status, body := e.scim(e.client(leaf.TLSCertificate()), "demo-healthy", probeQuery); !isSSLError(status, body) {
			t.Errorf("got %d %s", status, body)
		}
	})
	t.Run("no company id header", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, e.conn("demo-healthy").SF.URL+"/rest/iam/scim/v2/Users"+probeQuery, nil)
		status, body := e.do(e.probeClient("demo-healthy"), req)
		wantStatusBody(t, "no header", status, body, http.StatusUnauthorized, wantCredentials)
	})
	t.Run("expired", func(t *testing.T) {
		// Eleven days on, demo-expiring's certificate has expired; the
		// healthy one still works.
		clk.Advance(11 * day)
		defer clk.Advance(-11 * day)
		if status, body := e.scim(e.probeClient("demo-expiring"), "demo-expiring", probeQuery); !isSSLError(status, body) {
			t.Errorf("expired: got %d %s", status, body)
		}
		if status, body := e.scim(e.probeClient("demo-healthy"), "demo-healthy", probeQuery); status != http.StatusOK {
			t.Errorf("healthy: got %d %s", status, body)
		}
	})
	t.Run("not yet valid", func(t *testing.T) {
		clk.Advance(-2 * day)
		defer clk.Advance(2 * day)
		if status, body := e.scim(e.probeClient("demo-healthy"), "demo-healthy", probeQuery); !isSSLError(status, body) {
			t.Errorf("got %d %s", status, body)
		}
	})
}

func TestRegistry(t *testing.T) {
	e := startEnv(t, Options{})
	const id = "demo-healthy"

	ms := e.listMappings(id)
	if len(ms) != 1 {
		t.Fatalf("got %d mappings, want 1", len(ms))
	}
	probePEM, err := os.ReadFile(e.conn(id).Probe.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	m := ms[0]
	if m.CertificatePEM != string(probePEM) || m.IntegrationName != "Identity Provisioning Service" || m.LoginName != "IPS_TECH_USER" || m.ConfigurationName == "" || m.ID == "" {
		t.Errorf("mapping %+v does not hold IPS's active certificate and the seed's fields", m)
	}

	t.Run("authentication", func(t *testing.T) {
		for _, tok := range []string{"", "wrong", e.token("demo-desync")} {
			status, body := e.registry(http.MethodGet, id, "/v1/mappings", tok, nil)
			if status != http.StatusUnauthorized || !strings.Contains(body, `"code":"UNAUTHENTICATED"`) {
				t.Errorf("token %q: got %d %s", tok, status, body)
			}
		}
	})
	t.Run("unknown connection", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+e.sb.Addr()+"/registry/nope/v1/mappings", nil)
		req.Header.Set("Authorization", "Bearer "+e.token(id))
		if status, body := e.do(e.client(), req); status != http.StatusNotFound || !strings.Contains(body, `"code":"NOT_FOUND"`) {
			t.Errorf("got %d %s", status, body)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		status, body := e.uploadActive(id, "Identity Provisioning Service")
		wantStatusBody(t, "same certificate", status, body, http.StatusConflict, wantDuplicate)
	})
	t.Run("invalid uploads", func(t *testing.T) {
		tests := []struct {
			name  string
			body  map[string]string
			field string
		}{
			{"no certificate", map[string]string{"integration_name": "Identity Provisioning Service"}, "certificate_pem"},
			{"not PEM", map[string]string{"integration_name": "x", "certificate_pem": "hello"}, "certificate_pem"},
			{"private key", map[string]string{"integration_name": "x", "certificate_pem": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"}, "certificate_pem"},
			{"no integration name", map[string]string{"certificate_pem": string(probePEM)}, "integration_name"},
		}
		for _, tc := range tests {
			status, body := e.registry(http.MethodPost, id, "/v1/mappings", e.token(id), tc.body)
			if status != http.StatusBadRequest || !strings.Contains(body, `"field":"`+tc.field+`"`) {
				t.Errorf("%s: got %d %s", tc.name, status, body)
			}
			if strings.Contains(body, "MIIB") {
				t.Errorf("%s: the answer echoes the key: %s", tc.name, body)
			}
		}
		status, body := e.registry(http.MethodPost, id, "/v1/mappings", e.token(id), map[string]string{"certificate": "x"})
		if status != http.StatusBadRequest || !strings.Contains(body, "certificate") {
			t.Errorf("unknown field: got %d %s", status, body)
		}
	})
	t.Run("delete and upload", func(t *testing.T) {
		status, body := e.registry(http.MethodDelete, id, "/v1/mappings/"+m.ID, e.token(id), nil)
		wantStatusBody(t, "delete", status, body, http.StatusNoContent, "")
		status, body = e.registry(http.MethodDelete, id, "/v1/mappings/"+m.ID, e.token(id), nil)
		if status != http.StatusNotFound || !strings.Contains(body, `"code":"NOT_FOUND"`) {
			t.Errorf("second delete: got %d %s", status, body)
		}
		// With no mapping, the certificate is unknown to SF's gateway.
		if status, body := e.scim(e.probeClient(id), id, probeQuery); !isSSLError(status, body) {
			t.Errorf("probe without mapping: got %d %s", status, body)
		}
		status, body = e.uploadActive(id, "Identity Provisioning Service")
		if status != http.StatusCreated {
			t.Fatalf("upload: got %d %s", status, body)
		}
		var up testMapping
		mustJSON(t, body, &up)
		if up.ID == "" || up.ID == m.ID || up.CertificatePEM != string(probePEM) {
			t.Errorf("upload answered %+v", up)
		}
		if got := e.listMappings(id); len(got) != 1 || got[0] != up {
			t.Errorf("list after upload: %+v, want [%+v]", got, up)
		}
	})
}

// TestRemediation checks that what DESIGN.md's table says fixes a demo
// connection fixes it, and what it says cannot fix it does not.
func TestRemediation(t *testing.T) {
	e := startEnv(t, Options{})
	tests := []struct {
		id          string
		integration string
		wantStatus  int
		wantBody    string
	}{
		{"demo-desync", "Identity Provisioning Service", http.StatusOK, ""},
		{"demo-mismatch", "Identity Provisioning Service", http.StatusOK, ""},
		{"demo-permission", "Identity Provisioning Service", http.StatusOK, ""},
		{"demo-stuck", "Identity Provisioning Service", http.StatusUnauthorized, wantAUTH0032},
		{"demo-company-id", "Identity Provisioning Service", http.StatusUnauthorized, wantAUTH0032},
		// Re-registering with the wrong integration name trades AUTH0032
		// for 403.
		{"demo-desync", "Identity Authentication Service", http.StatusForbidden, wantForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.id+"/"+tc.integration, func(t *testing.T) {
			e.deleteAll(tc.id)
			if status, body := e.uploadActive(tc.id, tc.integration); status != http.StatusCreated {
				t.Fatalf("upload: %d %s", status, body)
			}
			status, body := e.scim(e.probeClient(tc.id), tc.id, probeQuery)
			if tc.wantStatus == http.StatusOK {
				if status != http.StatusOK || !strings.Contains(body, wantEmptyList) {
					t.Errorf("got %d %s, want 200", status, body)
				}
				return
			}
			wantStatusBody(t, tc.id, status, body, tc.wantStatus, tc.wantBody)
		})
	}
	st := e.sb.State()
	if ms := st.Connections["demo-stuck"].Mappings; len(ms) != 1 || ms[0].Synchronized {
		t.Errorf("demo-stuck mappings %+v, want one unsynchronized", ms)
	}
	if cs := st.Connections["demo-mismatch"]; len(cs.Mappings) != 1 || cs.Mappings[0].SHA256 != cs.IPSActiveSHA256 {
		t.Errorf("demo-mismatch after re-registration: %+v", cs)
	}
}

func TestSCIMPagingAndFilters(t *testing.T) {
	e := startEnv(t, Options{})
	const id = "demo-healthy"
	c := e.probeClient(id)

	type page struct {
		Schemas      []string `json:"schemas"`
		TotalResults int      `json:"totalResults"`
		ItemsPerPage int      `json:"itemsPerPage"`
		StartID      string   `json:"startId"`
		NextID       string   `json:"nextId"`
		Resources    []struct {
			ID       string `json:"id"`
			UserName string `json:"userName"`
			Active   bool   `json:"active"`
		} `json:"Resources"`
	}
	walk := func(filter string, count int) (names []string, total int) {
		t.Helper()
		start := "initial"
		for i := 0; i < 20; i++ {
			q := url.Values{"startId": {start}, "count": {strconv.Itoa(count)}}
			if filter != "" {
				q.Set("filter", filter)
			}
			status, body := e.scim(c, id, "?"+strings.ReplaceAll(q.Encode(), "+", "%20"))
			if status != http.StatusOK {
				t.Fatalf("page %d: %d %s", i, status, body)
			}
			var p page
			mustJSON(t, body, &p)
			if len(p.Schemas) != 1 || p.Schemas[0] != "urn:ietf:params:scim:api:messages:2.0:ListResponse" || p.StartID != start || p.ItemsPerPage != len(p.Resources) || p.ItemsPerPage > count {
				t.Fatalf("page %d: %s", i, body)
			}
			total = p.TotalResults
			for _, r := range p.Resources {
				names = append(names, r.UserName)
			}
			if p.NextID == "end" {
				return names, total
			}
			start = p.NextID
		}
		t.Fatal("no end after 20 pages")
		return nil, 0
	}

	all, total := walk("", 2)
	if len(all) != 5 || total != 5 {
		t.Errorf("all users: %v (total %d), want 5", all, total)
	}
	if one, _ := walk("", 100); strings.Join(one, ",") != strings.Join(all, ",") {
		t.Errorf("one page %v differs from paging %v", one, all)
	}
	for _, f := range []string{"active eq true", `active eq "true"`, "ACTIVE EQ TRUE"} {
		act, total := walk(f, 3)
		if len(act) != 4 || total != 4 || strings.Contains(strings.Join(act, ","), "cchen") {
			t.Errorf("%s: %v (total %d), want the 4 active users", f, act, total)
		}
	}
	if got, _ := walk(`userName eq "BBecker"`, 1); strings.Join(got, ",") != "bbecker" {
		t.Errorf("userName filter: %v", got)
	}
	if got, total := walk(`userName eq "certsync.probe.none"`, 1); len(got) != 0 || total != 0 {
		t.Errorf("probe filter: %v", got)
	}

	for _, q := range []string{
		"?filter=" + url.QueryEscape(`emails eq "x"`),
		"?filter=" + url.QueryEscape(`userName co "a"`),
		"?filter=" + url.QueryEscape(`active eq maybe`),
	} {
		status, body := e.scim(c, id, q)
		if status != http.StatusBadRequest || !strings.Contains(body, `"scimType":"invalidFilter"`) || !strings.Contains(body, `"status":"400"`) || !strings.Contains(body, `urn:ietf:params:scim:api:messages:2.0:Error`) {
			t.Errorf("%s: got %d %s", q, status, body)
		}
	}
	for _, q := range []string{"?count=-1", "?count=x", "?startId=nobody"} {
		if status, body := e.scim(c, id, q); status != http.StatusBadRequest || !strings.Contains(body, `"scimType":"invalidValue"`) {
			t.Errorf("%s: got %d %s", q, status, body)
		}
	}
	// Authentication comes before filtering: a bad filter on an
	// unauthenticated call still gets the authentication answer.
	status, body := e.scim(e.probeClient("demo-desync"), "demo-desync", "?filter=nonsense")
	wantStatusBody(t, "desync with a bad filter", status, body, http.StatusUnauthorized, wantAUTH0032)
}

func TestIPS(t *testing.T) {
	e := startEnv(t, Options{})
	const id = "demo-mismatch"
	c := e.client()
	status, body := e.do(c, mustRequest(t, http.MethodGet, e.conn(id).Source.URL))
	probePEM, _ := os.ReadFile(e.conn(id).Probe.CertFile)
	if status != http.StatusOK || body != string(probePEM) {
		t.Errorf("active: got %d %s, want the probe certificate", status, body)
	}
	resp, err := c.Get(e.conn(id).Source.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-pem-file" {
		t.Errorf("content type %q", ct)
	}

	status, body = e.do(c, mustRequest(t, http.MethodGet, strings.TrimSuffix(e.conn(id).Source.URL, "/active")))
	var list struct {
		Certificates []struct {
			Slot           int    `json:"slot"`
			Active         bool   `json:"active"`
			CertificatePEM string `json:"certificate_pem"`
		} `json:"certificates"`
	}
	mustJSON(t, body, &list)
	if status != http.StatusOK || len(list.Certificates) != 2 {
		t.Fatalf("list: %d %s", status, body)
	}
	old, cur := list.Certificates[0], list.Certificates[1]
	if old.Slot != 1 || old.Active || cur.Slot != 2 || !cur.Active || cur.CertificatePEM != string(probePEM) || old.CertificatePEM == cur.CertificatePEM {
		t.Errorf("slots: %+v", list.Certificates)
	}
	// SF maps the old slot: same DN, other fingerprint.
	ms := e.listMappings(id)
	if len(ms) != 1 || ms[0].CertificatePEM != old.CertificatePEM {
		t.Errorf("demo-mismatch maps %+v, want the inactive slot", ms)
	}
	st := e.sb.State().Connections[id]
	if st.Mappings[0].Subject != "CN=ips-outbound-demo-mismatch,OU=IPS,O=Example Corp,C=DE" || st.Mappings[0].SHA256 == st.IPSActiveSHA256 {
		t.Errorf("state: %+v", st)
	}

	if status, body := e.do(c, mustRequest(t, http.MethodGet, "https://"+e.sb.Addr()+"/ips/v1/systems/nope/certificates/active")); status != http.StatusNotFound {
		t.Errorf("unknown system: %d %s", status, body)
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestWriteConfig(t *testing.T) {
	sb, err := New(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sandbox.yaml")
	if err := sb.WriteConfig(path); err == nil {
		t.Error("WriteConfig before Start succeeded")
	}
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := sb.WriteConfig(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	ps := cfg.Validate()
	if errs := ps.Errors(); len(errs) > 0 {
		t.Errorf("validation errors: %v", errs)
	}
	for _, w := range ps.Warnings() {
		if w.Field[strings.LastIndex(w.Field, ".")+1:] != "url" {
			t.Errorf("unexpected warning: %v", w)
		}
	}
	if len(cfg.Connections) != len(seedConnections) {
		t.Errorf("%d connections, want %d", len(cfg.Connections), len(seedConnections))
	}
	entries, err := os.ReadDir(path + ".d")
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		info, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(de.Name(), ".") {
			t.Errorf("temporary file left behind: %s", de.Name())
		}
		secret := strings.HasSuffix(de.Name(), ".key") || strings.HasSuffix(de.Name(), ".token")
		if secret && info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", de.Name(), info.Mode().Perm())
		}
	}
	if info, err := os.Stat(path + ".d"); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("directory mode: %v %v", info.Mode(), err)
	}
	// Writing again (a restarted sandbox) replaces the files in place.
	if err := sb.WriteConfig(path); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycle(t *testing.T) {
	sb, err := New(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Addr() != "" {
		t.Errorf("Addr before Start: %q", sb.Addr())
	}
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if !strings.HasPrefix(sb.Addr(), "127.0.0.1:") || !strings.HasPrefix(sb.PlainAddr(), "127.0.0.1:") || sb.Addr() == sb.PlainAddr() {
		t.Errorf("addresses %s %s", sb.Addr(), sb.PlainAddr())
	}
	if err := sb.Close(); err != nil {
		t.Error(err)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := http.Get("http://" + sb.Addr()); err == nil {
		t.Error("still listening after Close")
	}
	// Never started: Close is fine.
	sb2, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb2.Close(); err != nil {
		t.Error(err)
	}
	if err := sb2.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}
