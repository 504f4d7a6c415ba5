package x509cert

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseAcceptedForms(t *testing.T) {
	leaf := newCert(t, certOpts{})
	ca := newCert(t, certOpts{subject: pkix.Name{CommonName: "Example Root CA"}, isCA: true, serial: bigInt(1)})
	one, two := certPEM(leaf), certPEM(ca)
	indent := func(s string) string {
		return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
	}

	tests := []struct {
		name  string
		input []byte
		want  []*x509.Certificate
	}{
		{"one PEM block", []byte(one), []*x509.Certificate{leaf}},
		{"DER", leaf.Raw, []*x509.Certificate{leaf}},
		{"bundle in input order", []byte(one + two), []*x509.Certificate{leaf, ca}},
		{"openssl text around blocks", []byte("subject=CN=ips-outbound\nissuer=CN=Example Root CA\n" + one +
			"# the root\n" + two + "trailing words\n"), []*x509.Certificate{leaf, ca}},
		{"CRLF line endings", []byte(strings.ReplaceAll(one+two, "\n", "\r\n")), []*x509.Certificate{leaf, ca}},
		{"no final newline", []byte(strings.TrimSuffix(one, "\n")), []*x509.Certificate{leaf}},
		{"surrounding whitespace", []byte("\n\n  " + one + "\n\n"), []*x509.Certificate{leaf}},
		{"indented as in YAML", []byte("cert: |\n" + indent(one)), []*x509.Certificate{leaf}},
		{"JSON-escaped newlines", []byte(`{"pem": "` + strings.ReplaceAll(one, "\n", `\n`) + `"}`), []*x509.Certificate{leaf}},
		{"RFC 1421 header", []byte(strings.Replace(one, "-----\n", "-----\nComment: exported by hand\n\n", 1)), []*x509.Certificate{leaf}},
		{"UTF-8 byte order mark", []byte("\ufeff" + one), []*x509.Certificate{leaf}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.input, DefaultLimits)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i].Raw, tt.want[i].Raw) {
					t.Errorf("certificate %d differs from the one encoded", i+1)
				}
			}
		})
	}
}

func TestParseDoesNotAliasInput(t *testing.T) {
	leaf := newCert(t, certOpts{})
	in := bytes.Clone(leaf.Raw)
	got, err := Parse(in, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	clear(in)
	if !bytes.Equal(got[0].Raw, leaf.Raw) {
		t.Fatal("the parsed certificate changed when the caller reused its buffer")
	}
}

func TestParseLimitsZeroMeansDefault(t *testing.T) {
	leaf := newCert(t, certOpts{})
	if _, err := Parse([]byte(certPEM(leaf)), Limits{}); err != nil {
		t.Fatalf("Parse with zero Limits: %v", err)
	}
	big := bytes.Repeat([]byte(" "), DefaultLimits.MaxBytes+1)
	assertReason(t, Parse2(big, Limits{}), ReasonInputTooLarge)
}

// Parse2 drops the certificates, for tables that look at errors only.
func Parse2(data []byte, l Limits) error {
	_, err := Parse(data, l)
	return err
}

func assertReason(t *testing.T, err error, reason string) *InputError {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InputError", err, err)
	}
	if ie.Reason != reason {
		t.Fatalf("reason %s (%q), want %s", ie.Reason, ie.Message, reason)
	}
	if ie.Error() != ie.Message {
		t.Errorf("Error() = %q, want the message", ie.Error())
	}
	return ie
}

