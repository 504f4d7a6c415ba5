package store

import (
	"context"
	"errors"
	"fmt"
)

// The two drivers (database/sql for SQLite, pgx for PostgreSQL) differ in
// their Go APIs; these small interfaces hide that, so that every query and
// every rule (CAS, idempotency, chain) is written once in sqlStore.

// errNoRows is what row.Scan returns, whichever driver, when no row matched.
var errNoRows = errors.New("store: no rows")

type row interface {
	Scan(dest ...any) error
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// queryAll runs a query and scans every row with scan; what names the
// query in errors.
func queryAll[T any](ctx context.Context, q querier, what string, scan func(row) (T, error), sql string, args ...any) ([]T, error) {
	rs, err := q.query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rs.Close()
	var out []T
	for rs.Next() {
		v, err := scan(rs)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// querier runs statements, inside a transaction or not. Placeholders are
// $1, $2, ... for both backends.
type querier interface {
	exec(ctx context.Context, sql string, args ...any) (rowsAffected int64, err error)
	query(ctx context.Context, sql string, args ...any) (rows, error)
	queryRow(ctx context.Context, sql string, args ...any) row
}

type backend interface {
	querier
	// inTx runs fn in a write transaction and commits when fn returns nil.
	// fn may run more than once (PostgreSQL retries serialization failures
	// and deadlocks), so it must only publish results after inTx returns.
	inTx(ctx context.Context, fn func(q querier) error) error
	// readTx runs fn in a read-only transaction whose statements all see
	// one snapshot of the database, without blocking writers.
	readTx(ctx context.Context, fn func(q querier) error) error
	// lockSchema serializes migrations across processes, within the
	// transaction q.
	lockSchema(ctx context.Context, q querier) error
	// isUniqueViolation reports a unique or primary key violation.
	isUniqueViolation(err error) bool
	close() error
}
