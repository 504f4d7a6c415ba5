package x509cert

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ca := newCert(t, certOpts{subject: pkix.Name{CommonName: "Example Root CA", Organization: []string{"Example"}},
		isCA: true, serial: bigInt(1), key: p384Key()})
	nb := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	na := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	tests := []struct {
		name       string
		opts       certOpts
		subject    string
		issuer     string
		serial     string
		keyAlg     string
		keyBits    int
		curve      string
		sigAlg     string
		isCA       bool
		clientAuth bool
	}{
		{name: "ECDSA P-256 self-signed", opts: certOpts{serial: bigInt(0x0A)},
			subject: "CN=ips-outbound,O=Example,C=DE", issuer: "CN=ips-outbound,O=Example,C=DE", serial: "0A",
			keyAlg: "ECDSA", keyBits: 256, curve: "P-256", sigAlg: "ECDSA-SHA256", clientAuth: true},
		{name: "ECDSA P-384 CA", opts: certOpts{key: p384Key(), isCA: true, serial: bigInt(0x80),
			subject: pkix.Name{CommonName: "CA"}},
			subject: "CN=CA", issuer: "CN=CA", serial: "80",
			keyAlg: "ECDSA", keyBits: 384, curve: "P-384", sigAlg: "ECDSA-SHA384", isCA: true, clientAuth: true},
		{name: "RSA 2048 issued by a CA", opts: certOpts{key: rsaKey(), parent: ca, parentKey: p384Key(),
			serial: new(big.Int).Lsh(big.NewInt(1), 127), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			subject: "CN=ips-outbound,O=Example,C=DE", issuer: "CN=Example Root CA,O=Example",
			serial: "80000000000000000000000000000000",
			keyAlg: "RSA", keyBits: 2048, sigAlg: "ECDSA-SHA384", clientAuth: true},
		{name: "RSA PSS signature", opts: certOpts{key: rsaKey(), sigAlg: x509.SHA256WithRSAPSS, serial: bigInt(1)},
			subject: "CN=ips-outbound,O=Example,C=DE", issuer: "CN=ips-outbound,O=Example,C=DE", serial: "01",
			keyAlg: "RSA", keyBits: 2048, sigAlg: "SHA256-RSAPSS", clientAuth: true},
		{name: "Ed25519, server only", opts: certOpts{key: edKey(), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			subject: pkix.Name{CommonName: "Example, Inc. + friends", OrganizationalUnit: []string{"#ops"}}},
			subject: `CN=Example\, Inc. \+ friends,OU=\#ops`, issuer: `CN=Example\, Inc. \+ friends,OU=\#ops`, serial: "01234567",
			keyAlg: "Ed25519", keyBits: 256, sigAlg: "Ed25519", clientAuth: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.notBefore, o.notAfter = nb, na
			c := newCert(t, o)
			s := Summarize(c)
			spki := must(x509.MarshalPKIXPublicKey(o.keyOrDefault().Public()))
			checks := []struct {
				field     string
				got, want any
			}{
				{"Subject", s.Subject, tt.subject},
				{"Issuer", s.Issuer, tt.issuer},
				{"SerialNumber", s.SerialNumber, tt.serial},
				{"NotBefore", s.NotBefore, nb},
				{"NotAfter", s.NotAfter, na},
				{"SHA1", s.SHA1, wantSHA1(c.Raw)},
				{"SHA256", s.SHA256, wantSHA256(c.Raw)},
				{"SPKISHA256", s.SPKISHA256, wantSHA256(spki)},
				{"KeyAlgorithm", s.KeyAlgorithm, tt.keyAlg},
				{"KeyBits", s.KeyBits, tt.keyBits},
				{"KeyCurve", s.KeyCurve, tt.curve},
				{"SignatureAlgorithm", s.SignatureAlgorithm, tt.sigAlg},
				{"IsCA", s.IsCA, tt.isCA},
				{"ClientAuth", s.ClientAuth, tt.clientAuth},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s = %v, want %v", ch.field, ch.got, ch.want)
				}
			}
			if !bytes.Equal(s.DER, c.Raw) {
				t.Error("DER differs from the certificate")
			}
			if len(s.SHA1) != 59 || len(s.SHA256) != 95 {
				t.Errorf("fingerprint lengths %d and %d, want 59 and 95", len(s.SHA1), len(s.SHA256))
			}
		})
	}
}

func (o certOpts) keyOrDefault() crypto.Signer {
	if o.key == nil {
		return p256Key()
	}
	return o.key
}

func TestSummarizeDERIsACopy(t *testing.T) {
	c := newCert(t, certOpts{})
	s := Summarize(c)
	s.DER[0] ^= 0xff
	if c.Raw[0] != 0x30 {
		t.Fatal("changing Summary.DER changed the certificate")
	}
}

// DN strings keep the encoded order; pkix.Name.String would regroup the
// attributes by type and show "CN=...,OU=...,C=DE" for this subject.
func TestSummarizeKeepsEncodedDNOrder(t *testing.T) {
	raw := must(asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "ips-outbound"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "DE"}},
		{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "IPS"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Example"},
		},
	}))
	c := newCert(t, certOpts{rawSubject: raw})
	got := Summarize(c).Subject
	if want := "OU=IPS+O=Example,C=DE,CN=ips-outbound"; got != want {
		t.Fatalf("Subject = %q, want %q (pkix.Name.String gives %q)", got, want, c.Subject.String())
	}
}

