package sandbox

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certsync/certsync/service/pki"
)

// The simulated Identity Authentication (IAS) tenant of each connection and
// its IPS Tenant Admin API (doc.go, "IPS Tenant Admin API"). A job started
// here runs the SCIM read IPS would run, decided by the same checks the SCIM
// handler makes (authenticate), with the IPS system's Active certificate, the
// company id the connection sends and the SF host its URL names; its log is
// the "Caused by:" chain IPS writes, as in the seed (KBA 3505973).

const (
	// ipsStartLimit start requests per ipsStartWindow per tenant are
	// accepted; more are answered 429 with Retry-After.
	ipsStartLimit  = 5
	ipsStartWindow = time.Minute
	// ipsTokenLifetime is expires_in of issued tokens.
	ipsTokenLifetime = time.Hour
	// ipsMaxJobs and ipsMaxTokens bound what a tenant remembers; the oldest
	// go first.
	ipsMaxJobs   = 200
	ipsMaxTokens = 200
	// ipsSCIMQuery is IPS's first read request: initial page, 100 users,
	// sf.user.filter's default.
	ipsSCIMQuery = "?startId=initial&count=100&filter=active%20eq%20true"
	// iasPrefix is the path of every tenant: /ias/{connectionID}.
	iasPrefix = "/ias/"
	ipsAPI    = "/ips/service/publicapi/v1"
)

// iasTenant is the IAS tenant of one connection. The fields above the line
// never change after New; the rest is guarded by Sandbox.mu.
type iasTenant struct {
	tenantID     string
	clientID     string
	clientSecret string
	// admin is the technical system administrator's client certificate,
	// issued by the sandbox CA.
	admin       *pki.Leaf
	p12Password string

	tokens   map[string]time.Time // access token -> expiry
	jobs     map[string]*ipsJob
	jobOrder []string
	starts   []time.Time // accepted start requests within the window
	files    ipsFiles
}

// ipsFiles are where WriteFiles put the tenant's credentials.
type ipsFiles struct {
	clientSecret, pkcs12, pkcs12Password, ca string
}

// ipsJob is a finished job: the sandbox runs the read when the job starts.
type ipsJob struct {
	id      string
	jobType string
	status  string
	started time.Time
	// errorLog is the "Caused by:" chain of a failed job, empty on success.
	errorLog string
	// infoLog is the job's other lines.
	infoLog string
}

// IPS job statuses the sandbox reports.
const (
	ipsStatusRunning           = "Running"
	ipsStatusSuccess           = "Success"
	ipsStatusFinishedWithError = "Finished with Error"
)

// IPSSettings is what reaches one connection's simulated IAS tenant and its
// IPS Tenant Admin API. Every auth method the API takes works with these:
// OAuth2 client credentials and basic (ClientID, ClientSecretFile) and a
// PKCS#12 client certificate (PKCS12File, PKCS12PasswordFile).
type IPSSettings struct {
	// BaseURL is the tenant: https://ADDR/ias/{connectionID}.
	BaseURL string
	// TenantID is the IPS tenant id job errors name.
	TenantID string
	// SourceSystemID is the IPS source system of the connection.
	SourceSystemID string
	ClientID       string
	// The files are written by WriteFiles; empty before it ran.
	ClientSecretFile   string
	PKCS12File         string
	PKCS12PasswordFile string
	// CAFile is the sandbox CA, which the tenant's server certificate
	// chains to.
	CAFile string
}

// IPSSettings returns the settings of connection connID's tenant; the zero
// value for an unknown connection. BaseURL needs Start first, the files
// WriteFiles.
func (s *Sandbox) IPSSettings(connID string) IPSSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[connID]
	if c == nil || c.ias == nil {
		return IPSSettings{}
	}
	st := IPSSettings{
		TenantID:           c.ias.tenantID,
		SourceSystemID:     c.system.id,
		ClientID:           c.ias.clientID,
		ClientSecretFile:   c.ias.files.clientSecret,
		PKCS12File:         c.ias.files.pkcs12,
		PKCS12PasswordFile: c.ias.files.pkcs12Password,
		CAFile:             c.ias.files.ca,
	}
	if addr := s.Addr(); addr != "" {
		st.BaseURL = "https://" + addr + iasPrefix + url.PathEscape(c.id)
	}
	return st
}