func TestParseErrors(t *testing.T) {
	leaf := newCert(t, certOpts{})
	good := certPEM(leaf)
	csr := must(x509.CreateCertificateRequest(rand.Reader,
		&x509.CertificateRequest{Subject: pkix.Name{CommonName: "ips-outbound"}}, p256Key()))
	spki := must(x509.MarshalPKIXPublicKey(p256Key().Public()))
	pkcs7 := must(asn1.Marshal(struct {
		Type    asn1.ObjectIdentifier
		Content struct{ Version int } `asn1:"explicit,tag:0"`
	}{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}}))
	damaged := good[:len(good)/2] + good[len(good)/2+1:] // one base64 character gone
	bare := base64.StdEncoding.EncodeToString(leaf.Raw)

	tests := []struct {
		name    string
		input   []byte
		limits  Limits
		reason  string
		message string // exact, unless prefix is set
		prefix  bool
		meta    map[string]string
	}{
		{name: "empty", input: nil,
			reason: ReasonEmptyInput, message: "the input is empty; send one or more PEM certificates or one DER certificate"},
		{name: "whitespace only", input: []byte(" \r\n\t \n"),
			reason: ReasonEmptyInput, message: "the input is empty; send one or more PEM certificates or one DER certificate"},
		{name: "too large", input: bytes.Repeat([]byte("a"), 101), limits: Limits{MaxBytes: 100},
			reason: ReasonInputTooLarge, message: "the input is 101 bytes, more than the limit of 100 bytes",
			meta: map[string]string{"size_bytes": "101", "limit_bytes": "100"}},
		{name: "too many certificates", input: []byte(good + good + good), limits: Limits{MaxCertificates: 2},
			reason: ReasonTooManyCertificates, message: "the input holds 3 certificates, more than the limit of 2 per request",
			meta: map[string]string{"certificates": "3", "limit_certificates": "2"}},
		{name: "exactly the limit is fine", input: []byte(good + good), limits: Limits{MaxCertificates: 2}},

		{name: "CSR", input: []byte(good + pemOf(csr, "CERTIFICATE REQUEST")), reason: ReasonNotACertificate,
			message: "PEM block 2 is a certificate signing request (CSR); send the certificate the CA issued for it, not a certificate",
			meta:    map[string]string{"block": "2", "pem_type": "CERTIFICATE REQUEST"}},
		{name: "public key", input: []byte(pemOf(spki, "PUBLIC KEY")), reason: ReasonNotACertificate,
			message: "PEM block 1 is a public key; send the certificate that contains it, not a certificate"},
		{name: "trusted certificate", input: []byte(pemOf(leaf.Raw, "TRUSTED CERTIFICATE")), reason: ReasonNotACertificate,
			message: "PEM block 1 is an OpenSSL trusted certificate (a certificate with trust settings); " +
				"convert it with `openssl x509 -in FILE -out cert.pem`, which writes a plain CERTIFICATE block, not a certificate"},
		{name: "obsolete X509 CERTIFICATE label", input: []byte(pemOf(leaf.Raw, "X509 CERTIFICATE")), reason: ReasonNotACertificate,
			message: "PEM block 1 is a certificate under the obsolete label \"X509 CERTIFICATE\"; relabel it as BEGIN/END " +
				"CERTIFICATE or convert it with `openssl x509 -in FILE -out cert.pem`, not a certificate"},
		{name: "unknown label is not echoed", input: []byte(pemOf([]byte{1, 2, 3}, "SECRET SAUCE")), reason: ReasonNotACertificate,
			message: "PEM block 1 is not a certificate: only BEGIN CERTIFICATE blocks are accepted",
			meta:    map[string]string{"block": "1"}},
		{name: "DER CSR", input: csr, reason: ReasonNotACertificate,
			message: "the DER input is a certificate signing request (CSR); send the certificate the CA issued for it, not a certificate"},
		{name: "DER public key", input: spki, reason: ReasonNotACertificate,
			message: "the DER input is a public key; send the certificate that contains it, not a certificate"},
		{name: "DER PKCS7", input: pkcs7, reason: ReasonNotACertificate,
			message: "the DER input is a PKCS #7 bundle (.p7b); extract its certificates with " +
				"`openssl pkcs7 -inform DER -in FILE -print_certs`, not a certificate"},

		{name: "cut short", input: []byte(good[:len(good)/2]), reason: ReasonTruncatedPEM,
			message: "PEM block 1 is damaged: it has a BEGIN line but no END line; the input may have been cut short",
			meta:    map[string]string{"block": "1"}},
		{name: "second block cut short", input: []byte(good + good[:len(good)-30]), reason: ReasonTruncatedPEM,
			message: "PEM block 2 is damaged: it has a BEGIN line but no END line; the input may have been cut short"},
		{name: "END missing before next BEGIN", input: []byte(strings.Replace(good, "-----END CERTIFICATE-----\n", "", 1) + good),
			reason:  ReasonTruncatedPEM,
			message: "PEM block 1 is damaged: it has a BEGIN line but no END line; the input may have been cut short"},
		{name: "incomplete BEGIN line", input: []byte("-----BEGIN CERTIF"), reason: ReasonTruncatedPEM,
			message: "PEM block 1 is damaged: its BEGIN line is incomplete"},
		{name: "END of another type", input: []byte(strings.Replace(good, "END CERTIFICATE", "END CERTIFICATE REQUEST", 1)),
			reason: ReasonTruncatedPEM, message: "PEM block 1 is damaged: its END line does not match its BEGIN line"},
		{name: "damaged base64", input: []byte(damaged), reason: ReasonTruncatedPEM,
			message: "PEM block 1 is damaged: its base64 content does not decode (cut short, edited, or mixed with other text)"},

		{name: "PEM garbage", input: []byte(good + pemOf(bytes.Repeat([]byte{1}, 100), "CERTIFICATE")),
			reason: ReasonMalformedCertificate, prefix: true,
			message: "PEM block 2 is not a valid X.509 certificate: x509: ", meta: map[string]string{"block": "2"}},
		{name: "empty PEM block", input: []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
			reason: ReasonMalformedCertificate, message: "PEM block 1 is empty"},
		{name: "truncated DER", input: leaf.Raw[:len(leaf.Raw)-10], reason: ReasonMalformedCertificate,
			message: "the DER input (block 1) is not a valid X.509 certificate: x509: malformed certificate",
			meta:    map[string]string{"block": "1"}},
		{name: "DER with trailing bytes", input: append(bytes.Clone(leaf.Raw), 0, 0), reason: ReasonMalformedCertificate,
			message: "the DER input holds one certificate followed by 2 more bytes; DER input must be exactly one " +
				"certificate (send several certificates as PEM)"},
		{name: "two DER certificates", input: append(bytes.Clone(leaf.Raw), leaf.Raw...), reason: ReasonMalformedCertificate,
			prefix: true, message: "the DER input holds one certificate followed by "},

		{name: "plain text", input: []byte("hello world\n"), reason: ReasonUnrecognizedInput,
			message: "the input is neither PEM (it has no \"-----BEGIN\" line) nor DER (which starts with the byte 0x30)"},
		{name: "text starting with 0", input: []byte("0A:1B:2C\n"), reason: ReasonUnrecognizedInput,
			message: "the input is neither PEM (it has no \"-----BEGIN\" line) nor DER (which starts with the byte 0x30)"},
		{name: "base64 without BEGIN/END", input: []byte(bare), reason: ReasonUnrecognizedInput,
			message: "the input is neither PEM (it has no \"-----BEGIN\" line) nor DER (which starts with the byte 0x30); " +
				"it looks like base64 without the BEGIN/END lines: put it between \"-----BEGIN CERTIFICATE-----\" " +
				"and \"-----END CERTIFICATE-----\" lines"},
		{name: "UTF-16", input: append([]byte{0xff, 0xfe}, utf16le("-----BEGIN CERTIFICATE-----")...), reason: ReasonUnrecognizedInput,
			message: "the input is neither PEM (it has no \"-----BEGIN\" line) nor DER (which starts with the byte 0x30); " +
				"it looks like UTF-16 text (as Windows PowerShell writes it): save it as ASCII or UTF-8"},
		{name: "binary garbage", input: []byte{0x01, 0x02, 0xff}, reason: ReasonUnrecognizedInput,
			message: "the input is neither PEM (it has no \"-----BEGIN\" line) nor DER (which starts with the byte 0x30)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := Parse(tt.input, tt.limits)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if certs != nil {
				t.Errorf("got certificates along with an error")
			}
			ie := assertReason(t, err, tt.reason)
			if tt.prefix && !strings.HasPrefix(ie.Message, tt.message) || !tt.prefix && ie.Message != tt.message {
				t.Errorf("message\n got %q\nwant %q", ie.Message, tt.message)
			}
			for k, v := range tt.meta {
				if ie.Metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q (all: %v)", k, ie.Metadata[k], v, ie.Metadata)
				}
			}
		})
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, c := range []byte(s) {
		b = append(b, c, 0)
	}
	return b
}

