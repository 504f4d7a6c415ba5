package compare

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/registry"
)

func codes(c Comparison) string {
	var out []string
	for _, f := range c.Findings {
		out = append(out, f.Code)
	}
	return strings.Join(out, ",")
}

func TestCompare(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("IPS CA", now, 1000*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dn := pkix.Name{CommonName: "ips-outbound", Organization: []string{"Example"}}
	issue := func(name pkix.Name, from, to time.Time, usages ...x509.ExtKeyUsage) *pki.Leaf {
		l, err := ca.Issue(pki.LeafOptions{Subject: name, NotBefore: from, NotAfter: to, Usages: usages})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	year := 365 * 24 * time.Hour
	active := issue(dn, now.Add(-time.Hour), now.Add(year))
	old := issue(dn, now.Add(-300*24*time.Hour), now.Add(60*24*time.Hour))
	rekey, _ := ca.Issue(pki.LeafOptions{Subject: dn, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(year), Key: active.Key})
	expiring := issue(dn, now.Add(-time.Hour), now.Add(10*24*time.Hour+time.Hour))
	other := issue(pkix.Name{CommonName: "someone-else"}, now.Add(-time.Hour), now.Add(year))
	serverOnly := issue(dn, now.Add(-time.Hour), now.Add(year), x509.ExtKeyUsageServerAuth)

	m := func(id string, c *pki.Leaf, integration, login string) registry.Mapping {
		return registry.Mapping{ID: id, Certificate: c.Cert, IntegrationName: integration, LoginName: login}
	}
	const ips = ExpectedIntegrationName
	tests := []struct {
		name      string
		in        Input
		result    Result
		mappingID string
		findings  string
		same, key bool
	}{
		{"match", Input{Source: active.Cert, Mappings: []registry.Mapping{m("a", active, ips, "U"), m("b", other, ips, "U")}}, ResultMatch, "a", "", false, false},
		{"renewal not uploaded", Input{Source: active.Cert, Mappings: []registry.Mapping{m("a", old, ips, "U")}}, ResultMismatch, "a", "RENEWAL_NOT_UPLOADED,PUBLIC_KEY_DIFFERS", true, true},
		{"re-issue same key", Input{Source: active.Cert, Mappings: []registry.Mapping{m("a", rekey, ips, "U")}}, ResultMismatch, "a", "RENEWAL_NOT_UPLOADED,SAME_PUBLIC_KEY", true, false},
		{"target missing", Input{Source: active.Cert, Mappings: []registry.Mapping{m("b", other, ips, "U")}}, ResultTargetMissing, "", "TARGET_MISSING", false, false},
		{"source missing", Input{SourceErr: errors.New("gone"), Mappings: []registry.Mapping{m("a", active, ips, "U")}}, ResultSourceMissing, "", "SOURCE_MISSING", false, false},
		{"ambiguous", Input{Source: active.Cert, Mappings: []registry.Mapping{m("a", active, ips, "U"), m("b", old, ips, "U")}}, ResultAmbiguous, "", "AMBIGUOUS", false, false},
		{"wrong integration", Input{Source: active.Cert, Mappings: []registry.Mapping{m("a", active, "Identity Authentication Service", "U")}}, ResultMatch, "a", "INTEGRATION_NAME_WRONG", false, false},
		{"empty login", Input{Source: active.Cert, Mappings: []registry.Mapping{m("a", active, ips, "")}}, ResultMatch, "a", "LOGIN_NAME_EMPTY", false, false},
		{"expiring", Input{Source: expiring.Cert, Mappings: []registry.Mapping{m("a", expiring, ips, "U")}}, ResultMatch, "a", "SOURCE_EXPIRES_SOON", false, false},
		{"no client auth", Input{Source: serverOnly.Cert, Mappings: []registry.Mapping{m("a", serverOnly, ips, "U")}}, ResultMatch, "a", "NO_CLIENT_AUTH_USAGE", false, false},
		{"pinned DN differs", Input{Source: active.Cert, PinnedSubject: "CN=other", Mappings: []registry.Mapping{m("a", active, ips, "U")}}, ResultMatch, "a", "PINNED_SUBJECT_DIFFERS", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = now
			c := Compare(tt.in)
			if c.Result != tt.result || c.MappingID != tt.mappingID || codes(c) != tt.findings {
				t.Errorf("got %v mapping %q findings %q; want %v %q %q", c.Result, c.MappingID, codes(c), tt.result, tt.mappingID, tt.findings)
			}
			if tt.result == ResultMismatch && (c.SameSubjectAndIssuer != tt.same || c.PublicKeyDiffers != tt.key) {
				t.Errorf("same name %v, key differs %v; want %v %v", c.SameSubjectAndIssuer, c.PublicKeyDiffers, tt.same, tt.key)
			}
			if c.Etag == "" || c.Summary == "" {
				t.Errorf("etag %q summary %q", c.Etag, c.Summary)
			}
		})
	}
}

func TestEtagFollowsWhatWasCompared(t *testing.T) {
	now := time.Now()
	ca, _ := pki.NewCA("IPS CA", now, 1000*24*time.Hour)
	dn := pkix.Name{CommonName: "ips"}
	a, _ := ca.Issue(pki.LeafOptions{Subject: dn, NotBefore: now, NotAfter: now.Add(time.Hour)})
	b, _ := ca.Issue(pki.LeafOptions{Subject: dn, NotBefore: now, NotAfter: now.Add(time.Hour)})
	etag := func(src *pki.Leaf, id string, mapped *pki.Leaf) string {
		return Compare(Input{Now: now, Source: src.Cert, Mappings: []registry.Mapping{{ID: id, Certificate: mapped.Cert, IntegrationName: ExpectedIntegrationName}}}).Etag
	}
	base := etag(a, "m1", a)
	if etag(a, "m1", a) != base {
		t.Error("the etag is not stable")
	}
	for name, e := range map[string]string{"source": etag(b, "m1", a), "mapping id": etag(a, "m2", a), "mapped certificate": etag(a, "m1", b)} {
		if e == base {
			t.Errorf("changing the %s keeps the etag", name)
		}
	}
}

func TestExpiryWording(t *testing.T) {
	now := time.Now()
	ca, _ := pki.NewCA("IPS CA", now, 1000*24*time.Hour)
	for _, tt := range []struct {
		left     time.Duration
		code     string
		severity Severity
		word     string
	}{
		{25 * 24 * time.Hour, "SOURCE_EXPIRES_SOON", Warning, "expires in 24 days"},
		{10 * 24 * time.Hour, "SOURCE_EXPIRES_SOON", Warning, "soon: renew"},
		{2 * 24 * time.Hour, "SOURCE_EXPIRES_SOON", Warning, "urgently: renew"},
		{-time.Hour, "SOURCE_EXPIRED", Error, "expired on"},
	} {
		l, _ := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "x"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(tt.left)})
		c := Compare(Input{Now: now, Source: l.Cert})
		var got *Finding
		for i := range c.Findings {
			if c.Findings[i].Code == tt.code {
				got = &c.Findings[i]
			}
		}
		if got == nil || got.Severity != tt.severity || !strings.Contains(got.Message, tt.word) {
			t.Errorf("%s left: %+v, want %s %v %q", tt.left, got, tt.code, tt.severity, tt.word)
		}
	}
}
