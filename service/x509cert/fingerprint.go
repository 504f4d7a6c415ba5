package x509cert

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Algorithm is a fingerprint's hash function. The zero value is no algorithm,
// so that a zero Fingerprint matches no certificate.
type Algorithm int

const (
	AlgorithmSHA1 Algorithm = iota + 1
	AlgorithmSHA256
)

// String returns the name operators know: "SHA-1" or "SHA-256".
func (a Algorithm) String() string {
	switch a {
	case AlgorithmSHA1:
		return "SHA-1"
	case AlgorithmSHA256:
		return "SHA-256"
	}
	return "Algorithm(" + strconv.Itoa(int(a)) + ")"
}

func (a Algorithm) size() int {
	switch a {
	case AlgorithmSHA1:
		return 20
	case AlgorithmSHA256:
		return 32
	}
	return 0
}

// Fingerprint is a certificate hash in canonical form.
type Fingerprint struct {
	Algorithm Algorithm
	Sum       []byte
}

// SHA256Fingerprint is the SHA-256 fingerprint of a certificate's DER, as
// FormatFingerprint prints it.
func SHA256Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return FormatFingerprint(sum[:])
}

// FormatFingerprint prints sum as `openssl x509 -fingerprint` does:
// upper-case hex pairs joined by ":".
func FormatFingerprint(sum []byte) string {
	if len(sum) == 0 {
		return ""
	}
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, 3*len(sum)-1)
	for i, v := range sum {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[v>>4], digits[v&0x0f])
	}
	return string(b)
}

// String returns FormatFingerprint(f.Sum).
func (f Fingerprint) String() string { return FormatFingerprint(f.Sum) }

// Matches reports whether f is this certificate's fingerprint under f's
// algorithm.
func (s Summary) Matches(f Fingerprint) bool {
	var want string
	switch f.Algorithm {
	case AlgorithmSHA1:
		want = s.SHA1
	case AlgorithmSHA256:
		want = s.SHA256
	default:
		return false
	}
	return len(f.Sum) == f.Algorithm.size() && want != "" && FormatFingerprint(f.Sum) == want
}

// maxFingerprintInput is far above any real fingerprint with prefix and
// separators; it keeps hostile input from costing more than a glance.
const maxFingerprintInput = 512

// fingerprintPrefixes are the algorithm names that tools print before a
// fingerprint; longer names come first so that "sha-256" is not read as
// "sha-2" followed by digits.
var fingerprintPrefixes = []struct {
	name string
	alg  Algorithm // 0: recognised but unsupported
}{
	{"sha2-256", AlgorithmSHA256},
	{"sha-256", AlgorithmSHA256},
	{"sha256", AlgorithmSHA256},
	{"sha-1", AlgorithmSHA1},
	{"sha1", AlgorithmSHA1},
	{"sha-384", 0},
	{"sha384", 0},
	{"sha-512", 0},
	{"sha512", 0},
	{"md5", 0},
}

func fingerprintError(msg string, kv ...string) *InputError {
	return inputError(ReasonInvalidFingerprint, msg, kv...)
}

// NormalizeFingerprint accepts a fingerprint as people copy it from openssl,
// keytool, browsers, Windows ("Thumbprint") or SAP's UIs: any case; ":", "-"
// or whitespace between digits, or nothing; an optional prefix such as
// "SHA256:", "SHA-256:", "sha1:" or "SHA256 Fingerprint="; surrounding
// whitespace and quotes. The algorithm comes from the prefix when there is one
// (and must agree with the length), else from the length: 40 hex digits are
// SHA-1, 64 are SHA-256. After a SHA-256 prefix, OpenSSH's unpadded base64 of
// the 32 bytes is accepted too. Errors are *InputError with
// ReasonInvalidFingerprint.
func NormalizeFingerprint(s string) (Fingerprint, error) {
	if len(s) > maxFingerprintInput {
		return Fingerprint{}, fingerprintError(
			fmt.Sprintf("the fingerprint is %d bytes long; a fingerprint has at most 64 hex digits "+
				"plus separators and a prefix (limit %d bytes)", len(s), maxFingerprintInput),
			"length_bytes", strconv.Itoa(len(s)), "limit_bytes", strconv.Itoa(maxFingerprintInput))
	}
	// off tracks where v starts in s, so positions in messages refer to what
	// the caller sent.
	off := 0
	v := s
	trimLeft := func(cut string) {
		t := strings.TrimLeftFunc(v, func(r rune) bool { return isSeparatorSpace(r) || strings.ContainsRune(cut, r) })
		off += len(v) - len(t)
		v = t
	}
	const quotes = "\"'`"
	trimLeft(quotes)
	v = strings.TrimRightFunc(v, func(r rune) bool { return isSeparatorSpace(r) || strings.ContainsRune(quotes, r) })
	if v == "" {
		return Fingerprint{}, fingerprintError("the fingerprint is empty")
	}

	var alg Algorithm
	labelled := false
	// followedByDelimiter keeps a name from swallowing the first digits of
	// the value (as "sha1" would in "sha1ab12...").
	followedByDelimiter := func(n int) bool {
		if len(v) <= n {
			return false
		}
		r, _ := utf8.DecodeRuneInString(v[n:])
		return r == ':' || r == '=' || isSeparatorSpace(r)
	}
	for _, p := range fingerprintPrefixes {
		if !hasPrefixFold(v, p.name) || !followedByDelimiter(len(p.name)) {
			continue
		}
		if p.alg == 0 {
			return Fingerprint{}, fingerprintError(fmt.Sprintf(
				"%s fingerprints are not accepted; give the SHA-256 fingerprint "+
					"(`openssl x509 -noout -fingerprint -sha256`) or the SHA-1 fingerprint",
				strings.ToUpper(p.name)))
		}
		alg, labelled = p.alg, true
		off += len(p.name)
		v = v[len(p.name):]
		trimLeft("")
		break
	}
	for _, word := range []string{"fingerprint", "thumbprint"} {
		if hasPrefixFold(v, word) && followedByDelimiter(len(word)) {
			labelled = true
			off += len(word)
			v = v[len(word):]
			trimLeft("")
			break
		}
	}
	if labelled {
		if v != "" && (v[0] == ':' || v[0] == '=') {
			off++
			v = v[1:]
		}
		trimLeft(quotes)
	}

	sum, herr := decodeHexFingerprint(s, off, v, alg)
	if herr == nil {
		if alg == 0 {
			alg = AlgorithmSHA1
			if len(sum) == 32 {
				alg = AlgorithmSHA256
			}
		}
		return Fingerprint{Algorithm: alg, Sum: sum}, nil
	}
	if alg == AlgorithmSHA256 {
		if b, ok := decodeOpenSSHBase64(v); ok {
			return Fingerprint{Algorithm: AlgorithmSHA256, Sum: b}, nil
		}
		if herr.Metadata["position"] != "" {
			herr.Message += "; nor is it an OpenSSH-style base64 SHA-256 fingerprint (43 characters)"
		}
	}
	return Fingerprint{}, herr
}