func TestParseRefusesPrivateKeys(t *testing.T) {
	leaf := newCert(t, certOpts{})
	good := certPEM(leaf)
	pkcs8EC := must(x509.MarshalPKCS8PrivateKey(p256Key()))
	pkcs8RSA := must(x509.MarshalPKCS8PrivateKey(rsaKey()))
	pkcs8Ed := must(x509.MarshalPKCS8PrivateKey(edKey()))
	sec1 := must(x509.MarshalECPrivateKey(p384Key()))
	pkcs1 := x509.MarshalPKCS1PrivateKey(rsaKey())
	noise := make([]byte, 96)
	rand.Read(noise)
	encrypted := must(asn1.Marshal(struct {
		Alg  pkix.AlgorithmIdentifier
		Data []byte
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}}, noise}))
	pfx := must(asn1.Marshal(struct {
		Version  int
		AuthSafe struct {
			Type    asn1.ObjectIdentifier
			Content []byte `asn1:"explicit,tag:0"`
		}
	}{Version: 3, AuthSafe: struct {
		Type    asn1.ObjectIdentifier
		Content []byte `asn1:"explicit,tag:0"`
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}, noise}}))

	tests := []struct {
		name  string
		input string
		key   []byte // the key material that must not show up in the message
		block string
	}{
		{"PKCS #8 EC", pemOf(pkcs8EC, "PRIVATE KEY"), pkcs8EC, "1"},
		{"PKCS #8 RSA", pemOf(pkcs8RSA, "PRIVATE KEY"), pkcs8RSA, "1"},
		{"PKCS #8 Ed25519", pemOf(pkcs8Ed, "PRIVATE KEY"), pkcs8Ed, "1"},
		{"SEC 1 EC", pemOf(sec1, "EC PRIVATE KEY"), sec1, "1"},
		{"PKCS #1 RSA", pemOf(pkcs1, "RSA PRIVATE KEY"), pkcs1, "1"},
		{"encrypted PKCS #8", pemOf(encrypted, "ENCRYPTED PRIVATE KEY"), encrypted, "1"},
		{"OpenSSH", pemOf(noise, "OPENSSH PRIVATE KEY"), noise, "1"},
		{"after a certificate", good + pemOf(pkcs8EC, "PRIVATE KEY"), pkcs8EC, "2"},
		{"before a certificate", pemOf(pkcs1, "RSA PRIVATE KEY") + good, pkcs1, "1"},
		{"after a damaged block", good[:40] + "\n" + pemOf(sec1, "EC PRIVATE KEY"), sec1, "2"},
		{"key without END line", strings.Replace(pemOf(pkcs8RSA, "PRIVATE KEY"), "-----END PRIVATE KEY-----", "", 1), pkcs8RSA, "1"},
		{"cut short", pemOf(pkcs8RSA, "PRIVATE KEY")[:300], pkcs8RSA[:150], "1"},
		{"BEGIN line cut short", "-----BEGIN RSA PRIVATE KEY", nil, "1"},
		{"mislabelled as CERTIFICATE", pemOf(pkcs8EC, "CERTIFICATE"), pkcs8EC, "1"},
		{"DER PKCS #8", string(pkcs8EC), pkcs8EC, "1"},
		{"DER PKCS #8 RSA", string(pkcs8RSA), pkcs8RSA, "1"},
		{"DER SEC 1", string(sec1), sec1, "1"},
		{"DER PKCS #1", string(pkcs1), pkcs1, "1"},
		{"DER encrypted PKCS #8", string(encrypted), encrypted, "1"},
		{"DER PKCS #12", string(pfx), pfx, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ie := assertReason(t, Parse2([]byte(tt.input), DefaultLimits), ReasonPrivateKeyRefused)
			for _, want := range []string{"the input contains a private key", "it was not read or stored", "Send only the certificate"} {
				if !strings.Contains(ie.Message, want) {
					t.Errorf("message %q lacks %q", ie.Message, want)
				}
			}
			if ie.Metadata["block"] != tt.block {
				t.Errorf("block %q, want %q", ie.Metadata["block"], tt.block)
			}
			assertNoKeyMaterial(t, ie, tt.input, tt.key)
		})
	}
}

