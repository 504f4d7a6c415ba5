package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidPageToken: a page token that this store did not issue, or that
// was issued for another filter.
var ErrInvalidPageToken = errors.New("store: invalid page token")

// The operation document has its own types, rather than json-encoding
// Operation, so that the stored format changes only with a migration and
// never because someone edits a json tag on the domain types; and so that
// nothing is lost to omitempty (nil and empty slices and maps stay apart).
// Times are RFC 3339 strings in UTC with nanoseconds; "" is the zero time.

type opDoc struct {
	Reason               string      `json:"reason"`
	RequestedBy          string      `json:"requested_by"`
	ApprovedBy           string      `json:"approved_by"`
	ValidateOnly         bool        `json:"validate_only"`
	Automatic            bool        `json:"automatic"`
	Manual               bool        `json:"manual"` // from schema version 4
	LockKeys             []string    `json:"lock_keys"`
	Etag                 string      `json:"etag"`
	MappingID            string      `json:"mapping_id"`
	SourceCertificateDER []byte      `json:"source_certificate_der"`
	Backup               *mappingDoc `json:"backup"`
	NewMappingID         string      `json:"new_mapping_id"`
	Upload               *mappingDoc `json:"upload"`
	Steps                []stepDoc   `json:"steps"`
	Error                *errorDoc   `json:"error"`
	FinalProbe           *probeDoc   `json:"final_probe"`
	CancelRequested      bool        `json:"cancel_requested"`
	CancelReason         string      `json:"cancel_reason"`
	Notes                []string    `json:"notes"`
	EndTime              string      `json:"end_time"`
}

