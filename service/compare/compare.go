// Package compare decides whether IPS's active certificate and the mappings
// SF holds agree, and what about them deserves an operator's attention.
package compare

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/x509cert"
)

// Result is the outcome of a comparison.
type Result int

// Results.
const (
	ResultUnspecified Result = iota
	ResultMatch
	ResultMismatch
	ResultTargetMissing
	ResultSourceMissing
	ResultAmbiguous
)

var resultNames = [...]string{"UNSPECIFIED", "MATCH", "MISMATCH", "TARGET_MISSING", "SOURCE_MISSING", "AMBIGUOUS"}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// Severity says how much a finding matters.
type Severity int

// Severities; only Error would make a job fail.
const (
	Info Severity = iota + 1
	Warning
	Error
)

// ExpectedIntegrationName is the integration name SF requires for IPS.
const ExpectedIntegrationName = "Identity Provisioning Service"

// DefaultExpiryWarning is IPS's own warning period (KBA 3423003).
const DefaultExpiryWarning = 30 * 24 * time.Hour

// Finding is one observation.
type Finding struct {
	Code      string
	Severity  Severity
	Message   string
	MappingID string
}

// Target is one of SF's mappings as compared.
type Target struct {
	Mapping registry.Mapping
	// Summary is zero when the mapping carries no certificate.
	Summary       x509cert.Summary
	Candidate     bool
	MatchesSource bool
}

// Input is what is compared.
type Input struct {
	// Source is IPS's active certificate; nil with SourceErr when it could
	// not be had.
	Source    *x509.Certificate
	SourceErr error
	Mappings  []registry.Mapping
	Now       time.Time
	// PinnedSubject and PinnedIssuer, when set, are the only DNs the
	// source may have.
	PinnedSubject, PinnedIssuer string
	// ExpiryWarning is how early expiry is reported; 0 means 30 days.
	ExpiryWarning time.Duration
}

// Comparison is the outcome with its evidence.
type Comparison struct {
	Result  Result
	Source  *x509cert.Summary
	Targets []Target
	// Findings, errors first.
	Findings             []Finding
	Etag                 string
	SameSubjectAndIssuer bool
	PublicKeyDiffers     bool
	// MappingID is the compared mapping (MATCH, MISMATCH).
	MappingID string
	Summary   string
}

