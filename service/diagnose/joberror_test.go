package diagnose

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// shared is the project's read-only neighbour with the seed and the samples;
// tests run in the package directory.
const shared = "../../../shared"

func readShared(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shared, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

const (
	auth0032Body   = `{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}`
	certUsersURL   = "https://api4.cert.successfactors.com/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true"
	plainUsersURL  = "https://api4.successfactors.com/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true"
	credsODataBody = `{"error":{"code":"COE_AUTHENTICATION_REQUIRED","message":{"lang":"en-US","value":"Authentication credentials are required. Please provide a valid username, password, and company id"}}}`
	chainHead      = "Cannot execute provisioning job in tenant context: t-42\nCaused by: Error during execution on behalf of tenant with ID: t-42\nCaused by: Executing delta load failed.\n"
)

var (
	seedActions    = []Action{ActionCompareFingerprints, ActionReregister, ActionEscalate}
	unknownActions = []Action{ActionCompareFingerprints, ActionRetryLater}
	retryActions   = []Action{ActionRetryLater}
)

func TestDiagnoseJobErrorSeed(t *testing.T) {
	res, err := DiagnoseJobError(readShared(t, "seed/000_2c08482fcf6dad1b.txt"))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res)
	if len(res.Findings) != 1 {
		t.Fatalf("got %d findings, want 1: %+v", len(res.Findings), res.Findings)
	}
	f := res.Findings[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"HTTPStatus", f.HTTPStatus, 401},
		{"ErrorCode", f.ErrorCode, "AUTH0032"},
		{"Host", f.Host, "api15preview.cert.sapsf.cn"},
		{"CertHost", f.CertHost, true},
		{"Path", f.Path, "/rest/iam/scim/v2/Users"},
		{"Query", f.Query, []string{"startId=initial", "count=100", "filter=active eq true"}},
		{"SCIMUsers", f.SCIMUsers, true},
		{"TenantID", f.TenantID, "xxxxxxxxxx"},
		{"Result.TenantID", res.TenantID, "xxxxxxxxxx"},
		{"LoadMode", f.LoadMode, "delta"},
		{"Cause", f.Cause, CauseInvalidClientCertificate},
		{"Actions", actionsOf(f.Actions), seedActions},
		{"SupportComponent", f.SupportComponent, "LOD-SF-PLT-IAS"},
		{"Body", f.Body, auth0032Body},
		{"ErrorMessage", f.ErrorMessage, "Authentication service failed to return token. [AUTH0032]Invalid client certificate"},
		{"KBAs", f.KBAs, []string{"KBA 3505973", "KBA 3312844"}},
		{"URL", f.URL, "https://api15preview.cert.sapsf.cn/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// The deepest of the two lines naming the call is the evidence.
	if !strings.Contains(f.Evidence, "statusCode: 401, Response:") || !strings.HasPrefix(f.Evidence, "Caused by:") {
		t.Errorf("Evidence = %q, want the deepest line", f.Evidence)
	}
	if !strings.HasPrefix(res.Summary, "SF rejected IPS's client certificate (401 AUTH0032) at api15preview.cert.sapsf.cn: ") {
		t.Errorf("Summary = %q", res.Summary)
	}
}

func TestDiagnoseJobErrorSamples(t *testing.T) {
	tests := []struct {
		file string
		want findingWant
	}{
		{"samples/job-error-company-id-missing.txt", findingWant{
			cause: CauseCompanyIDMissing, actions: []Action{ActionFixCompanyID},
			tenant: "3f6b2a90-5c1d-4e7f-9a2b-8c0d1e2f3a4b", kbas: []string{"KBA 3737619"},
			msg: "Property sf.company.id is missing",
		}},
		{"samples/job-error-rate-limited.txt", findingWant{
			cause: CauseRateLimited, status: 429, host: "api8.cert.successfactors.com", certHost: true, scim: true,
			actions: retryActions, tenant: "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", load: "full",
			msg: "Too many requests. Retry after 30 seconds.", retryAfter: 30 * time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res, err := DiagnoseJobError(readShared(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res)
			if len(res.Findings) != 1 {
				t.Fatalf("got %d findings, want 1: %+v", len(res.Findings), res.Findings)
			}
			tt.want.check(t, res.Findings[0])
		})
	}
}

// findingWant lists what a table case expects; zero values are expected too,
// except where a comment says the field is optional.
type findingWant struct {
	cause     Cause
	status    int
	host      string
	certHost  bool
	scim      bool
	code      string
	actions   []Action
	component string
	tenant    string
	load      string
	kbas      []string // optional
	msg       string   // optional: ErrorMessage contains it
	body      string   // optional: Body contains it
	bodyNot   string   // optional: Body does not contain it
	evidence  string   // optional: Evidence contains it
	text      string   // optional: some step's text contains it
	query     []string // optional
	// optional
	retryAfter time.Duration
}

func (w findingWant) check(t *testing.T, f Finding) {
	t.Helper()
	eq := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	eq("Cause", f.Cause, w.cause)
	eq("HTTPStatus", f.HTTPStatus, w.status)
	eq("Host", f.Host, w.host)
	eq("CertHost", f.CertHost, w.certHost)
	eq("SCIMUsers", f.SCIMUsers, w.scim)
	eq("ErrorCode", f.ErrorCode, w.code)
	eq("Actions", actionsOf(f.Actions), w.actions)
	eq("SupportComponent", f.SupportComponent, w.component)
	eq("TenantID", f.TenantID, w.tenant)
	eq("LoadMode", f.LoadMode, w.load)
	if w.kbas != nil {
		eq("KBAs", f.KBAs, w.kbas)
	}
	if w.query != nil {
		eq("Query", f.Query, w.query)
	}
	if w.retryAfter != 0 {
		eq("RetryAfter", f.RetryAfter, w.retryAfter)
	}
	contains := func(name, got, want string) {
		t.Helper()
		if want != "" && !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", name, got, want)
		}
	}
	contains("ErrorMessage", f.ErrorMessage, w.msg)
	contains("Body", f.Body, w.body)
	contains("Evidence", f.Evidence, w.evidence)
	if w.bodyNot != "" && strings.Contains(f.Body, w.bodyNot) {
		t.Errorf("Body = %q, must not contain %q", f.Body, w.bodyNot)
	}
	if w.text != "" {
		var texts []string
		for _, a := range f.Actions {
			texts = append(texts, a.Text)
		}
		contains("step texts", strings.Join(texts, "\n"), w.text)
	}
}

func actionsOf(steps []Step) []Action {
	var out []Action
	for _, s := range steps {
		out = append(out, s.Action)
	}
	return out
}

func TestDiagnoseJobError(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []findingWant
	}{
		{
			name: "AUTH0032 with and body only",
			text: chainHead + "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401 and body " + auth0032Body + "\n",
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "t-42", load: "delta",
				query: []string{"startId=initial", "count=100", "filter=active eq true"},
			}},
		},
		{
			name: "AUTH0032 with Response, CRLF, indentation and timestamps",
			text: "2025-03-04T10:15:02.123Z ERROR [ips-job-7] Cannot execute provisioning job in tenant context: 0a1b-2c3d\r\n" +
				"2025-03-04T10:15:02.123Z ERROR [ips-job-7]   Caused by: Error during execution on behalf of tenant with ID: 0a1b-2c3d\r\n" +
				"2025-03-04T10:15:02.124Z ERROR [ips-job-7]     Caused by: Executing full load failed.\r\n" +
				"2025-03-04T10:15:02.124Z ERROR [ips-job-7]       Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401, Response: " + auth0032Body + "\r\n",
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "0a1b-2c3d", load: "full",
				body: auth0032Body, evidence: "2025-03-04T10:15:02.124Z ERROR [ips-job-7]       Caused by: HTTP",
			}},
		},
		{
			name: "old Mac line ends and tabs",
			text: "Cannot execute provisioning job in tenant context: mac\r\tCaused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401, Response: " + auth0032Body + "\r",
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "mac",
			}},
		},
		{
			name: "status code spelled out and Response body",
			text: chainHead + "Caused by: HTTP operation failed invoking " + certUsersURL + " with status code: 401; Response body: " + auth0032Body,
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "t-42", load: "delta",
			}},
		},
		{
			name: "statusCode= without body",
			text: chainHead + "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode=401\n",
			want: []findingWant{{
				cause: CauseUnrecognizedResponse, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: unknownActions, tenant: "t-42", load: "delta",
			}},
		},
		{
			name: "and body with nothing after it",
			text: chainHead + "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 403 and body \nCaused by: something else\n",
			want: []findingWant{{
				cause: CausePermissionDenied, status: 403, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: []Action{ActionFixMappingFields}, tenant: "t-42", load: "delta",
			}},
		},
		{
			name: "bare status line merged into the deeper one with a body",
			text: chainHead +
				"Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401\n" +
				"Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401 and body " + auth0032Body + "\n",
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "t-42", load: "delta",
			}},
		},
		{
			name: "TLS rejected, multi-line HTML page",
			text: chainHead +
				"Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 400, Response: <html>\n" +
				"<head><title>400 The SSL certificate error</title></head>\n" +
				"<body>\n" +
				"<center><h1>400 Bad Request</h1></center>\n" +
				"<center>The SSL certificate error</center>\n" +
				"<hr><center>nginx</center>\n" +
				"</body>\n" +
				"</html>\n",
			want: []findingWant{{
				cause: CauseTLSRejected, status: 400, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: []Action{ActionUploadActiveCertificate, ActionRenewCertificate}, tenant: "t-42", load: "delta",
				msg: "The SSL certificate error", body: "</html>", evidence: "<center>The SSL certificate error</center>",
				kbas: []string{"KBA 3419621", "KBA 3574501", "KBA 3423003"},
			}},
		},
		{
			name: "TLS rejected, HTML on the next line, unclosed, then prose",
			text: "Caused by: HTTP operation failed invoking https://api15preview.cert.sapsf.cn/rest/iam/scim/v2/Users?count=100 with statusCode: 400 and body\n" +
				"  <html><head><title>400 Bad Request</title></head>\n" +
				"  <body>The SSL\n  certificate error\n" +
				"\nEnvironment\nSAP SuccessFactors HCM suite all versions\n",
			want: []findingWant{{
				cause: CauseTLSRejected, status: 400, host: "api15preview.cert.sapsf.cn", certHost: true, scim: true,
				actions: []Action{ActionUploadActiveCertificate, ActionRenewCertificate}, msg: "The SSL certificate error",
				body: "certificate error", bodyNot: "Environment",
			}},
		},
		{
			name: "TLS rejected, one-line HTML",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 400 and body <html><head><title>400 Bad Request</title></head><body><p>The SSL certificate error</p></body></html>",
			want: []findingWant{{
				cause: CauseTLSRejected, status: 400, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: []Action{ActionUploadActiveCertificate, ActionRenewCertificate}, msg: "The SSL certificate error",
			}},
		},
		{
			name: "credentials required at the plain API host, OData body",
			text: chainHead + "Caused by: HTTP operation failed invoking " + plainUsersURL + " with statusCode: 401, Response: " + credsODataBody,
			want: []findingWant{{
				cause: CauseCredentialsRequired, status: 401, host: "api4.successfactors.com", scim: true,
				code: "COE_AUTHENTICATION_REQUIRED", actions: []Action{ActionFixURL, ActionFixCompanyID}, tenant: "t-42", load: "delta",
				msg: "Authentication credentials are required", text: "api4.cert.successfactors.com", kbas: []string{"KBA 3737619"},
			}},
		},
		{
			name: "credentials required at the plain API host, plain-text body",
			text: "Caused by: HTTP operation failed invoking https://api4.successfactors.com/rest/iam/scim/v2/Users with statusCode: 401 and body Authentication credentials are required. Please provide a valid username, password, and company id\nEnvironment\n",
			want: []findingWant{{
				cause: CauseCredentialsRequired, status: 401, host: "api4.successfactors.com", scim: true,
				actions: []Action{ActionFixURL, ActionFixCompanyID}, text: "api4.cert.successfactors.com",
				msg: "Please provide a valid username, password, and company id", bodyNot: "Environment",
			}},
		},
		{
			name: "credentials required at a cert host: company id first",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401 and body {\"error\":{\"code\":\"Unauthorized\",\"message\":\"Authentication credentials are required. Please provide a valid username, password, and company id\"}}",
			want: []findingWant{{
				cause: CauseCredentialsRequired, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "Unauthorized", actions: []Action{ActionFixCompanyID, ActionFixURL},
			}},
		},
		{
			name: "credentials required at an unknown host (sandbox)",
			text: "Caused by: HTTP operation failed invoking https://127.0.0.1:50443/rest/iam/scim/v2/Users?startId=initial&count=1 with statusCode: 401, Response: " + credsODataBody,
			want: []findingWant{{
				cause: CauseCredentialsRequired, status: 401, host: "127.0.0.1", scim: true,
				code: "COE_AUTHENTICATION_REQUIRED", actions: []Action{ActionFixURL, ActionFixCompanyID},
			}},
		},
		{
			name: "403 plain text",
			text: chainHead + "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 403, Response: You don't have permission to view the user.\n",
			want: []findingWant{{
				cause: CausePermissionDenied, status: 403, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: []Action{ActionFixMappingFields}, tenant: "t-42", load: "delta",
				msg: "You don't have permission to view the user.", text: "Identity Provisioning Service",
				kbas: []string{"KBA 3417151", "KBA 3363735"},
			}},
		},
		{
			name: "403 SCIM JSON",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 403 and body {\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:Error\"],\"status\":\"403\",\"detail\":\"You don't have permission to view the user.\"}",
			want: []findingWant{{
				cause: CausePermissionDenied, status: 403, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: []Action{ActionFixMappingFields}, msg: "You don't have permission to view the user.",
			}},
		},
		{
			name: "500 plain text",
			text: chainHead + "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 500, Response: Internal Server Error\n",
			want: []findingWant{{
				cause: CauseServerError, status: 500, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: retryActions, tenant: "t-42", load: "delta", msg: "Internal Server Error",
			}},
		},
		{
			name: "503 HTML page",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 503 and body <!DOCTYPE html>\n<html>\n<head><title>503 Service Unavailable</title></head>\n<body><h1>Service Unavailable</h1></body>\n</html>\nCaused by: nothing\n",
			want: []findingWant{{
				cause: CauseServerError, status: 503, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: retryActions, msg: "503 Service Unavailable Service Unavailable",
			}},
		},
		{
			name: "socket timeout below the call",
			text: chainHead +
				"Caused by: HTTP operation failed invoking " + certUsersURL + "\n" +
				"Caused by: java.net.SocketTimeoutException: Read timed out\n" +
				"\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)\n",
			want: []findingWant{{
				cause: CauseTransportError, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: retryActions, tenant: "t-42", load: "delta", msg: "java.net.SocketTimeoutException: Read timed out",
				evidence: "SocketTimeoutException",
			}},
		},
		{
			name: "connection reset on the same line",
			text: `Caused by: I/O error on GET request for "https://api4.cert.successfactors.com/rest/iam/scim/v2/Users?startId=initial&count=100": Connection reset; nested exception is java.net.SocketException: Connection reset`,
			want: []findingWant{{
				cause: CauseTransportError, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: retryActions, msg: "Connection reset",
			}},
		},
		{
			name: "timeout with no URL nearby is ignored",
			text: "Cannot execute provisioning job in tenant context: t-1\nCaused by: java.net.SocketTimeoutException: Read timed out\n",
		},
		{
			name: "server refuses the client certificate in the handshake",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + "\nCaused by: javax.net.ssl.SSLHandshakeException: Received fatal alert: bad_certificate\n",
			want: []findingWant{{
				cause: CauseTLSRejected, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: []Action{ActionUploadActiveCertificate, ActionRenewCertificate}, msg: "bad_certificate",
			}},
		},
		{
			name: "company id missing, other wording",
			text: "Caused by: Missing required property: sf.company.id\n",
			want: []findingWant{{
				cause: CauseCompanyIDMissing, actions: []Action{ActionFixCompanyID}, msg: "sf.company.id",
			}},
		},
		{
			name: "log stored as a JSON string with escaped quotes",
			text: `{"level":"ERROR","message":"Cannot execute provisioning job in tenant context: esc-1\nCaused by: Executing delta load failed.\nCaused by: HTTP operation failed invoking ` + certUsersURL + ` with statusCode: 401 and body {\"error\":{\"code\":\"AuthenticationFailed\",\"message\":\"Authentication service failed to return token.\",\"details\":\"[AUTH0032]Invalid client certificate\"}}"}`,
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "esc-1", load: "delta",
				msg: "[AUTH0032]Invalid client certificate",
			}},
		},
		{
			name: "JSON body cut short by the log",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + ` with statusCode: 401 and body {"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid cli` + "\nEnvironment\n",
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS,
				msg: "Authentication service failed to return token.", bodyNot: "Environment",
			}},
		},
		{
			name: "pretty-printed JSON body",
			text: "Caused by: HTTP operation failed invoking " + plainUsersURL + " with statusCode: 401, Response: {\n" +
				"  \"error\": {\n    \"code\": \"LGN0011\",\n    \"message\": {\n      \"lang\": \"en-US\",\n" +
				"      \"value\": \"Authentication credentials are required. Please provide a valid username, password, and company id\"\n    }\n  }\n}\n" +
				"Caused by: the end\n",
			want: []findingWant{{
				cause: CauseCredentialsRequired, status: 401, host: "api4.successfactors.com", scim: true,
				code: "LGN0011", actions: []Action{ActionFixURL, ActionFixCompanyID}, body: "\"lang\": \"en-US\"",
				bodyNot: "the end",
			}},
		},
		{
			name: "status before the URL",
			text: "Caused by: Received HTTP status 401 from https://api4.cert.successfactors.com/rest/iam/scim/v2/Users, response: " + auth0032Body,
			want: []findingWant{{
				cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS,
			}},
		},
		{
			name: "a setup fault beats a deeper outage; the outage is still listed",
			text: chainHead +
				"Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401 and body " + auth0032Body + "\n" +
				"Caused by: HTTP operation failed invoking https://api4.cert.successfactors.com/rest/iam/scim/v2/Users?startId=abc&count=100 with statusCode: 503, Response: Service Unavailable\n",
			want: []findingWant{
				{
					cause: CauseInvalidClientCertificate, status: 401, host: "api4.cert.successfactors.com", certHost: true, scim: true,
					code: "AUTH0032", actions: seedActions, component: SupportComponentSFIAS, tenant: "t-42", load: "delta",
				},
				{
					cause: CauseServerError, status: 503, host: "api4.cert.successfactors.com", certHost: true, scim: true,
					actions: retryActions, tenant: "t-42", load: "delta", query: []string{"startId=abc", "count=100"},
				},
			},
		},
		{
			name: "same URL, two statuses",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 429, Response: Too many requests\n" +
				"Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 500, Response: boom\n",
			want: []findingWant{
				{cause: CauseServerError, status: 500, host: "api4.cert.successfactors.com", certHost: true, scim: true, actions: retryActions},
				{cause: CauseRateLimited, status: 429, host: "api4.cert.successfactors.com", certHost: true, scim: true, actions: retryActions},
			},
		},
		{
			name: "unrecognized status at a non-SCIM path",
			text: "Caused by: HTTP operation failed invoking https://api4.cert.successfactors.com/odata/v2/User?$top=1 with statusCode: 404 and body Not Found",
			want: []findingWant{{
				cause: CauseUnrecognizedResponse, status: 404, host: "api4.cert.successfactors.com", certHost: true,
				actions: unknownActions, msg: "Not Found", query: []string{"$top=1"},
			}},
		},
		{
			name: "a status belongs to one URL only; an empty tenant stays empty",
			text: "Cannot execute provisioning job in tenant context:\nCaused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 503 then retried https://api4.cert.successfactors.com/other\n",
			want: []findingWant{{
				cause: CauseServerError, status: 503, host: "api4.cert.successfactors.com", certHost: true, scim: true,
				actions: retryActions,
			}},
		},
		{
			name: "a successful call in the log is no finding",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 200 and body {\"totalResults\":0}\n",
		},
		{
			name: "unknown text",
			text: "The quick brown fox jumps over the lazy dog.\nCaused by: NullPointerException\n",
		},
		{
			name: "empty text",
		},
		{
			name: "the seed article's prose alone",
			text: "5. The job failed with an error code \"[AUTH0032]Invalid client certificate\".\nIf the same error still occurs after re-uploading the certificate, please raise a ticket.\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := DiagnoseJobError(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res)
			if len(res.Findings) != len(tt.want) {
				t.Fatalf("got %d findings, want %d: %+v", len(res.Findings), len(tt.want), res.Findings)
			}
			for i, w := range tt.want {
				w.check(t, res.Findings[i])
			}
			if len(tt.want) == 0 && !strings.HasPrefix(res.Summary, "Nothing known was found") {
				t.Errorf("Summary = %q", res.Summary)
			}
			again, _ := DiagnoseJobError(tt.text)
			if !reflect.DeepEqual(res, again) {
				t.Error("not deterministic")
			}
		})
	}
}

