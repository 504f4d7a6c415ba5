package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// sqlStore is the Store both backends share; SQLite and Postgres only open
// the database and supply a backend and a dialect.
type sqlStore struct {
	b backend
	d dialect
	// now stamps audit events and operations that arrive without a time.
	now func() time.Time
}

const opColumns = `id, connection, state, request_id, create_time, update_time, version, doc`

func scanOperation(r row) (*Operation, error) {
	var op Operation
	var state, doc string
	var created, updated int64
	if err := r.Scan(&op.ID, &op.Connection, &state, &op.RequestID, &created, &updated, &op.Version, &doc); err != nil {
		return nil, err
	}
	op.State = OperationState(state)
	op.CreateTime = fromColumnTime(created)
	op.UpdateTime = fromColumnTime(updated)
	if err := decodeOpDoc(doc, &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// opRow is an operation as the columns store it.
type opRow struct {
	created, updated int64
	doc              string
}

func toRow(op *Operation) (opRow, error) {
	var r opRow
	var err error
	if r.created, err = columnTime("create time", op.CreateTime); err != nil {
		return r, err
	}
	if r.updated, err = columnTime("update time", op.UpdateTime); err != nil {
		return r, err
	}
	r.doc, err = encodeOpDoc(op)
	return r, err
}

// CreateOperation stores op with Version 1. Zero CreateTime and UpdateTime
// are set to now. On success op.Version (and any defaulted time) is updated
// and a copy is returned. A request id already used on the connection gives
// ErrConflict and the existing operation; an id already taken gives
// ErrConflict and no operation.
func (s *sqlStore) CreateOperation(ctx context.Context, op *Operation, audit *AuditEvent) (*Operation, error) {
	if op == nil || op.ID == "" || op.Connection == "" {
		return nil, errors.New("store: an operation needs an ID and a Connection")
	}
	c := *op
	c.Version = 1
	if c.CreateTime.IsZero() {
		c.CreateTime = s.now()
	}
	if c.UpdateTime.IsZero() {
		c.UpdateTime = c.CreateTime
	}
	r, err := toRow(&c)
	if err != nil {
		return nil, err
	}
	var stored AuditEvent
	var duplicate bool
	err = s.b.inTx(ctx, func(q querier) error {
		duplicate = false
		_, err := q.exec(ctx, `INSERT INTO operations (`+opColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.ID, c.Connection, string(c.State), c.RequestID, r.created, r.updated, c.Version, r.doc)
		if err != nil {
			if s.b.isUniqueViolation(err) {
				// Rolling back also drops the audit event: a refused
				// create must leave no trace in the chain.
				duplicate = true
				return err
			}
			return fmt.Errorf("store: create operation %s: %w", c.ID, err)
		}
		if audit != nil {
			stored, err = s.appendAudit(ctx, q, audit)
			return err
		}
		return nil
	})
	if duplicate {
		if c.RequestID != "" {
			existing, ferr := s.FindOperationByRequestID(ctx, c.Connection, c.RequestID)
			if ferr == nil {
				return existing, fmt.Errorf("%w: request id %q was already used on connection %q by operation %s",
					ErrConflict, c.RequestID, c.Connection, existing.ID)
			}
			if !errors.Is(ferr, ErrNotFound) {
				return nil, ferr
			}
		}
		return nil, fmt.Errorf("%w: operation id %q is taken", ErrConflict, c.ID)
	}
	if err != nil {
		return nil, err
	}
	op.Version, op.CreateTime, op.UpdateTime = c.Version, c.CreateTime, c.UpdateTime
	if audit != nil {
		*audit = stored
	}
	return s.copyOf(&c, r.doc)
}

// copyOf returns a deep copy of op by decoding its document again, so that
// the caller's operation and the returned one share no slices or maps.
func (s *sqlStore) copyOf(op *Operation, doc string) (*Operation, error) {
	c := &Operation{ID: op.ID, Connection: op.Connection, State: op.State, Version: op.Version,
		RequestID: op.RequestID, CreateTime: op.CreateTime.UTC(), UpdateTime: op.UpdateTime.UTC()}
	if err := decodeOpDoc(doc, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *sqlStore) getOne(ctx context.Context, q querier, where string, args ...any) (*Operation, error) {
	op, err := scanOperation(q.queryRow(ctx, `SELECT `+opColumns+` FROM operations WHERE `+where, args...))
	if errors.Is(err, errNoRows) {
		return nil, ErrNotFound
	}
	return op, err
}

// GetOperation returns one operation or ErrNotFound.
func (s *sqlStore) GetOperation(ctx context.Context, id string) (*Operation, error) {
	op, err := s.getOne(ctx, s.b, `id = $1`, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: get operation %s: %w", id, err)
	}
	return op, err
}

// FindOperationByRequestID returns the operation created with requestID on
// connection, or ErrNotFound.
func (s *sqlStore) FindOperationByRequestID(ctx context.Context, connection, requestID string) (*Operation, error) {
	if requestID == "" {
		return nil, ErrNotFound
	}
	op, err := s.getOne(ctx, s.b, `connection = $1 AND request_id = $2`, connection, requestID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: find operation by request id: %w", err)
	}
	return op, err
}

func (s *sqlStore) queryOperations(ctx context.Context, sql string, args ...any) ([]*Operation, error) {
	rs, err := s.b.query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*Operation
	for rs.Next() {
		op, err := scanOperation(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, op)
	}
	return out, rs.Err()
}

// ListOperations returns operations newest first (CreateTime, then ID, both
// descending) and the token of the next page, "" on the last.
func (s *sqlStore) ListOperations(ctx context.Context, f ListFilter) ([]*Operation, string, error) {
	size := pageSize(f.PageSize)
	var where []string
	var args []any
	if f.Connection != "" {
		args = append(args, f.Connection)
		where = append(where, fmt.Sprintf("connection = $%d", len(args)))
	}
	if f.PageToken != "" {
		p, err := decodePageToken(f.PageToken, f.Connection)
		if err != nil {
			return nil, "", err
		}
		if p.ID == "" {
			return nil, "", ErrInvalidPageToken
		}
		// Keyset paging: strictly after the last item of the previous
		// page in (create_time DESC, id DESC) order, so that operations
		// created meanwhile neither repeat nor shift the pages.
		args = append(args, p.Time, p.ID)
		where = append(where, fmt.Sprintf("(create_time < $%d OR (create_time = $%d AND id < $%d))",
			len(args)-1, len(args)-1, len(args)))
	}
	sql := `SELECT ` + opColumns + ` FROM operations`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, size+1)
	sql += fmt.Sprintf(` ORDER BY create_time DESC, id DESC LIMIT $%d`, len(args))
	out, err := s.queryOperations(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list operations: %w", err)
	}
	next := ""
	if len(out) > size {
		out = out[:size]
		last := out[size-1]
		next = encodePageToken(pageToken{Time: last.CreateTime.UnixNano(), ID: last.ID, Connection: f.Connection})
	}
	return out, next, nil
}

// finalStates are the states for which OperationState.Done is true; a test
// keeps the two in agreement.
var finalStates = []OperationState{StateSucceeded, StateFailed, StateRolledBack, StateCancelled}

// ListUnfinished returns every operation whose state is not final, oldest
// first, so that recovery resumes them in the order they started.
func (s *sqlStore) ListUnfinished(ctx context.Context) ([]*Operation, error) {
	args := make([]any, len(finalStates))
	marks := make([]string, len(finalStates))
	for i, st := range finalStates {
		args[i] = string(st)
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	out, err := s.queryOperations(ctx, `SELECT `+opColumns+` FROM operations
		WHERE state NOT IN (`+strings.Join(marks, ", ")+`) ORDER BY create_time, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list unfinished operations: %w", err)
	}
	return out, nil
}

// ListEndedSince returns the finished operations updated at or after since:
// the gate's view of re-registrations that other replicas ended. The query
// asks by update time alone, which operations_updated serves (with a state
// filter too, SQLite would pick the state index and read every finished
// operation); the few recent rows are filtered here.
func (s *sqlStore) ListEndedSince(ctx context.Context, since time.Time) ([]*Operation, error) {
	at, err := columnTime("since", since)
	if err != nil {
		return nil, err
	}
	ops, err := s.queryOperations(ctx, `SELECT `+opColumns+` FROM operations
		WHERE update_time >= $1 ORDER BY update_time, id`, at)
	if err != nil {
		return nil, fmt.Errorf("store: list ended operations: %w", err)
	}
	out := ops[:0]
	for _, op := range ops {
		if op.Done() {
			out = append(out, op)
		}
	}
	return out, nil
}

// UpdateOperation replaces the stored operation when its version is still
// op.Version (compare-and-swap), then sets op.Version to the new version.
// A zero UpdateTime is set to now.
func (s *sqlStore) UpdateOperation(ctx context.Context, op *Operation, audit *AuditEvent) error {
	if op == nil || op.ID == "" {
		return ErrNotFound
	}
	c := *op
	if c.UpdateTime.IsZero() {
		c.UpdateTime = s.now()
	}
	r, err := toRow(&c)
	if err != nil {
		return err
	}
	var stored AuditEvent
	err = s.b.inTx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE operations SET connection = $1, state = $2, request_id = $3,
			create_time = $4, update_time = $5, version = version + 1, doc = $6
			WHERE id = $7 AND version = $8`,
			c.Connection, string(c.State), c.RequestID, r.created, r.updated, r.doc, c.ID, c.Version)
		if err != nil {
			if s.b.isUniqueViolation(err) {
				return fmt.Errorf("%w: request id %q is used by another operation on connection %q",
					ErrConflict, c.RequestID, c.Connection)
			}
			return fmt.Errorf("store: update operation %s: %w", c.ID, err)
		}
		if n == 0 {
			var v int64
			err := q.queryRow(ctx, `SELECT version FROM operations WHERE id = $1`, c.ID).Scan(&v)
			switch {
			case errors.Is(err, errNoRows):
				return ErrNotFound
			case err != nil:
				return fmt.Errorf("store: update operation %s: %w", c.ID, err)
			}
			return fmt.Errorf("%w: operation %s is at version %d, not %d", ErrConflict, c.ID, v, c.Version)
		}
		if audit != nil {
			stored, err = s.appendAudit(ctx, q, audit)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	op.Version = c.Version + 1
	op.UpdateTime = c.UpdateTime
	if audit != nil {
		*audit = stored
	}
	return nil
}

// AcquireLock takes key for owner when it is free or its lease expired, or
// renews owner's own lease; the expiry is the database clock's now plus
// ttl. The upsert's WHERE decides atomically: a lease held by someone else
// and not yet expired is left alone, and no row comes back.
func (s *sqlStore) AcquireLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, Lock, error) {
	if key == "" || owner == "" {
		return false, Lock{}, errors.New("store: a lock needs a key and an owner")
	}
	if ttl <= 0 {
		return false, Lock{}, fmt.Errorf("store: lock ttl %v is not positive", ttl)
	}
	var ok bool
	var l Lock
	err := s.b.inTx(ctx, func(q querier) error {
		var gotOwner string
		var exp int64
		err := q.queryRow(ctx, `INSERT INTO locks (lock_key, owner, expires_at) VALUES ($1, $2, `+s.d.nowNanos+` + $3)
			ON CONFLICT (lock_key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			WHERE locks.owner = excluded.owner OR locks.expires_at <= `+s.d.nowNanos+`
			RETURNING owner, expires_at`, key, owner, int64(ttl)).Scan(&gotOwner, &exp)
		if err == nil {
			ok, l = true, Lock{Key: key, Owner: gotOwner, Expires: fromColumnTime(exp)}
			return nil
		}
		if !errors.Is(err, errNoRows) {
			return err
		}
		// Someone else's live lease. On PostgreSQL the upsert locked its
		// row, so it cannot change before this transaction ends.
		if err := q.queryRow(ctx, `SELECT owner, expires_at FROM locks WHERE lock_key = $1`, key).
			Scan(&gotOwner, &exp); err != nil {
			return err
		}
		ok, l = false, Lock{Key: key, Owner: gotOwner, Expires: fromColumnTime(exp)}
		return nil
	})
	if err != nil {
		return false, Lock{}, fmt.Errorf("store: acquire lock %q: %w", key, err)
	}
	return ok, l, nil
}

// ReleaseLock deletes owner's lease on key; another owner's lease stays.
func (s *sqlStore) ReleaseLock(ctx context.Context, key, owner string) error {
	err := s.b.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `DELETE FROM locks WHERE lock_key = $1 AND owner = $2`, key, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release lock %q: %w", key, err)
	}
	return nil
}

// GetLock returns the live lease on key; an expired one counts as none.
func (s *sqlStore) GetLock(ctx context.Context, key string) (Lock, bool, error) {
	var owner string
	var exp int64
	err := s.b.queryRow(ctx, `SELECT owner, expires_at FROM locks WHERE lock_key = $1 AND expires_at > `+s.d.nowNanos, key).
		Scan(&owner, &exp)
	switch {
	case errors.Is(err, errNoRows):
		return Lock{}, false, nil
	case err != nil:
		return Lock{}, false, fmt.Errorf("store: get lock %q: %w", key, err)
	}
	return Lock{Key: key, Owner: owner, Expires: fromColumnTime(exp)}, true, nil
}

// Close releases the database.
func (s *sqlStore) Close() error { return s.b.close() }
