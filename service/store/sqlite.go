package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the default Store: one file, pure Go (no cgo), for a single
// certsyncd (several processes on one host also work, serialized by
// SQLite's file locks).
type SQLite struct {
	*sqlStore
	path string
}

var _ Store = (*SQLite)(nil)

// sqliteBusyTimeout is how long a writer waits for another writer (in this
// process or another) before giving up with SQLITE_BUSY.
const sqliteBusyTimeout = 30 * time.Second

// OpenSQLite opens (creating if needed) the database file at path and
// migrates it. The parent directory is created with mode 0700 and the file
// with 0600: it holds certificates, the journal and the audit log.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	if strings.ContainsRune(path, '?') {
		// The driver would read what follows as connection parameters.
		return nil, fmt.Errorf("store: SQLite path %q contains '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	// SQLite would create the file 0644; creating it first fixes the mode,
	// which SQLite then also gives the -wal and -shm files.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	_ = f.Close()

	q := url.Values{}
	// WAL lets readers run while one writer writes; synchronous FULL makes
	// a commit durable before it returns (the journal must survive a crash
	// before anything is deleted in SF); _txlock=immediate makes every
	// transaction take the write lock at BEGIN, so that concurrent writers
	// queue on the busy timeout instead of failing when a read transaction
	// tries to upgrade.
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeout.Milliseconds()))
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &SQLite{sqlStore: &sqlStore{b: sqliteBackend{db: db}, d: sqliteDialect, now: time.Now}, path: path}
	if err := pingSQLite(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := migrate(ctx, s.b, s.d); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// pingSQLite opens the first connection, which sets journal_mode=WAL. While
// another process turns a new database file into WAL mode, SQLite can
// refuse that at once with SQLITE_BUSY instead of waiting (both connections
// want the exclusive lock, and SQLite's deadlock avoidance skips the busy
// handler), so it tries again for up to the busy timeout. Once one open has
// succeeded the file is in WAL mode for good and the race cannot recur.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		err := db.PingContext(ctx)
		var e *sqlite.Error
		if err == nil || !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Path is the database file.
func (s *SQLite) Path() string { return s.path }

type sqliteBackend struct{ db *sql.DB }

// sqlRunner is what *sql.DB and *sql.Tx have in common.
type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type sqlQuerier struct{ r sqlRunner }

func (q sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.r.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	rs, err := q.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

func (q sqlQuerier) queryRow(ctx context.Context, query string, args ...any) row {
	return sqlRow{q.r.QueryRowContext(ctx, query, args...)}
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

func (b sqliteBackend) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqlQuerier{b.db}.exec(ctx, query, args...)
}

func (b sqliteBackend) query(ctx context.Context, query string, args ...any) (rows, error) {
	return sqlQuerier{b.db}.query(ctx, query, args...)
}

func (b sqliteBackend) queryRow(ctx context.Context, query string, args ...any) row {
	return sqlQuerier{b.db}.queryRow(ctx, query, args...)
}

func (b sqliteBackend) inTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := b.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE, see _txlock
	if err != nil {
		return err
	}
	if err := fn(sqlQuerier{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// readTx uses a deferred transaction (the driver ignores _txlock for a
// read-only one): in WAL mode its first read fixes the snapshot that every
// later statement sees, while writers go on.
func (b sqliteBackend) readTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(sqlQuerier{tx})
}

// lockSchema needs nothing: the migration's BEGIN IMMEDIATE already holds
// the only write lock on the file.
func (sqliteBackend) lockSchema(context.Context, querier) error { return nil }

func (sqliteBackend) isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func (b sqliteBackend) close() error { return b.db.Close() }
