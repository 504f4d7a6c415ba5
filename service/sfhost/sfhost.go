// Package sfhost knows SuccessFactors host names: the known SF domains and the
// `cert.` mTLS host rule.
package sfhost

import (
	"net"
	"strconv"
	"strings"
)

// KnownDomains are the domains SF serves its API hosts from (DOMAIN.md). A
// host outside them is not SF as far as this package can tell, so no rule
// about `cert.` hosts applies to it (the sandbox on 127.0.0.1, for example).
var KnownDomains = []string{
	"successfactors.com",
	"successfactors.eu",
	"sapsf.com",
	"sapsf.eu",
	"sapsf.cn",
	"sapcloud.cn",
	"hr.cloud.sap",
}

// Kind is what a host is, as far as SF's mTLS rule is concerned.
type Kind int

const (
	// KindUnknownDomain is a host outside KnownDomains (or not a host name at
	// all); nothing can be said about its mTLS support.
	KindUnknownDomain Kind = iota
	// KindCertHost is an SF mTLS certificate host: one label, then "cert",
	// then a known domain (api15preview.cert.sapsf.cn).
	KindCertHost
	// KindPlainHost is an SF host that is not a cert host
	// (api4.successfactors.com); client certificates do not authenticate there.
	KindPlainHost
)

// String names the kind for logs and test failures.
func (k Kind) String() string {
	switch k {
	case KindUnknownDomain:
		return "UnknownDomain"
	case KindCertHost:
		return "CertHost"
	case KindPlainHost:
		return "PlainHost"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Classify says whether host is an SF cert host, a plain SF host, or not SF.
// It accepts what configurations and logs contain: any case, an optional port,
// and a trailing dot.
func Classify(host string) Kind {
	prefix, _, ok := split(host)
	if !ok {
		return KindUnknownDomain
	}
	labels := strings.Split(prefix, ".")
	if len(labels) == 2 && labels[1] == "cert" {
		return KindCertHost
	}
	return KindPlainHost
}

// CertHostFor suggests the mTLS host for a plain SF host by putting "cert"
// after the first label, lower-case and without a port:
// "api4.successfactors.com" -> "api4.cert.successfactors.com". It returns ""
// when there is nothing sensible to suggest: the host is not on a known
// domain, already is a cert host, or has a shape ("successfactors.com",
// "a.b.sapsf.com") where inserting "cert" would not yield a cert host.
func CertHostFor(host string) string {
	prefix, domain, ok := split(host)
	if !ok || prefix == "" || strings.Contains(prefix, ".") || prefix == "cert" {
		return ""
	}
	return prefix + ".cert." + domain
}

// split normalises host and cuts it into the labels before a known domain and
// that domain. ok is false when host is not a well-formed name on a known
// domain. prefix is "" when host is the bare domain.
func split(host string) (prefix, domain string, ok bool) {
	h := normalize(host)
	if h == "" || !validName(h) {
		return "", "", false
	}
	for _, d := range KnownDomains {
		if h == d {
			return "", d, true
		}
		if strings.HasSuffix(h, "."+d) {
			return strings.TrimSuffix(h, "."+d), d, true
		}
	}
	return "", "", false
}

func normalize(host string) string {
	h := strings.TrimSpace(host)
	if hp, _, err := net.SplitHostPort(h); err == nil {
		h = hp
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// validName rejects what cannot be a DNS name (empty labels, spaces, IPv6
// literals), so that "x..sapsf.com" or garbage from a log is not mistaken for
// an SF host.
func validName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
