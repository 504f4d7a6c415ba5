package registry

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// ErrNotRecorded: nobody has recorded what SF shows for a manual
// connection yet, so nothing is known of SF's side.
var ErrNotRecorded = errors.New("nobody has recorded SF's mapping for this connection yet (RecordTargetMapping)")

// Records is the part of the store the manual driver reads.
type Records interface {
	LatestTargetRecord(ctx context.Context, connection string) (*store.TargetRecord, error)
}

// Manual lists what a person last recorded of IPS's mapping in SF's
// Security Center (the manual driver): one mapping, or none when the latest
// record says SF shows none. It cannot change SF: a manual re-registration
// tells a person what to do instead.
type Manual struct {
	Records    Records
	Connection string
}

// List returns the recorded mapping, or ErrNotRecorded.
func (m *Manual) List(ctx context.Context) ([]Mapping, error) {
	if m.Records == nil {
		return nil, ErrNotRecorded // a server without a store keeps no records
	}
	rec, err := m.Records.LatestTargetRecord(ctx, m.Connection)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotRecorded
	}
	if err != nil {
		return nil, fmt.Errorf("read the recorded mapping: %w", err)
	}
	return RecordedMappings(rec)
}

// RecordedMappings turns a record into what the comparison reads: no
// mapping when SF showed none, else the one recorded, tagged as a person's.
func RecordedMappings(rec *store.TargetRecord) ([]Mapping, error) {
	if rec.Absent {
		return []Mapping{}, nil
	}
	mp := Mapping{
		ID:                "recorded-" + rec.ID,
		ConfigurationName: rec.ConfigurationName,
		IntegrationName:   rec.IntegrationName,
		LoginName:         rec.LoginName,
		Record:            &Record{By: rec.RecordedBy, At: rec.RecordTime, Note: rec.Note, Operation: rec.Operation},
	}
	if len(rec.DER) > 0 {
		c, err := x509.ParseCertificate(rec.DER)
		if err != nil {
			return nil, fmt.Errorf("the recorded certificate (record %s) does not parse", rec.ID)
		}
		mp.Certificate = c
		return []Mapping{mp}, nil
	}
	mp.SHA256, mp.SHA1 = formatHex(rec.SHA256), formatHex(rec.SHA1)
	return []Mapping{mp}, nil
}

func formatHex(h string) string {
	if h == "" {
		return ""
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return ""
	}
	return x509cert.FormatFingerprint(b)
}
