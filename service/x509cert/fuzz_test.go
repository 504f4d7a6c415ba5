package x509cert

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var knownReasons = map[string]bool{
	ReasonEmptyInput: true, ReasonInputTooLarge: true, ReasonTooManyCertificates: true,
	ReasonPrivateKeyRefused: true, ReasonNotACertificate: true, ReasonTruncatedPEM: true,
	ReasonMalformedCertificate: true, ReasonUnrecognizedInput: true,
}

func checkInputError(t *testing.T, err error, reasons map[string]bool) *InputError {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InputError", err, err)
	}
	if !reasons[ie.Reason] {
		t.Fatalf("unexpected reason %q", ie.Reason)
	}
	if ie.Message == "" || !utf8.ValidString(ie.Message) {
		t.Fatalf("message %q is empty or not UTF-8", ie.Message)
	}
	return ie
}

func FuzzParse(f *testing.F) {
	leaf := newCert(f, certOpts{dns: []string{"ips.example.com"}})
	ca := newCert(f, certOpts{isCA: true, key: edKey(), serial: bigInt(1)})
	good := certPEM(leaf)
	f.Add([]byte(good))
	f.Add(leaf.Raw)
	f.Add([]byte("subject=CN=x\n" + good + "# comment\n" + certPEM(ca)))
	f.Add([]byte(good[:len(good)/2]))
	f.Add([]byte(pemOf(must(x509.MarshalPKCS8PrivateKey(p256Key())), "PRIVATE KEY")))
	f.Add(must(x509.MarshalECPrivateKey(p256Key())))
	f.Add([]byte(pemOf(leaf.Raw, "TRUSTED CERTIFICATE")))
	f.Add([]byte(strings.ReplaceAll(good, "\n", `\n`)))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN -----BEGIN X-----END X-----"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Add([]byte("\x00\xffgarbage"))

	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		limits := Limits{MaxBytes: 64 << 10, MaxCertificates: 10}
		certs, err := Parse(data, limits)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned along with an error")
			}
			checkInputError(t, err, knownReasons)
			return
		}
		if len(certs) == 0 || len(certs) > limits.MaxCertificates {
			t.Fatalf("%d certificates without an error", len(certs))
		}
		for _, c := range certs {
			s := Summarize(c)
			if s.SHA256 != wantSHA256(c.Raw) || s.SHA1 != wantSHA1(c.Raw) || !bytes.Equal(s.DER, c.Raw) {
				t.Fatal("summary fingerprints or DER disagree with the certificate")
			}
			if s.SPKISHA256 != wantSHA256(c.RawSubjectPublicKeyInfo) {
				t.Fatal("SPKI fingerprint disagrees with the certificate")
			}
			for _, fp := range []string{s.SHA1, s.SHA256} {
				got, err := NormalizeFingerprint(fp)
				if err != nil || !s.Matches(got) {
					t.Fatalf("the summary does not match its own fingerprint %s: %v", fp, err)
				}
			}
			if d := s.DaysUntilExpiry(now); (d < 0) != s.Expired(now) && !s.NotAfter.Equal(now) {
				t.Fatalf("DaysUntilExpiry %d disagrees with Expired %v", d, s.Expired(now))
			}
			if !s.SameName(s) {
				t.Fatal("a summary is not SameName as itself")
			}
		}
	})
}

func FuzzNormalizeFingerprint(f *testing.F) {
	for _, s := range []string{
		"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01",
		"sha256 Fingerprint=9A:6E:C0:12:E1:A7:DA:9D:BE:34:19:4D:47:8A:D7:C0:DB:18:22:FB:07:1D:F1:29:81:49:6E:D1:04:38:41:13",
		"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		"\u200e93057a8815c64fce882ffa9116522878bc536417",
		`"sha1: 93 05 7a"`,
		"MD5:00",
		"",
		"SHA-256:",
		"Fingerprint = zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := NormalizeFingerprint(s)
		if err != nil {
			checkInputError(t, err, map[string]bool{ReasonInvalidFingerprint: true})
			return
		}
		if len(fp.Sum) != fp.Algorithm.size() || fp.Algorithm.size() == 0 {
			t.Fatalf("%v with a %d-byte sum", fp.Algorithm, len(fp.Sum))
		}
		for _, form := range []string{fp.String(), strings.ToLower(strings.ReplaceAll(fp.String(), ":", "")),
			fp.Algorithm.String() + ": " + fp.String()} {
			again, err := NormalizeFingerprint(form)
			if err != nil || again.Algorithm != fp.Algorithm || !bytes.Equal(again.Sum, fp.Sum) {
				t.Fatalf("%q normalised to %v %s, but %q gives %v %s (%v)", s, fp.Algorithm, fp, form, again.Algorithm, again, err)
			}
		}
	})
}