// hasPrefixFold compares ASCII case-insensitively without strings.ToLower,
// which may change byte lengths and so break the offsets kept for messages.
func hasPrefixFold(v, prefix string) bool {
	return len(v) >= len(prefix) && strings.EqualFold(v[:len(prefix)], prefix)
}

// isSeparatorSpace covers the invisible characters that Windows' certificate
// dialog and rich-text editors put into copied fingerprints (notably U+200E
// before a Thumbprint) as well as ordinary whitespace.
func isSeparatorSpace(r rune) bool {
	switch r {
	case '\u200b', '\u200c', '\u200d', '\u200e', '\u200f', '\u2060', '\ufeff':
		return true
	}
	return unicode.IsSpace(r)
}

func decodeHexFingerprint(s string, off int, v string, alg Algorithm) ([]byte, *InputError) {
	digits := make([]byte, 0, 64)
	for i, r := range v {
		switch {
		case r < utf8.RuneSelf && isHexDigit(byte(r)):
			digits = append(digits, byte(r))
		case r == ':' || r == '-' || isSeparatorSpace(r):
		default:
			pos := utf8.RuneCountInString(s[:off+i]) + 1
			return nil, fingerprintError(fmt.Sprintf(
				"character %s at position %d is not a hexadecimal digit "+
					"(nor a separator such as \":\", \"-\" or a space)", quoteRune(r), pos),
				"position", strconv.Itoa(pos))
		}
	}
	n := len(digits)
	hexDigits := strconv.Itoa(n)
	switch {
	case n == 0:
		return nil, fingerprintError("the fingerprint has no hexadecimal digits; "+
			"expected 40 (SHA-1) or 64 (SHA-256)", "hex_digits", hexDigits)
	case alg == AlgorithmSHA1 && n == 64:
		return nil, fingerprintError("the prefix says SHA-1, but 64 hex digits were found, "+
			"the length of a SHA-256 fingerprint; a SHA-1 fingerprint has 40", "hex_digits", hexDigits)
	case alg == AlgorithmSHA256 && n == 40:
		return nil, fingerprintError("the prefix says SHA-256, but 40 hex digits were found, "+
			"the length of a SHA-1 fingerprint; a SHA-256 fingerprint has 64", "hex_digits", hexDigits)
	case alg != 0 && n != 2*alg.size():
		return nil, fingerprintError(fmt.Sprintf("found %d hex digits; a %s fingerprint has %d",
			n, alg, 2*alg.size()), "hex_digits", hexDigits)
	case n == 32:
		return nil, fingerprintError("found 32 hex digits, the length of an MD5 fingerprint; "+
			"expected 40 (SHA-1) or 64 (SHA-256)", "hex_digits", hexDigits)
	case n != 40 && n != 64:
		return nil, fingerprintError(fmt.Sprintf("found %d hex digits; expected 40 (SHA-1) or 64 (SHA-256)", n),
			"hex_digits", hexDigits)
	}
	sum := make([]byte, n/2)
	if _, err := hex.Decode(sum, digits); err != nil {
		return nil, fingerprintError("the fingerprint is not valid hexadecimal")
	}
	return sum, nil
}

func decodeOpenSSHBase64(v string) ([]byte, bool) {
	v = strings.TrimRightFunc(v, isSeparatorSpace)
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.Strict().DecodeString(v); err == nil && len(b) == 32 {
			return b, true
		}
	}
	return nil, false
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// quoteRune shows one offending character so that people can find it, but
// escapes anything invisible or non-ASCII.
func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return "(an invalid UTF-8 byte)"
	}
	return strconv.QuoteRuneToASCII(r)
}
