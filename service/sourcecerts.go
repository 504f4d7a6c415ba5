package service

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// IPS has no API that downloads its outbound certificates, so operators
// import each version they download from IPS > Outbound Certificate; the
// store keeps them, and a connection whose source.type is "imported" uses
// the one marked Active.

var errNoStoreImports = fault.New(fault.Unimplemented, "NO_STORE",
	"this server runs without a store: imported source certificates cannot be kept")

// sourceTypeImported is the source.type that reads imported versions.
const sourceTypeImported = "imported"

// ImportSourceCertificate implements certsync.v1.CertSyncService.
func (s *Server) ImportSourceCertificate(ctx context.Context, req *certsyncv1.ImportSourceCertificateRequest) (*certsyncv1.ImportSourceCertificateResponse, error) {
	if s.st == nil {
		return nil, toStatus(ctx, s.log, errNoStoreImports)
	}
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	cert, err := parseSourceCertificate(req.GetCertificate())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	now := s.now()
	ev := s.newAudit(ctx, certsyncv1.CertSyncService_ImportSourceCertificate_FullMethodName)
	if ev != nil {
		ev.Connection, ev.Reason = c.Name(), req.GetReason()
	}
	id := newVersionID()
	v, err := s.st.ImportSourceCertificate(ctx, &store.SourceCertificate{
		ID: id, Connection: c.Config.ID, DER: cert.Raw, Active: req.GetActive(), ImportTime: now,
		ImportedBy: callerIdentity(ctx).Name, Reason: req.GetReason(),
	}, ev)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.audited(ctx, ev)
	if s.gate != nil && c.Config.Source.Type == sourceTypeImported {
		// What IPS's active certificate is may have changed.
		s.gate.Invalidate(c.Config.ID)
	}
	repeat := v.ID != id
	s.log.InfoContext(ctx, "source certificate imported", "connection", c.Name(), "version", v.ID,
		"sha256", x509cert.SHA256Fingerprint(v.DER), "active", v.Active, "repeat", repeat)
	resp := &certsyncv1.ImportSourceCertificateResponse{SourceCertificate: sourceCertificateProto(v, now)}
	for _, f := range s.importFindings(ctx, c, cert, v, repeat, now) {
		resp.Findings = append(resp.Findings, &certsyncv1.ComparisonFinding{
			Code: f.Code, Severity: severityProto[f.Severity], Message: f.Message, MappingId: f.MappingID,
		})
	}
	return resp, nil
}

// parseSourceCertificate accepts exactly one certificate, PEM or DER, as
// IPS's Outbound Certificate tab downloads it. x509cert refuses private
// keys without reading them.
func parseSourceCertificate(data []byte) (*x509.Certificate, error) {
	return parseOneCertificate("certificate", data, func(ie *x509cert.InputError) string {
		if ie.Reason == x509cert.ReasonTooManyCertificates {
			return fmt.Sprintf("the input holds %s certificates, but IPS's Outbound Certificate download holds one: "+
				"send only IPS's certificate, without its chain or CA", ie.Metadata["certificates"])
		}
		return ie.Message
	})
}