// newIASTenant creates connection connID's tenant with fresh credentials.
func (s *Sandbox) newIASTenant(connID string, now time.Time) (*iasTenant, error) {
	admin, err := s.ca.Issue(pki.LeafOptions{
		Subject:   pkix.Name{CommonName: "ias-admin-" + connID, Organization: []string{"certsync sandbox"}},
		NotBefore: now.Add(-day),
		NotAfter:  now.Add(year),
	})
	if err != nil {
		return nil, fmt.Errorf("IAS tenant of %s: %w", connID, err)
	}
	return &iasTenant{
		tenantID:     newUUID(),
		clientID:     newUUID(),
		clientSecret: randomID(),
		admin:        admin,
		p12Password:  randomID(),
		tokens:       map[string]time.Time{},
		jobs:         map[string]*ipsJob{},
	}, nil
}

// writeIPSFiles writes connection id's tenant credentials into dir and
// remembers where, for IPSSettings.
func (s *Sandbox) writeIPSFiles(dir, id, caFile string) error {
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c == nil || c.ias == nil {
		return fmt.Errorf("sandbox: connection %s has no IAS tenant", id)
	}
	t := c.ias
	p12, err := pkcs12.Modern2023.Encode(t.admin.Key, t.admin.Cert, nil, t.p12Password)
	if err != nil {
		return fmt.Errorf("sandbox: connection %s: encode PKCS#12: %w", id, err)
	}
	f := ipsFiles{
		clientSecret:   filepath.Join(dir, id+"-ips-client.secret"),
		pkcs12:         filepath.Join(dir, id+"-ips-admin.p12"),
		pkcs12Password: filepath.Join(dir, id+"-ips-admin.p12.password"),
		ca:             caFile,
	}
	// No trailing newlines, like the registry token.
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.clientSecret, []byte(t.clientSecret)},
		{f.pkcs12, p12},
		{f.pkcs12Password, []byte(t.p12Password)},
	} {
		if err := writeFileAtomic(w.path, w.data, 0o600); err != nil {
			return err
		}
	}
	s.mu.Lock()
	t.files = f
	s.mu.Unlock()
	return nil
}

func (s *Sandbox) registerIPSJobs(mux *http.ServeMux) {
	mux.HandleFunc("POST /ias/{conn}/oauth2/token", s.handleIASToken)
	mux.HandleFunc("POST /ias/{conn}"+ipsAPI+"/startJob/{sys}/jobs/{type}", s.handleIPSStartJob)
	mux.HandleFunc("GET /ias/{conn}"+ipsAPI+"/jobs/{job}", s.handleIPSJobStatus)
	mux.HandleFunc("GET /ias/{conn}"+ipsAPI+"/jobLogs/{job}", s.handleIPSJobLog)
}

// tenant finds the connection of the path's tenant, or answers 404.
func (s *Sandbox) tenant(w http.ResponseWriter, r *http.Request) *connection {
	id := r.PathValue("conn")
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c == nil || c.ias == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no IAS tenant "+quote(id))
		return nil
	}
	return c
}

