package sandbox

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// SF's answers, byte for byte as DOMAIN.md quotes them: production code
// classifies on them, so they must not drift.
const (
	bodyCredentialsRequired = `{"error":{"code":"LGN0011","message":{"lang":"en-US","value":"Authentication credentials are required. Please provide a valid username, password, and company id"}}}`
	bodyInvalidCertificate  = `{"error":{"code":"AuthenticationFailed","message":"Authentication service failed to return token.","details":"[AUTH0032]Invalid client certificate"}}`
	bodyForbidden           = `{"error":{"code":"Forbidden","message":"You don't have permission to view the user."}}`
	// bodySSLError is a gateway's page, several lines of HTML, as IPS's job
	// log quotes it.
	bodySSLError = "<html>\r\n" +
		"<head><title>400 The SSL certificate error</title></head>\r\n" +
		"<body>\r\n" +
		"<center><h1>400 Bad Request</h1></center>\r\n" +
		"<center>The SSL certificate error</center>\r\n" +
		"<hr><center>sandbox gateway</center>\r\n" +
		"</body>\r\n" +
		"</html>\r\n"

	contentJSON = "application/json;charset=utf-8"
	contentSCIM = "application/scim+json;charset=utf-8"

	headerCompanyID = "successfactors-companyid"

	scimListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	scimErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"
	scimUserSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"

	defaultCount = 100
	maxCount     = 1000
)

func (s *Sandbox) handleSCIM(plain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var leaf *x509.Certificate
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			leaf = r.TLS.PeerCertificates[0]
		}
		companyID := r.Header.Get(headerCompanyID)

		s.mu.Lock()
		conn := s.attributeLocked(leaf, companyID, plain)
		f := s.countLocked(conn, OperationSCIM)
		s.mu.Unlock()
		connID := ""
		if conn != nil {
			connID = conn.id
		}
		if !s.applyFault(w, r, f) {
			return
		}
		if plain {
			// Client certificates never authenticate on the plain API
			// host; SF asks for credentials (KBA 3737619).
			s.log.Debug("sandbox scim on plain host", "connection", connID, "status", http.StatusUnauthorized)
			writeRaw(w, http.StatusUnauthorized, contentJSON, []byte(bodyCredentialsRequired))
			return
		}

		d := s.authenticate(r, companyID)
		s.log.Debug("sandbox scim", "connection", connID, "status", d.status, "reason", d.reason)
		if d.company == nil {
			writeRaw(w, d.status, d.contentType, []byte(d.body))
			return
		}
		s.mu.Lock()
		users := append([]scimUser(nil), d.company.users...)
		s.mu.Unlock()
		s.listUsers(w, r, users)
	}
}

// decision is the outcome of SF's authentication checks: the company the
// call authenticated to, or what to answer and why (the reason is for logs).
type decision struct {
	company     *company
	status      int
	contentType string
	body        string
	reason      string
}

func sslError(reason string) decision {
	return decision{status: http.StatusBadRequest, contentType: "text/html", body: bodySSLError, reason: reason}
}

func invalidCertificate(reason string) decision {
	return decision{status: http.StatusUnauthorized, contentType: contentJSON, body: bodyInvalidCertificate, reason: reason}
}

func forbidden(reason string) decision {
	return decision{status: http.StatusForbidden, contentType: contentJSON, body: bodyForbidden, reason: reason}
}

