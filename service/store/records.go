package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Target records and IPS job records (schema version 4), for connections
// whose SF registry is manual.

const targetRecordColumns = `id, connection, absent, configuration_name, integration_name, login_name,
	sha256, sha1, der, note, recorded_by, record_time, operation`

// scanTargetRecord reads targetRecordColumns followed by seq, which only
// the page token needs.
func scanTargetRecord(r row) (*TargetRecord, int64, error) {
	var c TargetRecord
	var t, seq int64
	if err := r.Scan(&c.ID, &c.Connection, &c.Absent, &c.ConfigurationName, &c.IntegrationName, &c.LoginName,
		&c.SHA256, &c.SHA1, &c.DER, &c.Note, &c.RecordedBy, &t, &c.Operation, &seq); err != nil {
		return nil, 0, err
	}
	c.RecordTime = fromColumnTime(t)
	// The drivers disagree on whether an empty blob reads as nil; the
	// record says the same either way.
	if len(c.DER) == 0 {
		c.DER = nil
	}
	return &c, seq, nil
}

// RecordTarget appends r, see Store.RecordTarget. The connection is
// required, and a record that is not Absent needs SHA256, SHA1 or DER; the
// store neither derives the fingerprints from DER nor checks them against
// it (the caller does).
func (s *sqlStore) RecordTarget(ctx context.Context, r *TargetRecord, audit *AuditEvent) (*TargetRecord, error) {
	if r == nil || r.Connection == "" {
		return nil, errors.New("store: a target record needs a Connection")
	}
	if !r.Absent && r.SHA256 == "" && r.SHA1 == "" && len(r.DER) == 0 {
		return nil, errors.New("store: a target record that is not Absent needs SHA256, SHA1 or DER")
	}
	in := *r
	in.SHA256, in.SHA1 = strings.ToLower(in.SHA256), strings.ToLower(in.SHA1)
	in.DER = nil // an empty DER reads back as nil, so return it as such
	if len(r.DER) > 0 {
		in.DER = bytes.Clone(r.DER)
	}
	if in.ID == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b) // never fails on supported platforms
		in.ID = hex.EncodeToString(b)
	}
	if in.RecordTime.IsZero() {
		in.RecordTime = s.now()
	}
	in.RecordTime = in.RecordTime.UTC()
	t, err := columnTime("record time", in.RecordTime)
	if err != nil {
		return nil, err
	}
	// pgx writes a nil []byte as NULL, which the NOT NULL column refuses.
	derArg := in.DER
	if derArg == nil {
		derArg = []byte{}
	}
	var stored AuditEvent
	err = s.b.inTx(ctx, func(q querier) error {
		if s.d.lockTargetRecords != "" {
			if _, err := q.exec(ctx, s.d.lockTargetRecords); err != nil {
				return err
			}
		}
		// The lock (or SQLite's exclusive transaction) keeps the answer
		// true until the insert.
		var taken int
		err := q.queryRow(ctx, `SELECT 1 FROM target_records WHERE id = $1`, in.ID).Scan(&taken)
		if err == nil {
			return fmt.Errorf("%w: target record id %q is taken", ErrConflict, in.ID)
		}
		if !errors.Is(err, errNoRows) {
			return err
		}
		var seq int64
		if err := q.queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM target_records`).Scan(&seq); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO target_records (`+targetRecordColumns+`, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			in.ID, in.Connection, in.Absent, in.ConfigurationName, in.IntegrationName, in.LoginName,
			in.SHA256, in.SHA1, derArg, in.Note, in.RecordedBy, t, in.Operation, seq); err != nil {
			// Not mapped to ErrConflict: with the check above under the
			// lock, a unique violation here is a bug, not a taken id.
			return err
		}
		if audit != nil {
			stored, err = s.appendAudit(ctx, q, audit)
			return err
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("store: record target mapping for %s: %w", in.Connection, err)
	}
	if audit != nil {
		*audit = stored
	}
	out := in
	out.DER = bytes.Clone(in.DER)
	return &out, nil
}

// LatestTargetRecord returns the connection's newest record (RecordTime,
// then insertion order) or ErrNotFound.
func (s *sqlStore) LatestTargetRecord(ctx context.Context, connection string) (*TargetRecord, error) {
	rec, _, err := scanTargetRecord(s.b.queryRow(ctx, `SELECT `+targetRecordColumns+`, seq FROM target_records
		WHERE connection = $1 ORDER BY record_time DESC, seq DESC LIMIT 1`, connection))
	switch {
	case errors.Is(err, errNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("store: latest target record of %s: %w", connection, err)
	}
	return rec, nil
}

// ListTargetRecords returns records newest first (RecordTime, then
// insertion order, both descending) and the token of the next page, "" on
// the last; an empty connection lists every connection's.
func (s *sqlStore) ListTargetRecords(ctx context.Context, connection string, size int, token string) ([]*TargetRecord, string, error) {
	size = pageSize(size)
	var where []string
	var args []any
	if connection != "" {
		args = append(args, connection)
		where = append(where, fmt.Sprintf("connection = $%d", len(args)))
	}
	if token != "" {
		p, err := decodePageToken(token, connection)
		if err != nil {
			return nil, "", err
		}
		// Both are set in every token this listing issues, and never
		// both in another listing's (the ID is carried for that alone).
		if p.Sequence <= 0 || p.ID == "" {
			return nil, "", ErrInvalidPageToken
		}
		// Keyset paging, as ListOperations does; seq is unique.
		args = append(args, p.Time, p.Sequence)
		where = append(where, fmt.Sprintf("(record_time < $%d OR (record_time = $%d AND seq < $%d))",
			len(args)-1, len(args)-1, len(args)))
	}
	sql := `SELECT ` + targetRecordColumns + `, seq FROM target_records`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, size+1)
	sql += fmt.Sprintf(` ORDER BY record_time DESC, seq DESC LIMIT $%d`, len(args))
	type seqRecord struct {
		r   *TargetRecord
		seq int64
	}
	scan := func(r row) (seqRecord, error) {
		rec, seq, err := scanTargetRecord(r)
		return seqRecord{rec, seq}, err
	}
	rows, err := queryAll(ctx, s.b, "list target records", scan, sql, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > size {
		rows = rows[:size]
		last := rows[size-1]
		next = encodePageToken(pageToken{Time: last.r.RecordTime.UnixNano(), Sequence: last.seq, ID: last.r.ID,
			Connection: connection})
	}
	out := make([]*TargetRecord, len(rows))
	for i, r := range rows {
		out[i] = r.r
	}
	return out, next, nil
}

const jobColumns = `connection, job_id, job_type, status, done, succeeded, cause, summary, started_by, operation,
	start_time, update_time, end_time, source_sha256`

func scanJob(r row) (*JobRecord, error) {
	var j JobRecord
	var start, update int64
	var end *int64
	if err := r.Scan(&j.Connection, &j.JobID, &j.Type, &j.Status, &j.Done, &j.Succeeded, &j.Cause, &j.Summary,
		&j.StartedBy, &j.Operation, &start, &update, &end, &j.SourceSHA256); err != nil {
		return nil, err
	}
	j.StartTime, j.UpdateTime = fromColumnTime(start), fromColumnTime(update)
	if end != nil {
		j.EndTime = fromColumnTime(*end)
	}
	return &j, nil
}

// PutJob stores j, replacing the record with the same Connection and JobID
// (see Store.PutJob). Connection and JobID are required. A zero UpdateTime
// is set to now. A zero StartTime keeps the stored record's start time, or
// is set to now for a new record, so that updating a job's status without
// its start time does not move it in LatestJobs. The times stored are
// written back to j. A zero EndTime stays zero.
func (s *sqlStore) PutJob(ctx context.Context, j *JobRecord) error {
	if j == nil || j.Connection == "" || j.JobID == "" {
		return errors.New("store: a job record needs a Connection and a JobID")
	}
	now := s.now()
	keepStart := j.StartTime.IsZero()
	start, update := j.StartTime, j.UpdateTime
	if keepStart {
		start = now
	}
	if update.IsZero() {
		update = now
	}
	st, err := columnTime("job start time", start)
	if err != nil {
		return err
	}
	ut, err := columnTime("job update time", update)
	if err != nil {
		return err
	}
	var et *int64
	if !j.EndTime.IsZero() {
		n, err := columnTime("job end time", j.EndTime)
		if err != nil {
			return err
		}
		et = &n
	}
	var storedStart int64
	err = s.b.inTx(ctx, func(q querier) error {
		return q.queryRow(ctx, `INSERT INTO ips_jobs (`+jobColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT (connection, job_id) DO UPDATE SET
				job_type = excluded.job_type, status = excluded.status, done = excluded.done,
				succeeded = excluded.succeeded, cause = excluded.cause, summary = excluded.summary,
				started_by = excluded.started_by, operation = excluded.operation,
				start_time = CASE WHEN $15 THEN ips_jobs.start_time ELSE excluded.start_time END,
				update_time = excluded.update_time, end_time = excluded.end_time,
				source_sha256 = CASE WHEN excluded.source_sha256 = '' THEN ips_jobs.source_sha256 ELSE excluded.source_sha256 END
			RETURNING start_time, source_sha256`,
			j.Connection, j.JobID, j.Type, j.Status, j.Done, j.Succeeded, j.Cause, j.Summary, j.StartedBy,
			j.Operation, st, ut, et, j.SourceSHA256, keepStart).Scan(&storedStart, &j.SourceSHA256)
	})
	if err != nil {
		return fmt.Errorf("store: put job %s of %s: %w", j.JobID, j.Connection, err)
	}
	j.StartTime, j.UpdateTime = fromColumnTime(storedStart), update.UTC()
	return nil
}

// GetJob returns one job's record or ErrNotFound.
func (s *sqlStore) GetJob(ctx context.Context, connection, jobID string) (*JobRecord, error) {
	j, err := scanJob(s.b.queryRow(ctx, `SELECT `+jobColumns+` FROM ips_jobs WHERE connection = $1 AND job_id = $2`,
		connection, jobID))
	switch {
	case errors.Is(err, errNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("store: get job %s of %s: %w", jobID, connection, err)
	}
	return j, nil
}

// LatestJobs returns up to limit job records of the connection, newest
// StartTime first, then JobID descending. A limit of 0 or less means 50,
// and more than 1000 means 1000, as for page sizes.
func (s *sqlStore) LatestJobs(ctx context.Context, connection string, limit int) ([]*JobRecord, error) {
	return queryAll(ctx, s.b, "latest jobs", scanJob, `SELECT `+jobColumns+` FROM ips_jobs
		WHERE connection = $1 ORDER BY start_time DESC, job_id DESC LIMIT $2`, connection, pageSize(limit))
}