// handleIASToken is IAS's OAuth2 token endpoint for client credentials. The
// client authenticates with HTTP basic, with client_id and client_secret in
// the form, or with the administrator's client certificate.
func (s *Sandbox) handleIASToken(w http.ResponseWriter, r *http.Request) {
	c := s.tenant(w, r)
	if c == nil {
		return
	}
	if !s.applyFault(w, r, s.count(c, OperationIPSToken)) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "the body is not a form: " + err.Error()})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, oauthError{"unsupported_grant_type", fmt.Sprintf("grant_type %q is not client_credentials", gt)})
		return
	}
	t := c.ias
	ok := false
	if user, pass, basic := r.BasicAuth(); basic {
		ok = t.credentialsMatch(user, pass)
	} else if id := r.PostForm.Get("client_id"); r.PostForm.Has("client_secret") {
		ok = t.credentialsMatch(id, r.PostForm.Get("client_secret"))
	} else if s.adminCertificate(r, t) {
		ok = id == "" || id == t.clientID
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="ias"`)
		s.log.Debug("sandbox ias token refused", "connection", c.id)
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_client", "Client authentication failed"})
		return
	}
	tok := randomID() + randomID()
	now := s.now()
	s.mu.Lock()
	t.pruneTokensLocked(now)
	t.tokens[tok] = now.Add(ipsTokenLifetime)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}{tok, "Bearer", int(ipsTokenLifetime / time.Second)})
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (t *iasTenant) credentialsMatch(id, secret string) bool {
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(t.clientID))
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(t.clientSecret))
	return idOK&secretOK == 1
}

// pruneTokensLocked drops expired tokens, and the oldest when too many are
// live.
func (t *iasTenant) pruneTokensLocked(now time.Time) {
	for tok, exp := range t.tokens {
		if !now.Before(exp) {
			delete(t.tokens, tok)
		}
	}
	for len(t.tokens) >= ipsMaxTokens {
		var oldest string
		var oldestExp time.Time
		for tok, exp := range t.tokens {
			if oldest == "" || exp.Before(oldestExp) {
				oldest, oldestExp = tok, exp
			}
		}
		delete(t.tokens, oldest)
	}
}

// adminCertificate reports whether the TLS client presented the tenant's
// administrator certificate, valid now and issued by the sandbox CA. The
// main listener requests client certificates without verifying them.
func (s *Sandbox) adminCertificate(r *http.Request, t *iasTenant) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: inter,
		CurrentTime:   s.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return false
	}
	return bytes.Equal(leaf.Raw, t.admin.Cert.Raw)
}

// authorizeAdmin checks the caller of the Tenant Admin API: a bearer token
// this tenant issued and that has not expired, basic with the client id and
// secret, or (without an Authorization header) the administrator's client
// certificate. It answers 401 itself.
func (s *Sandbox) authorizeAdmin(w http.ResponseWriter, r *http.Request, c *connection) bool {
	t := c.ias
	ok, reason := false, "no credentials"
	auth := r.Header.Get("Authorization")
	switch {
	case auth != "":
		scheme, cred, _ := strings.Cut(auth, " ")
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			now := s.now()
			s.mu.Lock()
			exp, known := t.tokens[strings.TrimSpace(cred)]
			s.mu.Unlock()
			ok, reason = known && now.Before(exp), "unknown or expired bearer token"
		case strings.EqualFold(scheme, "Basic"):
			user, pass, _ := r.BasicAuth()
			ok, reason = t.credentialsMatch(user, pass), "wrong client id or secret"
		default:
			reason = "unsupported authorization scheme"
		}
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		ok, reason = s.adminCertificate(r, t), "client certificate is not the tenant administrator's"
	}
	if !ok {
		s.log.Debug("sandbox ias refused", "connection", c.id, "reason", reason)
		w.Header().Set("WWW-Authenticate", `Bearer realm="ias", Basic realm="ias"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "", "authentication failed: "+reason)
	}
	return ok
}