// parseOneCertificate parses the one certificate a request carries in
// field, PEM or DER; explain, when not nil, words the parser's refusal for
// the caller's situation.
func parseOneCertificate(field string, data []byte, explain func(*x509cert.InputError) string) (*x509.Certificate, error) {
	certs, err := x509cert.Parse(data, x509cert.Limits{MaxCertificates: 1})
	var ie *x509cert.InputError
	if errors.As(err, &ie) {
		msg := ie.Message
		if explain != nil {
			msg = explain(ie)
		}
		fe := fault.Invalid(field, ie.Reason, "%s: %s", field, msg)
		for k, v := range ie.Metadata {
			fe = fe.With(k, v)
		}
		return nil, fe
	}
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func newVersionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// importFindings says what the import means: for a certificate IPS shows
// as Active, how it compares with what SF maps (compare's findings, with
// RENEWAL_NOT_UPLOADED when SF still maps the previous certificate of the
// same subject and issuer) and when it expires; for an inactive one,
// whether SF maps it although IPS no longer uses it.
func (s *Server) importFindings(ctx context.Context, c *inventory.Connection, cert *x509.Certificate, v *store.SourceCertificate, repeat bool, now time.Time) []compare.Finding {
	var out []compare.Finding
	add := func(f compare.Finding) { out = append(out, f) }
	if repeat {
		add(compare.Finding{Code: "ALREADY_IMPORTED", Severity: compare.Info, Message: fmt.Sprintf(
			"this certificate was imported before (version %s, imported %s by %s); only whether it is Active was updated",
			v.ID, v.ImportTime.UTC().Format(time.RFC3339), v.ImportedBy)})
	}
	if c.Config.Source.Type != sourceTypeImported {
		add(compare.Finding{Code: "SOURCE_NOT_IMPORTED", Severity: compare.Info, Message: fmt.Sprintf(
			"%s reads IPS's certificate from its %s source, not from imports: this version is kept, but the gate and re-registration do not use it (set source.type: imported to use it)",
			c.Name(), c.Config.Source.Type)})
	}
	if cert.IsCA {
		add(compare.Finding{Code: "CA_CERTIFICATE", Severity: compare.Warning, Message: "this is a CA certificate, not an outbound certificate: IPS's Outbound Certificate tab downloads the source system's own certificate"})
	}
	// SF's side, when certsync can read it.
	var mappings []registry.Mapping
	known := false
	if ms, err := c.Mappings.List(ctx); errors.Is(err, registry.ErrNotRecorded) {
		add(compare.Finding{Code: "MANUAL_REGISTRY", Severity: compare.Info, Message: fmt.Sprintf(
			"%s uses the manual registry driver and nobody has recorded what SF shows: record it (certsyncctl record-mapping) to compare it with this certificate", c.Name())})
	} else if err != nil {
		msg := "SF's mappings could not be read"
		var re *registry.Error
		if errors.As(err, &re) {
			msg += ": " + re.Message
		} else {
			s.log.WarnContext(ctx, "import: registry not read", "connection", c.Name(), "err", err)
		}
		add(compare.Finding{Code: "REGISTRY_UNREADABLE", Severity: compare.Warning, Message: msg +
			"; the certificate is stored: compare it with SF's mappings later (certsyncctl compare " + c.Config.ID + ")"})
	} else {
		mappings, known = ms, true
	}
	if !v.Active {
		for _, m := range mappings {
			if m.Certificate != nil && m.Certificate.Equal(cert) {
				add(compare.Finding{Code: "SF_MAPS_INACTIVE", Severity: compare.Warning, MappingID: m.ID, Message: fmt.Sprintf(
					"SF maps this certificate (mapping %s), which IPS does not show as Active: IPS authenticates with its Active certificate, which SF will reject until it is uploaded; import the Active one with --active",
					m.ID)})
			}
		}
		return sortFindings(out)
	}
	// What compare says of IPS's active certificate: its expiry (30, 14
	// and 3 days, as IPS warns), its usage and the pinned names; and, when
	// SF's mappings are known, how they relate to it.
	cmp := compare.Compare(compare.Input{
		Source: cert, Mappings: mappings, Now: now,
		PinnedSubject: c.Config.PinnedSubject, PinnedIssuer: c.Config.PinnedIssuer,
	})
	for _, f := range cmp.Findings {
		switch {
		case !known && f.Code == "TARGET_MISSING":
			continue // unknown, not missing
		case f.Code == "RENEWAL_NOT_UPLOADED":
			f.Message = renewalMessage(c, cmp, f)
		}
		add(f)
	}
	if known && cmp.Result == compare.ResultMatch {
		add(compare.Finding{Code: "MAPPED_IN_SF", Severity: compare.Info, MappingID: cmp.MappingID, Message: fmt.Sprintf(
			"SF maps exactly this certificate (mapping %s)", cmp.MappingID)})
	}
	return sortFindings(out)
}

// renewalMessage explains RENEWAL_NOT_UPLOADED for an import: IPS made a
// new Active certificate and SF still maps the previous one.
func renewalMessage(c *inventory.Connection, cmp compare.Comparison, f compare.Finding) string {
	old := ""
	for _, t := range cmp.Targets {
		if t.Mapping.ID == f.MappingID {
			old = t.Summary.SHA256
		}
	}
	msg := fmt.Sprintf("SF maps another certificate with the same subject and issuer (mapping %s, SHA-256 %s): "+
		"IPS renewed or regenerated its certificate, and this new Active one (SHA-256 %s) must be uploaded to SF; "+
		"SF refuses a second certificate with the same subject and issuer, so the old mapping must be deleted first. ",
		f.MappingID, old, cmp.Source.SHA256)
	if c.Config.Source.Type == sourceTypeImported {
		return msg + "Re-registration does both: certsyncctl reregister " + c.Config.ID
	}
	return msg + fmt.Sprintf("Re-registration uploads the certificate of the connection's %s source, so make sure it holds this one", c.Config.Source.Type)
}

// sortFindings puts errors first, keeping the order otherwise.
func sortFindings(fs []compare.Finding) []compare.Finding {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Severity > fs[j].Severity })
	return fs
}

// ListSourceCertificates implements certsync.v1.CertSyncService.
func (s *Server) ListSourceCertificates(ctx context.Context, req *certsyncv1.ListSourceCertificatesRequest) (*certsyncv1.ListSourceCertificatesResponse, error) {
	if s.st == nil {
		return nil, toStatus(ctx, s.log, errNoStoreImports)
	}
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	list, next, err := s.st.ListSourceCertificates(ctx, c.Config.ID, pageSize(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	now := s.now()
	resp := &certsyncv1.ListSourceCertificatesResponse{NextPageToken: next}
	for _, v := range list {
		resp.SourceCertificates = append(resp.SourceCertificates, sourceCertificateProto(v, now))
	}
	return resp, nil
}

func sourceCertificateProto(v *store.SourceCertificate, now time.Time) *certsyncv1.SourceCertificate {
	p := &certsyncv1.SourceCertificate{Id: v.ID, Active: v.Active, ImportTime: timestampOrNil(v.ImportTime), ImportedBy: v.ImportedBy}
	if cert, err := x509.ParseCertificate(v.DER); err == nil {
		p.Certificate = summaryProto(x509cert.Summarize(cert), now)
	} else {
		// Imports are parsed before they are stored; show what is known.
		p.Certificate = &certsyncv1.CertificateSummary{Sha256Fingerprint: x509cert.SHA256Fingerprint(v.DER), Der: v.DER}
	}
	return p
}
