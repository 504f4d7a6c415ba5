package x509cert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"strings"
	"time"
)

// Summary is what operators compare: the fields that IPS's Outbound
// Certificate tab, SF's Security Center and `openssl x509` show.
type Summary struct {
	// Subject and Issuer are RFC 4514 strings, built from the certificate's
	// own RDN sequence so that attribute order and multi-valued RDNs are as
	// encoded (as `openssl x509 -nameopt RFC2253` shows them).
	Subject, Issuer string
	// SerialNumber is upper-case hex without separators, as
	// `openssl x509 -serial` prints it.
	SerialNumber        string
	NotBefore, NotAfter time.Time
	// SHA1 and SHA256 are over the DER certificate, SPKISHA256 over its
	// SubjectPublicKeyInfo; all formatted by FormatFingerprint.
	SHA1, SHA256, SPKISHA256 string
	KeyAlgorithm             string // "RSA", "ECDSA", "Ed25519" or "unknown"
	KeyBits                  int    // 0 when unknown
	KeyCurve                 string // ECDSA only, e.g. "P-256"
	SignatureAlgorithm       string
	ClientAuth               bool
	IsCA                     bool
	SubjectAltNames          []string // DNS names, URIs, e-mail addresses, IP addresses
	DER                      []byte
}

var oidExtensionExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}

// Summarize computes c's Summary. It never fails: every field has a defined
// value for any certificate crypto/x509 parsed.
func Summarize(c *x509.Certificate) Summary {
	sha1Sum := sha1.Sum(c.Raw)
	sha256Sum := sha256.Sum256(c.Raw)
	spkiSum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	s := Summary{
		Subject:            distinguishedName(c.RawSubject, c.Subject),
		Issuer:             distinguishedName(c.RawIssuer, c.Issuer),
		SerialNumber:       formatSerial(c),
		NotBefore:          c.NotBefore,
		NotAfter:           c.NotAfter,
		SHA1:               FormatFingerprint(sha1Sum[:]),
		SHA256:             FormatFingerprint(sha256Sum[:]),
		SPKISHA256:         FormatFingerprint(spkiSum[:]),
		KeyAlgorithm:       "unknown",
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		ClientAuth:         clientAuth(c),
		IsCA:               c.IsCA,
		DER:                bytes.Clone(c.Raw),
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		s.KeyAlgorithm = "RSA"
		if k.N != nil {
			s.KeyBits = k.N.BitLen()
		}
	case *ecdsa.PublicKey:
		s.KeyAlgorithm = "ECDSA"
		if k.Curve != nil {
			p := k.Curve.Params()
			s.KeyBits, s.KeyCurve = p.BitSize, p.Name
		}
	case ed25519.PublicKey:
		s.KeyAlgorithm = "Ed25519"
		s.KeyBits = 256
	}
	for _, n := range c.DNSNames {
		s.SubjectAltNames = append(s.SubjectAltNames, n)
	}
	for _, u := range c.URIs {
		s.SubjectAltNames = append(s.SubjectAltNames, u.String())
	}
	for _, e := range c.EmailAddresses {
		s.SubjectAltNames = append(s.SubjectAltNames, e)
	}
	for _, ip := range c.IPAddresses {
		s.SubjectAltNames = append(s.SubjectAltNames, ip.String())
	}
	return s
}

// distinguishedName prefers the encoded RDN sequence over pkix.Name.String,
// which regroups attributes by type and so can show a DN in an order SF and
// openssl never show. It falls back to pkix.Name when a value is not a string
// that RFC 4514 can render.
func distinguishedName(raw []byte, parsed pkix.Name) string {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err == nil && len(rest) == 0 {
		ok := true
		for _, rdn := range rdns {
			for _, atv := range rdn {
				if _, isString := atv.Value.(string); !isString {
					ok = false
				}
			}
		}
		if ok {
			return rdns.String()
		}
	}
	return parsed.String()
}

// formatSerial matches OpenSSL's i2a_ASN1_INTEGER: whole bytes, so a leading
// zero nibble is kept ("0A", not "A"), and "00" for zero.
func formatSerial(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	b := c.SerialNumber.Bytes() // magnitude
	h := "00"
	if len(b) > 0 {
		h = strings.ToUpper(hex.EncodeToString(b))
	}
	if c.SerialNumber.Sign() < 0 {
		h = "-" + h
	}
	return h
}

// clientAuth follows RFC 5280 4.2.1.12: without the extension a certificate
// may be used for any purpose, and anyExtendedKeyUsage allows any purpose.
func clientAuth(c *x509.Certificate) bool {
	present := false
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidExtensionExtKeyUsage) {
			present = true
			break
		}
	}
	if !present {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

const secondsPerDay = 24 * 60 * 60

// DaysUntilExpiry returns whole days from now until NotAfter, rounded towards
// minus infinity, so a certificate that expired a second ago reports -1. It
// works in seconds rather than time.Duration, which saturates after 292 years
// and so cannot represent NotAfter 9999-12-31 (RFC 5280's "no expiry").
func (s Summary) DaysUntilExpiry(now time.Time) int {
	secs := s.NotAfter.Unix() - now.Unix()
	if s.NotAfter.Nanosecond() < now.Nanosecond() {
		secs-- // the fractional part only matters when it borrows a second
	}
	days := secs / secondsPerDay
	if secs%secondsPerDay < 0 {
		days--
	}
	return int(days)
}

// Expired reports whether now is after NotAfter; NotAfter itself is still
// inside the validity window (RFC 5280 4.1.2.5).
func (s Summary) Expired(now time.Time) bool { return now.After(s.NotAfter) }

// NotYetValid reports whether now is before NotBefore.
func (s Summary) NotYetValid(now time.Time) bool { return now.Before(s.NotBefore) }

// SameName reports whether both certificates have the same subject and issuer,
// the key under which SF stores a mapping and refuses a duplicate upload. It
// compares the RFC 4514 strings rather than the DER, so that a re-issue that
// only changes a string's ASN.1 type (PrintableString to UTF8String) still
// counts as the same name, as it does for SF.
func (s Summary) SameName(o Summary) bool {
	return s.Subject == o.Subject && s.Issuer == o.Issuer
}
