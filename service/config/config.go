// Package config reads certsync's YAML configuration, lets command-line flags
// override it, and validates it before anything listens: every problem is
// reported at once, one line each, naming the field at fault.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certsync/certsync/service/auth"
)

// Defaults, in one place.
const (
	DefaultGRPCAddr        = "127.0.0.1:50051"
	DefaultSandboxAddr     = "127.0.0.1:50443"
	DefaultMaxMessageBytes = 4 << 20
	DefaultShutdownGrace   = 15 * time.Second
	DefaultProbeTimeout    = 10 * time.Second
	DefaultSettleWindow    = 2 * time.Minute
	// DefaultManualStepTimeout is how long a manual re-registration's step
	// waits for a person to perform and confirm it.
	DefaultManualStepTimeout = 4 * time.Hour
	DefaultLockTTL           = 30 * time.Second
	DefaultRefreshInterval   = time.Minute
	// DefaultGateProbeInterval is DESIGN's budget: one probe per connection
	// per second for the gate.
	DefaultGateProbeInterval = time.Second
	DefaultIntegrationName   = "Identity Provisioning Service"
	// MaxConfigBytes bounds the configuration file, which is read whole.
	MaxConfigBytes = 8 << 20
)

// Config is the whole configuration.
type Config struct {
	Server      Server       `yaml:"server"`
	Auth        Auth         `yaml:"auth"`
	Connections []Connection `yaml:"connections"`
}

// Auth gives identities from client certificates their roles.
type Auth struct {
	// Identities bind a certificate identity (a URI SAN such as a SPIFFE
	// id, else the subject CN) to a role, optionally limited to
	// connections matching patterns.
	Identities []auth.Binding `yaml:"identities"`
}

// Server holds process-wide settings. Every field has a flag of the same
// meaning that overrides it.
type Server struct {
	GRPCAddr        string   `yaml:"grpc_addr"`
	LogLevel        string   `yaml:"log_level"`
	LogFormat       string   `yaml:"log_format"`
	MaxMessageBytes int      `yaml:"max_message_bytes"`
	ShutdownGrace   Duration `yaml:"shutdown_grace"`
	ProbeTimeout    Duration `yaml:"probe_timeout"`
	// DataDir holds the SQLite database; Store overrides the database
	// ("sqlite:PATH" or "postgres://...").
	DataDir      string   `yaml:"data_dir"`
	Store        string   `yaml:"store"`
	SettleWindow Duration `yaml:"settle_window"`
	// ManualStepTimeout is how long a step of a manual re-registration
	// waits for a person's confirmation.
	ManualStepTimeout Duration `yaml:"manual_step_timeout"`
	LockTTL           Duration `yaml:"lock_ttl"`
	// MetricsAddr serves Prometheus metrics at /metrics; empty: none.
	MetricsAddr string `yaml:"metrics_addr"`
	// RefreshInterval is how often the background refresh gathers each
	// connection's evidence; nil means the default, 0 disables it.
	RefreshInterval *Duration `yaml:"refresh_interval"`
	// GateProbeInterval is the least time between two gatherings for the
	// gate per connection (each is a login at SF).
	GateProbeInterval Duration `yaml:"gate_probe_interval"`

	// TLSCert and TLSKey serve gRPC over TLS; ClientCA verifies client
	// certificates (when a client presents one, or always with
	// RequireClientCert). Files are re-read when they change.
	TLSCert           string `yaml:"tls_cert"`
	TLSKey            string `yaml:"tls_key"`
	ClientCA          string `yaml:"client_ca"`
	RequireClientCert bool   `yaml:"require_client_cert"`
	// TokensFile lists bearer tokens (names, roles, SHA-256 hashes).
	TokensFile string `yaml:"tokens_file"`
	// HealthAddr serves grpc.health.v1 alone, without TLS or
	// authentication, for Kubernetes probes.
	HealthAddr string `yaml:"health_addr"`
	// HTTPAddr serves the gate, the comparison and the diagnosis as
	// HTTP/JSON (service/httpgate); empty: none. HTTPS with the gRPC
	// port's certificate when TLS is on; callers authenticate with bearer
	// tokens.
	HTTPAddr string `yaml:"http_addr"`
	// NoReflection closes server reflection on the main port.
	NoReflection bool `yaml:"no_reflection"`
	// InsecureNoTLS and InsecureNoAuth allow listening on a non-loopback
	// address without TLS or without authentication.
	InsecureNoTLS  bool `yaml:"insecure_no_tls"`
	InsecureNoAuth bool `yaml:"insecure_no_auth"`
	// AuditRetention, when positive, prunes audit events older than this
	// (the hash chain stays verifiable from a checkpoint); 0 keeps all.
	AuditRetention Duration `yaml:"audit_retention"`
}

