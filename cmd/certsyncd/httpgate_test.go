package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/testutil"
)

// TestHTTPGateway calls the HTTP/JSON gateway of a daemon with the sandbox
// and a tokens file: the gate's statuses, compare, diagnose and
// authentication, all through the gRPC port's interceptors.
func TestHTTPGateway(t *testing.T) {
	dir := t.TempDir()
	const token = "http-gateway-test-token"
	tokens := "tokens:\n  - {name: scheduler, role: viewer, sha256: \"" + auth.HashToken(token) + "\"}\n"
	tokensPath := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensPath, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := testutil.FreeAddr(t)
	sandboxAddr := testutil.FreeAddr(t)
	_, logs, stop := startServe(t, "--sandbox", "--sandbox-addr", sandboxAddr, "--http-addr", httpAddr,
		"--tokens", tokensPath, "--refresh-interval", "0", "--gate-probe-interval", "10ms")
	defer stop()
	testutil.WaitListening(t, httpAddr, 10*time.Second)
	base := "http://" + httpAddr
	client := &http.Client{Timeout: 30 * time.Second}

	do := func(method, path, tok string, body string) (*http.Response, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %v\n%s", method, path, resp.StatusCode, err, raw)
		}
		return resp, m
	}

	// Authentication as on the gRPC port.
	if resp, m := do("GET", "/v1/connections/demo-healthy:checkGate", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d %v, want 401", resp.StatusCode, m)
	}
	if resp, m := do("GET", "/v1/connections/demo-healthy:checkGate", "wrong-token", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d %v, want 401", resp.StatusCode, m)
	}

	resp, m := do("GET", "/v1/connections/demo-healthy:checkGate?job_id=nightly-42", token, "")
	if resp.StatusCode != http.StatusOK || m["decision"] != "GATE_DECISION_ALLOW" || m["connection"] != "connections/demo-healthy" {
		t.Errorf("demo-healthy: %d %v, want 200 ALLOW", resp.StatusCode, m)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	resp, m = do("GET", "/v1/connections/demo-desync:checkGate", token, "")
	if resp.StatusCode != http.StatusConflict || m["decision"] != "GATE_DECISION_DENY" || count(m, "remediation") == 0 {
		t.Errorf("demo-desync: %d %v, want 409 DENY with remediation", resp.StatusCode, m)
	}
	if resp, m := do("GET", "/v1/connections/no-such:checkGate", token, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown connection: %d %v, want 404", resp.StatusCode, m)
	}

	// SF unreachable: fresh evidence is demanded and SCIM answers 503.
	sandbox := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The in-process sandbox's CA lives in memory only.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // local test sandbox
	}}
	fr, err := sandbox.Post("https://"+sandboxAddr+"/_sandbox/v1/faults", "application/json",
		bytes.NewReader([]byte(`{"connection":"demo-healthy","operation":"scim","status":503,"times":5}`)))
	if err != nil || fr.StatusCode != http.StatusCreated {
		t.Fatalf("inject fault: %v %v", err, fr)
	}
	fr.Body.Close()
	time.Sleep(50 * time.Millisecond) // past --gate-probe-interval
	resp, m = do("GET", "/v1/connections/demo-healthy:checkGate?max_evidence_age=0s&view=GATE_VIEW_FULL", token, "")
	if resp.StatusCode != http.StatusServiceUnavailable || m["decision"] != "GATE_DECISION_INCONCLUSIVE" {
		t.Errorf("SF unreachable: %d %v, want 503 INCONCLUSIVE", resp.StatusCode, m)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("SF unreachable: Retry-After %q", resp.Header.Get("Retry-After"))
	}

	resp, m = do("GET", "/v1/connections/demo-desync:compare", token, "")
	if resp.StatusCode != http.StatusOK || m["result"] != "COMPARISON_RESULT_MATCH" || m["etag"] == nil {
		t.Errorf("compare demo-desync: %d %v, want 200 MATCH", resp.StatusCode, m)
	}
	resp, m = do("GET", "/v1/connections/demo-mismatch:compare", token, "")
	if resp.StatusCode != http.StatusOK || m["result"] != "COMPARISON_RESULT_MISMATCH" {
		t.Errorf("compare demo-mismatch: %d %v, want 200 MISMATCH", resp.StatusCode, m)
	}

	text := "Caused by: HTTP operation failed invoking https://api15preview.cert.sapsf.cn/rest/iam/scim/v2/Users?startId=initial&count=100 " +
		`with statusCode: 401 and body {"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}`
	b, _ := json.Marshal(map[string]string{"text": text})
	jobErr := string(b)
	resp, m = do("POST", "/v1/diagnose", token, jobErr)
	if resp.StatusCode != http.StatusOK || count(m, "findings") == 0 {
		t.Errorf("diagnose: %d %v, want 200 with findings", resp.StatusCode, m)
	}
	if resp, m := do("POST", "/v1/diagnose", token, `{"txt":"x"}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("diagnose, unknown field: %d %v, want 400", resp.StatusCode, m)
	}
	// What grpc-gateway refuses itself carries the service's details too:
	// which field, and a reason a script can act on.
	resp, m = do("GET", "/v1/connections/demo-healthy:checkGate?max_evidence_age=banana", token, "")
	if resp.StatusCode != http.StatusBadRequest || !hasDetail(m, "INVALID_REQUEST", "max_evidence_age") {
		t.Errorf("max_evidence_age=banana: %d %v, want 400 with ErrorInfo INVALID_REQUEST and the field", resp.StatusCode, m)
	}
	if resp, m := do("POST", "/v1/diagnose", "", jobErr); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("diagnose without token: %d %v, want 401", resp.StatusCode, m)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the token shows in the logs")
	}
}

// count is the length of a JSON array member, 0 when absent.
func count(m map[string]any, key string) int {
	a, _ := m[key].([]any)
	return len(a)
}

// hasDetail reports whether an HTTP error body carries an ErrorInfo with
// reason and a BadRequest naming field.
func hasDetail(m map[string]any, reason, field string) bool {
	details, _ := m["details"].([]any)
	var gotReason, gotField bool
	for _, d := range details {
		d, _ := d.(map[string]any)
		if d["reason"] == reason {
			gotReason = true
		}
		vs, _ := d["fieldViolations"].([]any)
		for _, v := range vs {
			if v, _ := v.(map[string]any); v["field"] == field {
				gotField = true
			}
		}
	}
	return gotReason && gotField
}