func (s *Sandbox) handleIPSStartJob(w http.ResponseWriter, r *http.Request) {
	c := s.tenant(w, r)
	if c == nil {
		return
	}
	if !s.applyFault(w, r, s.count(c, OperationIPSStartJob)) {
		return
	}
	if !s.authorizeAdmin(w, r, c) {
		return
	}
	if sys := r.PathValue("sys"); sys != c.system.id {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no source system "+quote(sys)+" in this tenant")
		return
	}
	jobType := r.PathValue("type")
	if jobType != "READ" && jobType != "RESYNC" {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "", "job type "+quote(jobType)+" is not READ or RESYNC")
		return
	}
	t := c.ias
	now := s.now()
	s.mu.Lock()
	kept := t.starts[:0]
	for _, at := range t.starts {
		if now.Sub(at) < ipsStartWindow {
			kept = append(kept, at)
		}
	}
	t.starts = kept
	if len(t.starts) >= ipsStartLimit {
		wait := t.starts[0].Add(ipsStartWindow).Sub(now)
		s.mu.Unlock()
		secs := max(1, int(math.Ceil(wait.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.log.Debug("sandbox ips start rate limited", "connection", c.id, "retry_after", secs)
		writeError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "", fmt.Sprintf("Too many requests. Retry after %d seconds.", secs))
		return
	}
	t.starts = append(t.starts, now)
	s.mu.Unlock()

	job := s.runIPSJob(c, jobType, now)
	s.mu.Lock()
	t.jobs[job.id] = job
	t.jobOrder = append(t.jobOrder, job.id)
	for len(t.jobOrder) > ipsMaxJobs {
		delete(t.jobs, t.jobOrder[0])
		t.jobOrder = t.jobOrder[1:]
	}
	s.mu.Unlock()
	s.log.Info("sandbox ips job", "connection", c.id, "job", job.id, "type", jobType, "status", job.status)
	w.Header().Set("Location", iasPrefix+url.PathEscape(c.id)+ipsAPI+"/jobs/"+job.id)
	// IPS runs jobs in the background: the answer to a start says Running;
	// the status endpoint says how it ended.
	writeJSON(w, http.StatusAccepted, ipsJobJSON{JobID: job.id, Status: ipsStatusRunning})
}

type ipsJobJSON struct {
	JobID  string `json:"jobId"`
	Status string `json:"status"`
}

// runIPSJob runs the read a job of this type makes, now: IPS's first SCIM
// request, with the Active certificate, to the connection's SF host, with
// the company id it sends. It counts as a SCIM call of the connection, and a
// pending scim fault applies to it (its status or reset; a delay alone
// changes nothing, since nobody waits for the job).
func (s *Sandbox) runIPSJob(c *connection, jobType string, now time.Time) *ipsJob {
	job := &ipsJob{id: newUUID(), jobType: jobType, started: now}
	mode := "delta"
	if jobType == "RESYNC" {
		mode = "full"
	}
	host := s.Addr()
	if c.plainHost {
		host = s.PlainAddr()
	}
	target := "https://" + host + "/rest/iam/scim/v2/Users" + ipsSCIMQuery
	tenant := c.ias.tenantID
	stamp := now.UTC().Format(time.RFC3339)
	info := fmt.Sprintf("%s INFO Job %s (%s) started for source system %s in tenant %s\n", stamp, job.id, jobType, c.system.id, tenant)
	chain := "Cannot execute provisioning job in tenant context: " + tenant + "\n" +
		"Caused by: Error during execution on behalf of tenant with ID: " + tenant + "\n"
	fail := func(causes string) *ipsJob {
		job.status = ipsStatusFinishedWithError
		job.errorLog = chain + causes
		job.infoLog = info + fmt.Sprintf("%s ERROR Job %s finished with status %s\n", stamp, job.id, job.status)
		return job
	}

	s.mu.Lock()
	sent := c.sentCompanyID
	var active *x509.Certificate
	if a := c.system.activeSlot(); a != nil {
		active = a.leaf.Cert
	}
	s.mu.Unlock()
	if sent == "" {
		return fail("Caused by: Property sf.company.id is missing, but is required for ClientCertificateAuthentication mode\n")
	}
	if active == nil {
		return fail("Caused by: No active certificate for the outbound connection of source system " + c.system.id + "\n")
	}
	info += fmt.Sprintf("%s INFO Executing %s load: GET %s\n", stamp, mode, target)

	httpFailure := func(status int, body string) *ipsJob {
		return fail("Caused by: Executing " + mode + " load failed.\n" +
			fmt.Sprintf("Caused by: HTTP operation failed invoking %s with statusCode: %d and body %s\n", target, status, body) +
			fmt.Sprintf("Caused by: HTTP operation failed invoking %s with statusCode: %d, Response: %s\n", target, status, body))
	}

	if f := s.count(c, OperationSCIM); f != nil {
		s.log.Info("sandbox fault applied to an IPS job's read", "connection", c.id, "status", f.Status, "reset", f.Reset)
		switch {
		case f.Reset:
			return fail("Caused by: Executing " + mode + " load failed.\n" +
				"Caused by: I/O error on GET request for \"" + target + "\": Connection reset\n" +
				"Caused by: java.net.SocketException: Connection reset\n")
		case f.Status != 0:
			return httpFailure(f.Status, fmt.Sprintf(`{"error":{"code":"SANDBOX_FAULT","message":"injected fault: %s answered %d"}}`, OperationSCIM, f.Status))
		}
	}
	if c.plainHost {
		// Client certificates never authenticate on the plain API host.
		return httpFailure(http.StatusUnauthorized, bodyCredentialsRequired)
	}
	// The very checks the SCIM handler makes, on the certificate IPS
	// presents.
	d := s.authenticate(&http.Request{TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{active}}}, sent)
	if d.company == nil {
		return httpFailure(d.status, strings.TrimRight(d.body, "\r\n"))
	}
	s.mu.Lock()
	read := 0
	for _, u := range d.company.users {
		if u.active {
			read++
		}
	}
	s.mu.Unlock()
	job.status = ipsStatusSuccess
	job.infoLog = info + fmt.Sprintf("%s INFO Read %d users\n%s INFO Job %s finished with status %s\n", stamp, read, stamp, job.id, job.status)
	return job
}

