package gate

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// These tests follow the manual registry driver's data path: a person's
// record (store.TargetRecord) becomes mappings (registry.RecordedMappings),
// which compare.Compare compares with IPS's active certificate; nothing
// hand-builds a Comparison.

// ipsCerts are IPS's certificates: the active one and the one it replaced
// (same issuer and subject, another key pair), valid around t0.
type ipsCerts struct {
	active, old *pki.Leaf
}

func newIPSCerts(t testing.TB) ipsCerts {
	t.Helper()
	ca, err := pki.NewCA("IPS CA", t0.Add(-400*day), 1000*day)
	if err != nil {
		t.Fatal(err)
	}
	dn := pkix.Name{CommonName: "ips-outbound", Organization: []string{"ACME"}}
	issue := func(from, to time.Time) *pki.Leaf {
		l, err := ca.Issue(pki.LeafOptions{Subject: dn, NotBefore: from, NotAfter: to})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	return ipsCerts{
		active: issue(t0.Add(-day), t0.Add(365*day)),
		old:    issue(t0.Add(-300*day), t0.Add(60*day)),
	}
}

// recordKind is what a person recorded of the mapping SF shows.
type recordKind int

const (
	recordFile   recordKind = iota // the certificate file
	recordSHA256                   // only the SHA-256 fingerprint
	recordSHA1                     // only the SHA-1 fingerprint
)

func (k recordKind) String() string { return [...]string{"file", "sha256", "sha1"}[k] }

// record is what a person recorded of IPS's mapping in SF's Security
// Center: the mapping holds leaf.
func record(leaf *pki.Leaf, kind recordKind) *store.TargetRecord {
	s256, s1 := sha256.Sum256(leaf.Cert.Raw), sha1.Sum(leaf.Cert.Raw)
	r := &store.TargetRecord{ID: "r1", Connection: "c", ConfigurationName: "IPS", IntegrationName: compare.ExpectedIntegrationName,
		LoginName: "IPS_TECH", Note: "read off Security Center", RecordedBy: "alice", RecordTime: t0.Add(-3 * time.Hour)}
	switch kind {
	case recordFile:
		r.DER, r.SHA256, r.SHA1 = leaf.Cert.Raw, hex.EncodeToString(s256[:]), hex.EncodeToString(s1[:])
	case recordSHA256:
		r.SHA256 = hex.EncodeToString(s256[:])
	case recordSHA1:
		r.SHA1 = hex.EncodeToString(s1[:])
	}
	return r
}

// comparison compares IPS's active certificate with mappings, as the
// inventory's Read does.
func comparison(cs ipsCerts, mappings []registry.Mapping) *compare.Comparison {
	c := compare.Compare(compare.Input{Source: cs.active.Cert, Mappings: mappings, Now: t0})
	return &c
}

// manual is healthy evidence of a manual connection whose SF side is rec
// (nil: nobody recorded anything, which the manual driver reports as
// registry.ErrNotRecorded); the probe presents IPS's own key pair.
func manual(t testing.TB, cs ipsCerts, rec *store.TargetRecord) *Evidence {
	t.Helper()
	ev := healthy()
	ev.Config.Registry.Driver = "manual"
	src, pc := x509cert.Summarize(cs.active.Cert), x509cert.Summarize(cs.active.Cert)
	ev.Source, ev.ProbeCert = &src, &pc
	ev.Comparison, ev.RegistryErr = nil, registry.ErrNotRecorded
	if rec != nil {
		ms, err := registry.RecordedMappings(rec)
		if err != nil {
			t.Fatal(err)
		}
		ev.Comparison, ev.RegistryErr = comparison(cs, ms), nil
		if !ev.Comparison.Recorded() {
			t.Fatalf("a comparison of %+v is not recorded", ms)
		}
	}
	return ev
}

// fromRegistry makes ev's SF side what the HTTP registry returned: the same
// mapping, without a person's record.
func fromRegistry(cs ipsCerts, ev *Evidence, mapped *pki.Leaf) {
	ev.Config.Registry.Driver = "http"
	ev.Comparison = comparison(cs, []registry.Mapping{{ID: "m1", ConfigurationName: "IPS", IntegrationName: compare.ExpectedIntegrationName,
		LoginName: "IPS_TECH", Certificate: mapped.Cert}})
	ev.RegistryErr = nil
}

var sourceNames = map[EvidenceSource]string{
	FromUnspecified: "Unspecified", FromConfiguration: "Configuration", FromSourceCertificate: "SourceCertificate",
	FromRegistry: "Registry", FromProbe: "Probe", FromIPSJob: "IPSJob", FromPerson: "Person", FromOperation: "Operation",
}

// wantCond is one condition a verdict must hold.
type wantCond struct {
	typ, reason  string
	status       Status
	severity     Severity
	source       EvidenceSource
	inconclusive bool
}

func checkCond(t *testing.T, v Verdict, w wantCond) {
	t.Helper()
	c, ok := condition(v, w.typ)
	if !ok {
		t.Errorf("no %s condition in %+v", w.typ, v.Conditions)
		return
	}
	if c.Reason != w.reason || c.Status != w.status || c.Severity != w.severity || c.Source != w.source || c.Inconclusive != w.inconclusive {
		t.Errorf("%s = %v %v %s from %s inconclusive=%v (%s);\n want %v %v %s from %s inconclusive=%v", w.typ,
			c.Status, c.Severity, c.Reason, sourceNames[c.Source], c.Inconclusive, c.Message,
			w.status, w.severity, w.reason, sourceNames[w.source], w.inconclusive)
	}
}

func TestDecidePersonRecordsAndReadJobs(t *testing.T) {
	cs := newIPSCerts(t)
	tests := []struct {
		name string
		// evidence builds the evidence; manual(t, cs, nil) and the like.
		evidence func(t *testing.T) *Evidence
		policy   Policy
		decision Decision
		// actions is the remediation, space-separated; "-" means empty.
		actions string
		conds   []wantCond
	}{
		// Nobody recorded anything.
		{"nothing recorded, the probe with IPS's key pair authenticates", func(t *testing.T) *Evidence {
			return manual(t, cs, nil)
		}, Policy{}, Allow, "-", []wantCond{
			{TypeMappingPresent, "NotRecorded", Unknown, Warning, FromPerson, false},
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, false},
			{TypeScimAuthentication, "Authenticated", True, Info, FromProbe, false},
		}},
		{"nothing recorded, SF unreachable", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			ev.Probe = probe(scim.Unreachable, 503, "")
			return ev
		}, Policy{}, Inconclusive, "RecordMapping RetryLater", []wantCond{
			{TypeMappingPresent, "NotRecorded", Unknown, Warning, FromPerson, true},
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, true},
			{TypeScimAuthentication, ReasonUnreachable, Unknown, Warning, FromProbe, true},
		}},
		{"nothing recorded, no probe", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			ev.Probe = nil
			return ev
		}, Policy{}, Inconclusive, "RecordMapping", []wantCond{
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, true},
		}},
		{"nothing recorded, the probe is refused with AUTH0032", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
			return ev
		}, Policy{}, Deny, "CompareFingerprints Reregister Escalate", []wantCond{
			{TypeScimAuthentication, "InvalidClientCertificate", False, Error, FromProbe, false},
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, true},
		}},
		{"nothing recorded, separate identity, a recent successful READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			return ev
		}, Policy{}, Allow, "-", []wantCond{
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, false},
			{TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, FromIPSJob, false},
		}},
		{"nothing recorded, separate identity accepting platform-only evidence", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			return ev
		}, Policy{}, Inconclusive, "RecordMapping RunReadJob", []wantCond{
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, true},
			{TypeIpsMappingAuthenticates, "PersonRecordOnly", Unknown, Warning, FromPerson, true},
		}},

		// A person recorded IPS's active certificate.
		{"record matches, the probe with IPS's key pair authenticates", func(t *testing.T) *Evidence {
			return manual(t, cs, record(cs.active, recordFile))
		}, Policy{}, Allow, "-", []wantCond{
			{TypeMappingPresent, "Present", True, Info, FromPerson, false},
			{TypeFingerprintsMatch, "Match", True, Info, FromPerson, false},
			{TypeMappingFieldsValid, "Valid", True, Info, FromPerson, false},
		}},
		{"recorded SHA-256 fingerprint matches, the probe authenticates", func(t *testing.T) *Evidence {
			return manual(t, cs, record(cs.active, recordSHA256))
		}, Policy{}, Allow, "-", []wantCond{
			{TypeFingerprintsMatch, "Match", True, Info, FromPerson, false},
		}},
		{"recorded SHA-1 fingerprint matches, the probe authenticates", func(t *testing.T) *Evidence {
			return manual(t, cs, record(cs.active, recordSHA1))
		}, Policy{}, Allow, "-", []wantCond{
			{TypeFingerprintsMatch, "Match", True, Info, FromPerson, false},
		}},
		{"record matches, SF unreachable", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Probe = probe(scim.Unreachable, 503, "")
			return ev
		}, Policy{}, Inconclusive, "RetryLater", []wantCond{
			{TypeFingerprintsMatch, "Match", True, Info, FromPerson, false},
			{TypeScimAuthentication, ReasonUnreachable, Unknown, Warning, FromProbe, true},
		}},
		{"record without integration name, the probe authenticates", func(t *testing.T) *Evidence {
			rec := record(cs.active, recordSHA256)
			rec.IntegrationName = ""
			return manual(t, cs, rec)
		}, Policy{}, Allow, "-", []wantCond{
			{TypeMappingFieldsValid, "Valid", True, Info, FromPerson, false},
		}},

		// A person recorded another certificate than IPS's active one.
		{"record differs, the probe is refused with AUTH0032", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.old, recordFile))
			ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
			return ev
		}, Policy{}, Deny, "UploadActiveCertificate", []wantCond{
			{TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, FromPerson, false},
			{TypeMappingPresent, "Present", True, Info, FromPerson, false},
			{TypeScimAuthentication, "InvalidClientCertificate", False, Error, FromProbe, false},
		}},
		{"recorded fingerprint differs, SF unreachable", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.old, recordSHA256))
			ev.Probe = probe(scim.Unreachable, 0, "")
			return ev
		}, Policy{}, Deny, "UploadActiveCertificate", []wantCond{
			{TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, FromPerson, false},
		}},
		{"record differs, the probe with IPS's key pair authenticates", func(t *testing.T) *Evidence {
			return manual(t, cs, record(cs.old, recordFile))
		}, Policy{}, Allow, "-", []wantCond{
			{TypeFingerprintsMatch, "RecordContradicted", False, Warning, FromPerson, false},
			{TypeMappingPresent, "Present", True, Info, FromPerson, false},
		}},
		{"recorded integration name wrong, the probe authenticates", func(t *testing.T) *Evidence {
			rec := record(cs.active, recordFile)
			rec.IntegrationName = "Identity Authentication Service"
			return manual(t, cs, rec)
		}, Policy{}, Allow, "-", []wantCond{
			{TypeMappingFieldsValid, "RecordContradicted", False, Warning, FromPerson, false},
		}},
		{"record differs, separate identity, a recent successful READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.old, recordFile))
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			return ev
		}, Policy{}, Allow, "-", []wantCond{
			{TypeFingerprintsMatch, "RecordContradicted", False, Warning, FromPerson, false},
			{TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, FromIPSJob, false},
		}},
		{"record differs, separate identity authenticated, stale READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.old, recordFile))
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-2*DefaultJobMaxAge), true, "")
			return ev
		}, Policy{}, Deny, "UploadActiveCertificate", []wantCond{
			{TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, FromPerson, false},
		}},
		// Only a job that succeeded proves IPS's mapping.
		{"record differs, separate identity, READ job failing with a server error", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.old, recordFile))
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseServerError.String())
			return ev
		}, Policy{}, Deny, "UploadActiveCertificate", []wantCond{
			{TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, FromPerson, false},
			{TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, FromIPSJob, true},
		}},
		{"nothing recorded, separate identity, READ job failing with a server error", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			ev.Config.Probe.Identity = "separate"
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseServerError.String())
			return ev
		}, Policy{}, Inconclusive, "RecordMapping RunReadJob", []wantCond{
			{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, true},
		}},
		// What a registry returned is not a person's record: the probe
		// does not overrule it.
		{"registry differs, the probe authenticates", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			fromRegistry(cs, ev, cs.old)
			return ev
		}, Policy{}, Deny, "UploadActiveCertificate", []wantCond{
			{TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, FromRegistry, false},
		}},

		// Separate probe identity: a person's record never allows alone.
		{"record matches, separate identity accepting platform-only evidence, no READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			return ev
		}, Policy{}, Inconclusive, "RunReadJob", []wantCond{
			{TypeIpsMappingAuthenticates, "PersonRecordOnly", Unknown, Warning, FromPerson, true},
			{TypeFingerprintsMatch, "Match", True, Info, FromPerson, false},
		}},
		{"registry matches, separate identity accepting platform-only evidence, no READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, nil)
			fromRegistry(cs, ev, cs.active)
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			return ev
		}, Policy{}, Allow, "-", []wantCond{
			{TypeIpsMappingAuthenticates, ReasonPlatformOnlyEvidence, Unknown, Warning, FromIPSJob, false},
			{TypeFingerprintsMatch, "Match", True, Info, FromRegistry, false},
		}},
		{"record matches, separate identity, no READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Config.Probe.Identity = "separate"
			return ev
		}, Policy{}, Inconclusive, "RunReadJob", []wantCond{
			{TypeIpsMappingAuthenticates, ReasonNoIPSEvidence, Unknown, Warning, FromIPSJob, true},
		}},
		{"record matches, separate identity accepting platform-only evidence, stale READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.IPSJob = readJob(t0.Add(-DefaultJobMaxAge-time.Hour), true, "")
			return ev
		}, Policy{}, Inconclusive, "RunReadJob", []wantCond{
			{TypeIpsMappingAuthenticates, "PersonRecordOnly", Unknown, Warning, FromPerson, true},
		}},
		{"record matches, separate identity accepting platform-only evidence, READ job failing with a server error", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseServerError.String())
			return ev
		}, Policy{}, Inconclusive, "RunReadJob", []wantCond{
			{TypeIpsMappingAuthenticates, "PersonRecordOnly", Unknown, Warning, FromPerson, true},
		}},
		{"record matches, separate identity accepting platform-only evidence, a recent successful READ job", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
			return ev
		}, Policy{}, Allow, "-", []wantCond{
			{TypeIpsMappingAuthenticates, "ReadJobSucceeded", True, Info, FromIPSJob, false},
			{TypeFingerprintsMatch, "Match", True, Info, FromPerson, false},
		}},
		{"record matches, separate identity, a recent READ job failing with AUTH0032", func(t *testing.T) *Evidence {
			ev := manual(t, cs, record(cs.active, recordFile))
			ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = "separate", true
			ev.IPSJob = readJob(t0.Add(-time.Hour), false, diagnose.CauseInvalidClientCertificate.String())
			return ev
		}, Policy{}, Deny, "Reregister FixCompanyID Escalate", []wantCond{
			{TypeIpsMappingAuthenticates, "ReadJobFailed", False, Error, FromIPSJob, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Decide(tt.evidence(t), tt.policy)
			if v.Decision != tt.decision {
				t.Errorf("decision = %v, want %v; %s", v.Decision, tt.decision, v.Summary)
			}
			for _, w := range tt.conds {
				checkCond(t, v, w)
			}
			got := actions(v)
			if got == "" {
				got = "-"
			}
			if got != tt.actions {
				t.Errorf("remediation = %s, want %s", got, tt.actions)
			}
			checkInvariants(t, v)
		})
	}
}