// TLS reports whether the gRPC server uses TLS.
func (s Server) TLS() bool { return s.TLSCert != "" || s.TLSKey != "" }

// AuthRequired reports whether every call must authenticate: once TLS or
// tokens are configured.
func (s Server) AuthRequired() bool { return s.TLS() || s.TokensFile != "" }

// Connection is one IPS source system reading one SF company.
type Connection struct {
	ID          string   `yaml:"id"`
	Description string   `yaml:"description"`
	SF          SF       `yaml:"sf"`
	Source      Source   `yaml:"source"`
	Registry    Registry `yaml:"registry"`
	Probe       Probe    `yaml:"probe"`
	// PinnedSubject and PinnedIssuer, when set, are the only DNs IPS's
	// certificate may have (RFC 4514, as InspectCertificate prints them).
	PinnedSubject    string `yaml:"pinned_subject"`
	PinnedIssuer     string `yaml:"pinned_issuer"`
	RequiresApproval bool   `yaml:"requires_approval"`
	// IPS identifies the IPS side, for escalation tickets.
	IPS IPS `yaml:"ips"`
	// AutoRemediation lets the background refresh re-register on its own
	// for the patterns re-registration fixes. Off by default.
	AutoRemediation AutoRemediation `yaml:"auto_remediation"`
}

// AutoRemediation bounds what the service may do on its own.
type AutoRemediation struct {
	Enabled bool `yaml:"enabled"`
	// MaxPerDay bounds automatic re-registrations per connection in any 24
	// hours; 0 means 1.
	MaxPerDay int `yaml:"max_per_day"`
	// Windows, when set, are the only times (UTC) it may act, written as
	// "Mon-Fri 22:00-04:00" or "Sat 00:00-24:00" (a window may run past
	// midnight into the next day).
	Windows []string `yaml:"windows"`
}

// IPS names the IPS tenant and source system of a connection.
type IPS struct {
	// TenantID is the IPS tenant's id, as job errors show it ("in tenant
	// context: ...").
	TenantID string `yaml:"tenant_id"`
	// SourceSystemID is the id of IPS's SuccessFactors source system.
	SourceSystemID string `yaml:"source_system_id"`
	// BaseURL is the Identity Authentication tenant host that serves IPS's
	// Tenant Admin API (https://tenant.accounts.ondemand.com); empty: no
	// IPS API (no provisioning jobs, no job logs).
	BaseURL string `yaml:"base_url"`
	// Auth is "oauth2" (client credentials), "certificate" (PKCS#12) or
	// "basic".
	Auth               string `yaml:"auth"`
	ClientID           string `yaml:"client_id"`
	ClientSecretFile   string `yaml:"client_secret_file"`
	PKCS12File         string `yaml:"pkcs12_file"`
	PKCS12PasswordFile string `yaml:"pkcs12_password_file"`
	CAFile             string `yaml:"ca_file"`
}

// SF says how to reach SuccessFactors.
type SF struct {
	// URL is exactly IPS's `URL` property: https://host[:port].
	URL       string `yaml:"url"`
	CompanyID string `yaml:"company_id"`
	// CAFile verifies SF's server certificate (and the registry's) in
	// addition to nothing else: when set, only this bundle is trusted.
	CAFile string `yaml:"ca_file"`
}