func TestDiagnoseJobErrorSummary(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{
			name: "plain host names the cert host",
			text: "Caused by: HTTP operation failed invoking " + plainUsersURL + " with statusCode: 401, Response: " + credsODataBody,
			want: "SF asked for credentials instead of accepting the client certificate (401 COE_AUTHENTICATION_REQUIRED) at api4.successfactors.com: point URL at api4.cert.successfactors.com, then set sf.company.id to SF's company id.",
		},
		{
			name: "rate limit names the wait",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 429, Response: Too many requests. Retry after 2 minutes.",
			want: "SF rate-limited IPS (429) at api4.cert.successfactors.com: retry after 2m0s.",
		},
		{
			name: "more findings are counted",
			text: "Caused by: HTTP operation failed invoking " + certUsersURL + " with statusCode: 401 and body " + auth0032Body + "\n" +
				"Caused by: HTTP operation failed invoking " + plainUsersURL + " with statusCode: 500 and body x\n",
			want: "SF rejected IPS's client certificate (401 AUTH0032) at api4.cert.successfactors.com: compare the fingerprints in IPS and SF, then delete and re-upload the same certificate in SF, then escalate to LOD-SF-PLT-IAS (1 more finding).",
		},
		{
			name: "company id",
			text: "Caused by: Property sf.company.id is missing, but is required for ClientCertificateAuthentication mode",
			want: "The IPS source system lacks sf.company.id, which certificate authentication requires: set sf.company.id to SF's company id.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := DiagnoseJobError(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if res.Summary != tt.want {
				t.Errorf("Summary =\n%q\nwant\n%q", res.Summary, tt.want)
			}
		})
	}
}