// The contradicted record says what a person should do: record again.
func TestDecideContradictedRecordSaysRecordAgain(t *testing.T) {
	cs := newIPSCerts(t)
	v := Decide(manual(t, cs, record(cs.old, recordFile)), Policy{})
	c, _ := condition(v, TypeFingerprintsMatch)
	if !strings.HasPrefix(c.Message, "a person's record says: ") || !strings.Contains(c.Message, "record what SF shows again") {
		t.Errorf("message = %q", c.Message)
	}
	if v.Decision != Allow || !strings.Contains(v.Summary, "RecordContradicted") {
		t.Errorf("summary = %q", v.Summary)
	}
	for _, c := range v.Conditions {
		if c.Severity == Error {
			t.Errorf("%s is an error: %s", c.Type, c.Message)
		}
	}
}

// The comparison's own finding tells people that SF's side is a person's
// record; the gate's conditions are tagged with the person as their source.
func TestDecideRecordedComparisonSource(t *testing.T) {
	cs := newIPSCerts(t)
	ev := manual(t, cs, record(cs.active, recordFile))
	if !slices.ContainsFunc(ev.Comparison.Findings, func(f compare.Finding) bool { return f.Code == "RECORDED_BY_PERSON" }) {
		t.Errorf("no RECORDED_BY_PERSON finding: %+v", ev.Comparison.Findings)
	}
	v := Decide(ev, Policy{})
	for _, typ := range []string{TypeMappingPresent, TypeMappingFieldsValid, TypeFingerprintsMatch} {
		if c, _ := condition(v, typ); c.Source != FromPerson {
			t.Errorf("%s from %s, want Person", typ, sourceNames[c.Source])
		}
	}
	// The same mapping from the HTTP registry is the registry's.
	fromRegistry(cs, ev, cs.active)
	v = Decide(ev, Policy{})
	for _, typ := range []string{TypeMappingPresent, TypeMappingFieldsValid, TypeFingerprintsMatch} {
		if c, _ := condition(v, typ); c.Source != FromRegistry {
			t.Errorf("http: %s from %s, want Registry", typ, sourceNames[c.Source])
		}
	}
}