// Compare compares. Candidates are the mappings with the source's issuer and
// subject (SF's key for a mapping) or its fingerprint, whatever their
// integration name.
func Compare(in Input) Comparison {
	if in.ExpiryWarning <= 0 {
		in.ExpiryWarning = DefaultExpiryWarning
	}
	var c Comparison
	var srcSum x509cert.Summary
	if in.Source != nil {
		srcSum = x509cert.Summarize(in.Source)
	}
	for _, m := range in.Mappings {
		t := Target{Mapping: m}
		if m.Certificate != nil {
			t.Summary = x509cert.Summarize(m.Certificate)
		} else {
			t.Summary = x509cert.Summary{SHA256: m.SHA256, SHA1: m.SHA1}
		}
		switch {
		case in.Source == nil:
		case m.Certificate != nil:
			t.MatchesSource = bytes.Equal(m.Certificate.Raw, in.Source.Raw)
			t.Candidate = t.MatchesSource || sameName(m.Certificate, in.Source)
		default:
			// Only a fingerprint is known: it either is IPS's or not.
			t.MatchesSource = (m.SHA256 != "" && m.SHA256 == srcSum.SHA256) || (m.SHA256 == "" && m.SHA1 != "" && m.SHA1 == srcSum.SHA1)
		}
		if m.Record != nil {
			// A person recorded IPS's mapping, whatever it holds.
			t.Candidate = true
		}
		c.Targets = append(c.Targets, t)
	}
	// Candidates first, then by id, so that answers are stable.
	sort.SliceStable(c.Targets, func(i, j int) bool {
		if c.Targets[i].Candidate != c.Targets[j].Candidate {
			return c.Targets[i].Candidate
		}
		return c.Targets[i].Mapping.ID < c.Targets[j].Mapping.ID
	})

	if in.Source == nil {
		c.Result = ResultSourceMissing
		msg := "IPS's active certificate could not be read"
		if in.SourceErr != nil {
			msg += ": " + in.SourceErr.Error()
		}
		c.add(Finding{Code: "SOURCE_MISSING", Severity: Error, Message: msg})
		c.finish(in)
		return c
	}
	src := x509cert.Summarize(in.Source)
	c.Source = &src
	c.sourceFindings(in, src)

	var candidates []Target
	for _, t := range c.Targets {
		if t.Candidate {
			candidates = append(candidates, t)
		}
	}
	switch {
	case len(candidates) == 0:
		c.Result = ResultTargetMissing
		c.add(Finding{Code: "TARGET_MISSING", Severity: Error, Message: fmt.Sprintf("SF maps no certificate with IPS's issuer and subject (%s) or its fingerprint; upload IPS's active certificate", src.Subject)})
	case len(candidates) > 1:
		c.Result = ResultAmbiguous
		ids := make([]string, len(candidates))
		for i, t := range candidates {
			ids[i] = t.Mapping.ID
		}
		c.add(Finding{Code: "AMBIGUOUS", Severity: Error, Message: fmt.Sprintf("%d mappings could be IPS's (%s); re-registration needs an explicit mapping_id", len(candidates), strings.Join(ids, ", "))})
	default:
		t := candidates[0]
		c.MappingID = t.Mapping.ID
		cert := t.Mapping.Certificate
		c.SameSubjectAndIssuer = cert != nil && sameName(cert, in.Source)
		if t.MatchesSource {
			c.Result = ResultMatch
		} else {
			c.Result = ResultMismatch
			c.PublicKeyDiffers = cert != nil && !bytes.Equal(cert.RawSubjectPublicKeyInfo, in.Source.RawSubjectPublicKeyInfo)
			var msg string
			switch {
			case cert != nil:
				msg = fmt.Sprintf("SF maps another certificate (SHA-256 %s) than IPS's active one (SHA-256 %s)", t.Summary.SHA256, src.SHA256)
			case t.Summary.SHA256 != "":
				msg = fmt.Sprintf("SF shows another fingerprint (SHA-256 %s) than IPS's active certificate's (SHA-256 %s)", t.Summary.SHA256, src.SHA256)
			default:
				msg = fmt.Sprintf("SF shows another fingerprint (SHA-1 %s) than IPS's active certificate's (SHA-1 %s)", t.Summary.SHA1, src.SHA1)
			}
			if c.SameSubjectAndIssuer {
				msg += " with the same subject and issuer: IPS's certificate was renewed or regenerated and the new one is not uploaded"
			}
			msg += "; upload IPS's active certificate"
			c.add(Finding{Code: "RENEWAL_NOT_UPLOADED", Severity: Error, Message: msg, MappingID: t.Mapping.ID})
			switch {
			case cert == nil:
			case c.PublicKeyDiffers:
				c.add(Finding{Code: "PUBLIC_KEY_DIFFERS", Severity: Info, Message: "SF's certificate carries another public key than IPS's (a new key pair, not a re-issue)", MappingID: t.Mapping.ID})
			default:
				c.add(Finding{Code: "SAME_PUBLIC_KEY", Severity: Info, Message: "SF's certificate carries IPS's public key (a re-issue of the same key pair)", MappingID: t.Mapping.ID})
			}
		}
		c.targetFindings(in, t)
	}
	for _, t := range c.Targets {
		if r := t.Mapping.Record; r != nil {
			msg := fmt.Sprintf("SF's side is what %s recorded on %s, not what SF returned: certsync cannot read SF's mappings (manual registry driver); a person's record never makes the gate allow on its own", orSomeone(r.By), r.At.UTC().Format(time.RFC3339))
			if r.Operation != "" {
				msg = fmt.Sprintf("SF's side is what %s confirmed in operations/%s on %s, not what SF returned (manual registry driver)", orSomeone(r.By), r.Operation, r.At.UTC().Format(time.RFC3339))
			}
			c.add(Finding{Code: "RECORDED_BY_PERSON", Severity: Info, MappingID: t.Mapping.ID, Message: msg})
		}
	}
	c.finish(in)
	return c
}

func orSomeone(who string) string {
	if who == "" {
		return "someone"
	}
	return who
}

// Recorded reports whether SF's side of the comparison is what a person
// recorded rather than what a registry returned.
func (c *Comparison) Recorded() bool {
	for _, t := range c.Targets {
		if t.Mapping.Record != nil {
			return true
		}
	}
	return false
}

func (c *Comparison) add(f Finding) { c.Findings = append(c.Findings, f) }

func (c *Comparison) sourceFindings(in Input, src x509cert.Summary) {
	expiry(c, in, src, "SOURCE", "IPS's active certificate", "")
	if !src.ClientAuth {
		c.add(Finding{Code: "NO_CLIENT_AUTH_USAGE", Severity: Error, Message: "IPS's certificate's extended key usage does not allow TLS client authentication"})
	}
	if in.PinnedSubject != "" && src.Subject != in.PinnedSubject {
		c.add(Finding{Code: "PINNED_SUBJECT_DIFFERS", Severity: Error, Message: fmt.Sprintf("IPS's certificate has subject %q, but the connection pins %q; certsync will not upload it", src.Subject, in.PinnedSubject)})
	}
	if in.PinnedIssuer != "" && src.Issuer != in.PinnedIssuer {
		c.add(Finding{Code: "PINNED_ISSUER_DIFFERS", Severity: Error, Message: fmt.Sprintf("IPS's certificate has issuer %q, but the connection pins %q; certsync will not upload it", src.Issuer, in.PinnedIssuer)})
	}
}

