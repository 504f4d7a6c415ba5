package store

import (
	"context"
	"errors"
	"fmt"
)

// SchemaVersion is the newest schema this binary knows. A database migrated
// further by a newer certsync is refused (SchemaTooNewError) rather than
// used: an older binary would silently drop what the newer one relies on.
const SchemaVersion = 1

// SchemaTooNewError is returned by the Open functions when the database was
// migrated by a newer certsync. errors.Is(err, ErrSchemaTooNew) holds.
type SchemaTooNewError struct {
	Database  int64 // the database's schema version
	Supported int64 // SchemaVersion of this binary
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this certsync supports (version %d): upgrade certsync or use another database",
		e.Database, e.Supported)
}

// Unwrap lets errors.Is(err, ErrSchemaTooNew) match.
func (e *SchemaTooNewError) Unwrap() error { return ErrSchemaTooNew }

// dialect is every difference between the SQLite and PostgreSQL SQL this
// package writes; everything else is one text for both. Times are stored as
// BIGINT Unix nanoseconds in both, because PostgreSQL's timestamptz keeps
// only microseconds and the two backends must order and round-trip alike.
type dialect struct {
	name string
	// nowNanos is an expression for the database clock's "now" in Unix
	// nanoseconds. Lease expiry is computed with it, never with the
	// caller's clock, so that replicas with skewed clocks agree on expiry.
	nowNanos string
	// forUpdate locks the rows a SELECT reads until the transaction ends.
	// SQLite has no row locks and needs none: its write transactions are
	// BEGIN IMMEDIATE and so already exclusive.
	forUpdate string
	// appendOnly are statements that make audit_events refuse UPDATE,
	// DELETE (and TRUNCATE), so that the chain can only be rewritten by
	// someone who also drops these triggers.
	appendOnly []string
}

var sqliteDialect = dialect{
	name: "sqlite",
	// unixepoch('subsec') has millisecond resolution; ROUND undoes the
	// floating-point error before the cast truncates.
	nowNanos:  "(CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000000)",
	forUpdate: "",
	appendOnly: []string{
		`CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
		 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`,
		`CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
		 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`,
	},
}

var postgresDialect = dialect{
	name: "postgres",
	// now() is the transaction's start; every lease statement runs in a
	// transaction of its own, so that is "now" for it.
	nowNanos:  "((EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT * 1000)",
	forUpdate: " FOR UPDATE",
	appendOnly: []string{
		`CREATE FUNCTION certsync_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$`,
		`CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
		 FOR EACH ROW EXECUTE FUNCTION certsync_audit_append_only()`,
		`CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
		 FOR EACH STATEMENT EXECUTE FUNCTION certsync_audit_append_only()`,
	},
}

// migration brings the schema from version-1 to version. Its statements run
// in one transaction together with the version bump, so a crash leaves the
// schema at one version or the next, never between.
type migration struct {
	version int64
	stmts   func(d dialect) []string
}

// migrations, oldest first. Never edit a released one: add the next.
var migrations = []migration{
	{version: 1, stmts: func(d dialect) []string {
		return append([]string{
			// Filterable fields are columns; the rest of the operation is
			// one JSON document (see opDoc), kept as TEXT so that both
			// backends store the very bytes that were written.
			`CREATE TABLE operations (
				id          TEXT PRIMARY KEY,
				connection  TEXT NOT NULL,
				state       TEXT NOT NULL,
				request_id  TEXT NOT NULL DEFAULT '',
				create_time BIGINT NOT NULL,
				update_time BIGINT NOT NULL,
				version     BIGINT NOT NULL,
				doc         TEXT NOT NULL
			)`,
			// The idempotency key; operations without a request id are
			// never duplicates of each other.
			`CREATE UNIQUE INDEX operations_request_id ON operations (connection, request_id) WHERE request_id <> ''`,
			`CREATE INDEX operations_newest ON operations (create_time DESC, id DESC)`,
			`CREATE INDEX operations_connection_newest ON operations (connection, create_time DESC, id DESC)`,
			`CREATE INDEX operations_state ON operations (state, create_time, id)`,
			`CREATE TABLE locks (
				lock_key   TEXT PRIMARY KEY,
				owner      TEXT NOT NULL,
				expires_at BIGINT NOT NULL
			)`,
			`CREATE TABLE audit_events (
				sequence      BIGINT PRIMARY KEY,
				event_time    BIGINT NOT NULL,
				identity      TEXT NOT NULL,
				role          TEXT NOT NULL,
				rpc           TEXT NOT NULL,
				connection    TEXT NOT NULL,
				request_id    TEXT NOT NULL,
				reason        TEXT NOT NULL,
				outcome       TEXT NOT NULL,
				operation     TEXT NOT NULL,
				previous_hash TEXT NOT NULL,
				hash          TEXT NOT NULL
			)`,
			`CREATE INDEX audit_events_connection ON audit_events (connection, sequence DESC)`,
			// The chain head: appenders lock this one row, so that two of
			// them can never both extend the same last event (a fork) or
			// take the same sequence. It also lets VerifyAudit notice
			// events cut off the end of the chain.
			`CREATE TABLE audit_head (
				id       INTEGER PRIMARY KEY CHECK (id = 1),
				sequence BIGINT NOT NULL,
				hash     TEXT NOT NULL
			)`,
			`INSERT INTO audit_head (id, sequence, hash) VALUES (1, 0, '')`,
		}, d.appendOnly...)
	}},
}

// latestMigration is what SchemaVersion must equal; a test checks it.
func latestMigration() int64 { return migrations[len(migrations)-1].version }

// migrate brings the schema up to SchemaVersion inside one write
// transaction (which the backend serializes with other processes: BEGIN
// IMMEDIATE in SQLite, an advisory lock in PostgreSQL), and refuses a schema
// newer than this binary.
func migrate(ctx context.Context, b backend, d dialect) error {
	return b.inTx(ctx, func(q querier) error {
		if err := b.lockSchema(ctx, q); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			id      INTEGER PRIMARY KEY CHECK (id = 1),
			version BIGINT NOT NULL
		)`); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
		var current int64
		err := q.queryRow(ctx, `SELECT version FROM schema_version WHERE id = 1`).Scan(&current)
		switch {
		case errors.Is(err, errNoRows):
			current = 0
		case err != nil:
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > SchemaVersion {
			return &SchemaTooNewError{Database: current, Supported: SchemaVersion}
		}
		for _, m := range migrations {
			if m.version <= current {
				continue
			}
			for _, s := range m.stmts(d) {
				if _, err := q.exec(ctx, s); err != nil {
					return fmt.Errorf("migrate to schema version %d: %w", m.version, err)
				}
			}
			current = m.version
		}
		if _, err := q.exec(ctx, `INSERT INTO schema_version (id, version) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET version = excluded.version`, current); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		return nil
	})
}