// A failed READ job's remediation is diagnose's for the job's cause in the
// evidence's situation (here: SF maps IPS's active certificate, on SF's
// cert host), so that the job log and the gate tell one story.
func TestDecideFailedReadJobRemediation(t *testing.T) {
	ev := healthy()
	ev.Config.Probe.Identity = "separate"
	ev.IPSJob = readJob(t0.Add(-time.Hour), false, "InvalidClientCertificate")
	v := Decide(ev, Policy{})
	if v.Decision != Deny {
		t.Fatalf("decision = %v; %s", v.Decision, v.Summary)
	}
	want := diagnose.Remediation(diagnose.CauseInvalidClientCertificate, diagnose.Situation{
		FingerprintsKnown: true, FingerprintsMatch: true, HostKnown: true, CertHost: true,
		SuggestedCertHost: "api4.cert.successfactors.com",
	})
	if len(v.Remediation) != len(want) {
		t.Fatalf("remediation = %s, want %d steps from diagnose", actions(v), len(want))
	}
	for i := range want {
		if v.Remediation[i].Action != want[i].Action || v.Remediation[i].Text != want[i].Text {
			t.Errorf("step %d = %v, want %v", i, v.Remediation[i].Action, want[i].Action)
		}
	}
	if v.Remediation[0].Action != diagnose.ActionReregister || !strings.Contains(v.Summary, "first step: Reregister") {
		t.Errorf("first step = %v; summary %q", v.Remediation[0].Action, v.Summary)
	}
	c, _ := condition(v, TypeIpsMappingAuthenticates)
	if !c.ObservedTime.Equal(ev.IPSJob.EndTime) || !strings.Contains(c.Message, "job-1") || !strings.Contains(c.Message, "InvalidClientCertificate") {
		t.Errorf("condition observed %v: %q", c.ObservedTime, c.Message)
	}
	// Without a comparison (nobody recorded anything) the fingerprints are
	// unknown, and diagnose says to compare them first.
	cs := newIPSCerts(t)
	ev = manual(t, cs, nil)
	ev.Config.Probe.Identity = "separate"
	ev.IPSJob = readJob(t0.Add(-time.Hour), false, "InvalidClientCertificate")
	v = Decide(ev, Policy{})
	if v.Decision != Deny || actions(v) != "CompareFingerprints Reregister Escalate" {
		t.Errorf("not recorded: %v %s; %s", v.Decision, actions(v), v.Summary)
	}
}

