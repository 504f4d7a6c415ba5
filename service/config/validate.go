package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/certsync/certsync/service/auth"
	"github.com/certsync/certsync/service/sfhost"
	"github.com/certsync/certsync/service/x509cert"
)

// Severity says whether a problem stops start-up.
type Severity int

const (
	// Error stops start-up.
	Error Severity = iota
	// Warning is printed and logged; the service starts.
	Warning
)

// Problem is one finding of Validate.
type Problem struct {
	Severity Severity
	Field    string
	Message  string
}

func (p Problem) String() string {
	label := "error"
	if p.Severity == Warning {
		label = "warning"
	}
	return fmt.Sprintf("%s: %s: %s", label, p.Field, p.Message)
}

// Problems is the result of Validate.
type Problems []Problem

// Errors returns only the problems that stop start-up.
func (ps Problems) Errors() Problems { return ps.filter(Error) }

// Warnings returns only the warnings.
func (ps Problems) Warnings() Problems { return ps.filter(Warning) }

func (ps Problems) filter(s Severity) Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// ForField returns the problems whose field starts with prefix.
func (ps Problems) ForField(prefix string) Problems {
	var out Problems
	for _, p := range ps {
		if strings.HasPrefix(p.Field, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// idPattern is the shape of a connection id: it becomes part of resource
// names, health service names and metric labels, so it stays DNS-label-like.
var idPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidID reports whether id may name a connection.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ResolvePaths makes relative file paths relative to dir (the directory of
// the configuration file), so that a configuration means the same wherever
// the process was started.
func (c *Config) ResolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, p := range []*string{&c.Server.TLSCert, &c.Server.TLSKey, &c.Server.ClientCA, &c.Server.TokensFile} {
		abs(p)
	}
	for i := range c.Connections {
		cn := &c.Connections[i]
		for _, p := range []*string{&cn.IPS.ClientSecretFile, &cn.IPS.PKCS12File, &cn.IPS.PKCS12PasswordFile, &cn.IPS.CAFile, &cn.SF.CAFile, &cn.Source.File, &cn.Source.CAFile, &cn.Registry.TokenFile, &cn.Registry.CAFile, &cn.Probe.CertFile, &cn.Probe.KeyFile} {
			abs(p)
		}
	}
}

// Validate checks the whole configuration and returns every problem found.
// It reads the files the configuration names, so that a missing or wrong
// file is reported before anything listens.
func (c *Config) Validate() Problems {
	var ps Problems
	add := func(sev Severity, field, format string, args ...any) {
		ps = append(ps, Problem{Severity: sev, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	s := c.Server
	if _, _, err := net.SplitHostPort(s.GRPCAddr); err != nil {
		add(Error, "server.grpc_addr", "%q is not HOST:PORT", s.GRPCAddr)
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(Error, "server.log_level", "%q is not one of debug, info, warn, error", s.LogLevel)
	}
	switch s.LogFormat {
	case "text", "json":
	default:
		add(Error, "server.log_format", "%q is not one of text, json", s.LogFormat)
	}
	if s.MaxMessageBytes < 64<<10 || s.MaxMessageBytes > 64<<20 {
		add(Error, "server.max_message_bytes", "%d is outside 65536..67108864", s.MaxMessageBytes)
	}
	if s.ShutdownGrace <= 0 {
		add(Error, "server.shutdown_grace", "must be positive")
	}
	if s.ProbeTimeout <= 0 {
		add(Error, "server.probe_timeout", "must be positive")
	}
	if s.ManualStepTimeout <= 0 {
		add(Error, "server.manual_step_timeout", "must be positive")
	}
	if s.SettleWindow <= 0 {
		add(Error, "server.settle_window", "must be positive")
	}
	if time.Duration(s.LockTTL) < time.Second {
		add(Error, "server.lock_ttl", "must be at least 1s")
	}
	if s.RefreshInterval != nil && *s.RefreshInterval < 0 {
		add(Error, "server.refresh_interval", "must be 0 (off) or positive")
	}
	if s.AuditRetention < 0 || (s.AuditRetention > 0 && time.Duration(s.AuditRetention) < time.Hour) {
		add(Error, "server.audit_retention", "must be 0 (keep every event) or at least 1h")
	}
	if s.GateProbeInterval <= 0 {
		add(Error, "server.gate_probe_interval", "must be positive")
	}
	if s.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(s.MetricsAddr); err != nil {
			add(Error, "server.metrics_addr", "%q is not HOST:PORT", s.MetricsAddr)
		}
	}
	switch st := s.Store; {
	case st == "", st == "sqlite", strings.HasPrefix(st, "sqlite:"), strings.HasPrefix(st, "postgres://"), strings.HasPrefix(st, "postgresql://"):
	default:
		add(Error, "server.store", "must be sqlite:PATH or postgres://...; got a value starting %q", st[:min(len(st), 12)])
	}

	ps = append(ps, c.validateSecurity()...)

	seen := map[string]int{}
	for i := range c.Connections {
		cn := &c.Connections[i]
		field := fmt.Sprintf("connections[%d]", i)
		switch {
		case cn.ID == "":
			add(Error, field+".id", "required")
		case !ValidID(cn.ID):
			add(Error, field+".id", "%q must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", cn.ID)
		default:
			if j, dup := seen[cn.ID]; dup {
				add(Error, field+".id", "%q is already used by connections[%d]", cn.ID, j)
			}
			seen[cn.ID] = i
			field = fmt.Sprintf("connections[%s]", cn.ID)
		}
		ps = append(ps, validateConnection(cn, field)...)
	}
	return ps
}

func validateConnection(cn *Connection, field string) Problems {
	var ps Problems
	add := func(sev Severity, f, format string, args ...any) {
		ps = append(ps, Problem{Severity: sev, Field: field + "." + f, Message: fmt.Sprintf(format, args...)})
	}

	validateSFURL(cn.SF.URL, func(sev Severity, format string, args ...any) { add(sev, "sf.url", format, args...) })

	switch id := cn.SF.CompanyID; {
	case id == "":
		add(Error, "sf.company_id", "required: SF needs it in the successfactors-companyid header for certificate authentication (KBA 3737619)")
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		add(Error, "sf.company_id", "must not contain spaces or control characters")
	case len(id) > 100:
		add(Error, "sf.company_id", "longer than 100 characters")
	}
	checkCAFile(cn.SF.CAFile, func(format string, args ...any) { add(Error, "sf.ca_file", format, args...) })

	switch cn.Source.Type {
	case "file":
		if cn.Source.File == "" {
			add(Error, "source.file", "required when source.type is file")
		} else if err := checkCertificateFile(cn.Source.File); err != nil {
			add(Error, "source.file", "%v", err)
		}
	case "sandbox":
		checkHTTPSURL(cn.Source.URL, func(format string, args ...any) { add(Error, "source.url", format, args...) })
	case "imported":
		// The certificate comes from the store: nothing to check here.
	case "":
		add(Error, "source.type", "required: file, sandbox or imported")
	default:
		add(Error, "source.type", "%q is not one of file, sandbox, imported", cn.Source.Type)
	}
	checkCAFile(cn.Source.CAFile, func(format string, args ...any) { add(Error, "source.ca_file", format, args...) })

	switch cn.Registry.Driver {
	case "http":
		checkHTTPSURL(cn.Registry.URL, func(format string, args ...any) { add(Error, "registry.url", format, args...) })
		if cn.Registry.TokenFile != "" {
			if err := checkReadable(cn.Registry.TokenFile); err != nil {
				add(Error, "registry.token_file", "%v", err)
			}
		}
	case "manual":
	case "":
		add(Error, "registry.driver", "required: http or manual")
	default:
		add(Error, "registry.driver", "%q is not one of http, manual", cn.Registry.Driver)
	}
	checkCAFile(cn.Registry.CAFile, func(format string, args ...any) { add(Error, "registry.ca_file", format, args...) })
	if cn.Registry.Driver == "manual" && cn.AutoRemediation.Enabled {
		// Every change of a manual registry is a person's: an automatic
		// re-registration would only open a request nobody asked for.
		add(Error, "auto_remediation.enabled", "a manual registry needs a person for every change in SF, so certsync cannot remediate on its own: turn auto_remediation off, or use the http driver")
	}
	if cn.Registry.IntegrationName != DefaultIntegrationName {
		add(Warning, "registry.integration_name", "%q is not %q; SF answers 403 to IPS unless the mapping's integration name is %q (KBA 3417151)", cn.Registry.IntegrationName, DefaultIntegrationName, DefaultIntegrationName)
	}

	switch cn.Probe.Identity {
	case "ips", "separate":
	default:
		add(Error, "probe.identity", "%q is not one of ips, separate", cn.Probe.Identity)
	}
	switch {
	case cn.Probe.CertFile == "" && cn.Probe.KeyFile == "":
		add(Error, "probe.cert_file", "required: the probe needs a client certificate and key to authenticate to SF")
	case cn.Probe.CertFile == "":
		add(Error, "probe.cert_file", "required when probe.key_file is set")
	case cn.Probe.KeyFile == "":
		add(Error, "probe.key_file", "required when probe.cert_file is set")
	default:
		if err := checkReadable(cn.Probe.CertFile); err != nil {
			add(Error, "probe.cert_file", "%v", err)
		} else if err := checkReadable(cn.Probe.KeyFile); err != nil {
			add(Error, "probe.key_file", "%v", err)
		} else if _, err := tls.LoadX509KeyPair(cn.Probe.CertFile, cn.Probe.KeyFile); err != nil {
			// tls's messages name the mismatch without echoing key material.
			add(Error, "probe.key_file", "does not go with probe.cert_file: %v", err)
		}
	}
	if i := cn.IPS; i.BaseURL != "" {
		checkHTTPSURL(i.BaseURL, func(format string, args ...any) { add(Error, "ips.base_url", format, args...) })
		if i.SourceSystemID == "" {
			add(Error, "ips.source_system_id", "required with ips.base_url: the IPS source system to start jobs for")
		}
		switch i.Auth {
		case "oauth2", "basic":
			if i.ClientID == "" {
				add(Error, "ips.client_id", "required for ips.auth %s", i.Auth)
			}
			if err := checkReadable(i.ClientSecretFile); err != nil {
				add(Error, "ips.client_secret_file", "%v", err)
			}
		case "certificate":
			if err := checkReadable(i.PKCS12File); err != nil {
				add(Error, "ips.pkcs12_file", "%v", err)
			}
		default:
			add(Error, "ips.auth", "%q is not one of oauth2, certificate, basic", i.Auth)
		}
		checkCAFile(i.CAFile, func(format string, args ...any) { add(Error, "ips.ca_file", format, args...) })
	}
	if cn.Probe.AcceptPlatformOnlyEvidence && cn.Probe.Identity != "separate" {
		add(Warning, "probe.accept_platform_only_evidence", "has no effect unless probe.identity is separate")
	}
	return ps
}

// validateSecurity checks transport and authentication settings, and
// refuses set-ups that would expose certsync to the network unprotected.
func (c *Config) validateSecurity() Problems {
	var ps Problems
	add := func(sev Severity, field, format string, args ...any) {
		ps = append(ps, Problem{Severity: sev, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	s := c.Server
	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		add(Error, "server.tls_key", "required with server.tls_cert (--tls-key)")
	case s.TLSKey != "" && s.TLSCert == "":
		add(Error, "server.tls_cert", "required with server.tls_key (--tls-cert)")
	case s.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey); err != nil {
			add(Error, "server.tls_key", "cannot use %s with %s: %v", s.TLSCert, s.TLSKey, err)
		}
	}
	if s.ClientCA != "" {
		if !s.TLS() {
			add(Error, "server.client_ca", "client certificates need TLS: set server.tls_cert and server.tls_key (--tls-cert, --tls-key)")
		}
		checkCAFile(s.ClientCA, func(format string, args ...any) { add(Error, "server.client_ca", format, args...) })
	}
	if s.RequireClientCert && s.ClientCA == "" {
		add(Error, "server.require_client_cert", "needs server.client_ca (--client-ca) to verify the certificates it requires")
	}
	if s.TokensFile != "" {
		if err := checkReadable(s.TokensFile); err != nil {
			add(Error, "server.tokens_file", "%v", err)
		}
	}
	if s.TLS() && s.ClientCA == "" && s.TokensFile == "" {
		add(Error, "server.tls_cert", "TLS without a client CA (--client-ca) or tokens (--tokens) leaves nobody able to authenticate")
	}
	if err := auth.ValidateBindings(c.Auth.Identities); err != nil {
		add(Error, "auth.identities", "%v", err)
	}
	if len(c.Auth.Identities) > 0 && s.ClientCA == "" {
		add(Error, "auth.identities", "identities come from client certificates, which need server.client_ca (--client-ca)")
	}
	if s.HealthAddr != "" {
		if _, _, err := net.SplitHostPort(s.HealthAddr); err != nil {
			add(Error, "server.health_addr", "%q is not HOST:PORT", s.HealthAddr)
		}
	}
	if s.HTTPAddr != "" {
		host, _, err := net.SplitHostPort(s.HTTPAddr)
		switch {
		case err != nil:
			add(Error, "server.http_addr", "%q is not HOST:PORT", s.HTTPAddr)
		case !loopback(host) && !s.TLS() && !s.InsecureNoTLS:
			add(Error, "server.http_addr", "%s is not a loopback address and TLS is off: set --tls-cert and --tls-key (the HTTP port then serves HTTPS with the same certificate), or --insecure-no-tls if something else encrypts the traffic", s.HTTPAddr)
		case !loopback(host) && !s.AuthRequired() && !s.InsecureNoAuth:
			add(Error, "server.http_addr", "%s is not a loopback address and authentication is off: set --tokens, or --insecure-no-auth if something else authenticates callers", s.HTTPAddr)
		}
		// The gateway calls the gRPC port itself, without a client
		// certificate: HTTP callers can only bring bearer tokens.
		if s.RequireClientCert {
			add(Error, "server.http_addr", "the HTTP gateway calls the gRPC port without a client certificate, which server.require_client_cert (--require-client-cert) refuses; HTTP callers authenticate with bearer tokens")
		} else if s.AuthRequired() && s.TokensFile == "" {
			add(Error, "server.http_addr", "HTTP callers authenticate with bearer tokens only: set server.tokens_file (--tokens)")
		}
	}
	if host, _, err := net.SplitHostPort(s.GRPCAddr); err == nil && !loopback(host) {
		if !s.TLS() && !s.InsecureNoTLS {
			add(Error, "server.grpc_addr", "%s is not a loopback address and TLS is off: set --tls-cert and --tls-key, or --insecure-no-tls if something else encrypts the traffic", s.GRPCAddr)
		}
		if !s.AuthRequired() && !s.InsecureNoAuth {
			add(Error, "server.grpc_addr", "%s is not a loopback address and authentication is off: set --tokens or --client-ca, or --insecure-no-auth if something else authenticates callers", s.GRPCAddr)
		}
	}
	return ps
}

// loopback reports whether a listen host only accepts local connections.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateSFURL applies DOMAIN.md's rules for IPS's URL property.
func validateSFURL(raw string, add func(Severity, string, ...any)) {
	if raw == "" {
		add(Error, "required: SF's mTLS host as https://host[:port], like IPS's URL property")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		add(Error, "%q is not a URL", raw)
		return
	}
	if u.Scheme != "https" {
		add(Error, "%q must use https", raw)
		return
	}
	if u.Host == "" || u.Hostname() == "" {
		add(Error, "%q has no host", raw)
		return
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		add(Error, "%q must be https://host[:port] with no user, path, query or fragment", raw)
		return
	}
	host := u.Hostname()
	switch sfhost.Classify(host) {
	case sfhost.KindPlainHost:
		msg := fmt.Sprintf("%s is SF's plain API host; certificate authentication needs the mTLS host", host)
		if h := sfhost.CertHostFor(host); h != "" {
			msg += fmt.Sprintf(" %s (https://%s)", h, h)
		}
		add(Error, "%s (KBA 3737619)", msg)
	case sfhost.KindUnknownDomain:
		add(Warning, "%s is not on a known SF domain (%s); fine for the sandbox or a proxy, otherwise check the URL", host, strings.Join(sfhost.KnownDomains, ", "))
	}
}

func checkHTTPSURL(raw string, add func(string, ...any)) {
	if raw == "" {
		add("required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		add("%q is not an absolute URL", raw)
		return
	}
	if u.Scheme != "https" {
		add("%q must use https", raw)
	}
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	return f.Close()
}

func checkCertificateFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	if _, err := x509cert.Parse(data, x509cert.DefaultLimits); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

func checkCAFile(path string, add func(string, ...any)) {
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		add("cannot read %s: %v", path, unwrapPathError(err))
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		add("%s holds no PEM certificate", path)
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
