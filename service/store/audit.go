package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
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
	out, err := queryAll(ctx, s.b, "list audit", scanAudit, sql, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > size {
		out = out[:size]
		next = encodePageToken(pageToken{Sequence: out[size-1].Sequence, Connection: connection})
	}
	return out, next, nil
}

// chainWalk checks events, given in sequence order, against the rules of
// the chain, starting after the event (base, prev): the last one PruneAudit
// removed, or (0, "") at the start of the chain.
type chainWalk struct {
	base    int64  // events up to this sequence must be gone
	want    int64  // the sequence the next event must have
	prev    string // the hash its previous_hash must equal
	checked int64
}

func newChainWalk(cp auditCheckpoint) *chainWalk {
	return &chainWalk{base: cp.seq, want: cp.seq + 1, prev: cp.hash}
}

// next checks ev and, when it breaks the chain, returns the sequence to
// report and why; else 0 and "".
func (w *chainWalk) next(ev *AuditEvent) (int64, string) {
	switch {
	case ev.Sequence <= w.base:
		return ev.Sequence, fmt.Sprintf("still stored although the audit log was pruned up to sequence %d", w.base)
	case ev.Sequence != w.want:
		return w.want, fmt.Sprintf("missing (the next stored event is %d)", ev.Sequence)
	case ev.PreviousHash != w.prev:
		if w.base > 0 && w.want == w.base+1 {
			return ev.Sequence, fmt.Sprintf("previous_hash does not match the hash recorded when the events up to %d were pruned", w.base)
		}
		return ev.Sequence, fmt.Sprintf("previous_hash does not match the hash of event %d", w.want-1)
	case HashEvent(ev) != ev.Hash:
		return ev.Sequence, "content does not match its hash (altered after it was written)"
	}
	w.prev = ev.Hash
	w.want++
	w.checked++
	return 0, ""
}

// auditCheckpoint is the newest row of audit_checkpoints: every event up to
// seq was pruned, the last of them with hash hash, most recently at at. The
// zero value stands for "nothing pruned".
type auditCheckpoint struct {
	seq  int64
	hash string
	at   time.Time
}

func latestCheckpoint(ctx context.Context, q querier) (auditCheckpoint, error) {
	var cp auditCheckpoint
	var at int64
	err := q.queryRow(ctx, `SELECT sequence, hash, pruned_at FROM audit_checkpoints ORDER BY sequence DESC LIMIT 1`).
		Scan(&cp.seq, &cp.hash, &at)
	switch {
	case errors.Is(err, errNoRows):
		return auditCheckpoint{}, nil
	case err != nil:
		return cp, fmt.Errorf("read audit prune checkpoint: %w", err)
	}
	cp.at = fromColumnTime(at)
	return cp, nil
}

// VerifyAudit walks the chain from the first stored event and reports the
// first one that is missing, altered, or not linked to its predecessor. When
// events were pruned, the first stored one must follow the newest
// checkpoint: its sequence one more, its previous_hash the checkpoint's
// hash; and no event the checkpoint covers may still be stored.
//
// It reads the head, the checkpoint and the events in one read-only
// snapshot, so that appends and prunes running meanwhile do not disturb
// the walk.
func (s *sqlStore) VerifyAudit(ctx context.Context) (AuditVerification, error) {
	var v AuditVerification
	err := s.b.readTx(ctx, func(q querier) error {
		var err error
		v, err = verifyAudit(ctx, q)
		return err
	})
	if err != nil {
		return AuditVerification{}, fmt.Errorf("store: verify audit: %w", err)
	}
	return v, nil
}

func verifyAudit(ctx context.Context, q querier) (AuditVerification, error) {
	var headSeq int64
	var headHash string
	if err := q.queryRow(ctx, `SELECT sequence, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		return AuditVerification{}, fmt.Errorf("read audit chain head: %w", err)
	}
	cp, err := latestCheckpoint(ctx, q)
	if err != nil {
		return AuditVerification{}, err
	}
	v := AuditVerification{PrunedThrough: cp.seq}
	bad := func(seq int64, format string, args ...any) (AuditVerification, error) {
		v.FirstBadSequence = seq
		v.Message = fmt.Sprintf("audit event %d: ", seq) + fmt.Sprintf(format, args...)
		return v, nil
	}
	if cp.seq > headSeq {
		return bad(headSeq+1, "missing (the audit log was pruned up to sequence %d, but the chain head says the last event is %d)",
			cp.seq, headSeq)
	}
	rs, err := q.query(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE sequence <= $1 ORDER BY sequence`, headSeq)
	if err != nil {
		return AuditVerification{}, err
	}
	defer rs.Close()
	w := newChainWalk(cp)
	for rs.Next() {
		ev, err := scanAudit(rs)
		if err != nil {
			return AuditVerification{}, err
		}
		if seq, why := w.next(ev); seq != 0 {
			v.EventsChecked = w.checked
			return bad(seq, "%s", why)
		}
	}
	if err := rs.Err(); err != nil {
		return AuditVerification{}, err
	}
	v.EventsChecked = w.checked
	if w.want-1 != headSeq {
		return bad(w.want, "missing (the chain head says the last event is %d)", headSeq)
	}
	if w.prev != headHash {
		return bad(headSeq, "hash does not match the chain head")
	}
	v.Intact = true
	v.Message = fmt.Sprintf("%d audit events verified", v.EventsChecked)
	if cp.seq > 0 {
		v.Message += fmt.Sprintf("; %d older events were pruned up to sequence %d (last prune at %s)",
			cp.seq, cp.seq, cp.at.Format(time.RFC3339))
	}
	return v, nil
}

