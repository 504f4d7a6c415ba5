package x509cert

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
)

var (
	oidPKCS7Data       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidPKCS7SignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
)

// classifyDER explains why DER that x509.ParseCertificate rejected is not a
// certificate. block is the PEM block number, or 0 for raw DER input.
func classifyDER(der []byte, certErr error, block int) *InputError {
	where := "the DER input"
	if block > 0 {
		where = fmt.Sprintf("PEM block %d", block)
	}
	n := block
	if n == 0 {
		n = 1
	}
	bn := strconv.Itoa(n)
	if kind := privateKeyKind(der); kind != "" {
		msg := fmt.Sprintf("the input contains a private key (%s is %s); it was not read or stored, "+
			"and none of it is repeated here. Send only the certificate", where, kind)
		if kind == kindPKCS12 {
			msg += " (extract it with `openssl pkcs12 -in FILE -clcerts -nokeys`)"
		}
		msg += "; if the key was sent over a channel you do not trust, consider it exposed"
		return inputError(ReasonPrivateKeyRefused, msg, "block", bn)
	}
	if what := otherDERKind(der); what != "" {
		return inputError(ReasonNotACertificate,
			fmt.Sprintf("%s is %s, not a certificate", where, what), "block", bn)
	}
	if block == 0 {
		if _, rest, ok := firstCertificate(der); ok {
			return inputError(ReasonMalformedCertificate,
				fmt.Sprintf("the DER input holds one certificate followed by %d more bytes; DER input must be "+
					"exactly one certificate (send several certificates as PEM)", len(rest)),
				"block", bn)
		}
	}
	if block == 0 {
		where = "the DER input (block 1)"
	}
	return inputError(ReasonMalformedCertificate,
		fmt.Sprintf("%s is not a valid X.509 certificate: %s", where, describeParseError(certErr)),
		"block", bn)
}

const kindPKCS12 = "a PKCS #12 keystore (.p12/.pfx), which normally holds a private key"

// privateKeyKind recognises private keys by their ASN.1 envelope alone: the
// key itself is never parsed, which also catches encrypted keys and
// algorithms crypto/x509 cannot parse.
func privateKeyKind(der []byte) string {
	e, ok := sequenceElements(der)
	if !ok || len(e) < 2 {
		return ""
	}
	v, isInt := smallInt(e[0])
	switch {
	case isInt && v == 0 && len(e) == 9 && allIntegers(e),
		isInt && v == 1 && len(e) == 10 && allIntegers(e[:9]) && isUniversal(e[9], asn1.TagSequence):
		// Two primes (version 0) or several (version 1, RFC 8017 A.1.2).
		return "a PKCS #1 RSA private key"
	case isInt && v == 1 && len(e) <= 4 && isUniversal(e[1], asn1.TagOctetString) && allContextSpecific(e[2:]):
		return "a SEC 1 EC private key"
	case isInt && (v == 0 || v == 1) && len(e) >= 3 && len(e) <= 5 && startsWithOID(e[1]) != nil &&
		isUniversal(e[2], asn1.TagOctetString):
		return "a PKCS #8 private key"
	case !isInt && len(e) == 2 && startsWithOID(e[0]) != nil && isUniversal(e[1], asn1.TagOctetString):
		return "an encrypted PKCS #8 private key"
	case isInt && v == 3 && len(e) <= 3:
		if oid := startsWithOID(e[1]); oid.Equal(oidPKCS7Data) || oid.Equal(oidPKCS7SignedData) {
			return kindPKCS12
		}
	}
	return ""
}

// otherDERKind names the public objects people confuse with certificates.
func otherDERKind(der []byte) string {
	if e, ok := sequenceElements(der); ok && len(e) == 2 && isUniversal(e[0], asn1.TagOID) {
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(e[0].FullBytes, &oid); err == nil && oid.Equal(oidPKCS7SignedData) {
			return "a PKCS #7 bundle (.p7b); extract its certificates with " +
				"`openssl pkcs7 -inform DER -in FILE -print_certs`"
		}
	}
	if _, err := x509.ParseCertificateRequest(der); err == nil {
		return "a certificate signing request (CSR); send the certificate the CA issued for it"
	}
	if _, err := x509.ParsePKIXPublicKey(der); err == nil {
		return "a public key; send the certificate that contains it"
	}
	if _, err := x509.ParseRevocationList(der); err == nil {
		return "a certificate revocation list"
	}
	return ""
}

// firstCertificate reports whether der starts with a whole certificate and
// has bytes after it, the shape of several DER certificates concatenated.
func firstCertificate(der []byte) (*x509.Certificate, []byte, bool) {
	var first asn1.RawValue
	rest, err := asn1.Unmarshal(der, &first)
	if err != nil || len(rest) == 0 {
		return nil, nil, false
	}
	c, err := x509.ParseCertificate(first.FullBytes)
	if err != nil {
		return nil, nil, false
	}
	return c, rest, true
}

// maxElements bounds the work spent on a hostile SEQUENCE; no structure
// recognised here has more than ten elements.
const maxElements = 16

func sequenceElements(der []byte) ([]asn1.RawValue, bool) {
	var outer asn1.RawValue
	if _, err := asn1.Unmarshal(der, &outer); err != nil || !isUniversal(outer, asn1.TagSequence) || !outer.IsCompound {
		return nil, false
	}
	var out []asn1.RawValue
	b := outer.Bytes
	for len(b) > 0 && len(out) < maxElements {
		var e asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &e); err != nil {
			return nil, false
		}
		out = append(out, e)
	}
	return out, true
}

func isUniversal(v asn1.RawValue, tag int) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == tag
}

func smallInt(v asn1.RawValue) (int, bool) {
	if !isUniversal(v, asn1.TagInteger) || len(v.Bytes) != 1 {
		return 0, false
	}
	return int(v.Bytes[0]), true
}

func allIntegers(vs []asn1.RawValue) bool {
	for _, v := range vs {
		if !isUniversal(v, asn1.TagInteger) {
			return false
		}
	}
	return true
}

func allContextSpecific(vs []asn1.RawValue) bool {
	for _, v := range vs {
		if v.Class != asn1.ClassContextSpecific {
			return false
		}
	}
	return true
}

// startsWithOID returns the OID that opens the SEQUENCE v (as in an
// AlgorithmIdentifier or a ContentInfo), or nil.
func startsWithOID(v asn1.RawValue) asn1.ObjectIdentifier {
	if !isUniversal(v, asn1.TagSequence) || !v.IsCompound {
		return nil
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(v.Bytes, &oid); err != nil {
		return nil
	}
	return oid
}

// describeParseError keeps crypto/x509's diagnosis but drops anything it
// quotes from the certificate (such as a malformed URI), so that messages
// never echo input.
func describeParseError(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\"'`"); i >= 0 {
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, " :")
	if len(s) > 160 {
		s = s[:160]
	}
	if s == "" {
		s = "x509: malformed certificate"
	}
	return s
}