// A successful READ job's condition is observed when the job ended, not
// when the gate gathered.
func TestDecideReadJobObservedTime(t *testing.T) {
	ev := healthy()
	ev.Config.Probe.Identity = "separate"
	ev.IPSJob = readJob(t0.Add(-3*time.Hour), true, "")
	v := Decide(ev, Policy{})
	c, _ := condition(v, TypeIpsMappingAuthenticates)
	if !c.ObservedTime.Equal(t0.Add(-3 * time.Hour)) {
		t.Errorf("observed %v, want the job's end", c.ObservedTime)
	}
}

// Property: when the only thing that speaks for SF's mapping and IPS's
// mapping is a person's record (or nobody recorded anything), the gate never
// allows, whatever else the evidence holds: the probe either uses a
// separate identity, whose success proves only the platform, or did not
// authenticate; no READ job succeeded recently.
func TestDecideNeverAllowsOnAPersonsRecordAlone(t *testing.T) {
	cs := newIPSCerts(t)
	type recordCase struct {
		name string
		rec  func() *store.TargetRecord
	}
	records := []recordCase{{"nothing recorded", func() *store.TargetRecord { return nil }}}
	for _, k := range []recordKind{recordFile, recordSHA256, recordSHA1} {
		records = append(records, recordCase{"match by " + k.String(), func() *store.TargetRecord { return record(cs.active, k) }})
	}
	records = append(records,
		recordCase{"match without login name", func() *store.TargetRecord {
			r := record(cs.active, recordFile)
			r.LoginName = ""
			return r
		}},
		recordCase{"match without integration name", func() *store.TargetRecord {
			r := record(cs.active, recordSHA256)
			r.IntegrationName = ""
			return r
		}},
	)
	outcomes := []*scim.Result{
		nil,
		probe(scim.Authenticated, 200, ""),
		probe(scim.Unreachable, 503, ""),
		{Outcome: scim.UnexpectedResponse, HTTPStatus: 418},
		probe(scim.InvalidClientCertificate, 401, "AUTH0032"),
		probe(scim.TLSRejected, 400, ""),
		probe(scim.CredentialsRequired, 401, "LGN0011"),
		probe(scim.PermissionDenied, 403, "Forbidden"),
	}
	type jobCase struct {
		name string
		job  func() *store.JobRecord
		last *Reregistration
	}
	jobs := []jobCase{
		{"no job", func() *store.JobRecord { return nil }, nil},
		{"stale success", func() *store.JobRecord { return readJob(t0.Add(-DefaultJobMaxAge-time.Second), true, "") }, nil},
		{"success before the last re-registration", func() *store.JobRecord { return readJob(t0.Add(-2*time.Hour), true, "") },
			&Reregistration{State: "SUCCEEDED", Ended: t0.Add(-time.Hour)}},
		{"running", func() *store.JobRecord {
			j := readJob(time.Time{}, false, "")
			j.Done, j.Status = false, "Running"
			return j
		}, nil},
		{"done without end time", func() *store.JobRecord {
			j := readJob(t0.Add(-time.Hour), true, "")
			j.EndTime = time.Time{}
			return j
		}, nil},
		{"failed with a server error", func() *store.JobRecord { return readJob(t0.Add(-time.Hour), false, "ServerError") }, nil},
		{"failed with a transport error", func() *store.JobRecord { return readJob(t0.Add(-time.Hour), false, "TransportError") }, nil},
		{"failed, rate limited", func() *store.JobRecord { return readJob(t0.Add(-time.Hour), false, "RateLimited") }, nil},
		{"failed, not diagnosed", func() *store.JobRecord { return readJob(t0.Add(-time.Hour), false, "") }, nil},
		{"failed, unknown cause", func() *store.JobRecord { return readJob(t0.Add(-time.Hour), false, "Gremlins") }, nil},
	}
	n := 0
	// "ips, old certificate": the probe holds IPS's key pair but was not
	// given the renewed certificate; SF authenticating it proves nothing
	// about the active one.
	oldSummary := x509cert.Summarize(cs.old.Cert)
	for _, identity := range []string{"separate", "ips", "ips, old certificate"} {
		for _, accept := range []bool{false, true} {
			for _, rc := range records {
				for _, o := range outcomes {
					if identity == "ips" && o != nil && o.Outcome == scim.Authenticated {
						continue // IPS's own key pair authenticating is proof
					}
					for _, jc := range jobs {
						ev := manual(t, cs, rc.rec())
						ev.Config.Probe.Identity, ev.Config.Probe.AcceptPlatformOnlyEvidence = identity, accept
						if identity == "ips, old certificate" {
							ev.Config.Probe.Identity, ev.ProbeCert = "ips", &oldSummary
						}
						if o != nil {
							r := *o
							ev.Probe = &r
						} else {
							ev.Probe = nil
						}
						ev.IPSJob, ev.LastReregistration = jc.job(), jc.last
						v := Decide(ev, Policy{})
						n++
						name := fmt.Sprintf("identity %s, accept %v, %s, probe %v, %s", identity, accept, rc.name, outcomeName(o), jc.name)
						if v.Decision == Allow {
							t.Errorf("%s: ALLOW on a person's record alone: %s", name, v.Summary)
						}
						checkInvariants(t, v)
						if t.Failed() {
							t.FailNow()
						}
					}
				}
			}
		}
	}
	if n < 500 {
		t.Errorf("only %d combinations", n)
	}
}

