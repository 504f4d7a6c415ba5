package x509cert

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// These tests hold the package to what operators see: the same certificate
// run through `openssl x509` must print the same fingerprints, serial and
// names as the Summary.

func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on PATH")
	}
	return path
}

// opensslView is what `openssl x509` prints about one certificate file.
type opensslView struct {
	sha1, sha256, serial, subject, issuer string
	spki                                  []byte
}

func runOpenSSL(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func viewWithOpenSSL(t *testing.T, bin string, c *x509.Certificate) opensslView {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(file, []byte(certPEM(c)), 0o600); err != nil {
		t.Fatal(err)
	}
	var v opensslView
	out := runOpenSSL(t, bin, "x509", "-in", file, "-noout", "-serial", "-subject", "-issuer",
		"-nameopt", "RFC2253", "-pubkey", "-fingerprint", "-sha1")
	out += runOpenSSL(t, bin, "x509", "-in", file, "-noout", "-fingerprint", "-sha256")
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch lower := strings.ToLower(line); {
		case strings.HasPrefix(lower, "sha1 fingerprint="):
			v.sha1 = line[len("sha1 fingerprint="):]
		case strings.HasPrefix(lower, "sha256 fingerprint="):
			v.sha256 = line[len("sha256 fingerprint="):]
		case strings.HasPrefix(line, "serial="):
			v.serial = strings.TrimPrefix(line, "serial=")
		case strings.HasPrefix(line, "subject="):
			v.subject = strings.TrimSpace(strings.TrimPrefix(line, "subject="))
		case strings.HasPrefix(line, "issuer="):
			v.issuer = strings.TrimSpace(strings.TrimPrefix(line, "issuer="))
		}
	}
	if v.sha1 == "" || v.sha256 == "" || v.serial == "" {
		t.Fatalf("could not read openssl's output:\n%s", out)
	}
	if b, _ := pem.Decode([]byte(out)); b != nil && b.Type == "PUBLIC KEY" {
		v.spki = b.Bytes
	}
	return v
}

// comparableDN reports whether openssl's RFC 2253 rendering can be compared
// byte for byte: openssl escapes non-ASCII as \XX and names attributes
// (emailAddress, serialNumber) that RFC 4514 leaves as OIDs or spells
// differently, all of which are presentation differences, not errors.
func comparableDN(ours, theirs string) bool {
	if hexEscape.MatchString(theirs) || strings.Contains(ours, "=#") {
		return false
	}
	for _, r := range theirs {
		if r > 0x7e {
			return false
		}
	}
	for _, attr := range []string{"SERIALNUMBER=", "STREET=", "POSTALCODE="} {
		if strings.Contains(ours, attr) {
			return false
		}
	}
	return true
}

var hexEscape = regexp.MustCompile(`\\[0-9A-Fa-f]{2}`)

// compareWithOpenSSL reports how many distinguished names it compared.
func compareWithOpenSSL(t *testing.T, bin string, c *x509.Certificate, requireDN bool) int {
	t.Helper()
	s := Summarize(c)
	v := viewWithOpenSSL(t, bin, c)
	compared := 0
	if s.SHA1 != v.sha1 {
		t.Errorf("SHA1 = %s, openssl says %s", s.SHA1, v.sha1)
	}
	if s.SHA256 != v.sha256 {
		t.Errorf("SHA256 = %s, openssl says %s", s.SHA256, v.sha256)
	}
	if s.SerialNumber != v.serial {
		t.Errorf("SerialNumber = %s, openssl says %s", s.SerialNumber, v.serial)
	}
	if v.spki == nil {
		t.Error("openssl printed no public key")
	} else if want := wantSHA256(v.spki); s.SPKISHA256 != want {
		t.Errorf("SPKISHA256 = %s, openssl's public key hashes to %s", s.SPKISHA256, want)
	}
	for _, dn := range []struct{ field, ours, theirs string }{
		{"Subject", s.Subject, v.subject},
		{"Issuer", s.Issuer, v.issuer},
	} {
		if !comparableDN(dn.ours, dn.theirs) {
			if requireDN {
				t.Errorf("%s %q / openssl %q: not comparable", dn.field, dn.ours, dn.theirs)
			}
			continue
		}
		compared++
		if dn.ours != dn.theirs {
			t.Errorf("%s = %q, openssl -nameopt RFC2253 says %q", dn.field, dn.ours, dn.theirs)
		}
	}
	return compared
}

func TestSummaryMatchesOpenSSL(t *testing.T) {
	bin := requireOpenSSL(t)
	ca := newCert(t, certOpts{subject: pkix.Name{CommonName: "Example Root CA", Organization: []string{"Example"}},
		isCA: true, serial: bigInt(1), key: p384Key()})
	twentyBytes := new(big.Int).SetBytes([]byte{0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19})
	reversed := must(asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "ips-outbound"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "IPS"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Example, Inc."}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "DE"}},
	}))
	tests := []struct {
		name string
		opts certOpts
	}{
		{"ECDSA P-256", certOpts{}},
		{"ECDSA P-384, serial 1", certOpts{key: p384Key(), serial: bigInt(1)}},
		{"RSA 2048, serial with high bit", certOpts{key: rsaKey(), serial: bigInt(0x80)}},
		{"Ed25519, 20-byte serial", certOpts{key: edKey(), serial: twentyBytes}},
		{"issued by a CA", certOpts{parent: ca, parentKey: p384Key(), serial: bigInt(0xABCDEF),
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{"the CA itself", certOpts{subject: pkix.Name{CommonName: "Example Root CA", Organization: []string{"Example"}},
			isCA: true, serial: bigInt(1), key: p384Key()}},
		{"escaped characters", certOpts{subject: pkix.Name{CommonName: "a+b", Organization: []string{"Example, Inc."},
			OrganizationalUnit: []string{"#1 <ops>; \"team\""}}}},
		{"CN encoded first", certOpts{rawSubject: reversed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			compareWithOpenSSL(t, bin, newCert(t, tt.opts), true)
		})
	}
}

func TestSystemCABundleMatchesOpenSSL(t *testing.T) {
	bin := requireOpenSSL(t)
	const bundle = "/etc/ssl/certs/ca-certificates.crt"
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Skipf("no system CA bundle: %v", err)
	}
	certs, err := Parse(data, Limits{MaxBytes: len(data), MaxCertificates: strings.Count(string(data), "-----BEGIN")})
	if err != nil {
		t.Fatalf("Parse(%s): %v", bundle, err)
	}
	if len(certs) == 0 {
		t.Fatal("no certificates in the bundle")
	}
	for i, c := range certs {
		s := Summarize(c)
		if s.SHA256 != wantSHA256(c.Raw) || s.SHA1 != wantSHA1(c.Raw) {
			t.Errorf("certificate %d: fingerprints differ from sha1.Sum/sha256.Sum256", i+1)
		}
		if s.KeyAlgorithm == "unknown" || s.KeyBits == 0 {
			t.Errorf("certificate %d (%s): key %s/%d", i+1, s.Subject, s.KeyAlgorithm, s.KeyBits)
		}
	}
	const sample = 20
	var names atomic.Int64
	t.Run("sample", func(t *testing.T) {
		for i, c := range certs[:min(sample, len(certs))] {
			t.Run(strconv.Itoa(i+1), func(t *testing.T) {
				t.Parallel()
				names.Add(int64(compareWithOpenSSL(t, bin, c, false)))
			})
		}
	})
	t.Logf("compared %d certificates' fingerprints and serials and %d names with openssl", min(sample, len(certs)), names.Load())
}
