package x509cert

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestFormatFingerprint(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{nil, ""},
		{[]byte{0x00}, "00"},
		{[]byte{0xab, 0x0c, 0xff}, "AB:0C:FF"},
	}
	for _, tt := range tests {
		if got := FormatFingerprint(tt.in); got != tt.want {
			t.Errorf("FormatFingerprint(% x) = %q, want %q", tt.in, got, tt.want)
		}
	}
	sum := sha256.Sum256([]byte("x"))
	if got, want := (Fingerprint{Algorithm: AlgorithmSHA256, Sum: sum[:]}).String(), hexColons(sum[:]); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	s256 := sha256.Sum256([]byte("certificate"))
	s1 := sha1.Sum([]byte("certificate"))
	h256, h1 := hex.EncodeToString(s256[:]), hex.EncodeToString(s1[:])
	c256, c1 := hexColons(s256[:]), hexColons(s1[:])
	openssh := base64.RawStdEncoding.EncodeToString(s256[:])

	tests := []struct {
		name string
		in   string
		alg  Algorithm
	}{
		{"canonical SHA-256", c256, AlgorithmSHA256},
		{"canonical SHA-1", c1, AlgorithmSHA1},
		{"lower case", strings.ToLower(c256), AlgorithmSHA256},
		{"no separators", h256, AlgorithmSHA256},
		{"no separators, upper", strings.ToUpper(h1), AlgorithmSHA1},
		{"spaces", strings.ReplaceAll(c256, ":", " "), AlgorithmSHA256},
		{"dashes", strings.ReplaceAll(c1, ":", "-"), AlgorithmSHA1},
		{"mixed separators and case", strings.ToLower(c256[:30]) + " " + strings.ReplaceAll(c256[30:], ":", "-"), AlgorithmSHA256},
		{"groups of four", h256[:4] + " " + h256[4:8] + " " + h256[8:], AlgorithmSHA256},
		{"surrounding whitespace", "\t " + c256 + " \n", AlgorithmSHA256},
		{"double quotes", `"` + c256 + `"`, AlgorithmSHA256},
		{"single quotes and spaces", ` '` + h1 + `' `, AlgorithmSHA1},
		{"SHA256: prefix", "SHA256:" + c256, AlgorithmSHA256},
		{"sha256: prefix", "sha256:" + h256, AlgorithmSHA256},
		{"SHA-256: prefix with space", "SHA-256: " + c256, AlgorithmSHA256},
		{"SHA2-256 prefix", "SHA2-256 " + c256, AlgorithmSHA256},
		{"openssl 3 SHA-256", "sha256 Fingerprint=" + c256, AlgorithmSHA256},
		{"openssl 3 SHA-1", "SHA1 Fingerprint=" + c1, AlgorithmSHA1},
		{"openssl 1.1 SHA-256", "SHA256 Fingerprint=" + c256, AlgorithmSHA256},
		{"sha1: prefix", "sha1:" + c1, AlgorithmSHA1},
		{"SHA-1 prefix with equals", "SHA-1=" + h1, AlgorithmSHA1},
		{"keytool", "\t SHA256: " + c256, AlgorithmSHA256},
		{"Fingerprint label only", "Fingerprint: " + c256, AlgorithmSHA256},
		{"Windows thumbprint with marks", "\u200e" + h1[:20] + "\u200e" + h1[20:], AlgorithmSHA1},
		{"Windows thumbprint label", "Thumbprint: " + h1, AlgorithmSHA1},
		{"quoted with prefix", `"SHA256:` + h256 + `"`, AlgorithmSHA256},
		{"non-breaking spaces", strings.ReplaceAll(c1, ":", "\u00a0"), AlgorithmSHA1},
		{"OpenSSH base64", "SHA256:" + openssh, AlgorithmSHA256},
		{"OpenSSH base64, padded", "SHA256:" + base64.StdEncoding.EncodeToString(s256[:]), AlgorithmSHA256},
		{"OpenSSH base64, trailing space", "SHA256:" + openssh + " ", AlgorithmSHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NormalizeFingerprint(tt.in)
			if err != nil {
				t.Fatalf("NormalizeFingerprint(%q): %v", tt.in, err)
			}
			want := s256[:]
			if tt.alg == AlgorithmSHA1 {
				want = s1[:]
			}
			if f.Algorithm != tt.alg || !bytes.Equal(f.Sum, want) {
				t.Fatalf("got %v %s, want %v %s", f.Algorithm, f, tt.alg, hexColons(want))
			}
		})
	}
}