// authenticate runs SF's checks in SF's order (DOMAIN.md's failure table).
func (s *Sandbox) authenticate(r *http.Request, companyID string) decision {
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	if len(chain) == 0 {
		return sslError("no client certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: inter,
		CurrentTime:   s.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return sslError("client certificate not trusted: " + err.Error())
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	mappedAnywhere := false
	for _, co := range s.companies {
		if co.mappingFor(leaf) != nil {
			mappedAnywhere = true
			break
		}
	}
	// SF's TLS gateway only lets through certificates that some company
	// maps; everything else dies there, before any company is looked at.
	if !mappedAnywhere {
		return sslError("client certificate mapped in no company")
	}
	if companyID == "" {
		return decision{status: http.StatusUnauthorized, contentType: contentJSON, body: bodyCredentialsRequired, reason: "no company id header"}
	}
	co := s.companies[companyID]
	if co == nil {
		return invalidCertificate("unknown company id")
	}
	m := co.mappingFor(leaf)
	switch {
	case m == nil:
		return invalidCertificate("certificate not mapped in this company")
	case !m.synchronized:
		return invalidCertificate("mapping not synchronized")
	case m.integrationName != integrationIPS:
		return forbidden("integration name is not " + integrationIPS)
	case !co.mayReadUsers(m.loginName):
		return forbidden("login name may not read users")
	}
	return decision{company: co, status: http.StatusOK, reason: "authenticated"}
}

// attributeLocked finds the connection a SCIM call belongs to, for counters
// and faults: first by the client certificate (a slot of the connection's
// IPS system), then by the company id the connection sends. Among several
// candidates it prefers the one whose URL names this listener's host and
// whose sent company id is the header's, then seed order.
func (s *Sandbox) attributeLocked(leaf *x509.Certificate, companyID string, plain bool) *connection {
	var best *connection
	bestScore := -1
	consider := func(c *connection, base int) {
		score := base
		if c.plainHost == plain {
			score += 2
		}
		if companyID != "" && c.sentCompanyID == companyID {
			score++
		}
		if score > bestScore {
			best, bestScore = c, score
		}
	}
	if leaf != nil {
		for _, id := range s.order {
			if c := s.conns[id]; c.system.holds(leaf) {
				consider(c, 10)
			}
		}
	}
	if best == nil && companyID != "" {
		for _, id := range s.order {
			if c := s.conns[id]; c.sentCompanyID == companyID {
				consider(c, 0)
			}
		}
	}
	return best
}

type scimListResponse struct {
	Schemas      []string       `json:"schemas"`
	TotalResults int            `json:"totalResults"`
	ItemsPerPage int            `json:"itemsPerPage"`
	StartID      string         `json:"startId"`
	NextID       string         `json:"nextId"`
	Resources    []scimResource `json:"Resources"`
}

type scimResource struct {
	Schemas  []string `json:"schemas"`
	ID       string   `json:"id"`
	UserName string   `json:"userName"`
	Active   bool     `json:"active"`
	Name     scimName `json:"name"`
	Meta     scimMeta `json:"meta"`
}

type scimName struct {
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
}

type scimMeta struct {
	ResourceType string `json:"resourceType"`
}

type scimError struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType"`
	Detail   string   `json:"detail"`
}

func writeSCIMError(w http.ResponseWriter, scimType, detail string) {
	b, _ := json.Marshal(scimError{
		Schemas:  []string{scimErrorSchema},
		Status:   strconv.Itoa(http.StatusBadRequest),
		ScimType: scimType,
		Detail:   detail,
	})
	writeRaw(w, http.StatusBadRequest, contentSCIM, b)
}

// listUsers pages through users the way SF's SCIM API does: startId
// "initial" or a user id, count, nextId of the next page or "end".
func (s *Sandbox) listUsers(w http.ResponseWriter, r *http.Request, users []scimUser) {
	q := r.URL.Query()
	match := func(scimUser) bool { return true }
	if raw := q.Get("filter"); raw != "" {
		m, err := parseFilter(raw)
		if err != nil {
			writeSCIMError(w, "invalidFilter", err.Error())
			return
		}
		match = m
	}
	count := defaultCount
	if raw := q.Get("count"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			writeSCIMError(w, "invalidValue", fmt.Sprintf("count %q is not a non-negative integer", raw))
			return
		}
		count = min(n, maxCount)
	}
	startID := q.Get("startId")
	if startID == "" {
		startID = "initial"
	}
	startPos := 0
	if startID != "initial" {
		startPos = -1
		for i, u := range users {
			if u.id == startID {
				startPos = i
				break
			}
		}
		if startPos < 0 {
			writeSCIMError(w, "invalidValue", fmt.Sprintf("startId %q names no user", startID))
			return
		}
	}

	resp := scimListResponse{Schemas: []string{scimListSchema}, StartID: startID, NextID: "end", Resources: []scimResource{}}
	for i, u := range users {
		if !match(u) {
			continue
		}
		resp.TotalResults++
		if i < startPos {
			continue
		}
		if len(resp.Resources) == count {
			if resp.NextID == "end" {
				resp.NextID = u.id
			}
			continue
		}
		resp.Resources = append(resp.Resources, scimResource{
			Schemas:  []string{scimUserSchema},
			ID:       u.id,
			UserName: u.userName,
			Active:   u.active,
			Name:     scimName{GivenName: u.givenName, FamilyName: u.familyName},
			Meta:     scimMeta{ResourceType: "User"},
		})
	}
	resp.ItemsPerPage = len(resp.Resources)
	b, err := json.Marshal(resp)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeRaw(w, http.StatusOK, contentSCIM, b)
}

// parseFilter understands the filters IPS sends (sf.user.filter) and the
// probe's: `active eq true`, `active eq "true"`, `userName eq "x"`.
func parseFilter(raw string) (func(scimUser) bool, error) {
	f := strings.TrimSpace(raw)
	attr, rest, ok := strings.Cut(f, " ")
	if !ok {
		return nil, fmt.Errorf("filter %q is not `attribute eq value`", raw)
	}
	op, value, ok := strings.Cut(strings.TrimSpace(rest), " ")
	if !ok || !strings.EqualFold(op, "eq") {
		return nil, fmt.Errorf("filter %q: only the eq operator is supported", raw)
	}
	value = strings.TrimSpace(value)
	switch {
	case strings.EqualFold(attr, "active"):
		v := value
		if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = uq
		}
		switch strings.ToLower(v) {
		case "true":
			return func(u scimUser) bool { return u.active }, nil
		case "false":
			return func(u scimUser) bool { return !u.active }, nil
		}
		return nil, fmt.Errorf("filter %q: active compares with true or false", raw)
	case strings.EqualFold(attr, "userName"):
		var name string
		if err := json.Unmarshal([]byte(value), &name); err != nil {
			return nil, fmt.Errorf("filter %q: userName compares with a quoted string", raw)
		}
		// userName is caseExact=false in SCIM's core schema.
		return func(u scimUser) bool { return strings.EqualFold(u.userName, name) }, nil
	}
	return nil, fmt.Errorf("filter %q: attribute %q is not filterable here (active, userName)", raw, attr)
}