// Source says where IPS's active certificate comes from.
type Source struct {
	// Type is "file", "sandbox" or "imported" (the version imported with
	// certsyncctl import NAME FILE --active, kept in the store).
	Type string `yaml:"type"`
	// File is a PEM or DER certificate file (type file).
	File string `yaml:"file"`
	// URL is the simulated IPS's certificate endpoint (type sandbox).
	URL    string `yaml:"url"`
	CAFile string `yaml:"ca_file"`
}

// Registry says how SF's certificate mappings are read and changed.
type Registry struct {
	// Driver is "http" or "manual".
	Driver string `yaml:"driver"`
	// URL is the base of the HTTP contract (driver http).
	URL string `yaml:"url"`
	// TokenFile holds the bearer token for the HTTP contract.
	TokenFile string `yaml:"token_file"`
	CAFile    string `yaml:"ca_file"`
	// IntegrationName, ConfigurationName and LoginName override the fields
	// a re-registration copies from the old mapping.
	IntegrationName   string `yaml:"integration_name"`
	ConfigurationName string `yaml:"configuration_name"`
	LoginName         string `yaml:"login_name"`
}

// Probe says which key pair the SCIM probe presents.
type Probe struct {
	// Identity is "ips" (IPS's own key pair) or "separate" (a probe
	// certificate mapped in SF for this purpose).
	Identity string `yaml:"identity"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// AcceptPlatformOnlyEvidence lets the gate ALLOW (with a warning) on a
	// separate identity's probe when nothing proves IPS's own mapping.
	AcceptPlatformOnlyEvidence bool `yaml:"accept_platform_only_evidence"`
}

// Duration is a time.Duration written as "90s" or "2m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 30s, 2m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes Go duration syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Load reads and decodes a configuration file. Unknown keys are errors, so
// that a misspelt setting never silently falls back to a default.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, MaxConfigBytes)
	}
	return Parse(data, path)
}

// Parse decodes configuration bytes; name is used in messages.
func Parse(data []byte, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return &c, nil // an empty file is an empty configuration
		}
		return nil, fmt.Errorf("config %s: %v", name, err)
	}
	// A second YAML document would be ignored silently, like an unknown
	// key: refuse it instead.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: more than one YAML document; put everything in one", name)
	}
	return &c, nil
}

// Marshal encodes a configuration as YAML (for sandbox --write-config).
func Marshal(c *Config) ([]byte, error) { return yaml.Marshal(c) }

// ApplyDefaults fills unset server settings.
func (c *Config) ApplyDefaults() {
	s := &c.Server
	if s.GRPCAddr == "" {
		s.GRPCAddr = DefaultGRPCAddr
	}
	if s.LogLevel == "" {
		s.LogLevel = "info"
	}
	if s.LogFormat == "" {
		s.LogFormat = "text"
	}
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if s.ShutdownGrace == 0 {
		s.ShutdownGrace = Duration(DefaultShutdownGrace)
	}
	if s.ProbeTimeout == 0 {
		s.ProbeTimeout = Duration(DefaultProbeTimeout)
	}
	if s.ManualStepTimeout == 0 {
		s.ManualStepTimeout = Duration(DefaultManualStepTimeout)
	}
	if s.SettleWindow == 0 {
		s.SettleWindow = Duration(DefaultSettleWindow)
	}
	if s.LockTTL == 0 {
		s.LockTTL = Duration(DefaultLockTTL)
	}
	if s.RefreshInterval == nil {
		d := Duration(DefaultRefreshInterval)
		s.RefreshInterval = &d
	}
	if s.GateProbeInterval == 0 {
		s.GateProbeInterval = Duration(DefaultGateProbeInterval)
	}
	for i := range c.Connections {
		cn := &c.Connections[i]
		if cn.Registry.IntegrationName == "" {
			cn.Registry.IntegrationName = DefaultIntegrationName
		}
		if cn.Probe.Identity == "" {
			cn.Probe.Identity = "ips"
		}
	}
}
