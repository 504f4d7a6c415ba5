package sandbox

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"

	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/x509cert"
)

// The model. Everything below is guarded by Sandbox.mu except fields that
// never change after New (ids, certificates, keys, tokens), which handlers
// read without the lock.

// mapping is one X.509 certificate mapping in SF's Security Center.
type mapping struct {
	id                string
	configurationName string
	integrationName   string
	loginName         string
	cert              *x509.Certificate
	// synchronized says whether SF's authentication service knows the
	// mapping; an unsynchronized one is the seed's AUTH0032 (KBA 3505973).
	synchronized bool
}

// sameKey reports whether two certificates collide as SF mapping keys: SF
// keys on issuer + subject and ignores the serial (KBA 3574501).
func sameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawIssuer, b.RawIssuer) && bytes.Equal(a.RawSubject, b.RawSubject)
}

// company is one SF company (tenant).
type company struct {
	id string
	// permittedLogins are the SF users whose permissions allow reading users.
	permittedLogins map[string]bool
	// technicalUserPermitted says whether SF's built-in technical user (a
	// mapping with an empty login name) may read users (KBA 3363735).
	technicalUserPermitted bool
	// stuck companies never synchronize uploads: the case where
	// re-registration does not help and escalation is the answer.
	stuck    bool
	users    []scimUser
	mappings []*mapping
}

func (c *company) mappingFor(cert *x509.Certificate) *mapping {
	for _, m := range c.mappings {
		if bytes.Equal(m.cert.Raw, cert.Raw) {
			return m
		}
	}
	return nil
}

func (c *company) mayReadUsers(login string) bool {
	if login == "" {
		return c.technicalUserPermitted
	}
	return c.permittedLogins[login]
}

// scimUser is a fake employee; the sandbox never holds real data.
type scimUser struct {
	id         string
	userName   string
	givenName  string
	familyName string
	active     bool
}

// slot is one of an IPS source system's outbound certificate slots.
type slot struct {
	leaf   *pki.Leaf
	active bool
}

// ipsSystem is an IPS source system. Its slots share subject DN and issuing
// CA; exactly one is Active.
type ipsSystem struct {
	id    string
	slots []*slot
}

func (s *ipsSystem) activeSlot() *slot {
	for _, sl := range s.slots {
		if sl.active {
			return sl
		}
	}
	return nil
}

func (s *ipsSystem) holds(cert *x509.Certificate) bool {
	for _, sl := range s.slots {
		if bytes.Equal(sl.leaf.Cert.Raw, cert.Raw) {
			return true
		}
	}
	return false
}

// connection pairs an IPS system with an SF company, as certsync's
// configuration does.
type connection struct {
	id          string
	description string
	system      *ipsSystem
	company     *company
	// sentCompanyID is what the connection puts in successfactors-companyid;
	// it may differ from the company's id (a misconfigured sf.company.id).
	sentCompanyID string
	// plainHost says the connection's URL is SF's plain API host instead of
	// the cert host (a misconfigured URL).
	plainHost bool
	token     string
	counters  Counters
	// ias is the connection's simulated IAS tenant (ipsjobs.go).
	ias *iasTenant
}

// State is the sandbox's state as GET /_sandbox/v1/state returns it.
type State struct {
	Connections map[string]ConnectionState `json:"connections"`
}

// ConnectionState is one connection's view of the model.
type ConnectionState struct {
	CompanyID     string `json:"company_id"`
	SentCompanyID string `json:"sent_company_id"`
	// SFHost is "cert" or "plain": which SF host the connection's URL names.
	SFHost          string         `json:"sf_host"`
	IPSSystem       string         `json:"ips_system"`
	IPSActiveSHA256 string         `json:"ips_active_sha256"`
	Mappings        []MappingState `json:"mappings"`
	Counters        Counters       `json:"counters"`
}

// MappingState is one SF mapping of the connection's company.
type MappingState struct {
	ID                string `json:"id"`
	SHA256            string `json:"sha256"`
	SHA1              string `json:"sha1"`
	Subject           string `json:"subject"`
	Issuer            string `json:"issuer"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	Synchronized      bool   `json:"synchronized"`
}

// Counters count calls per operation, faulted ones included, so that tests
// can assert how often production code called (retries and all).
type Counters struct {
	SCIM   int `json:"scim"`
	List   int `json:"list"`
	Delete int `json:"delete"`
	Upload int `json:"upload"`
	// The IPS Tenant Admin API's calls (ipsjobs.go); omitted while zero.
	IPSToken    int `json:"ips_token,omitempty"`
	IPSStartJob int `json:"ips_start_job,omitempty"`
	IPSJobLog   int `json:"ips_job_log,omitempty"`
}

func (c *Counters) add(op string) {
	switch op {
	case OperationSCIM:
		c.SCIM++
	case OperationList:
		c.List++
	case OperationDelete:
		c.Delete++
	case OperationUpload:
		c.Upload++
	case OperationIPSToken:
		c.IPSToken++
	case OperationIPSStartJob:
		c.IPSStartJob++
	case OperationIPSJobLog:
		c.IPSJobLog++
	}
}

// State returns a snapshot of the model.
func (s *Sandbox) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Connections: make(map[string]ConnectionState, len(s.conns))}
	for _, id := range s.order {
		c := s.conns[id]
		cs := ConnectionState{
			CompanyID:     c.company.id,
			SentCompanyID: c.sentCompanyID,
			SFHost:        "cert",
			IPSSystem:     c.system.id,
			Mappings:      []MappingState{},
			Counters:      c.counters,
		}
		if c.plainHost {
			cs.SFHost = "plain"
		}
		if a := c.system.activeSlot(); a != nil {
			cs.IPSActiveSHA256 = x509cert.Summarize(a.leaf.Cert).SHA256
		}
		for _, m := range c.company.mappings {
			sum := x509cert.Summarize(m.cert)
			cs.Mappings = append(cs.Mappings, MappingState{
				ID:                m.id,
				SHA256:            sum.SHA256,
				SHA1:              sum.SHA1,
				Subject:           sum.Subject,
				Issuer:            sum.Issuer,
				ConfigurationName: m.configurationName,
				IntegrationName:   m.integrationName,
				LoginName:         m.loginName,
				Synchronized:      m.synchronized,
			})
		}
		st.Connections[id] = cs
	}
	return st
}

// randomID returns 16 random bytes in hex: opaque ids for mappings and users.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}
