package config_test

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/pki"
)

// files are the files a test configuration names, written to a temporary
// directory: a probe key pair, a key that goes with nothing, a CA bundle, a
// token and files that hold no certificate.
type files struct {
	dir                                 string
	cert, key, otherKey, ca, token, txt string
	empty                               string
}

func writeFiles(t testing.TB, dir string) files {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("config test CA", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "probe"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "other"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyPEM, err := pki.KeyPEM(other.Key)
	if err != nil {
		t.Fatal(err)
	}
	f := files{
		dir:      dir,
		cert:     filepath.Join(dir, "probe.crt"),
		key:      filepath.Join(dir, "probe.key"),
		otherKey: filepath.Join(dir, "other.key"),
		ca:       filepath.Join(dir, "ca.pem"),
		token:    filepath.Join(dir, "token"),
		txt:      filepath.Join(dir, "notes.txt"),
		empty:    filepath.Join(dir, "empty"),
	}
	for path, data := range map[string][]byte{
		f.cert: pki.CertPEM(leaf.Cert), f.key: keyPEM, f.otherKey: otherKeyPEM, f.ca: pki.CertPEM(ca.Cert),
		f.token: []byte("s3cret\n"), f.txt: []byte("not a certificate\n"), f.empty: nil,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// validConnection is a connection without problems.
func (f files) validConnection(id string) config.Connection {
	return config.Connection{
		ID:       id,
		SF:       config.SF{URL: "https://api4.cert.successfactors.com", CompanyID: "ACME"},
		Source:   config.Source{Type: "file", File: f.cert},
		Registry: config.Registry{Driver: "manual"},
		Probe:    config.Probe{Identity: "ips", CertFile: f.cert, KeyFile: f.key},
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		// want are substrings the error must contain; none means no error.
		want []string
	}{
		{"unknown server key", "server:\n  grpc_addr: 127.0.0.1:1\n  grpc_adr: x\n", []string{"cfg.yaml", "line 3", "grpc_adr"}},
		{"unknown connection key", "connections:\n  - id: a\n    sf:\n      url: https://x\n      compnay_id: y\n", []string{"line 5", "compnay_id"}},
		{"unknown top-level key", "servers: {}\n", []string{"line 1", "servers"}},
		{"bad duration", "server:\n  probe_timeout: 10 parsecs\n", []string{"line 2", `"10 parsecs" is not a duration`}},
		{"duration without unit", "server:\n  settle_window: 10\n", []string{"line 2", `"10" is not a duration`}},
		{"duration as list", "server:\n  lock_ttl: [1]\n", []string{"line 2"}},
		{"number too large", "server:\n  max_message_bytes: 99999999999999999999\n", []string{"line 2", "into int"}},
		{"wrong type", "connections: 5\n", []string{"line 1"}},
		{"duplicate key", "server:\n  grpc_addr: a:1\n  grpc_addr: b:2\n", []string{"line 3", "grpc_addr"}},
		{"syntax error", "server: [\n", []string{"cfg.yaml", "line 1"}},
		{"tab indentation", "server:\n\tgrpc_addr: a:1\n", []string{"cfg.yaml"}},
		// An empty file is an empty configuration (flags may supply the rest).
		{"empty file", "", nil},
		{"only whitespace", "  \n\n", nil},
		{"only a comment", "# nothing yet\n", nil},
		{"null document", "~\n", nil},
		{"long value not echoed", "server:\n  max_message_bytes: \"" + strings.Repeat("x", 10000) + "\"\n", []string{"line 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.yaml), "cfg.yaml")
			if len(tt.want) == 0 {
				if err != nil || c == nil {
					t.Fatalf("Parse = %v, %v; want an empty configuration", c, err)
				}
				if len(c.Connections) != 0 || c.Server.GRPCAddr != "" {
					t.Errorf("Parse = %+v, want empty", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted %q: %+v", tt.yaml, c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if len(err.Error()) > 500 {
				t.Errorf("error is %d bytes: the input is echoed", len(err.Error()))
			}
		})
	}
}

func TestParseDurationsAndNull(t *testing.T) {
	c, err := config.Parse([]byte("server:\n  probe_timeout: 90s\n  refresh_interval: 0s\n  settle_window: 1h2m\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Server.ProbeTimeout) != 90*time.Second || time.Duration(c.Server.SettleWindow) != 62*time.Minute {
		t.Errorf("durations = %v %v", time.Duration(c.Server.ProbeTimeout), time.Duration(c.Server.SettleWindow))
	}
	// An explicit 0 turns the refresh off; ApplyDefaults must keep it.
	c.ApplyDefaults()
	if c.Server.RefreshInterval == nil || *c.Server.RefreshInterval != 0 {
		t.Errorf("refresh_interval 0s became %v", c.Server.RefreshInterval)
	}
	c, err = config.Parse([]byte("server:\n  refresh_interval: null\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if c.Server.RefreshInterval == nil || time.Duration(*c.Server.RefreshInterval) != config.DefaultRefreshInterval {
		t.Errorf("refresh_interval null became %v", c.Server.RefreshInterval)
	}
}

// TestParseMarshalRoundTrip: what Marshal writes (sandbox --write-config),
// Parse reads back the same.
func TestParseMarshalRoundTrip(t *testing.T) {
	f := writeFiles(t, t.TempDir())
	in := &config.Config{Connections: []config.Connection{f.validConnection("a"), f.validConnection("b")}}
	in.ApplyDefaults()
	data, err := config.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := config.Parse(data, "written.yaml")
	if err != nil {
		t.Fatalf("Parse of Marshal's output: %v\n%s", err, data)
	}
	if errs := out.Validate().Errors(); len(errs) > 0 {
		t.Errorf("round-tripped configuration is invalid: %v", errs)
	}
	if len(out.Connections) != 2 || out.Connections[1].Probe.KeyFile != f.key || out.Server.ProbeTimeout != in.Server.ProbeTimeout ||
		*out.Server.RefreshInterval != *in.Server.RefreshInterval {
		t.Errorf("round trip changed the configuration:\n%s", data)
	}
}

// want is one expected problem: its field exactly, its severity, and
// substrings of its message.
type want struct {
	sev   config.Severity
	field string
	msg   []string
}

func errorAt(field string, msg ...string) want { return want{config.Error, field, msg} }
func warnAt(field string, msg ...string) want  { return want{config.Warning, field, msg} }

func TestValidateRules(t *testing.T) {
	f := writeFiles(t, t.TempDir())
	const c0 = "connections[demo]."
	tests := []struct {
		name   string
		mutate func(*config.Config)
		// want lists every problem Validate must report, and only those.
		want []want
	}{
		{"valid", func(*config.Config) {}, nil},
		{"no connections", func(c *config.Config) { c.Connections = nil }, nil},

		// sf.url: https, host shape, the cert host rule, known domains.
		{"sf url required", func(c *config.Config) { c.Connections[0].SF.URL = "" }, []want{errorAt(c0+"sf.url", "required")}},
		{"sf url http", func(c *config.Config) { c.Connections[0].SF.URL = "http://api4.cert.successfactors.com" }, []want{errorAt(c0+"sf.url", "must use https")}},
		{"sf url no scheme", func(c *config.Config) { c.Connections[0].SF.URL = "api4.cert.successfactors.com" }, []want{errorAt(c0+"sf.url", "must use https")}},
		{"sf url not a URL", func(c *config.Config) { c.Connections[0].SF.URL = "https://a b\x7f/%zz" }, []want{errorAt(c0+"sf.url", "is not a URL")}},
		{"sf url no host", func(c *config.Config) { c.Connections[0].SF.URL = "https://" }, []want{errorAt(c0+"sf.url", "has no host")}},
		{"sf url with path", func(c *config.Config) { c.Connections[0].SF.URL = "https://api4.cert.successfactors.com/odata/v2" }, []want{errorAt(c0+"sf.url", "no user, path, query or fragment")}},
		{"sf url with user", func(c *config.Config) { c.Connections[0].SF.URL = "https://u:p@api4.cert.successfactors.com" }, []want{errorAt(c0+"sf.url", "no user, path, query or fragment")}},
		{"sf url with query", func(c *config.Config) { c.Connections[0].SF.URL = "https://api4.cert.successfactors.com?x=1" }, []want{errorAt(c0+"sf.url", "no user, path, query or fragment")}},
		{"sf url trailing slash and port", func(c *config.Config) { c.Connections[0].SF.URL = "https://API4.CERT.SuccessFactors.com:443/" }, nil},
		{"plain host suggests cert host", func(c *config.Config) { c.Connections[0].SF.URL = "https://api4.successfactors.com" },
			[]want{errorAt(c0+"sf.url", "plain API host", "api4.cert.successfactors.com (https://api4.cert.successfactors.com)", "KBA 3737619")}},
		{"plain host China", func(c *config.Config) { c.Connections[0].SF.URL = "https://api15preview.sapsf.cn" },
			[]want{errorAt(c0+"sf.url", "https://api15preview.cert.sapsf.cn")}},
		{"bare domain, no suggestion", func(c *config.Config) { c.Connections[0].SF.URL = "https://successfactors.com" },
			[]want{errorAt(c0+"sf.url", "plain API host")}},
		{"unknown domain warns", func(c *config.Config) { c.Connections[0].SF.URL = "https://127.0.0.1:50443" },
			[]want{warnAt(c0+"sf.url", "not on a known SF domain", "successfactors.com")}},
		{"lookalike domain warns", func(c *config.Config) { c.Connections[0].SF.URL = "https://api4.cert.successfactors.com.evil.example" },
			[]want{warnAt(c0+"sf.url", "not on a known SF domain")}},

		// company id.
		{"company id required", func(c *config.Config) { c.Connections[0].SF.CompanyID = "" }, []want{errorAt(c0+"sf.company_id", "required", "successfactors-companyid")}},
		{"company id with space", func(c *config.Config) { c.Connections[0].SF.CompanyID = "AC ME" }, []want{errorAt(c0+"sf.company_id", "spaces or control")}},
		{"company id with newline", func(c *config.Config) { c.Connections[0].SF.CompanyID = "ACME\r\nX-Injected: 1" }, []want{errorAt(c0+"sf.company_id", "spaces or control")}},
		{"company id too long", func(c *config.Config) { c.Connections[0].SF.CompanyID = strings.Repeat("C", 101) }, []want{errorAt(c0+"sf.company_id", "longer than 100")}},

		// A manual registry needs a person for every change.
		{"manual registry with automatic remediation", func(c *config.Config) {
			c.Connections[0].Registry = config.Registry{Driver: "manual", IntegrationName: config.DefaultIntegrationName}
			c.Connections[0].AutoRemediation = config.AutoRemediation{Enabled: true}
		}, []want{errorAt(c0+"auto_remediation.enabled", "manual registry", "person")}},
		{"manual registry", func(c *config.Config) {
			c.Connections[0].Registry = config.Registry{Driver: "manual", IntegrationName: config.DefaultIntegrationName}
		}, nil},

		// files.
		{"source file missing", func(c *config.Config) { c.Connections[0].Source.File = filepath.Join(f.dir, "nope.crt") }, []want{errorAt(c0+"source.file", "cannot read", "nope.crt")}},
		{"source file not a certificate", func(c *config.Config) { c.Connections[0].Source.File = f.txt }, []want{errorAt(c0+"source.file", "notes.txt")}},
		{"source file empty", func(c *config.Config) { c.Connections[0].Source.File = f.empty }, []want{errorAt(c0+"source.file", "empty")}},
		{"source file is a key", func(c *config.Config) { c.Connections[0].Source.File = f.key }, []want{errorAt(c0+"source.file", "private key")}},
		{"source file is a directory", func(c *config.Config) { c.Connections[0].Source.File = f.dir }, []want{errorAt(c0+"source.file", "cannot read")}},
		{"source file required", func(c *config.Config) { c.Connections[0].Source.File = "" }, []want{errorAt(c0+"source.file", "required")}},
		{"source type unknown", func(c *config.Config) { c.Connections[0].Source.Type = "ftp" }, []want{errorAt(c0+"source.type", `"ftp"`)}},
		{"source type required", func(c *config.Config) { c.Connections[0].Source.Type = "" }, []want{errorAt(c0+"source.type", "required")}},
		{"sandbox source needs https", func(c *config.Config) {
			c.Connections[0].Source = config.Source{Type: "sandbox", URL: "http://127.0.0.1:1/ips"}
		}, []want{errorAt(c0+"source.url", "must use https")}},
		{"probe cert missing", func(c *config.Config) { c.Connections[0].Probe.CertFile = filepath.Join(f.dir, "gone.crt") }, []want{errorAt(c0+"probe.cert_file", "cannot read", "gone.crt")}},
		{"probe key missing", func(c *config.Config) { c.Connections[0].Probe.KeyFile = filepath.Join(f.dir, "gone.key") }, []want{errorAt(c0+"probe.key_file", "cannot read", "gone.key")}},
		{"probe key required", func(c *config.Config) { c.Connections[0].Probe.KeyFile = "" }, []want{errorAt(c0+"probe.key_file", "required")}},
		{"probe cert required", func(c *config.Config) { c.Connections[0].Probe.CertFile = "" }, []want{errorAt(c0+"probe.cert_file", "required when probe.key_file")}},
		{"probe pair required", func(c *config.Config) { c.Connections[0].Probe.CertFile, c.Connections[0].Probe.KeyFile = "", "" }, []want{errorAt(c0+"probe.cert_file", "required")}},
		{"key does not match certificate", func(c *config.Config) { c.Connections[0].Probe.KeyFile = f.otherKey }, []want{errorAt(c0+"probe.key_file", "does not go with probe.cert_file")}},
		{"key file holds a certificate", func(c *config.Config) { c.Connections[0].Probe.KeyFile = f.cert }, []want{errorAt(c0+"probe.key_file", "does not go with")}},
		{"ca file missing", func(c *config.Config) { c.Connections[0].SF.CAFile = filepath.Join(f.dir, "no-ca.pem") }, []want{errorAt(c0+"sf.ca_file", "cannot read")}},
		{"ca file without certificates", func(c *config.Config) { c.Connections[0].Registry.CAFile = f.txt }, []want{errorAt(c0+"registry.ca_file", "no PEM certificate")}},
		{"ca files valid", func(c *config.Config) {
			c.Connections[0].SF.CAFile, c.Connections[0].Source.CAFile, c.Connections[0].Registry.CAFile = f.ca, f.ca, f.ca
		}, nil},

		// registry.
		{"registry driver required", func(c *config.Config) { c.Connections[0].Registry.Driver = "" }, []want{errorAt(c0+"registry.driver", "required")}},
		{"registry driver unknown", func(c *config.Config) { c.Connections[0].Registry.Driver = "ldap" }, []want{errorAt(c0+"registry.driver", `"ldap"`)}},
		{"registry http needs https", func(c *config.Config) {
			c.Connections[0].Registry = config.Registry{Driver: "http", URL: "http://bridge.example", IntegrationName: config.DefaultIntegrationName}
		}, []want{errorAt(c0+"registry.url", "must use https")}},
		{"registry http url required", func(c *config.Config) {
			c.Connections[0].Registry = config.Registry{Driver: "http", IntegrationName: config.DefaultIntegrationName}
		}, []want{errorAt(c0+"registry.url", "required")}},
		{"registry token unreadable", func(c *config.Config) {
			c.Connections[0].Registry = config.Registry{Driver: "http", URL: "https://bridge.example", TokenFile: filepath.Join(f.dir, "no-token"), IntegrationName: config.DefaultIntegrationName}
		}, []want{errorAt(c0+"registry.token_file", "cannot read")}},
		{"registry http valid", func(c *config.Config) {
			c.Connections[0].Registry = config.Registry{Driver: "http", URL: "https://bridge.example", TokenFile: f.token, IntegrationName: config.DefaultIntegrationName}
		}, nil},
		{"integration name warns", func(c *config.Config) { c.Connections[0].Registry.IntegrationName = "Identity Authentication Service" },
			[]want{warnAt(c0+"registry.integration_name", "403", "Identity Provisioning Service")}},

		// probe identity.
		{"probe identity unknown", func(c *config.Config) { c.Connections[0].Probe.Identity = "both" }, []want{errorAt(c0+"probe.identity", `"both"`)}},
		{"platform-only evidence needs separate", func(c *config.Config) { c.Connections[0].Probe.AcceptPlatformOnlyEvidence = true },
			[]want{warnAt(c0+"probe.accept_platform_only_evidence", "separate")}},
		{"separate identity", func(c *config.Config) {
			c.Connections[0].Probe.Identity, c.Connections[0].Probe.AcceptPlatformOnlyEvidence = "separate", true
		}, nil},

		// ids.
		{"duplicate ids", func(c *config.Config) {
			dup := f.validConnection("demo")
			dup.Registry.IntegrationName = config.DefaultIntegrationName
			c.Connections = append(c.Connections, dup)
		}, []want{errorAt("connections[1].id", `"demo" is already used by connections[0]`)}},
		{"id required", func(c *config.Config) { c.Connections[0].ID = "" }, []want{errorAt("connections[0].id", "required")}},
		{"id upper case", func(c *config.Config) { c.Connections[0].ID = "Demo" }, []want{errorAt("connections[0].id", `"Demo"`, "lower-case")}},
		{"id leading hyphen", func(c *config.Config) { c.Connections[0].ID = "-demo" }, []want{errorAt("connections[0].id", "lower-case")}},
		{"id trailing hyphen", func(c *config.Config) { c.Connections[0].ID = "demo-" }, []want{errorAt("connections[0].id", "lower-case")}},
		{"id underscore", func(c *config.Config) { c.Connections[0].ID = "demo_1" }, []want{errorAt("connections[0].id", "lower-case")}},
		{"id slash", func(c *config.Config) { c.Connections[0].ID = "../etc" }, []want{errorAt("connections[0].id", "lower-case")}},
		{"id 64 characters", func(c *config.Config) { c.Connections[0].ID = strings.Repeat("a", 64) }, []want{errorAt("connections[0].id", "1-63")}},
		{"id 63 characters", func(c *config.Config) { c.Connections[0].ID = strings.Repeat("a", 63) }, nil},
		{"id one character", func(c *config.Config) { c.Connections[0].ID = "a" }, nil},
		// A bad id still has its other problems reported, under its index.
		{"bad id and bad url", func(c *config.Config) { c.Connections[0].ID, c.Connections[0].SF.URL = "Demo", "http://x" },
			[]want{errorAt("connections[0].id", "lower-case"), errorAt("connections[0].sf.url", "https")}},

		// server settings.
		{"grpc addr", func(c *config.Config) { c.Server.GRPCAddr = "50051" }, []want{errorAt("server.grpc_addr", "HOST:PORT")}},
		{"log level", func(c *config.Config) { c.Server.LogLevel = "verbose" }, []want{errorAt("server.log_level", `"verbose"`)}},
		{"log format", func(c *config.Config) { c.Server.LogFormat = "xml" }, []want{errorAt("server.log_format", `"xml"`)}},
		{"message size too small", func(c *config.Config) { c.Server.MaxMessageBytes = 1 }, []want{errorAt("server.max_message_bytes", "65536..67108864")}},
		{"message size negative", func(c *config.Config) { c.Server.MaxMessageBytes = -1 }, []want{errorAt("server.max_message_bytes")}},
		{"durations not positive", func(c *config.Config) {
			c.Server.ShutdownGrace, c.Server.ProbeTimeout, c.Server.SettleWindow, c.Server.GateProbeInterval = -1, -1, -1, -1
		}, []want{errorAt("server.shutdown_grace", "positive"), errorAt("server.probe_timeout", "positive"), errorAt("server.settle_window", "positive"), errorAt("server.gate_probe_interval", "positive")}},
		{"lock ttl under a second", func(c *config.Config) { c.Server.LockTTL = config.Duration(500 * time.Millisecond) }, []want{errorAt("server.lock_ttl", "1s")}},
		{"refresh interval negative", func(c *config.Config) {
			d := config.Duration(-time.Second)
			c.Server.RefreshInterval = &d
		}, []want{errorAt("server.refresh_interval", "0 (off) or positive")}},
		{"refresh interval off", func(c *config.Config) {
			d := config.Duration(0)
			c.Server.RefreshInterval = &d
		}, nil},
		{"metrics addr", func(c *config.Config) { c.Server.MetricsAddr = "metrics" }, []want{errorAt("server.metrics_addr", "HOST:PORT")}},
		{"http addr", func(c *config.Config) { c.Server.HTTPAddr = "http" }, []want{errorAt("server.http_addr", "HOST:PORT")}},
		{"http addr loopback", func(c *config.Config) { c.Server.HTTPAddr = "127.0.0.1:8080" }, nil},
		{"http addr public without TLS", func(c *config.Config) { c.Server.HTTPAddr = "0.0.0.0:8080" }, []want{errorAt("server.http_addr", "not a loopback address and TLS is off")}},
		{"http addr public without auth", func(c *config.Config) { c.Server.HTTPAddr, c.Server.InsecureNoTLS = "0.0.0.0:8080", true },
			[]want{errorAt("server.http_addr", "not a loopback address and authentication is off")}},
		{"http addr public with tokens, TLS elsewhere", func(c *config.Config) {
			c.Server.HTTPAddr, c.Server.InsecureNoTLS, c.Server.TokensFile = "0.0.0.0:8080", true, f.txt
		}, nil},
		{"store unknown", func(c *config.Config) { c.Server.Store = "mysql://user:password@db/certsync" }, []want{errorAt("server.store", "sqlite:PATH or postgres://")}},
		{"store sqlite", func(c *config.Config) { c.Server.Store = "sqlite:" + filepath.Join(f.dir, "db") }, nil},
		{"store postgres", func(c *config.Config) { c.Server.Store = "postgres://db/certsync" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &config.Config{Connections: []config.Connection{f.validConnection("demo")}}
			c.ApplyDefaults()
			tt.mutate(c)
			problems := c.Validate()
			checkProblems(t, problems, tt.want)
		})
	}
}

// checkProblems asserts that problems are exactly want (in any order).
func checkProblems(t *testing.T, problems config.Problems, wants []want) {
	t.Helper()
	used := make([]bool, len(problems))
	for _, w := range wants {
		found := false
		for i, p := range problems {
			if used[i] || p.Field != w.field || p.Severity != w.sev {
				continue
			}
			all := true
			for _, m := range w.msg {
				all = all && strings.Contains(p.Message, m)
			}
			if all {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %v at %s containing %q; got:\n%s", w.sev, w.field, w.msg, dump(problems))
		}
	}
	for i, p := range problems {
		if !used[i] {
			t.Errorf("unexpected problem: %s", p)
		}
		if p.Field == "" || p.Message == "" {
			t.Errorf("problem without field or message: %#v", p)
		}
	}
}

func dump(ps config.Problems) string {
	var lines []string
	for _, p := range ps {
		lines = append(lines, "  "+p.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	f := writeFiles(t, t.TempDir())
	bad := config.Connection{ID: "b", SF: config.SF{URL: "http://x"}, Probe: config.Probe{Identity: "x"}}
	c := &config.Config{Connections: []config.Connection{f.validConnection("a"), bad}}
	c.ApplyDefaults()
	c.Server.LogLevel = "loud"
	ps := c.Validate()
	for _, field := range []string{"server.log_level", "connections[b].sf.url", "connections[b].sf.company_id", "connections[b].source.type",
		"connections[b].registry.driver", "connections[b].probe.identity", "connections[b].probe.cert_file"} {
		if len(ps.Errors().ForField(field)) == 0 {
			t.Errorf("no error for %s; got:\n%s", field, dump(ps))
		}
	}
	if n := len(ps.ForField("connections[a]")); n != 0 {
		t.Errorf("the valid connection has %d problems:\n%s", n, dump(ps))
	}
	if got := len(ps.Errors()) + len(ps.Warnings()); got != len(ps) {
		t.Errorf("Errors and Warnings split %d problems into %d", len(ps), got)
	}
	for _, p := range ps {
		s := p.String()
		if !strings.HasPrefix(s, "error: ") && !strings.HasPrefix(s, "warning: ") || !strings.Contains(s, p.Field+": ") {
			t.Errorf("String() = %q", s)
		}
	}
}

// TestValidateDoesNotEchoSecrets: a store URL carries a password; the problem
// shows only its beginning.
func TestValidateDoesNotEchoSecrets(t *testing.T) {
	c := &config.Config{}
	c.ApplyDefaults()
	c.Server.Store = "mysql://certsync:hunter2@db.example/certsync"
	for _, p := range c.Validate() {
		if strings.Contains(p.Message, "hunter2") {
			t.Errorf("%s echoes the password", p)
		}
	}
}

func TestApplyDefaults(t *testing.T) {
	c := &config.Config{Connections: []config.Connection{{ID: "a"}, {ID: "b", Probe: config.Probe{Identity: "separate"}, Registry: config.Registry{IntegrationName: "Custom"}}}}
	c.ApplyDefaults()
	s := c.Server
	if s.GRPCAddr != config.DefaultGRPCAddr || s.LogLevel != "info" || s.LogFormat != "text" || s.MaxMessageBytes != config.DefaultMaxMessageBytes ||
		time.Duration(s.ShutdownGrace) != config.DefaultShutdownGrace || time.Duration(s.ProbeTimeout) != config.DefaultProbeTimeout ||
		time.Duration(s.SettleWindow) != config.DefaultSettleWindow || time.Duration(s.LockTTL) != config.DefaultLockTTL ||
		s.RefreshInterval == nil || time.Duration(*s.RefreshInterval) != config.DefaultRefreshInterval ||
		time.Duration(s.GateProbeInterval) != config.DefaultGateProbeInterval {
		t.Errorf("server defaults: %+v", s)
	}
	if c.Connections[0].Probe.Identity != "ips" || c.Connections[0].Registry.IntegrationName != config.DefaultIntegrationName {
		t.Errorf("connection defaults: %+v", c.Connections[0])
	}
	if c.Connections[1].Probe.Identity != "separate" || c.Connections[1].Registry.IntegrationName != "Custom" {
		t.Errorf("defaults overwrote settings: %+v", c.Connections[1])
	}
	// Applying twice changes nothing.
	before := *c
	before.Connections = append([]config.Connection(nil), c.Connections...)
	c.ApplyDefaults()
	if c.Server.GRPCAddr != before.Server.GRPCAddr || *c.Server.RefreshInterval != *before.Server.RefreshInterval || !reflect.DeepEqual(c.Connections[1], before.Connections[1]) {
		t.Errorf("second ApplyDefaults changed the configuration")
	}
}

func TestResolvePaths(t *testing.T) {
	dir := filepath.Join(string(filepath.Separator), "etc", "certsync")
	abs := filepath.Join(string(filepath.Separator), "srv", "probe.key")
	c := &config.Config{Server: config.Server{TLSCert: "tls/server.crt", TLSKey: abs, ClientCA: "clients.pem", TokensFile: "tokens.yaml"}, Connections: []config.Connection{{
		ID:       "a",
		SF:       config.SF{URL: "https://x", CAFile: "sf-ca.pem"},
		Source:   config.Source{Type: "file", File: "ips/active.crt", CAFile: "../shared/ca.pem"},
		Registry: config.Registry{URL: "https://bridge", TokenFile: "./token", CAFile: ""},
		Probe:    config.Probe{CertFile: "probe.crt", KeyFile: abs},
	}}}
	c.ResolvePaths(dir)
	cn := c.Connections[0]
	tests := []struct{ field, got, want string }{
		{"sf.ca_file", cn.SF.CAFile, filepath.Join(dir, "sf-ca.pem")},
		{"source.file", cn.Source.File, filepath.Join(dir, "ips", "active.crt")},
		{"source.ca_file", cn.Source.CAFile, filepath.Join(string(filepath.Separator), "etc", "shared", "ca.pem")},
		{"registry.token_file", cn.Registry.TokenFile, filepath.Join(dir, "token")},
		{"registry.ca_file (empty stays empty)", cn.Registry.CAFile, ""},
		{"probe.cert_file", cn.Probe.CertFile, filepath.Join(dir, "probe.crt")},
		{"probe.key_file (absolute stays)", cn.Probe.KeyFile, abs},
		{"server.tls_cert", c.Server.TLSCert, filepath.Join(dir, "tls", "server.crt")},
		{"server.tls_key (absolute stays)", c.Server.TLSKey, abs},
		{"server.client_ca", c.Server.ClientCA, filepath.Join(dir, "clients.pem")},
		{"server.tokens_file", c.Server.TokensFile, filepath.Join(dir, "tokens.yaml")},
		// URLs are not paths.
		{"sf.url", cn.SF.URL, "https://x"},
		{"registry.url", cn.Registry.URL, "https://bridge"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.field, tt.got, tt.want)
		}
	}
	// Resolving again (an absolute dir makes every path absolute) changes
	// nothing.
	again := *c
	again.Connections = append([]config.Connection(nil), c.Connections...)
	again.ResolvePaths(filepath.Join(string(filepath.Separator), "elsewhere"))
	if !reflect.DeepEqual(again.Connections[0], c.Connections[0]) || again.Server.TLSCert != c.Server.TLSCert {
		t.Errorf("ResolvePaths is not idempotent: %+v", again.Connections[0])
	}
}

// TestResolvedConfigValidates: a configuration written with paths relative
// to its own directory validates from any working directory once resolved.
func TestResolvedConfigValidates(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir)
	yaml := `connections:
  - id: demo
    sf:
      url: https://api4.cert.successfactors.com
      company_id: ACME
    source:
      type: file
      file: probe.crt
    registry:
      driver: manual
    probe:
      cert_file: probe.crt
      key_file: probe.key
`
	path := filepath.Join(dir, "certsync.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.ResolvePaths(filepath.Dir(path))
	c.ApplyDefaults()
	checkProblems(t, c.Validate(), nil)

	// Without resolving, the relative paths point nowhere (the test runs in
	// the package directory).
	c, err = config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if len(c.Validate().ForField("connections[demo].probe.cert_file")) == 0 {
		t.Error("unresolved relative paths validated")
	}
}

func TestLoadLimits(t *testing.T) {
	dir := t.TempDir()
	if _, err := config.Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", config.MaxConfigBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	if _, err := config.Load(dir); err == nil {
		t.Error("a directory loaded as a configuration")
	}
}