func TestClientAuth(t *testing.T) {
	tests := []struct {
		name    string
		eku     []x509.ExtKeyUsage
		unknown []asn1.ObjectIdentifier
		want    bool
	}{
		{"no EKU extension", nil, nil, true},
		{"serverAuth only", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil, false},
		{"clientAuth", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, true},
		{"serverAuth and clientAuth", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil, true},
		{"anyExtendedKeyUsage", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, nil, true},
		{"code signing", []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, nil, false},
		{"only an unknown usage", nil, []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCert(t, certOpts{eku: tt.eku, unknownEKU: tt.unknown})
			if got := Summarize(c).ClientAuth; got != tt.want {
				t.Fatalf("ClientAuth = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSubjectAltNamesOrder(t *testing.T) {
	c := newCert(t, certOpts{
		dns:    []string{"ips.example.com", "b.example.com"},
		uris:   []string{"spiffe://example.com/ips"},
		emails: []string{"ops@example.com"},
		ips:    []string{"192.0.2.7", "2001:db8::1"},
	})
	want := []string{"ips.example.com", "b.example.com", "spiffe://example.com/ips", "ops@example.com", "192.0.2.7", "2001:db8::1"}
	if got := Summarize(c).SubjectAltNames; !slices.Equal(got, want) {
		t.Fatalf("SubjectAltNames = %q, want %q", got, want)
	}
	if got := Summarize(newCert(t, certOpts{})).SubjectAltNames; got != nil {
		t.Fatalf("SubjectAltNames = %q, want none", got)
	}
}

func TestDaysUntilExpiry(t *testing.T) {
	now := time.Date(2025, 6, 15, 12, 0, 0, 500, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name     string
		notAfter time.Time
		want     int
	}{
		{"expires now", now, 0},
		{"in a nanosecond", now.Add(time.Nanosecond), 0},
		{"a nanosecond ago", now.Add(-time.Nanosecond), -1},
		{"a second ago", now.Add(-time.Second), -1},
		{"expired yesterday", now.Add(-day), -1},
		{"a day and a nanosecond ago", now.Add(-day - time.Nanosecond), -2},
		{"in a day less a nanosecond", now.Add(day - time.Nanosecond), 0},
		{"tomorrow", now.Add(day), 1},
		{"in 30 days", now.Add(30 * day), 30},
		{"30 days ago", now.Add(-30 * day), -30},
		{"in 10 days, other zone", now.Add(10 * day).In(time.FixedZone("CEST", 2*3600)), 10},
		{"whole seconds in the certificate", now.Add(day).Truncate(time.Second), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Summary{NotAfter: tt.notAfter}).DaysUntilExpiry(now); got != tt.want {
				t.Fatalf("DaysUntilExpiry = %d, want %d", got, tt.want)
			}
		})
	}
}

// Dates beyond time.Duration's 292 years (RFC 5280's 9999-12-31 "no expiry")
// are checked by the defining property rather than by a second computation.
func TestDaysUntilExpiryFarDates(t *testing.T) {
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	for _, na := range []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		d := (Summary{NotAfter: na}).DaysUntilExpiry(now)
		if lo, hi := now.AddDate(0, 0, d), now.AddDate(0, 0, d+1); na.Before(lo) || !na.Before(hi) {
			t.Errorf("NotAfter %v: %d days puts it outside [%v, %v)", na, d, lo, hi)
		}
	}
}

func TestValidityWindow(t *testing.T) {
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	s := Summary{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	tests := []struct {
		name                 string
		at                   time.Time
		expired, notYetValid bool
	}{
		{"inside", now, false, false},
		{"at NotBefore", s.NotBefore, false, false},
		{"just before NotBefore", s.NotBefore.Add(-time.Nanosecond), false, true},
		{"at NotAfter", s.NotAfter, false, false},
		{"just after NotAfter", s.NotAfter.Add(time.Nanosecond), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Expired(tt.at); got != tt.expired {
				t.Errorf("Expired = %v, want %v", got, tt.expired)
			}
			if got := s.NotYetValid(tt.at); got != tt.notYetValid {
				t.Errorf("NotYetValid = %v, want %v", got, tt.notYetValid)
			}
		})
	}
}

func TestSameName(t *testing.T) {
	old := Summarize(newCert(t, certOpts{serial: bigInt(1)}))
	renewed := Summarize(newCert(t, certOpts{serial: bigInt(2), key: rsaKey()}))
	other := Summarize(newCert(t, certOpts{subject: pkix.Name{CommonName: "someone-else"}}))
	utf8Subject := Summarize(newCert(t, certOpts{rawSubject: must(asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "DE"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("Example")}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("ips-outbound")}}},
	}))}))
	tests := []struct {
		name string
		a, b Summary
		want bool
	}{
		{"itself", old, old, true},
		{"renewal with the same DN", old, renewed, true},
		{"other subject", old, other, false},
		{"same DN in UTF8String", old, utf8Subject, true},
		{"same subject, other issuer", old, func() Summary { s := renewed; s.Issuer = "CN=Other CA"; return s }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.SameName(tt.b); got != tt.want {
				t.Fatalf("SameName(%q/%q, %q/%q) = %v, want %v", tt.a.Subject, tt.a.Issuer, tt.b.Subject, tt.b.Issuer, got, tt.want)
			}
		})
	}
}

func TestSPKIFingerprintSurvivesReissue(t *testing.T) {
	a := Summarize(newCert(t, certOpts{serial: bigInt(1)}))
	b := Summarize(newCert(t, certOpts{serial: bigInt(2)}))
	c := Summarize(newCert(t, certOpts{serial: bigInt(3), key: p384Key()}))
	if a.SHA256 == b.SHA256 {
		t.Fatal("two certificates share a SHA-256 fingerprint")
	}
	if a.SPKISHA256 != b.SPKISHA256 {
		t.Error("a re-issue with the same key changed the SPKI fingerprint")
	}
	if a.SPKISHA256 == c.SPKISHA256 {
		t.Error("a re-key kept the SPKI fingerprint")
	}
}