type mappingDoc struct {
	ID                string `json:"id"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	CertificateDER    []byte `json:"certificate_der"`
	SHA256            string `json:"sha256"` // from schema version 4
	SHA1              string `json:"sha1"`   // from schema version 4
}

// Documents written before schema version 4 lack a step's instruction,
// deadline and confirmed_by, a mapping's sha256 and sha1, and an
// operation's manual: they decode as nil, "" and false, which is what
// those operations had.
type stepDoc struct {
	Kind        string          `json:"kind"`
	State       string          `json:"state"`
	Message     string          `json:"message"`
	StartTime   string          `json:"start_time"`
	EndTime     string          `json:"end_time"`
	Attempts    int             `json:"attempts"`
	Instruction *instructionDoc `json:"instruction"`
	Deadline    string          `json:"deadline"`
	ConfirmedBy string          `json:"confirmed_by"`
	// From schema version 5.
	JobRequested string `json:"job_requested,omitempty"`
}

type instructionDoc struct {
	Text              string `json:"text"`
	CertificateDER    []byte `json:"certificate_der"`
	ConfigurationName string `json:"configuration_name"`
	IntegrationName   string `json:"integration_name"`
	LoginName         string `json:"login_name"`
	SHA256            string `json:"sha256"`
}

type errorDoc struct {
	Code     string            `json:"code"`
	Reason   string            `json:"reason"`
	Message  string            `json:"message"`
	Metadata map[string]string `json:"metadata"`
}

type probeDoc struct {
	Outcome      string `json:"outcome"`
	HTTPStatus   int    `json:"http_status"`
	ErrorCode    string `json:"error_code"`
	ErrorMessage string `json:"error_message"`
	RequestURL   string `json:"request_url"`
	LatencyNanos int64  `json:"latency_ns"`
	ClientSHA256 string `json:"client_sha256"`
	CheckedAt    string `json:"checked_at"`
}

func docTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseDocTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err
}

func encodeMapping(m *Mapping) *mappingDoc {
	if m == nil {
		return nil
	}
	return &mappingDoc{ID: m.ID, ConfigurationName: m.ConfigurationName, IntegrationName: m.IntegrationName,
		LoginName: m.LoginName, CertificateDER: m.CertificateDER, SHA256: m.SHA256, SHA1: m.SHA1}
}

func encodeInstruction(in *Instruction) *instructionDoc {
	if in == nil {
		return nil
	}
	return &instructionDoc{Text: in.Text, CertificateDER: in.CertificateDER, ConfigurationName: in.ConfigurationName,
		IntegrationName: in.IntegrationName, LoginName: in.LoginName, SHA256: in.SHA256}
}

func decodeInstruction(in *instructionDoc) *Instruction {
	if in == nil {
		return nil
	}
	return &Instruction{Text: in.Text, CertificateDER: in.CertificateDER, ConfigurationName: in.ConfigurationName,
		IntegrationName: in.IntegrationName, LoginName: in.LoginName, SHA256: in.SHA256}
}

func decodeMapping(m *mappingDoc) *Mapping {
	if m == nil {
		return nil
	}
	return &Mapping{ID: m.ID, ConfigurationName: m.ConfigurationName, IntegrationName: m.IntegrationName,
		LoginName: m.LoginName, CertificateDER: m.CertificateDER, SHA256: m.SHA256, SHA1: m.SHA1}
}

// encodeOpDoc returns the document for everything that is not a column.
func encodeOpDoc(op *Operation) (string, error) {
	d := opDoc{
		Reason: op.Reason, RequestedBy: op.RequestedBy, ApprovedBy: op.ApprovedBy,
		ValidateOnly: op.ValidateOnly, Automatic: op.Automatic, Manual: op.Manual, LockKeys: op.LockKeys,
		Etag: op.Etag, MappingID: op.MappingID, SourceCertificateDER: op.SourceCertificateDER,
		Backup: encodeMapping(op.Backup), NewMappingID: op.NewMappingID, Upload: encodeMapping(op.Upload),
		CancelRequested: op.CancelRequested, CancelReason: op.CancelReason,
		Notes: op.Notes, EndTime: docTime(op.EndTime),
	}
	if op.Steps != nil {
		d.Steps = make([]stepDoc, len(op.Steps))
		for i, s := range op.Steps {
			d.Steps[i] = stepDoc{Kind: string(s.Kind), State: string(s.State), Message: s.Message,
				StartTime: docTime(s.StartTime), EndTime: docTime(s.EndTime), Attempts: s.Attempts,
				Instruction: encodeInstruction(s.Instruction), Deadline: docTime(s.Deadline), ConfirmedBy: s.ConfirmedBy,
				JobRequested: docTime(s.JobRequested)}
		}
	}
	if e := op.Error; e != nil {
		d.Error = &errorDoc{Code: e.Code, Reason: e.Reason, Message: e.Message, Metadata: e.Metadata}
	}
	if p := op.FinalProbe; p != nil {
		d.FinalProbe = &probeDoc{Outcome: p.Outcome, HTTPStatus: p.HTTPStatus, ErrorCode: p.ErrorCode,
			ErrorMessage: p.ErrorMessage, RequestURL: p.RequestURL, LatencyNanos: int64(p.Latency),
			ClientSHA256: p.ClientSHA256, CheckedAt: docTime(p.CheckedAt)}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode operation %s: %w", op.ID, err)
	}
	return string(b), nil
}

// decodeOpDoc fills op's non-column fields from the document.
func decodeOpDoc(doc string, op *Operation) error {
	var d opDoc
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return fmt.Errorf("decode operation %s: %w", op.ID, err)
	}
	var err error
	op.Reason, op.RequestedBy, op.ApprovedBy = d.Reason, d.RequestedBy, d.ApprovedBy
	op.ValidateOnly, op.Automatic, op.Manual, op.LockKeys = d.ValidateOnly, d.Automatic, d.Manual, d.LockKeys
	op.Etag, op.MappingID, op.SourceCertificateDER = d.Etag, d.MappingID, d.SourceCertificateDER
	op.Backup, op.NewMappingID, op.Upload = decodeMapping(d.Backup), d.NewMappingID, decodeMapping(d.Upload)
	op.CancelRequested, op.CancelReason = d.CancelRequested, d.CancelReason
	op.Notes = d.Notes
	if op.EndTime, err = parseDocTime(d.EndTime); err != nil {
		return fmt.Errorf("decode operation %s: %w", op.ID, err)
	}
	if d.Steps != nil {
		op.Steps = make([]Step, len(d.Steps))
		for i, s := range d.Steps {
			st := Step{Kind: StepKind(s.Kind), State: StepState(s.State), Message: s.Message, Attempts: s.Attempts,
				Instruction: decodeInstruction(s.Instruction), ConfirmedBy: s.ConfirmedBy}
			if st.StartTime, err = parseDocTime(s.StartTime); err != nil {
				return fmt.Errorf("decode operation %s: %w", op.ID, err)
			}
			if st.EndTime, err = parseDocTime(s.EndTime); err != nil {
				return fmt.Errorf("decode operation %s: %w", op.ID, err)
			}
			if st.JobRequested, err = parseDocTime(s.JobRequested); err != nil {
				return fmt.Errorf("decode operation %s: %w", op.ID, err)
			}
			if st.Deadline, err = parseDocTime(s.Deadline); err != nil {
				return fmt.Errorf("decode operation %s: %w", op.ID, err)
			}
			op.Steps[i] = st
		}
	}
	if e := d.Error; e != nil {
		op.Error = &OperationError{Code: e.Code, Reason: e.Reason, Message: e.Message, Metadata: e.Metadata}
	}
	if p := d.FinalProbe; p != nil {
		op.FinalProbe = &Probe{Outcome: p.Outcome, HTTPStatus: p.HTTPStatus, ErrorCode: p.ErrorCode,
			ErrorMessage: p.ErrorMessage, RequestURL: p.RequestURL, Latency: time.Duration(p.LatencyNanos),
			ClientSHA256: p.ClientSHA256}
		if op.FinalProbe.CheckedAt, err = parseDocTime(p.CheckedAt); err != nil {
			return fmt.Errorf("decode operation %s: %w", op.ID, err)
		}
	}
	return nil
}

// Column times are Unix nanoseconds, which reach from 1677 to 2262.
var (
	minColumnTime = time.Unix(0, math.MinInt64)
	maxColumnTime = time.Unix(0, math.MaxInt64)
)

func columnTime(field string, t time.Time) (int64, error) {
	if t.Before(minColumnTime) || t.After(maxColumnTime) {
		return 0, fmt.Errorf("store: %s %v is outside the storable range (years 1678 to 2261)", field, t)
	}
	return t.UnixNano(), nil
}

func fromColumnTime(n int64) time.Time { return time.Unix(0, n).UTC() }

// Page tokens are opaque to callers: base64url JSON of the last item's sort
// key and the filter it was issued for.
type pageToken struct {
	Time       int64  `json:"t,omitempty"`
	ID         string `json:"i,omitempty"`
	Sequence   int64  `json:"s,omitempty"`
	Connection string `json:"c,omitempty"`
}

func encodePageToken(p pageToken) string {
	b, _ := json.Marshal(p) // cannot fail: plain strings and integers
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s, connection string) (pageToken, error) {
	var p pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return p, ErrInvalidPageToken
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, ErrInvalidPageToken
	}
	if p.Connection != connection {
		return p, fmt.Errorf("%w: it was issued for another connection filter", ErrInvalidPageToken)
	}
	return p, nil
}

// pageSize applies the default and a ceiling that keeps one call bounded.
// Rejecting a negative size is the API layer's job; here it means default.
func pageSize(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 1000:
		return 1000
	}
	return n
}
