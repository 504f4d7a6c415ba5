package sandbox

import (
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/certsync/certsync/service/pki"
)

// This file is the only place that knows the demo connections: DESIGN.md's
// demo table, one row per failure. Each row is plain data; buildSeed turns it
// into model state without looking at any id, and every answer is then
// derived from that state.

const (
	integrationIPS = "Identity Provisioning Service"
	integrationIAS = "Identity Authentication Service"
	techUser       = "IPS_TECH_USER"
	day            = 24 * time.Hour
	year           = 365 * day
)

// seedSlot is an IPS certificate slot, with validity relative to now.
type seedSlot struct {
	notBefore time.Duration // offset from now, usually negative
	lifetime  time.Duration
	active    bool
}

type seedConnection struct {
	id          string
	description string
	companyID   string
	// sentCompanyID is what the connection sends; empty means companyID.
	sentCompanyID string
	stuck         bool
	plainHost     bool
	commonName    string
	slots         []seedSlot
	// mappedSlot is the slot whose certificate SF maps; -1 maps none.
	mappedSlot      int
	synchronized    bool
	integrationName string
	loginName       string
}

// fresh is the usual certificate: issued a day ago, valid for a year, like
// IPS's default (KBA 3423003).
var fresh = []seedSlot{{notBefore: -day, lifetime: year, active: true}}

var seedConnections = []seedConnection{
	{
		id:              "demo-healthy",
		description:     "Sandbox: fingerprints match and the mapping is synchronized; the probe authenticates.",
		companyID:       "DEMO_HEALTHY",
		commonName:      "ips-outbound-demo-healthy",
		slots:           fresh,
		synchronized:    true,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
	{
		id:              "demo-desync",
		description:     "Sandbox: the seed (KBA 3505973): fingerprints match but SF never synchronized the mapping; 401 AUTH0032 until re-registered.",
		companyID:       "DEMO_DESYNC",
		commonName:      "ips-outbound-demo-desync",
		slots:           fresh,
		synchronized:    false,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
	{
		id:          "demo-mismatch",
		description: "Sandbox: IPS regenerated its certificate (same DN); SF still maps the old one; 400 \"The SSL certificate error\" until IPS's active certificate is uploaded.",
		companyID:   "DEMO_MISMATCH",
		commonName:  "ips-outbound-demo-mismatch",
		slots: []seedSlot{
			{notBefore: -300 * day, lifetime: year, active: false},
			{notBefore: -day, lifetime: year, active: true},
		},
		mappedSlot:      0,
		synchronized:    true,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
	{
		id:              "demo-company-id",
		description:     "Sandbox: the mapping is fine but the connection sends another company id; 401 AUTH0032 that re-registration cannot fix (check sf.company.id).",
		companyID:       "DEMO_COMPANYID",
		sentCompanyID:   "DEMO_COMPANYID_WRONG",
		commonName:      "ips-outbound-demo-company-id",
		slots:           fresh,
		synchronized:    true,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
	{
		id:              "demo-stuck",
		description:     "Sandbox: SF never synchronizes uploads for this company; 401 AUTH0032 even after re-registration (escalate to LOD-SF-PLT-IAS).",
		companyID:       "DEMO_STUCK",
		stuck:           true,
		commonName:      "ips-outbound-demo-stuck",
		slots:           fresh,
		synchronized:    false,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
	{
		id:              "demo-permission",
		description:     "Sandbox: the mapping's integration name is Identity Authentication Service; 403 until re-registered as Identity Provisioning Service.",
		companyID:       "DEMO_PERMISSION",
		commonName:      "ips-outbound-demo-permission",
		slots:           fresh,
		synchronized:    true,
		integrationName: integrationIAS,
		loginName:       techUser,
	},
	{
		id:              "demo-wrong-host",
		description:     "Sandbox: the URL is SF's plain API host, not the cert host; 401 \"Authentication credentials are required\" until the URL is fixed.",
		companyID:       "DEMO_WRONGHOST",
		plainHost:       true,
		commonName:      "ips-outbound-demo-wrong-host",
		slots:           fresh,
		synchronized:    true,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
	{
		id:              "demo-expiring",
		description:     "Sandbox: healthy, but IPS's certificate expires in 10 days; the gate allows with a warning.",
		companyID:       "DEMO_EXPIRING",
		commonName:      "ips-outbound-demo-expiring",
		slots:           []seedSlot{{notBefore: -day, lifetime: 11 * day, active: true}},
		synchronized:    true,
		integrationName: integrationIPS,
		loginName:       techUser,
	},
}

// seedUsers are the fake employees every company gets, so that SCIM paging
// and filters have something to page through. One is inactive so that
// `active eq true` visibly filters.
var seedUsers = []struct {
	userName, given, family string
	active                  bool
}{
	{"aanderson", "Alex", "Anderson", true},
	{"bbecker", "Bea", "Becker", true},
	{"cchen", "Chen", "Chao", false},
	{"ddiaz", "Dana", "Diaz", true},
	{"eeriksen", "Erik", "Eriksen", true},
}

// buildSeed turns the seed rows into model state, issuing every certificate
// with ca at time now.
func (s *Sandbox) buildSeed(now time.Time) error {
	for _, sc := range seedConnections {
		if len(sc.slots) == 0 {
			return fmt.Errorf("seed %s: no certificate slots", sc.id)
		}
		sys := &ipsSystem{id: "ips-source-" + sc.id}
		subject := pkix.Name{
			CommonName:         sc.commonName,
			OrganizationalUnit: []string{"IPS"},
			Organization:       []string{"Example Corp"},
			Country:            []string{"DE"},
		}
		for _, ss := range sc.slots {
			nb := now.Add(ss.notBefore)
			leaf, err := s.ca.Issue(pki.LeafOptions{Subject: subject, NotBefore: nb, NotAfter: nb.Add(ss.lifetime)})
			if err != nil {
				return fmt.Errorf("seed %s: %w", sc.id, err)
			}
			sys.slots = append(sys.slots, &slot{leaf: leaf, active: ss.active})
		}
		co := &company{
			id:                     sc.companyID,
			permittedLogins:        map[string]bool{techUser: true},
			technicalUserPermitted: true,
			stuck:                  sc.stuck,
		}
		for _, u := range seedUsers {
			co.users = append(co.users, scimUser{id: randomID(), userName: u.userName, givenName: u.given, familyName: u.family, active: u.active})
		}
		if mapped := sc.mappedSlot; mapped >= 0 && mapped < len(sys.slots) {
			co.mappings = append(co.mappings, &mapping{
				id:                randomID(),
				configurationName: "IPS " + sc.id,
				integrationName:   sc.integrationName,
				loginName:         sc.loginName,
				cert:              sys.slots[mapped].leaf.Cert,
				synchronized:      sc.synchronized,
			})
		}
		sent := sc.sentCompanyID
		if sent == "" {
			sent = sc.companyID
		}
		if _, dup := s.conns[sc.id]; dup {
			return fmt.Errorf("seed %s: duplicate connection", sc.id)
		}
		ias, err := s.newIASTenant(sc.id, now)
		if err != nil {
			return fmt.Errorf("seed %s: %w", sc.id, err)
		}
		s.companies[co.id] = co
		s.systems[sys.id] = sys
		s.conns[sc.id] = &connection{
			id:            sc.id,
			description:   sc.description,
			system:        sys,
			company:       co,
			sentCompanyID: sent,
			plainHost:     sc.plainHost,
			token:         randomID() + randomID(),
			ias:           ias,
		}
		s.order = append(s.order, sc.id)
	}
	return nil
}