// assertNoKeyMaterial fails when any 12-character run of the key's encodings
// (or of the input's base64 lines) appears in the error.
func assertNoKeyMaterial(t *testing.T, ie *InputError, input string, key []byte) {
	t.Helper()
	text := ie.Message
	for k, v := range ie.Metadata {
		text += " " + k + "=" + v
	}
	var encodings []string
	if key != nil {
		encodings = append(encodings, base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key),
			strings.ToUpper(hex.EncodeToString(key)), string(key))
	}
	for _, line := range strings.Split(input, "\n") {
		if !strings.Contains(line, "-----") {
			encodings = append(encodings, strings.TrimSpace(line))
		}
	}
	const window = 12
	for _, enc := range encodings {
		for i := 0; i+window <= len(enc); i++ {
			if strings.Contains(text, enc[i:i+window]) {
				t.Fatalf("error %q contains key material %q", text, enc[i:i+window])
			}
		}
	}
}

func TestParseReturnsCertificatesInOrderUpToLimit(t *testing.T) {
	var in strings.Builder
	var want [][]byte
	for i := range 5 {
		c := newCert(t, certOpts{serial: bigInt(int64(i + 1))})
		in.WriteString(certPEM(c))
		want = append(want, c.Raw)
	}
	got, err := Parse([]byte(in.String()), Limits{MaxCertificates: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(got[i].Raw, want[i]) {
			t.Fatalf("certificate %d out of order", i+1)
		}
	}
	assertReason(t, Parse2([]byte(in.String()), Limits{MaxCertificates: 4}), ReasonTooManyCertificates)
}

// TestParseIsLinear guards against inputs that once made the PEM scanner
// quadratic: a megabyte of BEGIN markers without newlines took minutes.
// hostileInputs are 1 MiB inputs that once made the PEM scanner quadratic.
func hostileInputs() map[string][]byte {
	const size = 1 << 20
	return map[string][]byte{
		"BEGIN markers, no newlines": bytes.Repeat([]byte("-----BEGIN "), size/11),
		"BEGIN lines, no END":        bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\n"), size/28),
		"END lines after one BEGIN":  append([]byte("-----BEGIN CERTIFICATE-----"), bytes.Repeat([]byte("-----END X-----"), size/16)...),
		"empty blocks":               bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), size/54),
		"one huge body":              append([]byte("-----BEGIN CERTIFICATE-----\n"), bytes.Repeat([]byte("QUFB"), size/4-10)...),
		"nested DER":                 append([]byte{0x30, 0x83, 0x0f, 0xff, 0xf0}, bytes.Repeat([]byte{0x30, 0x80}, size/2-5)...),
	}
}

func TestParseRefusesHostileInputs(t *testing.T) {
	for name, in := range hostileInputs() {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(in, Limits{MaxBytes: 1 << 20}); err == nil {
				t.Fatal("Parse accepted a hostile input")
			}
		})
	}
}

// BenchmarkParseHostile prints how long the hostile inputs take; the
// quadratic scanner it guards against took 96 s on the first of them.
func BenchmarkParseHostile(b *testing.B) {
	for name, in := range hostileInputs() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				Parse(in, Limits{MaxBytes: 1 << 20})
			}
		})
	}
}
