// Package x509cert parses X.509 certificates from PEM or DER and computes the
// summaries and fingerprints operators compare.
package x509cert

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	defaultMaxBytes        = 1 << 20
	defaultMaxCertificates = 500
)

// Limits bound what Parse accepts. A zero or negative field means the default
// (1 MiB, 500 certificates), so that a zero Limits never means "unbounded".
type Limits struct {
	MaxBytes        int
	MaxCertificates int
}

// DefaultLimits suits one request carrying a certificate or a CA bundle.
var DefaultLimits = Limits{MaxBytes: defaultMaxBytes, MaxCertificates: defaultMaxCertificates}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = defaultMaxBytes
	}
	if l.MaxCertificates <= 0 {
		l.MaxCertificates = defaultMaxCertificates
	}
	return l
}

var (
	pemBegin = []byte("-----BEGIN")
	pemEnd   = []byte("-----END")
	pemDash  = []byte("-----")
)

const certificateLabel = "CERTIFICATE"

// Parse returns the certificates in input order. The input is either PEM (one
// or more CERTIFICATE blocks, with any text around them, as in CA bundles and
// openssl output) or a single DER certificate. Errors are *InputError. Blocks
// are numbered from 1 in the order of their BEGIN lines, whatever their type.
//
// A private key anywhere in the input is refused before any PEM block is
// decoded, so that a key sent by mistake is never base64-decoded; DER keys are
// recognised by their ASN.1 envelope alone. Neither is ever quoted back.
func Parse(data []byte, limits Limits) ([]*x509.Certificate, error) {
	limits = limits.withDefaults()
	if len(data) > limits.MaxBytes {
		return nil, inputError(ReasonInputTooLarge,
			fmt.Sprintf("the input is %d bytes, more than the limit of %d bytes", len(data), limits.MaxBytes),
			"size_bytes", strconv.Itoa(len(data)), "limit_bytes", strconv.Itoa(limits.MaxBytes))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, inputError(ReasonEmptyInput,
			"the input is empty; send one or more PEM certificates or one DER certificate")
	}
	hasPEM := bytes.Contains(data, pemBegin)
	if data[0] == 0x30 {
		// A DER certificate may contain "-----BEGIN" in one of its strings, so
		// DER is tried first whenever the input could be DER.
		der := bytes.Clone(data) // certificates must not alias the caller's buffer
		c, err := x509.ParseCertificate(der)
		if err == nil {
			return []*x509.Certificate{c}, nil
		}
		if !hasPEM {
			ie := classifyDER(der, err, 0)
			if ie.Reason == ReasonMalformedCertificate && isText(data) {
				// Text that merely starts with "0" was never meant as DER.
				return nil, unrecognized(data)
			}
			return nil, ie
		}
	}
	if hasPEM {
		return parsePEM(data, limits)
	}
	return nil, unrecognized(data)
}

// pemBlock is one BEGIN line and what follows it, before any decoding.
type pemBlock struct {
	n       int    // 1-based, in the order of BEGIN lines
	label   string // empty when the BEGIN line is incomplete
	body    []byte // between the BEGIN and END lines
	problem string // why the block's framing is broken; empty when it is not
	key     bool
}

// scanPEM frames every block without decoding any. It stays linear in the
// input even for inputs full of unterminated BEGIN lines, because every search
// stops at the next BEGIN (FuzzParse and TestParseIsLinear hold it to that).
func scanPEM(data []byte) []pemBlock {
	var blocks []pemBlock
	rest := data
	for {
		i := bytes.Index(rest, pemBegin)
		if i < 0 {
			return blocks
		}
		rest = rest[i+len(pemBegin):]
		b := pemBlock{n: len(blocks) + 1}
		// Cut at the next BEGIN before looking for the end of the line, so
		// that a long run of BEGINs without newlines stays linear.
		region := rest
		if k := bytes.Index(region, pemBegin); k >= 0 {
			region = region[:k]
		}
		line := region
		if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
			line = line[:j]
		}
		d := bytes.Index(line, pemDash)
		if len(line) == 0 || line[0] != ' ' || d <= 1 {
			b.problem = "its BEGIN line is incomplete"
			b.key = strings.Contains(strings.ToUpper(string(line)), "PRIVATE KEY")
			blocks = append(blocks, b)
			continue
		}
		b.label = string(line[1:d])
		b.key = strings.Contains(strings.ToUpper(b.label), "PRIVATE KEY")
		rest = rest[d+len(pemDash):]
		region = region[d+len(pemDash):]
		e := bytes.Index(region, pemEnd)
		if e < 0 {
			b.problem = "it has a BEGIN line but no END line; the input may have been cut short"
			blocks = append(blocks, b)
			continue
		}
		b.body = rest[:e]
		rest = rest[e+len(pemEnd):]
		trailer := " " + b.label + "-----"
		if !bytes.HasPrefix(rest, []byte(trailer)) {
			b.problem = "its END line does not match its BEGIN line"
		} else {
			rest = rest[len(trailer):]
		}
		blocks = append(blocks, b)
	}
}