// job finds the path's job in the tenant, or answers 404.
func (s *Sandbox) job(w http.ResponseWriter, r *http.Request, c *connection) *ipsJob {
	id := r.PathValue("job")
	s.mu.Lock()
	j := c.ias.jobs[id]
	s.mu.Unlock()
	if j == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no job "+quote(id)+" in this tenant")
	}
	return j
}

func (s *Sandbox) handleIPSJobStatus(w http.ResponseWriter, r *http.Request) {
	c := s.tenant(w, r)
	if c == nil || !s.authorizeAdmin(w, r, c) {
		return
	}
	j := s.job(w, r, c)
	if j == nil {
		return
	}
	writeJSON(w, http.StatusOK, ipsJobJSON{JobID: j.id, Status: j.status})
}

// handleIPSJobLog exports a job's log as a zip holding one text file:
// logType ERROR gives the error chain (empty for a job without errors);
// WARNING, INFO, ALL or none give every line.
func (s *Sandbox) handleIPSJobLog(w http.ResponseWriter, r *http.Request) {
	c := s.tenant(w, r)
	if c == nil {
		return
	}
	if !s.applyFault(w, r, s.count(c, OperationIPSJobLog)) {
		return
	}
	if !s.authorizeAdmin(w, r, c) {
		return
	}
	q := r.URL.Query()
	if a := q.Get("action"); a != "export" {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "action", "action "+quote(a)+" is not export")
		return
	}
	logType := strings.ToUpper(q.Get("logType"))
	switch logType {
	case "ERROR", "WARNING", "INFO", "ALL":
	case "":
		logType = "ALL"
	default:
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "logType", "logType "+quote(q.Get("logType"))+" is not one of ERROR, WARNING, INFO, ALL")
		return
	}
	j := s.job(w, r, c)
	if j == nil {
		return
	}
	text := j.errorLog
	if logType != "ERROR" {
		text = j.infoLog + j.errorLog
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	name := fmt.Sprintf("job-%s-%s.log", j.id, strings.ToLower(logType))
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: j.started})
	if err == nil {
		_, err = fw.Write([]byte(text))
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "", "zip the job log: "+err.Error())
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+strings.TrimSuffix(name, ".log")+`.zip"`)
	writeRaw(w, http.StatusOK, "application/zip", buf.Bytes())
}

// newUUID returns a random (version 4) UUID, the form of IAS client ids and
// IPS tenant and job ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
