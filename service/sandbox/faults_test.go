package sandbox

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	e := startEnv(t, Options{})
	const id = "demo-healthy"

	post := func(t *testing.T, body map[string]any) {
		t.Helper()
		if status, resp := e.control(http.MethodPost, "/_sandbox/v1/faults", body); status != http.StatusCreated {
			t.Fatalf("inject %v: %d %s", body, status, resp)
		}
	}

	t.Run("status once then normal", func(t *testing.T) {
		post(t, map[string]any{"connection": id, "operation": "scim", "status": 503})
		c := e.probeClient(id)
		status, body := e.scim(c, id, probeQuery)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"SANDBOX_FAULT"`) {
			t.Errorf("first call: %d %s", status, body)
		}
		if status, body := e.scim(c, id, probeQuery); status != http.StatusOK {
			t.Errorf("second call: %d %s", status, body)
		}
	})

	t.Run("times", func(t *testing.T) {
		post(t, map[string]any{"connection": id, "operation": "list", "status": 500, "times": 2})
		var got []int
		for range 3 {
			status, _ := e.registry(http.MethodGet, id, "/v1/mappings", e.token(id), nil)
			got = append(got, status)
		}
		if got[0] != 500 || got[1] != 500 || got[2] != 200 {
			t.Errorf("statuses %v, want 500 500 200", got)
		}
	})

	t.Run("queued faults apply in order", func(t *testing.T) {
		post(t, map[string]any{"connection": id, "operation": "upload", "status": 429})
		post(t, map[string]any{"connection": id, "operation": "upload", "status": 502})
		var got []int
		for range 3 {
			// Faults act before authentication and validation.
			status, _ := e.registry(http.MethodPost, id, "/v1/mappings", "", map[string]string{})
			got = append(got, status)
		}
		if got[0] != 429 || got[1] != 502 || got[2] != 401 {
			t.Errorf("statuses %v, want 429 502 401", got)
		}
	})

	t.Run("delay", func(t *testing.T) {
		const delay = 300 * time.Millisecond
		post(t, map[string]any{"connection": id, "operation": "scim", "delay": delay.String()})
		c := e.probeClient(id)
		start := time.Now()
		status, _ := e.scim(c, id, probeQuery)
		if took := time.Since(start); status != http.StatusOK || took < delay {
			t.Errorf("delayed call: %d after %v, want 200 after at least %v", status, took, delay)
		}
		start = time.Now()
		if e.scim(c, id, probeQuery); time.Since(start) >= delay {
			t.Errorf("second call was delayed too")
		}
	})

	t.Run("delay beyond the client's timeout", func(t *testing.T) {
		post(t, map[string]any{"connection": id, "operation": "scim", "delay": "5s"})
		c := e.probeClient(id)
		c.Timeout = 200 * time.Millisecond
		req := mustRequest(t, http.MethodGet, e.conn(id).SF.URL+"/rest/iam/scim/v2/Users"+probeQuery)
		req.Header.Set("successfactors-companyid", e.conn(id).SF.CompanyID)
		_, err := c.Do(req)
		var ue interface{ Timeout() bool }
		if !errors.As(err, &ue) || !ue.Timeout() {
			t.Errorf("got %v, want a timeout", err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		post(t, map[string]any{"connection": id, "operation": "scim", "reset": true, "status": 503, "delay": "10ms"})
		// A fresh client: Go's transport silently retries a GET that fails
		// on a reused connection, which would hide the reset.
		c := e.probeClient(id)
		req := mustRequest(t, http.MethodGet, e.conn(id).SF.URL+"/rest/iam/scim/v2/Users"+probeQuery)
		req.Header.Set("successfactors-companyid", e.conn(id).SF.CompanyID)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got %d, want a transport error", resp.StatusCode)
		}
		if msg := err.Error(); !strings.Contains(msg, "reset") && !strings.Contains(msg, "EOF") {
			t.Errorf("error %v, want a connection reset or EOF", err)
		}
		if status, body := e.scim(c, id, probeQuery); status != http.StatusOK {
			t.Errorf("after the reset: %d %s", status, body)
		}
	})

	t.Run("delete and registry 404 are counted", func(t *testing.T) {
		post(t, map[string]any{"connection": id, "operation": "delete", "status": 503})
		if status, _ := e.registry(http.MethodDelete, id, "/v1/mappings/nope", e.token(id), nil); status != 503 {
			t.Errorf("faulted delete: %d", status)
		}
		if status, _ := e.registry(http.MethodDelete, id, "/v1/mappings/nope", e.token(id), nil); status != 404 {
			t.Errorf("delete of an unknown mapping: %d", status)
		}
	})

	// Every call above, faulted or not, is counted.
	got := e.state().Connections[id].Counters
	want := Counters{SCIM: 7, List: 3, Upload: 3, Delete: 2}
	if got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	if other := e.state().Connections["demo-desync"].Counters; other != (Counters{}) {
		t.Errorf("demo-desync counted %+v", other)
	}
}

func TestFaultOnPlainHost(t *testing.T) {
	e := startEnv(t, Options{})
	const id = "demo-wrong-host"
	if err := e.sb.InjectFault(Fault{Connection: id, Operation: OperationSCIM, Status: 504}); err != nil {
		t.Fatal(err)
	}
	c := e.probeClient(id)
	if status, _ := e.scim(c, id, probeQuery); status != http.StatusGatewayTimeout {
		t.Errorf("faulted: %d", status)
	}
	status, body := e.scim(c, id, probeQuery)
	wantStatusBody(t, "plain host", status, body, http.StatusUnauthorized, wantCredentials)
	// Even demo-healthy's certificate, which authenticates on the cert
	// host, does not on the plain host; the call is attributed to the
	// healthy connection by its certificate.
	req := mustRequest(t, http.MethodGet, "https://"+e.sb.PlainAddr()+"/rest/iam/scim/v2/Users"+probeQuery)
	req.Header.Set("successfactors-companyid", e.conn("demo-healthy").SF.CompanyID)
	status, body = e.do(e.probeClient("demo-healthy"), req)
	wantStatusBody(t, "healthy on plain host", status, body, http.StatusUnauthorized, wantCredentials)

	st := e.sb.State()
	if n := st.Connections[id].Counters.SCIM; n != 2 {
		t.Errorf("%s scim counter %d, want 2", id, n)
	}
	if n := st.Connections["demo-healthy"].Counters.SCIM; n != 1 {
		t.Errorf("demo-healthy scim counter %d, want 1", n)
	}
	// Without a certificate, the company id header attributes the call.
	req = mustRequest(t, http.MethodGet, "https://"+e.sb.Addr()+"/rest/iam/scim/v2/Users"+probeQuery)
	req.Header.Set("successfactors-companyid", e.conn("demo-desync").SF.CompanyID)
	if status, body := e.do(e.client(), req); !isSSLError(status, body) {
		t.Errorf("no certificate: %d %s", status, body)
	}
	if n := e.sb.State().Connections["demo-desync"].Counters.SCIM; n != 1 {
		t.Errorf("demo-desync scim counter %d, want 1", n)
	}
}

func TestFaultValidation(t *testing.T) {
	e := startEnv(t, Options{})
	tests := []struct {
		body  string
		field string
	}{
		{`{"operation":"scim"}`, "connection"},
		{`{"connection":"nope","operation":"scim"}`, "connection"},
		{`{"connection":"demo-healthy"}`, "operation"},
		{`{"connection":"demo-healthy","operation":"read"}`, "operation"},
		{`{"connection":"demo-healthy","operation":"scim","delay":"5 seconds"}`, "delay"},
		{`{"connection":"demo-healthy","operation":"scim","delay":"-1s"}`, "delay"},
		{`{"connection":"demo-healthy","operation":"scim","status":200}`, "status"},
		{`{"connection":"demo-healthy","operation":"scim","times":-1}`, "times"},
	}
	for _, tc := range tests {
		status, body := e.control(http.MethodPost, "/_sandbox/v1/faults", []byte(tc.body))
		if status != http.StatusBadRequest || !strings.Contains(body, `"field":"`+tc.field+`"`) || !strings.Contains(body, `"code":"INVALID_ARGUMENT"`) {
			t.Errorf("%s: got %d %s, want 400 naming %s", tc.body, status, body, tc.field)
		}
	}
	for _, bad := range []string{`{"connection":"demo-healthy","operation":"scim","bogus":1}`, `not json`} {
		if status, body := e.control(http.MethodPost, "/_sandbox/v1/faults", []byte(bad)); status != http.StatusBadRequest {
			t.Errorf("%s: got %d %s", bad, status, body)
		}
	}

	// Stored faults, listed and cleared; the ips_* operations are accepted
	// for the simulated IPS job API.
	status, body := e.control(http.MethodPost, "/_sandbox/v1/faults", map[string]any{"connection": "demo-stuck", "operation": "ips_start_job", "delay": "1m30s", "status": 500})
	if status != http.StatusCreated || body != `{"connection":"demo-stuck","operation":"ips_start_job","delay":"1m30s","status":500,"reset":false,"times":1}`+"\n" {
		t.Errorf("inject: %d %s", status, body)
	}
	_, body = e.control(http.MethodGet, "/_sandbox/v1/faults", nil)
	if !strings.Contains(body, `"operation":"ips_start_job"`) {
		t.Errorf("list: %s", body)
	}
	if status, _ := e.control(http.MethodDelete, "/_sandbox/v1/faults", nil); status != http.StatusNoContent {
		t.Errorf("clear: %d", status)
	}
	if _, body := e.control(http.MethodGet, "/_sandbox/v1/faults", nil); body != `{"faults":[]}`+"\n" {
		t.Errorf("list after clear: %s", body)
	}
	var fe *FieldError
	if err := e.sb.InjectFault(Fault{Connection: "demo-healthy", Operation: "nope"}); !errors.As(err, &fe) || fe.Field != "operation" {
		t.Errorf("InjectFault: %v", err)
	}
}

func TestStateJSON(t *testing.T) {
	e := startEnv(t, Options{})
	_, body := e.control(http.MethodGet, "/_sandbox/v1/state", nil)
	var raw struct {
		Connections map[string]map[string]json.RawMessage `json:"connections"`
	}
	mustJSON(t, body, &raw)
	if len(raw.Connections) != len(seedConnections) {
		t.Fatalf("%d connections in %s", len(raw.Connections), body)
	}
	h := raw.Connections["demo-healthy"]
	for _, k := range []string{"company_id", "sent_company_id", "sf_host", "ips_system", "ips_active_sha256", "mappings", "counters"} {
		if _, ok := h[k]; !ok {
			t.Errorf("state lacks %s: %s", k, body)
		}
	}
	if string(h["counters"]) != `{"scim":0,"list":0,"delete":0,"upload":0}` {
		t.Errorf("counters %s", h["counters"])
	}
	var ms []map[string]any
	if err := json.Unmarshal(h["mappings"], &ms); err != nil || len(ms) != 1 {
		t.Fatalf("mappings %s: %v", h["mappings"], err)
	}
	for _, k := range []string{"id", "sha256", "sha1", "subject", "issuer", "configuration_name", "integration_name", "login_name", "synchronized"} {
		if _, ok := ms[0][k]; !ok {
			t.Errorf("mapping lacks %s", k)
		}
	}
	st := e.state()
	hs := st.Connections["demo-healthy"]
	if hs.Mappings[0].SHA256 != hs.IPSActiveSHA256 || len(hs.IPSActiveSHA256) != 95 || strings.ToUpper(hs.IPSActiveSHA256) != hs.IPSActiveSHA256 || len(hs.Mappings[0].SHA1) != 59 {
		t.Errorf("fingerprints: %+v", hs)
	}
	if d := st.Connections["demo-desync"]; d.Mappings[0].Synchronized || d.SFHost != "cert" {
		t.Errorf("demo-desync: %+v", d)
	}
	if w := st.Connections["demo-wrong-host"]; w.SFHost != "plain" {
		t.Errorf("demo-wrong-host: %+v", w)
	}
	if c := st.Connections["demo-company-id"]; c.CompanyID == c.SentCompanyID {
		t.Errorf("demo-company-id: %+v", c)
	}
}

// TestCloseDuringDelay checks that Close does not wait out an injected
// delay (and, through goleak, that nothing is left running).
func TestCloseDuringDelay(t *testing.T) {
	sb, err := New(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sb.InjectFault(Fault{Connection: "demo-healthy", Operation: OperationList, Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	tr := &http.Transport{TLSClientConfig: newRootsConfig(t, sb.CAPEM())}
	defer tr.CloseIdleConnections()
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + sb.Addr() + "/registry/demo-healthy/v1/mappings")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Wait until the call is in the delay.
	for sb.State().Connections["demo-healthy"].Counters.List == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := sb.Close(); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v", took)
	}
	if err := <-done; err == nil {
		t.Error("the delayed call got an answer after Close")
	}
}