func parsePEM(data []byte, limits Limits) ([]*x509.Certificate, error) {
	blocks := scanPEM(data)
	certs := 0
	for _, b := range blocks {
		if b.key {
			return nil, inputError(ReasonPrivateKeyRefused,
				fmt.Sprintf("the input contains a private key (PEM block %d); it was not read or stored, "+
					"and none of it is repeated here. Send only the certificate (a BEGIN CERTIFICATE block); "+
					"if the key was sent over a channel you do not trust, consider it exposed", b.n),
				"block", strconv.Itoa(b.n))
		}
		if b.label == certificateLabel {
			certs++
		}
	}
	if certs > limits.MaxCertificates {
		return nil, tooMany(certs, limits.MaxCertificates)
	}
	out := make([]*x509.Certificate, 0, certs)
	for _, b := range blocks {
		block := strconv.Itoa(b.n)
		if b.problem != "" {
			return nil, inputError(ReasonTruncatedPEM,
				fmt.Sprintf("PEM block %d is damaged: %s", b.n, b.problem), "block", block)
		}
		if b.label != certificateLabel {
			return nil, notACertificatePEM(b)
		}
		der, ok := decodePEMBody(b.body)
		if !ok {
			return nil, inputError(ReasonTruncatedPEM,
				fmt.Sprintf("PEM block %d is damaged: its base64 content does not decode "+
					"(cut short, edited, or mixed with other text)", b.n), "block", block)
		}
		if len(der) == 0 {
			return nil, inputError(ReasonMalformedCertificate,
				fmt.Sprintf("PEM block %d is empty", b.n), "block", block)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, classifyDER(der, err, b.n)
		}
		out = append(out, c)
	}
	return out, nil
}

// decodePEMBody is more forgiving than encoding/pem about layout, because
// certificates reach operators pasted into YAML (indented), JSON (with literal
// "\n" escapes) and e-mails (CRLF), none of which changes the base64 itself.
func decodePEMBody(body []byte) ([]byte, bool) {
	body = skipPEMHeaders(body)
	clean := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch c {
		case ' ', '\t', '\r', '\n', '\v', '\f':
			continue
		case '\\':
			if i+1 < len(body) && (body[i+1] == 'n' || body[i+1] == 'r' || body[i+1] == 't') {
				i++
				continue
			}
		}
		clean = append(clean, c)
	}
	der := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(der, clean)
	if err != nil {
		return nil, false
	}
	return der[:n], true
}

// skipPEMHeaders drops RFC 1421 headers ("Name: value" lines before the
// base64); a colon never occurs in base64, so the test is unambiguous.
func skipPEMHeaders(body []byte) []byte {
	if !bytes.Contains(body, []byte(":")) {
		return body
	}
	rest := body
	for {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		t := bytes.TrimSpace(line)
		if len(t) != 0 && !bytes.Contains(t, []byte(":")) {
			return rest
		}
		if !found {
			return after
		}
		rest = after
	}
}

func tooMany(n, limit int) *InputError {
	return inputError(ReasonTooManyCertificates,
		fmt.Sprintf("the input holds %d certificates, more than the limit of %d per request", n, limit),
		"certificates", strconv.Itoa(n), "limit_certificates", strconv.Itoa(limit))
}

// pemLabels describes the block types people send by mistake. Labels are only
// ever quoted from this table, so a message never repeats arbitrary input.
var pemLabels = map[string]string{
	"TRUSTED CERTIFICATE": "an OpenSSL trusted certificate (a certificate with trust settings); " +
		"convert it with `openssl x509 -in FILE -out cert.pem`, which writes a plain CERTIFICATE block",
	"X509 CERTIFICATE": "a certificate under the obsolete label \"X509 CERTIFICATE\"; " +
		"relabel it as BEGIN/END CERTIFICATE or convert it with `openssl x509 -in FILE -out cert.pem`",
	"CERTIFICATE REQUEST":     "a certificate signing request (CSR); send the certificate the CA issued for it",
	"NEW CERTIFICATE REQUEST": "a certificate signing request (CSR); send the certificate the CA issued for it",
	"PUBLIC KEY":              "a public key; send the certificate that contains it",
	"RSA PUBLIC KEY":          "a public key; send the certificate that contains it",
	"X509 CRL":                "a certificate revocation list",
	"PKCS7": "a PKCS #7 bundle; extract its certificates with " +
		"`openssl pkcs7 -in FILE -print_certs`",
	"CMS":           "a CMS (PKCS #7) structure; extract its certificates with `openssl pkcs7 -in FILE -print_certs`",
	"DH PARAMETERS": "Diffie-Hellman parameters",
	"EC PARAMETERS": "EC curve parameters",
}

func notACertificatePEM(b pemBlock) *InputError {
	block := strconv.Itoa(b.n)
	if d, ok := pemLabels[b.label]; ok {
		return inputError(ReasonNotACertificate,
			fmt.Sprintf("PEM block %d is %s, not a certificate", b.n, d),
			"block", block, "pem_type", b.label)
	}
	return inputError(ReasonNotACertificate,
		fmt.Sprintf("PEM block %d is not a certificate: only BEGIN CERTIFICATE blocks are accepted", b.n),
		"block", block)
}

func unrecognized(data []byte) *InputError {
	msg := "the input is neither PEM (it has no \"-----BEGIN\" line) nor DER (which starts with the byte 0x30)"
	switch {
	case bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}):
		msg += "; it looks like UTF-16 text (as Windows PowerShell writes it): save it as ASCII or UTF-8"
	case looksLikeBareBase64DER(data):
		msg += "; it looks like base64 without the BEGIN/END lines: put it between " +
			"\"-----BEGIN CERTIFICATE-----\" and \"-----END CERTIFICATE-----\" lines"
	}
	return inputError(ReasonUnrecognizedInput, msg)
}

// isText reports whether data reads as text; DER never does, because its tags
// and lengths are control bytes.
func isText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c == 0x7f {
			return false
		}
	}
	return true
}

func looksLikeBareBase64DER(data []byte) bool {
	der, ok := decodePEMBody(data)
	return ok && len(der) > 0 && der[0] == 0x30
}
