package diagnose

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		r    Response
		want Classification
	}{
		{
			name: "seed JSON",
			r:    Response{401, auth0032Body},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "Authentication service failed to return token. [AUTH0032]Invalid client certificate"},
		},
		{
			name: "AUTH0032 in an OData message object",
			r:    Response{401, `{"error":{"code":"AuthenticationFailed","message":{"lang":"en-US","value":"[AUTH0032]Invalid client certificate"}}}`},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "[AUTH0032]Invalid client certificate"},
		},
		{
			name: "details as an array of objects",
			r:    Response{401, `{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token","details":[{"code":"AUTH0032","message":"Invalid client certificate"}]}}`},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AuthenticationFailed", ErrorMessage: "Authentication service failed to return token: Invalid client certificate"},
		},
		{
			name: "error nested as JSON inside a message",
			r:    Response{401, `{"message":"{\"error\":{\"code\":\"AuthenticationFailed\",\"message\":\"Authentication service failed to return token.\",\"details\":\"[AUTH0032]Invalid client certificate\"}}"}`},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "Authentication service failed to return token. [AUTH0032]Invalid client certificate"},
		},
		{
			name: "escaped JSON as a log shows it",
			r:    Response{401, `{\"error\":{\"code\":\"AuthenticationFailed\",\"details\":\"[AUTH0032]Invalid client certificate\"}}`},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "[AUTH0032]Invalid client certificate"},
		},
		{
			name: "truncated JSON",
			r:    Response{401, `{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Inval`},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "Authentication service failed to return token. [AUTH0032]Inval"},
		},
		{
			name: "AUTH0032 in plain text",
			r:    Response{401, "[AUTH0032]Invalid client certificate"},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "[AUTH0032]Invalid client certificate"},
		},
		{
			name: "TLS rejected, nginx page over several lines",
			r: Response{400, "<html>\r\n<head><title>400 The SSL certificate error</title></head>\r\n<body>\r\n" +
				"<center><h1>400 Bad Request</h1></center>\r\n<center>The SSL certificate error</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"},
			want: Classification{Cause: CauseTLSRejected, ErrorMessage: "The SSL certificate error"},
		},
		{
			name: "TLS rejected, phrase in lower case and broken over lines",
			r:    Response{400, "<html><body>the ssl\n certificate ERROR</body></html>"},
			want: Classification{Cause: CauseTLSRejected, ErrorMessage: "the ssl certificate ERROR"},
		},
		{
			name: "TLS rejected, plain text",
			r:    Response{400, "The SSL certificate error"},
			want: Classification{Cause: CauseTLSRejected, ErrorMessage: "The SSL certificate error"},
		},
		{
			name: "400 without the phrase",
			r:    Response{400, "<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1><script>var x = 1 < 2;</script></body></html>"},
			want: Classification{Cause: CauseUnrecognizedResponse, ErrorMessage: "400 Bad Request"},
		},
		{
			name: "nginx 495",
			r:    Response{495, ""},
			want: Classification{Cause: CauseTLSRejected},
		},
		{
			name: "credentials required, OData",
			r:    Response{401, credsODataBody},
			want: Classification{Cause: CauseCredentialsRequired, ErrorCode: "COE_AUTHENTICATION_REQUIRED", ErrorMessage: "Authentication credentials are required. Please provide a valid username, password, and company id"},
		},
		{
			name: "credentials required, bracketed code wins over JSON code",
			r:    Response{401, `{"error":{"code":"Unauthorized","message":"[LGN0011]Authentication credentials are required. Please provide a valid username, password, and company id"}}`},
			want: Classification{Cause: CauseCredentialsRequired, ErrorCode: "LGN0011", ErrorMessage: "[LGN0011]Authentication credentials are required. Please provide a valid username, password, and company id"},
		},
		{
			name: "permission denied, HTML entity",
			r:    Response{403, "<p>You don&#39;t have permission to view the user.</p>"},
			want: Classification{Cause: CausePermissionDenied, ErrorMessage: "You don't have permission to view the user."},
		},
		{
			name: "permission denied, SCIM",
			r:    Response{403, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"403","detail":"You don't have permission to view the user."}`},
			want: Classification{Cause: CausePermissionDenied, ErrorMessage: "You don't have permission to view the user."},
		},
		{
			name: "rate limited, SCIM",
			r:    Response{429, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"429","detail":"Too many requests. Retry after 30 seconds."}`},
			want: Classification{Cause: CauseRateLimited, ErrorMessage: "Too many requests. Retry after 30 seconds.", RetryAfter: 30 * time.Second},
		},
		{
			name: "rate limited, minutes",
			r:    Response{429, "Too many requests, retry after 2 minutes"},
			want: Classification{Cause: CauseRateLimited, ErrorMessage: "Too many requests, retry after 2 minutes", RetryAfter: 2 * time.Minute},
		},
		{
			name: "rate limited, header-like, capped",
			r:    Response{429, "Retry-After: 9999999"},
			want: Classification{Cause: CauseRateLimited, ErrorMessage: "Retry-After: 9999999", RetryAfter: 24 * time.Hour},
		},
		{
			name: "OAuth-style error",
			r:    Response{401, `{"error":"invalid_client","error_description":"Client authentication failed"}`},
			want: Classification{Cause: CauseUnrecognizedResponse, ErrorCode: "invalid_client", ErrorMessage: "Client authentication failed"},
		},
		{
			name: "500 JSON with numeric code",
			r:    Response{500, `{"code":500,"message":"Internal error"}`},
			want: Classification{Cause: CauseServerError, ErrorCode: "500", ErrorMessage: "Internal error"},
		},
		{
			name: "503 empty body",
			r:    Response{503, ""},
			want: Classification{Cause: CauseServerError},
		},
		{
			name: "401 empty body",
			r:    Response{401, ""},
			want: Classification{Cause: CauseUnrecognizedResponse},
		},
		{
			name: "success says nothing, even about a body",
			r:    Response{200, `{"totalResults":1,"Resources":[{"userName":"someone"}]}`},
			want: Classification{},
		},
		{
			name: "no status, SCIM body carries it",
			r:    Response{0, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":429,"detail":"Too many requests"}`},
			want: Classification{Cause: CauseRateLimited, ErrorMessage: "Too many requests"},
		},
		{
			name: "no status, phrase alone",
			r:    Response{0, "[AUTH0032]Invalid client certificate"},
			want: Classification{Cause: CauseInvalidClientCertificate, ErrorCode: "AUTH0032", ErrorMessage: "[AUTH0032]Invalid client certificate"},
		},
		{
			name: "no status, nothing known",
			r:    Response{0, "hello"},
			want: Classification{Cause: CauseUnrecognizedResponse, ErrorMessage: "hello"},
		},
		{
			name: "invalid UTF-8",
			r:    Response{418, "bad \xff\xfe bytes"},
			want: Classification{Cause: CauseUnrecognizedResponse, ErrorMessage: "bad \uFFFD bytes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.r)
			checkClassification(t, tt.r, got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Classify() =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestClassifyBoundsMessage(t *testing.T) {
	got := Classify(Response{500, strings.Repeat("é", 4000)})
	if len(got.ErrorMessage) > maxMessageBytes || !strings.HasPrefix(got.ErrorMessage, "éé") {
		t.Errorf("message of %d bytes: %.20q", len(got.ErrorMessage), got.ErrorMessage)
	}
	checkClassification(t, Response{500, ""}, got)
}

func TestClassifyDeterministicAcrossMapOrder(t *testing.T) {
	// Several keys could fill one role; the answer must not depend on Go's
	// map order.
	body := `{"b":{"message":"two"},"a":{"message":"one"},"c":{"code":"X1"},"d":{"code":"X2"}}`
	first := Classify(Response{418, body})
	for range 50 {
		if got := Classify(Response{418, body}); got != first {
			t.Fatalf("got %#v, then %#v", first, got)
		}
	}
	if first.ErrorMessage != "one" || first.ErrorCode != "X1" {
		t.Errorf("got %#v", first)
	}
}