func outcomeName(r *scim.Result) string {
	if r == nil {
		return "none"
	}
	return fmt.Sprint(r.Outcome)
}

// TestDecidePersonRecordEdges are the cases a review found decided wrongly
// at first: a probe whose certificate lags a renewal, a record that SF
// shows no mapping, and a remediation that acted on an outdated record.
func TestDecidePersonRecordEdges(t *testing.T) {
	cs := newIPSCerts(t)

	// With probe.identity ips the probe presents the key pair in
	// probe.cert_file, which lags IPS's after a renewal (decide.go's own
	// advice says so). Its success then proves the old certificate's
	// mapping, not that SF maps IPS's active one.
	t.Run("a probe presenting another certificate than IPS's active one proves nothing about it", func(t *testing.T) {
		old := x509cert.Summarize(cs.old.Cert)
		// The person's record is right: SF still maps the old certificate.
		ev := manual(t, cs, record(cs.old, recordFile))
		ev.ProbeCert = &old
		v := Decide(ev, Policy{})
		if v.Decision != Deny {
			t.Errorf("decision = %v, want DENY; %s", v.Decision, v.Summary)
		}
		checkCond(t, v, wantCond{TypeFingerprintsMatch, "FingerprintsDiffer", False, Error, FromPerson, false})

		ev = manual(t, cs, nil)
		ev.ProbeCert = &old
		v = Decide(ev, Policy{})
		if v.Decision != Inconclusive {
			t.Errorf("nothing recorded: decision = %v, want INCONCLUSIVE; %s", v.Decision, v.Summary)
		}
		checkCond(t, v, wantCond{TypeFingerprintsMatch, "NotRecorded", Unknown, Warning, FromPerson, true})
	})

	// A person recorded that SF shows no mapping (TargetRecord.Absent, what
	// a confirmed delete step writes): RecordedMappings gives no mapping,
	// so Comparison.Recorded() is false and decide.go takes the record for
	// the registry's word.
	absent := func(t *testing.T) *Evidence {
		rec := record(cs.active, recordFile)
		rec.Absent, rec.DER, rec.SHA256, rec.SHA1 = true, nil, "", ""
		ms, err := registry.RecordedMappings(rec)
		if err != nil {
			t.Fatal(err)
		}
		ev := manual(t, cs, nil)
		ev.Comparison, ev.RegistryErr = comparison(cs, ms), nil
		return ev
	}
	t.Run("a record that SF shows no mapping is a person's", func(t *testing.T) {
		ev := absent(t)
		ev.Probe = probe(scim.InvalidClientCertificate, 401, "AUTH0032")
		v := Decide(ev, Policy{})
		checkCond(t, v, wantCond{TypeMappingPresent, "MappingMissing", False, Error, FromPerson, false})
	})
	t.Run("a record that SF shows no mapping is contradicted by IPS's own probe", func(t *testing.T) {
		v := Decide(absent(t), Policy{})
		if v.Decision != Allow {
			t.Errorf("decision = %v, want ALLOW; %s", v.Decision, v.Summary)
		}
		checkCond(t, v, wantCond{TypeMappingPresent, "RecordContradicted", False, Warning, FromPerson, false})
	})

	// A record judged outdated still remediates as if it were true when
	// something else keeps the gate from allowing.
	t.Run("a contradicted record asks for no upload", func(t *testing.T) {
		ev := manual(t, cs, record(cs.old, recordFile))
		ev.Running = "op1"
		v := Decide(ev, Policy{})
		checkCond(t, v, wantCond{TypeFingerprintsMatch, "RecordContradicted", False, Warning, FromPerson, false})
		if got := actions(v); strings.Contains(got, "UploadActiveCertificate") {
			t.Errorf("remediation = %s: uploads on a record the gate judged outdated", got)
		}
	})
}

