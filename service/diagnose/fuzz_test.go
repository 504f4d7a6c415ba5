package diagnose

import (
	"reflect"
	"testing"
)

// The seed corpus is kept here rather than read from ../shared so that the
// fuzz targets run anywhere; of the seed article only the error lines are
// kept, the rest is SAP's prose.
var jobErrorCorpus = []string{
	// seed/000_2c08482fcf6dad1b.txt, error lines.
	"Cannot execute provisioning job in tenant context: xxxxxxxxxx\n" +
		"Caused by: Error during execution on behalf of tenant with ID: xxxxxxxxxx\n" +
		"Caused by: Executing delta load failed.\n" +
		"Caused by: HTTP operation failed invoking https://api15preview.cert.sapsf.cn/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true with statusCode: 401 and body {\"error\":{\"code\":\"AuthenticationFailed\",\"message\":\"Authentication service failed to return token.\",\"details\":\"[AUTH0032]Invalid client certificate\"}}\n" +
		"Caused by: HTTP operation failed invoking https://api15preview.cert.sapsf.cn/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true with statusCode: 401, Response: {\"error\":{\"code\":\"AuthenticationFailed\",\"message\":\"Authentication service failed to return token.\",\"details\":\"[AUTH0032]Invalid client certificate\"}}\n",
	// samples/job-error-company-id-missing.txt
	"Cannot execute provisioning job in tenant context: 3f6b2a90-5c1d-4e7f-9a2b-8c0d1e2f3a4b\n" +
		"Caused by: Error during execution on behalf of tenant with ID: 3f6b2a90-5c1d-4e7f-9a2b-8c0d1e2f3a4b\n" +
		"Caused by: Property sf.company.id is missing, but is required for ClientCertificateAuthentication mode\n",
	// samples/job-error-rate-limited.txt
	"Cannot execute provisioning job in tenant context: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b\n" +
		"Caused by: Error during execution on behalf of tenant with ID: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b\n" +
		"Caused by: Executing full load failed.\n" +
		"Caused by: HTTP operation failed invoking https://api8.cert.successfactors.com/rest/iam/scim/v2/Users?startId=8a7c1f20e3b94d55&count=100&filter=active%20eq%20true with statusCode: 429, Response: {\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:Error\"],\"status\":\"429\",\"detail\":\"Too many requests. Retry after 30 seconds.\"}\n",
	// Shapes the parser treats specially.
	"Caused by: HTTP operation failed invoking https://api4.cert.successfactors.com/x with statusCode: 400, Response: <html>\r\n<body>The SSL certificate error</body>\r\n</html>\r\n",
	"Caused by: HTTP operation failed invoking https://api4.successfactors.com/rest/iam/scim/v2/Users with statusCode: 401 and body\n{\n \"error\": {\"message\": {\"lang\": \"en\", \"value\": \"Authentication credentials are required.\"}}\n}\n",
	"Caused by: HTTP operation failed invoking https://api4.cert.successfactors.com/rest/iam/scim/v2/Users\nCaused by: java.net.SocketTimeoutException: Read timed out\n",
	"Caused by: Received status 403 from https://[::1]:8443/a%zz?b=%zz&c, body: You don't have permission to view the user.",
	`{"message":"Caused by: x invoking https://h/p with statusCode=500 and body {\"code\":\"E\"}"}`,
}

func FuzzDiagnoseJobError(f *testing.F) {
	for _, s := range jobErrorCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		res, err := DiagnoseJobError(text)
		if err != nil {
			if len(text) <= MaxTextBytes {
				t.Fatalf("error for %d bytes: %v", len(text), err)
			}
			return
		}
		checkResult(t, res)
		if len(res.Findings) > maxFindings {
			t.Errorf("%d findings", len(res.Findings))
		}
		again, _ := DiagnoseJobError(text)
		if !reflect.DeepEqual(res, again) {
			t.Errorf("not deterministic:\n%+v\n%+v", res, again)
		}
	})
}

func FuzzClassify(f *testing.F) {
	bodies := []string{
		`{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"429","detail":"Too many requests. Retry after 30 seconds."}`,
		`{"error":{"code":"X","message":{"lang":"en-US","value":"Authentication credentials are required. Please provide a valid username, password, and company id"}}}`,
		"<html><head><title>400 Bad Request</title></head>\n<body>The SSL certificate error</body></html>",
		"You don't have permission to view the user.",
		`{"message":"{\"error\":{\"code\":\"E1\",\"message\":\"inner\"}}"}`,
		`{\"error\":{\"details\":\"[AUTH0032]Invalid`,
		"[AUTH0032]Invalid client certificate",
		"",
	}
	for _, b := range bodies {
		for _, st := range []uint16{0, 200, 400, 401, 403, 429, 503} {
			f.Add(st, b)
		}
	}
	// The status is a uint16: the fuzzer minimises integers by counting
	// down, which for an int stalls each run for a minute.
	f.Fuzz(func(t *testing.T, status uint16, body string) {
		r := Response{Status: int(status), Body: body}
		got := Classify(r)
		checkClassification(t, r, got)
		if again := Classify(r); again != got {
			t.Errorf("not deterministic: %#v then %#v", got, again)
		}
	})
}
