package config_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/certsync/certsync/service/config"
)

// tmpToken in a seed stands for the fuzz run's directory of test files, so
// that seeds can name files that exist (a probe key pair, a CA bundle, a
// token) and mutations can name files that do not.
const tmpToken = "$TMP"

var fuzzSeeds = []string{
	// Valid: one connection of each registry driver and source type.
	`server:
  grpc_addr: 127.0.0.1:50051
  log_level: debug
  probe_timeout: 5s
  refresh_interval: 0s
connections:
  - id: demo
    sf:
      url: https://api4.cert.successfactors.com
      company_id: ACME
      ca_file: $TMP/ca.pem
    source:
      type: file
      file: $TMP/probe.crt
    registry:
      driver: manual
    probe:
      identity: ips
      cert_file: $TMP/probe.crt
      key_file: $TMP/probe.key
  - id: bridge
    sf:
      url: https://api15preview.cert.sapsf.cn:443/
      company_id: ACME2
    source:
      type: sandbox
      url: https://127.0.0.1:50443/ips
      ca_file: $TMP/ca.pem
    registry:
      driver: http
      url: https://bridge.example/v1
      token_file: $TMP/token
      integration_name: Identity Provisioning Service
    probe:
      identity: separate
      cert_file: probe.crt
      key_file: probe.key
      accept_platform_only_evidence: true
`,
	// Every kind of problem at once.
	`server:
  grpc_addr: nowhere
  log_level: loud
  log_format: xml
  max_message_bytes: -1
  lock_ttl: 1ms
  refresh_interval: -1s
  store: mysql://u:p@db/x
  metrics_addr: metrics
connections:
  - id: Demo_1
    sf: {url: "http://api4.successfactors.com/odata?x#y", company_id: "A C"}
    source: {type: ftp}
    registry: {driver: ldap, integration_name: Identity Authentication Service}
    probe: {identity: both, cert_file: $TMP/probe.crt, key_file: $TMP/other.key}
  - id: demo
  - id: demo
    sf: {url: https://successfactors.com}
`,
	// Parse errors.
	"server:\n  grpc_adr: x\n",
	"server:\n  probe_timeout: 10 parsecs\n",
	"server:\n  max_message_bytes: 99999999999999999999\n",
	"server: [\n",
	"connections: 5\n",
	"server:\n  grpc_addr: a:1\n  grpc_addr: b:2\n",
	// Empty and degenerate documents.
	"", "~", "---\n", "# comment\n", "server:\n", "connections:\n  -\n", "connections: [{}, {}, ~]\n",
	// YAML features: anchors, merges, tags, multiple documents, flow style.
	"connections:\n  - &c {id: a, sf: {url: 'https://a.cert.sapsf.com', company_id: X}}\n  - *c\n",
	"base: &b {id: a}\nconnections: [*b]\n",
	"connections:\n  - <<: {id: a}\n    sf: {url: https://x}\n",
	"server:\n  grpc_addr: !!binary aGVsbG8=\n",
	"server: {grpc_addr: a:1}\n---\nserver: {grpc_addr: b:2}\n",
	"server: !!map {probe_timeout: !!str 1s}\n",
	"a: &a [*a]\n",
	"connections: &x [*x, *x]\n",
	// Hostile values: paths, controls, unicode, huge numbers.
	"connections:\n  - id: a\n    source: {type: file, file: ../../../../etc/passwd}\n    probe: {cert_file: /etc/shadow, key_file: /dev/zero}\n",
	"connections:\n  - id: \"a\\x00b\"\n    sf: {url: \"https://\\u202eexample.cert.sapsf.com\", company_id: \"\\x1b[31m\"}\n",
	"connections:\n  - id: \"\U0001F600\"\n    sf: {url: \"https://api4.cert.successfactors.com\\n\"}\n",
	"server:\n  shutdown_grace: 2562047h47m16.854775807s\n  settle_window: -2562047h47m16.854775808s\n",
	"server:\n  store: \"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\"\n",
	"auth:\n  identities:\n    - id: spiffe://x/y\n      role: operator\n      connections: [\"demo-*\"]\n    - id: ' x'\n      role: god\n",
	"server:\n  tls_cert: $TMP/probe.crt\n  tls_key: $TMP/probe.key\n  client_ca: $TMP/ca.pem\n  grpc_addr: 0.0.0.0:1\n",
	// Automatic remediation windows and IPS ids.
	"connections:\n  - id: a\n    ips: {tenant_id: t-1, source_system_id: s-1}\n    auto_remediation:\n      enabled: true\n      max_per_day: -3\n" +
		"      windows: [\"Mon-Fri 22:00-04:00\", \"Sat 00:00-24:00\", \"Sun 25:61-00:00\", \"Fri-Mon 23:59-23:59\", \"\"]\n",
}

func FuzzParse(f *testing.F) {
	// One directory of test files per fuzzing process; the testing package
	// removes it at the end.
	tmp := f.TempDir()
	writeFiles(f, tmp)
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = []byte(strings.ReplaceAll(string(data), tmpToken, tmp))
		c, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Errorf("Parse returned a configuration with error %v", err)
			}
			if err.Error() == "" {
				t.Error("Parse returned an empty error")
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a configuration nor an error")
		}
		c.ResolvePaths(tmp)
		confine(reflect.ValueOf(c).Elem(), tmp)
		c.ApplyDefaults()
		problems := c.Validate()
		for _, p := range problems {
			if p.Field == "" || p.Message == "" {
				t.Errorf("problem without field or message: %#v", p)
			}
			if p.Severity != config.Error && p.Severity != config.Warning {
				t.Errorf("problem with severity %d: %s", p.Severity, p)
			}
			_ = p.String()
		}
		if got := len(problems.Errors()) + len(problems.Warnings()); got != len(problems) {
			t.Errorf("Errors and Warnings split %d problems into %d", len(problems), got)
		}
		// Validate only reads: asking twice gives the same answer.
		again := c.Validate()
		if len(again) != len(problems) {
			t.Errorf("Validate is not deterministic: %d then %d problems", len(problems), len(again))
		}
	})
}

// confine rewrites, in place, every string of the configuration that would
// make Validate open a file outside dir (an absolute path elsewhere, or one
// that climbs with ".."), so that fuzzing never reads /dev/zero, a FIFO or
// the machine's secrets. URLs and addresses stay as they are.
func confine(v reflect.Value, dir string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			confine(v.Elem(), dir)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if strings.HasSuffix(name, "URL") || strings.HasSuffix(name, "Addr") || !v.Field(i).CanSet() {
				continue
			}
			confine(v.Field(i), dir)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			confine(v.Index(i), dir)
		}
	case reflect.String:
		s := v.String()
		outside := filepath.IsAbs(s) && !strings.HasPrefix(filepath.Clean(s), dir+string(filepath.Separator))
		if outside || strings.Contains(s, "..") || strings.HasPrefix(s, "~") {
			v.SetString(filepath.Join(dir, "confined"))
		}
	}
}

// TestFuzzSeedIsValid keeps the first seed meaningful: it must be a valid
// configuration, so that mutations start from one that reaches every check.
func TestFuzzSeedIsValid(t *testing.T) {
	tmp := t.TempDir()
	writeFiles(t, tmp)
	c, err := config.Parse([]byte(strings.ReplaceAll(fuzzSeeds[0], tmpToken, tmp)), "seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.ResolvePaths(tmp)
	c.ApplyDefaults()
	checkProblems(t, c.Validate(), nil)
	if len(c.Connections) != 2 {
		t.Fatalf("%d connections", len(c.Connections))
	}
}