func TestNormalizeFingerprintErrors(t *testing.T) {
	s256 := sha256.Sum256([]byte("certificate"))
	s1 := sha1.Sum([]byte("certificate"))
	c256, c1 := hexColons(s256[:]), hexColons(s1[:])

	tests := []struct {
		name    string
		in      string
		message string
		meta    map[string]string
	}{
		{"empty", "", "the fingerprint is empty", nil},
		{"only quotes and spaces", ` "" `, "the fingerprint is empty", nil},
		{"prefix only", "SHA256:", "the fingerprint has no hexadecimal digits; expected 40 (SHA-1) or 64 (SHA-256)",
			map[string]string{"hex_digits": "0"}},
		{"one digit short", c256[:len(c256)-1], "found 63 hex digits; expected 40 (SHA-1) or 64 (SHA-256)",
			map[string]string{"hex_digits": "63"}},
		{"one pair too many", c1 + ":AB", "found 42 hex digits; expected 40 (SHA-1) or 64 (SHA-256)", nil},
		{"MD5 length", c256[:47], "found 32 hex digits, the length of an MD5 fingerprint; expected 40 (SHA-1) or 64 (SHA-256)", nil},
		{"SHA-1 prefix, SHA-256 length", "sha1:" + c256,
			"the prefix says SHA-1, but 64 hex digits were found, the length of a SHA-256 fingerprint; a SHA-1 fingerprint has 40", nil},
		{"SHA-256 prefix, SHA-1 length", "SHA256 Fingerprint=" + c1,
			"the prefix says SHA-256, but 40 hex digits were found, the length of a SHA-1 fingerprint; a SHA-256 fingerprint has 64", nil},
		{"SHA-256 prefix, odd length", "SHA-256:" + c256[:10], "found 7 hex digits; a SHA-256 fingerprint has 64", nil},
		{"non-hex character", "AB:CD:G1" + c1[8:], "character 'G' at position 7 is not a hexadecimal digit " +
			"(nor a separator such as \":\", \"-\" or a space)", map[string]string{"position": "7"}},
		{"position counts the prefix and quotes", `"sha1: ` + c1[:3] + "x" + c1[4:] + `"`,
			"character 'x' at position 11 is not a hexadecimal digit (nor a separator such as \":\", \"-\" or a space)", nil},
		{"non-ASCII character", c1[:6] + "é" + c1[7:], "character '\\u00e9' at position 7 is not a hexadecimal digit " +
			"(nor a separator such as \":\", \"-\" or a space)", nil},
		{"invalid UTF-8", "AB\xffCD", "character (an invalid UTF-8 byte) at position 3 is not a hexadecimal digit " +
			"(nor a separator such as \":\", \"-\" or a space)", nil},
		{"name without delimiter", "sha256" + c256, "character 's' at position 1 is not a hexadecimal digit " +
			"(nor a separator such as \":\", \"-\" or a space)", nil},
		{"SHA256: with neither hex nor OpenSSH base64", "SHA256:not a fingerprint",
			"character 'n' at position 8 is not a hexadecimal digit (nor a separator such as \":\", \"-\" or a space); " +
				"nor is it an OpenSSH-style base64 SHA-256 fingerprint (43 characters)", nil},
		{"OpenSSH base64 of the wrong length", "SHA256:" + base64.RawStdEncoding.EncodeToString(s1[:]) + "x",
			"", nil},
		{"OpenSSH form needs the SHA256 prefix", "SHA1:" + base64.RawStdEncoding.EncodeToString(s256[:]), "", nil},
		{"MD5 prefix", "MD5:" + c256[:47], "MD5 fingerprints are not accepted; give the SHA-256 fingerprint " +
			"(`openssl x509 -noout -fingerprint -sha256`) or the SHA-1 fingerprint", nil},
		{"SHA-512 prefix", "SHA512: ab", "SHA512 fingerprints are not accepted; give the SHA-256 fingerprint " +
			"(`openssl x509 -noout -fingerprint -sha256`) or the SHA-1 fingerprint", nil},
		{"too long", strings.Repeat("A", 600), "the fingerprint is 600 bytes long; a fingerprint has at most 64 hex " +
			"digits plus separators and a prefix (limit 512 bytes)", map[string]string{"length_bytes": "600", "limit_bytes": "512"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NormalizeFingerprint(tt.in)
			if err == nil {
				t.Fatalf("NormalizeFingerprint(%q) = %v %s, want an error", tt.in, f.Algorithm, f)
			}
			ie := assertReason(t, err, ReasonInvalidFingerprint)
			if tt.message != "" && ie.Message != tt.message {
				t.Errorf("message\n got %q\nwant %q", ie.Message, tt.message)
			}
			for k, v := range tt.meta {
				if ie.Metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, ie.Metadata[k], v)
				}
			}
		})
	}
}

func TestMatches(t *testing.T) {
	s := Summarize(newCert(t, certOpts{}))
	other := Summarize(newCert(t, certOpts{serial: bigInt(99)}))
	fp := func(in string) Fingerprint {
		f, err := NormalizeFingerprint(in)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name string
		f    Fingerprint
		want bool
	}{
		{"SHA-256", fp(s.SHA256), true},
		{"SHA-1", fp(s.SHA1), true},
		{"SHA-256, lower case without colons", fp(strings.ToLower(strings.ReplaceAll(s.SHA256, ":", ""))), true},
		{"another certificate's SHA-256", fp(other.SHA256), false},
		{"another certificate's SHA-1", fp(other.SHA1), false},
		{"SPKI fingerprint is not the certificate's", fp(s.SPKISHA256), false},
		{"zero Fingerprint", Fingerprint{}, false},
		{"SHA-1 sum labelled SHA-256", Fingerprint{Algorithm: AlgorithmSHA256, Sum: fp(s.SHA1).Sum}, false},
		{"unknown algorithm", Fingerprint{Algorithm: 7, Sum: fp(s.SHA256).Sum}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Matches(tt.f); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	if (Summary{}).Matches(Fingerprint{Algorithm: AlgorithmSHA256}) {
		t.Error("an empty summary matched an empty fingerprint")
	}
}

func TestAlgorithmString(t *testing.T) {
	for a, want := range map[Algorithm]string{AlgorithmSHA1: "SHA-1", AlgorithmSHA256: "SHA-256", 0: "Algorithm(0)"} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(a), got, want)
		}
	}
}
