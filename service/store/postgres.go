package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store for several certsyncd replicas sharing one
// database. The tables live in the connection's search_path (add
// search_path=... to the URL to keep them in a schema of their own).
type Postgres struct {
	*sqlStore
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// migrationLockID is the advisory lock key that serializes migrations of
// replicas starting at once ("certsync" in ASCII). Without it two
// concurrent CREATE TABLE IF NOT EXISTS can both proceed and one fails.
const migrationLockID int64 = 0x6365727473796e63

// OpenPostgres connects to the database at url (postgres://...) and
// migrates it.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors do not repeat the password.
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	s := &Postgres{sqlStore: &sqlStore{b: pgBackend{pool: pool}, d: postgresDialect, now: time.Now}, pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres: connect to %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if err := migrate(ctx, s.b, s.d); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return s, nil
}

type pgBackend struct{ pool *pgxpool.Pool }

// pgRunner is what *pgxpool.Pool and pgx.Tx have in common.
type pgRunner interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type pgQuerier struct{ r pgRunner }

func (q pgQuerier) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.r.Exec(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (q pgQuerier) query(ctx context.Context, sql string, args ...any) (rows, error) {
	return q.r.Query(ctx, sql, args...)
}

func (q pgQuerier) queryRow(ctx context.Context, sql string, args ...any) row {
	return pgRow{q.r.QueryRow(ctx, sql, args...)}
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}

func (b pgBackend) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	return pgQuerier{b.pool}.exec(ctx, sql, args...)
}

func (b pgBackend) query(ctx context.Context, sql string, args ...any) (rows, error) {
	return pgQuerier{b.pool}.query(ctx, sql, args...)
}

func (b pgBackend) queryRow(ctx context.Context, sql string, args ...any) row {
	return pgQuerier{b.pool}.queryRow(ctx, sql, args...)
}

// pgTxAttempts bounds retries of transactions PostgreSQL aborted to break
// a deadlock or a serialization conflict; both are safe to run again.
const pgTxAttempts = 3

func (b pgBackend) inTx(ctx context.Context, fn func(q querier) error) error {
	var err error
	for range pgTxAttempts {
		err = b.inTxOnce(ctx, fn)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40001" && pe.Code != "40P01") {
			return err
		}
	}
	return err
}

func (b pgBackend) inTxOnce(ctx context.Context, fn func(q querier) error) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	// Rollback after Commit is a no-op; on every other path it ends the
	// transaction and returns the connection to the pool.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(pgQuerier{tx}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// readTx runs fn in a REPEATABLE READ, READ ONLY transaction: one snapshot
// for all its statements. Such a transaction cannot fail to serialize.
func (b pgBackend) readTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return fn(pgQuerier{tx})
}

// lockSchema takes a transaction-level advisory lock: a second replica
// starting at the same time waits here until the first has committed its
// migration, then finds the schema current. The lock ends with the
// transaction, so a crashed migrator cannot leave it held.
func (pgBackend) lockSchema(ctx context.Context, q querier) error {
	_, err := q.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID)
	return err
}

func (pgBackend) isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (b pgBackend) close() error {
	b.pool.Close()
	return nil
}