func TestDiagnoseJobErrorTooLong(t *testing.T) {
	ok := strings.Repeat("a", MaxTextBytes)
	if _, err := DiagnoseJobError(ok); err != nil {
		t.Fatalf("%d bytes: %v", len(ok), err)
	}
	_, err := DiagnoseJobError(ok + "b")
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("err = %v, want ErrTooLong", err)
	}
	var tl *TooLongError
	if !errors.As(err, &tl) || tl.Got != MaxTextBytes+1 || tl.Limit != MaxTextBytes {
		t.Fatalf("err = %#v", err)
	}
	if want := "job error text is 262145 bytes; at most 262144 are accepted"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

// largeInputs are the shapes that would make a parser quadratic: many calls
// on one line, many exceptions, one huge body.
func largeInputs() map[string]string {
	call := "invoking " + certUsersURL + " with statusCode: 401 and body {} "
	return map[string]string{
		"calls on one line":   strings.Repeat(call, MaxTextBytes/len(call)),
		"calls on many lines": strings.Repeat(call+"\n", MaxTextBytes/(len(call)+1)),
		"urls and timeouts":   strings.Repeat("https://a.sapsf.com/x timed out\n", MaxTextBytes/32),
		"one huge html body":  "invoking " + certUsersURL + " with statusCode: 400 and body <html>" + strings.Repeat("<p>x</p>\n", (MaxTextBytes-200)/9),
		"unclosed json":       "invoking " + certUsersURL + " with statusCode: 401 and body " + strings.Repeat("{\"a\":[", (MaxTextBytes-200)/6),
	}
}

func TestDiagnoseJobErrorLargeInputs(t *testing.T) {
	for name, text := range largeInputs() {
		t.Run(name, func(t *testing.T) {
			res, err := DiagnoseJobError(text)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res)
		})
	}
}

// BenchmarkDiagnoseJobErrorLargeInputs prints what the largest accepted
// inputs cost; a linear parser handles each in milliseconds.
func BenchmarkDiagnoseJobErrorLargeInputs(b *testing.B) {
	for name, text := range largeInputs() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				DiagnoseJobError(text)
			}
		})
	}
}
