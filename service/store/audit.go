package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// auditHashDomain separates this hash from any other SHA-256 over similar
// bytes and names the encoding, so that a future encoding can coexist.
const auditHashDomain = "certsync.audit.v1"

// HashEvent returns the hex SHA-256 that chains ev to its predecessor: over
// a domain tag, PreviousHash and every other field except Hash itself
// (Sequence included, Time as RFC 3339 with nanoseconds in UTC), each
// preceded by its length as 8 bytes big-endian. The length prefixes make
// the encoding unambiguous: no two different events encode alike, however
// their texts are split between fields. Changing this breaks every stored
// chain; a golden test pins it.
func HashEvent(ev *AuditEvent) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range []string{
		auditHashDomain,
		ev.PreviousHash,
		strconv.FormatInt(ev.Sequence, 10),
		ev.Time.UTC().Format(time.RFC3339Nano),
		ev.Identity,
		ev.Role,
		ev.RPC,
		ev.Connection,
		ev.RequestID,
		ev.Reason,
		ev.Outcome,
		ev.Operation,
	} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

const auditColumns = `sequence, event_time, identity, role, rpc, connection, request_id, reason, outcome, operation, previous_hash, hash`

func scanAudit(r row) (*AuditEvent, error) {
	var ev AuditEvent
	var t int64
	if err := r.Scan(&ev.Sequence, &t, &ev.Identity, &ev.Role, &ev.RPC, &ev.Connection, &ev.RequestID,
		&ev.Reason, &ev.Outcome, &ev.Operation, &ev.PreviousHash, &ev.Hash); err != nil {
		return nil, err
	}
	ev.Time = fromColumnTime(t)
	return &ev, nil
}

// appendAudit extends the chain within the write transaction q and returns
// the event as stored; the caller copies it out once the transaction has
// committed, so that a rolled-back append leaves the caller's event as it
// was.
func (s *sqlStore) appendAudit(ctx context.Context, q querier, ev *AuditEvent) (AuditEvent, error) {
	e := *ev
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	t, err := columnTime("audit event time", e.Time)
	if err != nil {
		return e, err
	}
	// Locking the head row serializes appenders on PostgreSQL (SQLite's
	// write transactions are exclusive anyway): the second appender reads
	// the head only after the first has committed its event.
	var headSeq int64
	var headHash string
	if err := q.queryRow(ctx, `SELECT sequence, hash FROM audit_head WHERE id = 1`+s.d.forUpdate).
		Scan(&headSeq, &headHash); err != nil {
		return e, fmt.Errorf("store: read audit chain head: %w", err)
	}
	e.Sequence = headSeq + 1
	e.PreviousHash = headHash
	e.Hash = HashEvent(&e)
	if _, err := q.exec(ctx, `INSERT INTO audit_events (`+auditColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		e.Sequence, t, e.Identity, e.Role, e.RPC, e.Connection, e.RequestID, e.Reason, e.Outcome,
		e.Operation, e.PreviousHash, e.Hash); err != nil {
		return e, fmt.Errorf("store: append audit event: %w", err)
	}
	if _, err := q.exec(ctx, `UPDATE audit_head SET sequence = $1, hash = $2 WHERE id = 1`,
		e.Sequence, e.Hash); err != nil {
		return e, fmt.Errorf("store: advance audit chain head: %w", err)
	}
	return e, nil
}

// AppendAudit appends ev and sets its Sequence, PreviousHash, Hash, and
// Time when it was zero.
func (s *sqlStore) AppendAudit(ctx context.Context, ev *AuditEvent) error {
	if ev == nil {
		return errors.New("store: nil audit event")
	}
	var stored AuditEvent
	err := s.b.inTx(ctx, func(q querier) error {
		var err error
		stored, err = s.appendAudit(ctx, q, ev)
		return err
	})
	if err != nil {
		return err
	}
	*ev = stored
	return nil
}

// ListAudit returns events newest first, optionally for one connection.
func (s *sqlStore) ListAudit(ctx context.Context, connection string, size int, token string) ([]*AuditEvent, string, error) {
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
		if p.Sequence <= 0 {
			return nil, "", ErrInvalidPageToken
		}
		args = append(args, p.Sequence)
		where = append(where, fmt.Sprintf("sequence < $%d", len(args)))
	}
	sql := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, size+1)
	sql += fmt.Sprintf(` ORDER BY sequence DESC LIMIT $%d`, len(args))
	rs, err := s.b.query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list audit: %w", err)
	}
	defer rs.Close()
	var out []*AuditEvent
	for rs.Next() {
		ev, err := scanAudit(rs)
		if err != nil {
			return nil, "", fmt.Errorf("store: list audit: %w", err)
		}
		out = append(out, ev)
	}
	if err := rs.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list audit: %w", err)
	}
	next := ""
	if len(out) > size {
		out = out[:size]
		next = encodePageToken(pageToken{Sequence: out[size-1].Sequence, Connection: connection})
	}
	return out, next, nil
}

// VerifyAudit walks the chain from the first event and reports the first
// one that is missing, altered, or not linked to its predecessor.
//
// It reads the head first and then the events up to the head's sequence:
// the head moves in the same transaction as each insert, so every event up
// to it is already visible, and appends running meanwhile do not disturb
// the walk.
func (s *sqlStore) VerifyAudit(ctx context.Context) (AuditVerification, error) {
	var headSeq int64
	var headHash string
	if err := s.b.queryRow(ctx, `SELECT sequence, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		return AuditVerification{}, fmt.Errorf("store: read audit chain head: %w", err)
	}
	rs, err := s.b.query(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE sequence <= $1 ORDER BY sequence`, headSeq)
	if err != nil {
		return AuditVerification{}, fmt.Errorf("store: verify audit: %w", err)
	}
	defer rs.Close()
	v := AuditVerification{}
	bad := func(seq int64, format string, args ...any) (AuditVerification, error) {
		v.FirstBadSequence = seq
		v.Message = fmt.Sprintf("audit event %d: ", seq) + fmt.Sprintf(format, args...)
		return v, nil
	}
	want := int64(1)
	prev := ""
	for rs.Next() {
		ev, err := scanAudit(rs)
		if err != nil {
			return AuditVerification{}, fmt.Errorf("store: verify audit: %w", err)
		}
		if ev.Sequence != want {
			return bad(want, "missing (the next stored event is %d)", ev.Sequence)
		}
		if ev.PreviousHash != prev {
			return bad(ev.Sequence, "previous_hash does not match the hash of event %d", want-1)
		}
		if got := HashEvent(ev); got != ev.Hash {
			return bad(ev.Sequence, "content does not match its hash (altered after it was written)")
		}
		prev = ev.Hash
		want++
		v.EventsChecked++
	}
	if err := rs.Err(); err != nil {
		return AuditVerification{}, fmt.Errorf("store: verify audit: %w", err)
	}
	if want-1 != headSeq {
		return bad(want, "missing (the chain head says the last event is %d)", headSeq)
	}
	if prev != headHash {
		return bad(headSeq, "hash does not match the chain head")
	}
	v.Intact = true
	v.Message = fmt.Sprintf("%d audit events verified", v.EventsChecked)
	return v, nil
}
