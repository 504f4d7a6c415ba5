package x509cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Keys are generated once per test binary: RSA generation dominates the run
// time under -race otherwise.
var (
	p256Key = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384Key = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	rsaKey  = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	edKey   = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type certOpts struct {
	key         crypto.Signer // default p256Key
	subject     pkix.Name
	rawSubject  []byte
	serial      *big.Int
	notBefore   time.Time
	notAfter    time.Time
	eku         []x509.ExtKeyUsage
	unknownEKU  []asn1.ObjectIdentifier
	isCA        bool
	dns         []string
	uris        []string
	emails      []string
	ips         []string
	parent      *x509.Certificate
	parentKey   crypto.Signer
	sigAlg      x509.SignatureAlgorithm
	omitBasicCA bool
}

// newCert creates and parses a certificate; with no parent it is self-signed.
func newCert(t testing.TB, o certOpts) *x509.Certificate {
	t.Helper()
	if o.key == nil {
		o.key = p256Key()
	}
	if o.serial == nil {
		o.serial = big.NewInt(0x1234567)
	}
	if o.subject.CommonName == "" && o.rawSubject == nil {
		o.subject = pkix.Name{CommonName: "ips-outbound", Organization: []string{"Example"}, Country: []string{"DE"}}
	}
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	if o.notAfter.IsZero() {
		o.notAfter = o.notBefore.Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          o.serial,
		Subject:               o.subject,
		RawSubject:            o.rawSubject,
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		ExtKeyUsage:           o.eku,
		UnknownExtKeyUsage:    o.unknownEKU,
		IsCA:                  o.isCA,
		BasicConstraintsValid: o.isCA && !o.omitBasicCA,
		DNSNames:              o.dns,
		EmailAddresses:        o.emails,
		SignatureAlgorithm:    o.sigAlg,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if o.isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	for _, u := range o.uris {
		tmpl.URIs = append(tmpl.URIs, must(url.Parse(u)))
	}
	for _, ip := range o.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	parent, parentKey := tmpl, o.key
	if o.parent != nil {
		parent, parentKey = o.parent, o.parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, o.key.Public(), parentKey)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return c
}

func pemOf(der []byte, label string) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: label, Bytes: der}))
}

func certPEM(c *x509.Certificate) string { return pemOf(c.Raw, "CERTIFICATE") }

// hexColons is the test's own formatter, deliberately written differently
// from FormatFingerprint so that the two check each other.
func hexColons(b []byte) string {
	parts := make([]string, len(b))
	for i, v := range b {
		parts[i] = fmt.Sprintf("%02X", v)
	}
	return strings.Join(parts, ":")
}

func wantSHA1(der []byte) string {
	s := sha1.Sum(der)
	return hexColons(s[:])
}

func wantSHA256(der []byte) string {
	s := sha256.Sum256(der)
	return hexColons(s[:])
}

func bigInt(v int64) *big.Int { return big.NewInt(v) }