func (c *Comparison) targetFindings(in Input, t Target) {
	if t.Mapping.Certificate != nil && !t.MatchesSource {
		expiry(c, in, t.Summary, "TARGET", "SF's mapped certificate", t.Mapping.ID)
	}
	if t.Mapping.IntegrationName != ExpectedIntegrationName && !(t.Mapping.Record != nil && t.Mapping.IntegrationName == "") {
		c.add(Finding{Code: "INTEGRATION_NAME_WRONG", Severity: Error, MappingID: t.Mapping.ID,
			Message: fmt.Sprintf("the mapping's integration name is %q; SF answers IPS with 403 unless it is %q (KBA 3417151); re-registration uploads it with the right name", t.Mapping.IntegrationName, ExpectedIntegrationName)})
	}
	if strings.TrimSpace(t.Mapping.LoginName) == "" {
		c.add(Finding{Code: "LOGIN_NAME_EMPTY", Severity: Warning, MappingID: t.Mapping.ID,
			Message: "the mapping has no login name: SF's built-in technical user applies, which may lack permissions for custom fields (KBA 3363735)"})
	}
}

// expiry reports a certificate's validity in IPS's terms: warnings from 30
// days before expiry, sharper at 14 and 3 days (IPS mails at 30/14/3 days).
func expiry(c *Comparison, in Input, s x509cert.Summary, prefix, what, mappingID string) {
	days := s.DaysUntilExpiry(in.Now)
	switch {
	case s.NotYetValid(in.Now):
		c.add(Finding{Code: prefix + "_NOT_YET_VALID", Severity: Error, MappingID: mappingID, Message: fmt.Sprintf("%s is not valid before %s", what, s.NotBefore.UTC().Format(time.RFC3339))})
	case s.Expired(in.Now):
		c.add(Finding{Code: prefix + "_EXPIRED", Severity: Error, MappingID: mappingID, Message: fmt.Sprintf("%s expired on %s; renew it in IPS, then upload it to SF", what, s.NotAfter.UTC().Format(time.RFC3339))})
	case s.NotAfter.Sub(in.Now) <= in.ExpiryWarning:
		urgency := ""
		switch {
		case days < 3:
			urgency = "urgently: "
		case days < 14:
			urgency = "soon: "
		}
		c.add(Finding{Code: prefix + "_EXPIRES_SOON", Severity: Warning, MappingID: mappingID,
			Message: fmt.Sprintf("%s expires in %d days (%s); %srenew it in IPS and upload the new one to SF (SF needs the renewed certificate uploaded again, KBA 3419621)", what, days, s.NotAfter.UTC().Format("2006-01-02"), urgency)})
	}
}

// finish orders findings, computes the etag and the summary.
func (c *Comparison) finish(in Input) {
	sort.SliceStable(c.Findings, func(i, j int) bool { return c.Findings[i].Severity > c.Findings[j].Severity })
	h := sha256.New()
	fmt.Fprintf(h, "v1|%s|", c.Result)
	if c.Source != nil {
		h.Write([]byte(c.Source.SHA256))
	}
	for _, t := range c.Targets {
		if t.Candidate {
			fp := t.Summary.SHA256
			if fp == "" {
				fp = "sha1:" + t.Summary.SHA1
			}
			fmt.Fprintf(h, "|%s=%s", t.Mapping.ID, fp)
		}
	}
	c.Etag = hex.EncodeToString(h.Sum(nil)[:16])
	switch c.Result {
	case ResultMatch:
		c.Summary = fmt.Sprintf("SF maps exactly IPS's active certificate (mapping %s)", c.MappingID)
	case ResultMismatch:
		c.Summary = fmt.Sprintf("SF maps another certificate than IPS's active one (mapping %s)", c.MappingID)
	case ResultTargetMissing:
		c.Summary = "SF maps no certificate for IPS"
	case ResultSourceMissing:
		c.Summary = "IPS's active certificate could not be read"
	case ResultAmbiguous:
		c.Summary = "several SF mappings could be IPS's"
	}
}

// sameName reports whether two certificates have the same issuer and subject,
// SF's key for a mapping (compared as encoded, as SF does).
func sameName(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawIssuer, b.RawIssuer)
}