// PruneAudit removes the oldest events whose time is before before, always
// keeping the newest event, and records the checkpoint VerifyAudit starts
// from; see Store.PruneAudit.
//
// Everything happens in one write transaction that holds the chain head
// (as appenders do), so that a prune and an append, or two prunes, never
// interleave: either the events go and the checkpoint is recorded, or
// neither. The append-only triggers let the DELETE through only because
// this transaction raises the prune mark (dialect.beginPrune) and has
// already recorded a checkpoint covering the events deleted.
func (s *sqlStore) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	if before.IsZero() || before.Before(minColumnTime) {
		return 0, nil // no event is older
	}
	cutoff := int64(math.MaxInt64) // every storable time is before it
	if !before.After(maxColumnTime) {
		cutoff = before.UnixNano()
	}
	prunedAt, err := columnTime("audit prune time", s.now())
	if err != nil {
		return 0, err
	}
	var pruned int64
	err = s.b.inTx(ctx, func(q querier) error {
		pruned = 0
		var headSeq int64
		var headHash string
		if err := q.queryRow(ctx, `SELECT sequence, hash FROM audit_head WHERE id = 1`+s.d.forUpdate).
			Scan(&headSeq, &headHash); err != nil {
			return fmt.Errorf("read audit chain head: %w", err)
		}
		cp, err := latestCheckpoint(ctx, q)
		if err != nil {
			return err
		}
		// The run of old events ends before the first event, in chain
		// order, that is not older than the cutoff, and before the newest
		// event in any case.
		through := headSeq - 1
		var firstKept int64
		err = q.queryRow(ctx, `SELECT sequence FROM audit_events WHERE sequence > $1 AND event_time >= $2
			ORDER BY sequence LIMIT 1`, cp.seq, cutoff).Scan(&firstKept)
		switch {
		case err == nil:
			through = min(through, firstKept-1)
		case !errors.Is(err, errNoRows):
			return fmt.Errorf("find the first audit event to keep: %w", err)
		}
		if through <= cp.seq {
			return nil
		}
		hash, err := checkPrunable(ctx, q, cp, through)
		if err != nil {
			return err
		}
		count := through - cp.seq
		if _, err := q.exec(ctx, `INSERT INTO audit_checkpoints (sequence, hash, pruned_at, pruned_count, cutoff)
			VALUES ($1, $2, $3, $4, $5)`, through, hash, prunedAt, count, cutoff); err != nil {
			return fmt.Errorf("record audit prune checkpoint: %w", err)
		}
		if err := pruneMark(ctx, q, s.d.beginPrune, strconv.FormatInt(through, 10)); err != nil {
			return fmt.Errorf("raise the audit prune mark: %w", err)
		}
		n, err := q.exec(ctx, `DELETE FROM audit_events WHERE sequence <= $1`, through)
		if err != nil {
			return fmt.Errorf("delete audit events up to %d: %w", through, err)
		}
		if err := pruneMark(ctx, q, s.d.endPrune); err != nil {
			return fmt.Errorf("lower the audit prune mark: %w", err)
		}
		if n != count {
			// checkPrunable saw exactly count events; rolling back keeps
			// whatever else this would have removed.
			return fmt.Errorf("%w: deleting the events up to %d removed %d, not %d", ErrAuditChainBroken, through, n, count)
		}
		pruned = n
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrAuditChainBroken) {
			return 0, err
		}
		return 0, fmt.Errorf("store: prune audit: %w", err)
	}
	return pruned, nil
}

// pruneMark runs dialect.beginPrune or endPrune, which must touch exactly
// one row (SQLite: the audit_prune row, which must not have gone missing).
func pruneMark(ctx context.Context, q querier, stmt string, args ...any) error {
	n, err := q.exec(ctx, stmt, args...)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%d rows instead of 1", n)
	}
	return nil
}

// checkPrunable verifies the events after cp up to through+1 (the event
// that will be the first kept, whose link to through must hold too) and
// returns the hash of event through. Pruning events that do not verify
// would destroy the evidence of their tampering, so it refuses with
// ErrAuditChainBroken.
func checkPrunable(ctx context.Context, q querier, cp auditCheckpoint, through int64) (string, error) {
	rs, err := q.query(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE sequence <= $1 ORDER BY sequence`, through+1)
	if err != nil {
		return "", fmt.Errorf("read audit events to prune: %w", err)
	}
	defer rs.Close()
	w := newChainWalk(cp)
	hash := ""
	for rs.Next() {
		ev, err := scanAudit(rs)
		if err != nil {
			return "", fmt.Errorf("read audit events to prune: %w", err)
		}
		if seq, why := w.next(ev); seq != 0 {
			return "", fmt.Errorf("%w: audit event %d: %s; nothing was pruned", ErrAuditChainBroken, seq, why)
		}
		if ev.Sequence == through {
			hash = ev.Hash
		}
	}
	if err := rs.Err(); err != nil {
		return "", fmt.Errorf("read audit events to prune: %w", err)
	}
	if w.want != through+2 {
		return "", fmt.Errorf("%w: audit event %d: missing; nothing was pruned", ErrAuditChainBroken, w.want)
	}
	return hash, nil
}