// TestDecideProbeNotGivenTheRenewedCertificate: a probe meant to present
// IPS's key pair that still presents the certificate IPS replaced speaks for
// that one only. SF already mapping IPS's active certificate and refusing
// the old one is the probe's problem, never a DENY of IPS's jobs.
func TestDecideProbeNotGivenTheRenewedCertificate(t *testing.T) {
	cs := newIPSCerts(t)
	ev := manual(t, cs, nil)
	fromRegistry(cs, ev, cs.active)
	old := x509cert.Summarize(cs.old.Cert)
	ev.ProbeCert = &old
	for _, o := range []*scim.Result{probe(scim.TLSRejected, 400, ""), probe(scim.InvalidClientCertificate, 401, "AUTH0032")} {
		ev.Probe = o
		v := Decide(ev, Policy{})
		if v.Decision != Inconclusive {
			t.Errorf("probe %s with the old certificate: %v, want INCONCLUSIVE: %s", o.Outcome, v.Decision, v.Summary)
		}
		checkCond(t, v, wantCond{typ: TypeProbeCertificateValid, reason: "ProbeCertificateNotActive", status: False, severity: Warning, source: FromProbe})
		if !slices.ContainsFunc(v.Remediation, func(s diagnose.Step) bool { return strings.Contains(s.Text, "probe") }) {
			t.Errorf("no step to fix the probe: %+v", v.Remediation)
		}
		checkInvariants(t, v)
	}
}

// TestDecideReadJobWithAnotherCertificate: IPS may generate a certificate
// long before it activates it, so a READ job that ended after the active
// certificate's NotBefore may still have run with the one before. A job
// certsync started says which certificate was active then, and only a job
// with IPS's active certificate proves its mapping.
func TestDecideReadJobWithAnotherCertificate(t *testing.T) {
	cs := newIPSCerts(t)
	for _, tc := range []struct {
		name string
		sha  string
		want Decision
	}{
		{"ran with the active certificate", x509cert.Summarize(cs.active.Cert).SHA256, Allow},
		{"ran with the certificate IPS replaced", x509cert.Summarize(cs.old.Cert).SHA256, Inconclusive},
		{"certificate not noted (an older record)", "", Allow},
	} {
		ev := manual(t, cs, record(cs.active, recordFile))
		ev.Config.Probe.Identity = "separate"
		ev.IPSJob = readJob(t0.Add(-time.Hour), true, "")
		ev.IPSJob.SourceSHA256 = tc.sha
		v := Decide(ev, Policy{})
		if v.Decision != tc.want {
			t.Errorf("%s: %v, want %v: %s", tc.name, v.Decision, tc.want, v.Summary)
		}
		checkInvariants(t, v)
	}
}
