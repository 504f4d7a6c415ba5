package sandbox

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"net/http"
	"strings"

	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/x509cert"
)

// messageDuplicate is SF's own wording (KBA 3574501): production code may
// show it to operators, so it is kept verbatim.
const messageDuplicate = "This X.509 Certificate was already registered to the platform. Please upload a different one or cancel the certificate mapping."

// mappingJSON is a mapping on the wire of the registry contract. The
// synchronized flag is deliberately absent: SF shows no such thing, so a
// client can only learn it by probing.
type mappingJSON struct {
	ID                string `json:"id"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	CertificatePEM    string `json:"certificate_pem"`
}

type uploadJSON struct {
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	CertificatePEM    string `json:"certificate_pem"`
}

func toMappingJSON(m *mapping) mappingJSON {
	return mappingJSON{
		ID:                m.id,
		ConfigurationName: m.configurationName,
		IntegrationName:   m.integrationName,
		LoginName:         m.loginName,
		CertificatePEM:    string(pki.CertPEM(m.cert)),
	}
}

// registryEnter resolves the connection, counts the call, applies any fault
// and checks the bearer token, in that order: a fault models the network and
// SF's front door, which act before any authentication.
func (s *Sandbox) registryEnter(w http.ResponseWriter, r *http.Request, op string) *connection {
	id := r.PathValue("conn")
	s.mu.Lock()
	c := s.conns[id]
	f := s.countLocked(c, op)
	s.mu.Unlock()
	if c == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no registry for connection "+quote(id))
		return nil
	}
	if !s.applyFault(w, r, f) {
		return nil
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(c.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="certsync-sandbox-registry"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "", "a valid bearer token is required (Authorization: Bearer <token>)")
		return nil
	}
	return c
}

func (s *Sandbox) handleListMappings(w http.ResponseWriter, r *http.Request) {
	c := s.registryEnter(w, r, OperationList)
	if c == nil {
		return
	}
	s.mu.Lock()
	list := make([]mappingJSON, 0, len(c.company.mappings))
	for _, m := range c.company.mappings {
		list = append(list, toMappingJSON(m))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]mappingJSON{"mappings": list})
}

func (s *Sandbox) handleUploadMapping(w http.ResponseWriter, r *http.Request) {
	c := s.registryEnter(w, r, OperationUpload)
	if c == nil {
		return
	}
	var in uploadJSON
	if !decodeJSON(w, r, &in) {
		return
	}
	cert, msg := parseUploadPEM(in.CertificatePEM)
	if cert == nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "certificate_pem", msg)
		return
	}
	if strings.TrimSpace(in.IntegrationName) == "" {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "integration_name", "integration_name is required (IPS needs \"Identity Provisioning Service\")")
		return
	}

	s.mu.Lock()
	co := c.company
	for _, m := range co.mappings {
		if sameKey(m.cert, cert) {
			s.mu.Unlock()
			s.log.Info("sandbox registry upload refused: duplicate issuer and subject", "connection", c.id, "company", co.id, "existing_mapping", m.id)
			writeError(w, http.StatusConflict, "DUPLICATE_CERTIFICATE", "", messageDuplicate)
			return
		}
	}
	m := &mapping{
		id:                randomID(),
		configurationName: in.ConfigurationName,
		integrationName:   in.IntegrationName,
		loginName:         in.LoginName,
		cert:              cert,
		// A stuck company keeps every upload out of its authentication
		// service: the case that only SAP support can resolve.
		synchronized: !co.stuck,
	}
	co.mappings = append(co.mappings, m)
	out := toMappingJSON(m)
	s.mu.Unlock()

	s.log.Info("sandbox registry mapping uploaded", "connection", c.id, "company", co.id, "mapping", m.id,
		"sha256", x509cert.Summarize(cert).SHA256, "synchronized", m.synchronized)
	w.Header().Set("Location", "/registry/"+c.id+"/v1/mappings/"+m.id)
	writeJSON(w, http.StatusCreated, out)
}

// parseUploadPEM accepts exactly one PEM certificate, as SF's upload form
// takes one .pem/.crt file. x509cert refuses private keys without decoding
// them, so a key pasted by mistake is never parsed or echoed.
func parseUploadPEM(text string) (*x509.Certificate, string) {
	if strings.TrimSpace(text) == "" {
		return nil, "certificate_pem is required"
	}
	if !strings.Contains(text, "-----BEGIN") {
		return nil, "certificate_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)"
	}
	certs, err := x509cert.Parse([]byte(text), x509cert.DefaultLimits)
	if err != nil {
		return nil, "certificate_pem: " + err.Error()
	}
	if len(certs) != 1 {
		return nil, "certificate_pem must hold exactly one certificate"
	}
	return certs[0], ""
}

func (s *Sandbox) handleDeleteMapping(w http.ResponseWriter, r *http.Request) {
	c := s.registryEnter(w, r, OperationDelete)
	if c == nil {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	co := c.company
	idx := -1
	for i, m := range co.mappings {
		if m.id == id {
			idx = i
			break
		}
	}
	if idx >= 0 {
		co.mappings = append(co.mappings[:idx:idx], co.mappings[idx+1:]...)
	}
	s.mu.Unlock()
	if idx < 0 {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no mapping with id "+quote(id))
		return
	}
	s.log.Info("sandbox registry mapping deleted", "connection", c.id, "company", co.id, "mapping", id)
	w.WriteHeader(http.StatusNoContent)
}

// quote bounds and quotes a client-supplied value for an error message.
func quote(v string) string {
	if len(v) > 100 {
		v = v[:100] + "..."
	}
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
