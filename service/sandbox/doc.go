// Package sandbox simulates SAP Identity Provisioning (IPS) and SAP
// SuccessFactors (SF) over real HTTPS on loopback, with a CA it generates on
// every start, so that the production code paths (TLS, mTLS, the HTTP client,
// retries, timeouts) are the ones exercised by `certsyncd serve --sandbox`,
// `certsyncd sandbox` and the tests.
//
// It models state and derives every answer from it: SF companies with their
// permitted login names, SCIM users and X.509 certificate mappings; IPS source
// systems with their certificate slots; and connections that pair one IPS
// system with one SF company. The demo connections exist only as seed data
// (seed.go); no code path looks at their ids.
//
// # Listeners
//
// The main listener (Options.Addr, default 127.0.0.1:50443) plays SF's mTLS
// "cert." host, the registry bridge, the simulated IPS and the control API. A
// second listener on a random loopback port (PlainAddr) plays SF's plain API
// host, where client certificates never authenticate. Both present a server
// certificate for 127.0.0.1, ::1 and localhost signed by the sandbox CA
// (CAPEM), and both only speak HTTP/1.1 so that a reset fault can reset the
// TCP connection itself.
//
// # SF SCIM (main listener: the cert host)
//
//	GET /rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true
//	header successfactors-companyid: <company id>
//
// The checks run in SF's order, each derived from the model:
//
//  1. no client certificate, one not issued by the sandbox CA, expired or not
//     yet valid, or one whose exact DER is mapped in no company: 400 text/html,
//     a gateway page containing "The SSL certificate error";
//  2. no successfactors-companyid header: 401
//     {"error":{"code":"LGN0011","message":{"lang":"en-US","value":"Authentication credentials are required. Please provide a valid username, password, and company id"}}}
//  3. the header names no company, the company does not map this exact
//     certificate, or the mapping is not synchronized: 401
//     {"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}
//  4. the mapping's integration name is not "Identity Provisioning Service",
//     or its login name may not read users in that company: 403
//     {"error":{"code":"Forbidden","message":"You don't have permission to view the user."}}
//  5. otherwise 200 application/scim+json:
//     {"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":5,"itemsPerPage":1,"startId":"initial","nextId":"<id>|end","Resources":[{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"...","userName":"...","active":true,"name":{"givenName":"...","familyName":"..."}}]}
//
// Paging: startId is "initial" (the default) or a user id (the first user of
// the page); count defaults to 100 and is capped at 1000; nextId is the id of
// the first user of the next page, or "end". totalResults counts every user
// the filter matches. Filters: `active eq true|false`, `active eq "true"`,
// `userName eq "x"` (attribute and operator case-insensitive, userName compared
// case-insensitively). Anything else, a bad count or an unknown startId is a
// 400 SCIM error:
//
//	{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidFilter|invalidValue","detail":"..."}
//
// # SF SCIM (plain listener: the plain API host)
//
// The same path always answers 401 with the LGN0011 "Authentication
// credentials are required..." body above.
//
// # Registry HTTP contract (certsync's own; SF publishes none)
//
// Base URL: https://ADDR/registry/{connectionID}. A registry is the SF
// company's: connections sharing a company see the same mappings. Every call
// needs "Authorization: Bearer <token>" (the connection's token file).
// Errors are JSON {"error":{"code":"...","message":"..."}}, with "field" added
// when a request field is at fault.
//
//	GET    {base}/v1/mappings        200 {"mappings":[MAPPING,...]}
//	POST   {base}/v1/mappings        body {"configuration_name":"...","integration_name":"...","login_name":"...","certificate_pem":"-----BEGIN CERTIFICATE-----\n..."}
//	                                 201 MAPPING (and a Location header)
//	DELETE {base}/v1/mappings/{id}   204
//
//	MAPPING = {"id":"...","configuration_name":"...","integration_name":"...","login_name":"...","certificate_pem":"..."}
//
// Errors: 401 UNAUTHENTICATED (missing or wrong bearer token); 404 NOT_FOUND
// (unknown connection or mapping id); 400 INVALID_ARGUMENT (malformed JSON,
// unknown field, certificate_pem missing or not exactly one PEM certificate,
// integration_name missing; "field" names it); 409 DUPLICATE_CERTIFICATE when
// a mapping with the same issuer and subject exists in the company (SF's key;
// the serial is ignored), with SF's message "This X.509 Certificate was already
// registered to the platform. Please upload a different one or cancel the
// certificate mapping." A new mapping is synchronized at once unless the
// company is marked stuck. Mapping ids are opaque.
//
// # Simulated IPS (no authentication: outbound certificates are public)
//
//	GET /ips/v1/systems/{systemID}/certificates         200 {"certificates":[{"slot":1,"active":true,"certificate_pem":"..."},...]}
//	GET /ips/v1/systems/{systemID}/certificates/active  200 application/x-pem-file, the Active certificate
//
// # Control API
//
//	GET    /_sandbox/v1/state   200 {"connections":{"demo-healthy":CONNECTION,...}}
//	POST   /_sandbox/v1/faults  body {"connection":"demo-healthy","operation":"scim","delay":"5s","status":503,"reset":false,"times":1}
//	                            201 the fault as stored (delay as a Go duration, times defaulted to 1)
//	GET    /_sandbox/v1/faults  200 {"faults":[FAULT,...]} (pending faults; times is what is left)
//	DELETE /_sandbox/v1/faults  204, clears every pending fault
//
//	CONNECTION = {"company_id":"DEMO_HEALTHY","sent_company_id":"DEMO_HEALTHY","sf_host":"cert|plain",
//	              "ips_system":"...","ips_active_sha256":"AB:CD:...",
//	              "mappings":[{"id":"...","sha256":"AB:CD:...","sha1":"AB:...","subject":"CN=...","issuer":"CN=...",
//	                           "configuration_name":"...","integration_name":"...","login_name":"...","synchronized":true}],
//	              "counters":{"scim":3,"list":1,"delete":0,"upload":0}}
//
// Fingerprints are upper-case hex pairs joined by ":". Counters include calls
// that were faulted. A fault applies to the next `times` calls (default 1) of
// one operation on one connection: wait `delay` (optional), then reset the TCP
// connection if `reset` (it wins), else answer `status` (400..599) with
// {"error":{"code":"SANDBOX_FAULT","message":"..."}}, else proceed normally.
// Operations: scim, list, delete, upload, and ips_token, ips_start_job,
// ips_job_log (the IPS Tenant Admin API, below). Faults on
// one connection and operation queue up in the order they were posted. An
// invalid body is a 400 {"error":{"code":"INVALID_ARGUMENT","message":"...","field":"delay"}}.
//
// SCIM calls are attributed to a connection by the client certificate (it is
// a slot of an IPS system that belongs to the connection), else by the
// successfactors-companyid header; a call that matches neither counts nowhere
// and no fault applies to it.
//
// # IPS Tenant Admin API (main listener: one IAS tenant per connection)
//
// Each connection has a simulated Identity Authentication tenant with a
// technical system administrator; Sandbox.IPSSettings returns its base URL
// https://ADDR/ias/{connectionID}, the IPS tenant id, the source system id
// and the files WriteFiles writes: the client secret
// ({id}-ips-client.secret), a PKCS#12 client certificate
// ({id}-ips-admin.p12, PBES2/AES-256, issued by the sandbox CA) and its
// password ({id}-ips-admin.p12.password), all 0600 without trailing newlines.
//
//	POST {base}/oauth2/token   form grant_type=client_credentials; the client id and secret with HTTP basic,
//	                           as client_id/client_secret in the form, or the administrator's client certificate
//	                           200 {"access_token":"...","token_type":"Bearer","expires_in":3600}
//	                           400 {"error":"unsupported_grant_type","error_description":"..."}
//	                           401 {"error":"invalid_client","error_description":"Client authentication failed"}
//	POST {base}/ips/service/publicapi/v1/startJob/{sourceSystemId}/jobs/{READ|RESYNC}
//	                           202 {"jobId":"<uuid>","status":"Running"} and Location: .../jobs/{jobId}
//	GET  {base}/ips/service/publicapi/v1/jobs/{jobId}
//	                           200 {"jobId":"...","status":"Success|Finished with Error"}
//	                           (certsync's assumption: IPS documents no status endpoint)
//	GET  {base}/ips/service/publicapi/v1/jobLogs/{jobId}?action=export&logType=ERROR|WARNING|INFO|ALL
//	                           200 application/zip holding one text file
//
// The API takes a bearer token from the token endpoint (until it expires),
// HTTP basic with the client id and secret, or, with no Authorization header,
// the administrator's client certificate (verified in the handler: issued by
// the sandbox CA, valid, and this tenant's). Anything else is 401
// {"error":{"code":"UNAUTHENTICATED",...}}. An unknown tenant, source system
// or job is 404 NOT_FOUND; a bad job type, action or logType 400
// INVALID_ARGUMENT. More than 5 start requests per tenant within a minute
// are answered 429 {"error":{"code":"TOO_MANY_REQUESTS","message":"Too many
// requests. Retry after N seconds."}} with Retry-After: N.
//
// A job runs when it starts, as IPS would run it: the first SCIM request of
// a read (GET https://HOST/rest/iam/scim/v2/Users?startId=initial&count=100&filter=active%20eq%20true,
// HOST being the connection's cert or plain host) with the IPS system's
// Active certificate and the company id the connection sends, decided by the
// same checks as the SCIM endpoint above. It counts as a scim call of the
// connection, and a pending scim fault's status or reset applies to it (a
// delay does not hold the start). A 200 makes the job Success; anything else
// Finished with Error, whose ERROR log is IPS's chain as in KBA 3505973:
//
//	Cannot execute provisioning job in tenant context: <tenant id>
//	Caused by: Error during execution on behalf of tenant with ID: <tenant id>
//	Caused by: Executing delta load failed.            ("full load" for RESYNC)
//	Caused by: HTTP operation failed invoking URL with statusCode: N and body BODY
//	Caused by: HTTP operation failed invoking URL with statusCode: N, Response: BODY
//
// A connection that sends no company id fails with "Caused by: Property
// sf.company.id is missing, but is required for ClientCertificateAuthentication
// mode", a reset with "Caused by: java.net.SocketException: Connection reset".
// Faults ips_token, ips_start_job and ips_job_log apply to the token, start
// and export calls, before authentication, and each call counts in the
// connection's counters ips_token, ips_start_job and ips_job_log (present in
// the state once non-zero). Status reads are neither counted nor faulted.
package sandbox
