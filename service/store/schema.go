package store

import (
	"context"
	"errors"
	"fmt"
)

// SchemaVersion is the newest schema this binary knows. A database migrated
// further by a newer certsync is refused (SchemaTooNewError) rather than
// used: an older binary would silently drop what the newer one relies on.
//
// Version 2 added audit retention: the audit_checkpoints table and delete
// triggers that let PruneAudit, and nothing else, remove the oldest events.
// Version 3 added the source_certificates table: the versions of IPS's
// outbound certificate that operators imported. Version 4 added the
// target_records and ips_jobs tables, for connections whose SF registry is
// manual, and the manual re-registration's fields of the operation document.
// Version 5 added an index on operations.update_time, which the gate's
// question for recently ended operations (ListEndedSince) asks every second,
// the certificate a job ran with (ips_jobs.source_sha256), and a step's
// job_requested in the operation document (a version-4 binary would drop
// it, so the bump makes it refuse the database).
const SchemaVersion = 5

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
	// appendOnly are schema version 1's statements that make audit_events
	// refuse UPDATE, DELETE (and TRUNCATE), so that the chain can only be
	// rewritten by someone who also drops these triggers. Released: never
	// edit; version 2 replaces them with auditGuardV2.
	appendOnly []string
	// auditGuardV2 are schema version 2's statements that (re)install the
	// append-only guard of audit_events and audit_checkpoints, except that
	// a DELETE of an audit event passes when PruneAudit's transaction has
	// raised the prune mark (beginPrune) to at least its sequence and a
	// checkpoint already covers it. They replace version 1's triggers (and
	// put them back if someone had dropped them).
	auditGuardV2 []string
	// beginPrune raises the prune mark to $1 (a sequence, passed as text)
	// for the rest of the current transaction only; endPrune lowers it.
	// Both return exactly one row or affect exactly one row.
	beginPrune, endPrune string
	// blob is the column type for bytes kept exactly as written (schema
	// version 3 on).
	blob string
	// lockSourceCerts, when not empty, serializes the transactions that
	// import source certificates for one connection until they end; $1
	// and $2 are int32 keys (a namespace and a hash of the connection).
	// SQLite needs none: its write transactions are exclusive anyway.
	lockSourceCerts string
	// lockTargetRecords, when not empty, serializes the transactions that
	// append target records until they end, so that each one's seq (the
	// previous maximum plus one) is unique and follows commit order; other
	// transactions may still read the table. SQLite needs none.
	lockTargetRecords string
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
	auditGuardV2: []string{
		// The prune mark: a row rather than a variable, because SQLite
		// has no session settings a trigger can read. PruneAudit raises
		// it and lowers it again within its write transaction, which is
		// exclusive, so no other connection ever sees it raised; a
		// crash rolls it back.
		`CREATE TABLE audit_prune (
			id      INTEGER PRIMARY KEY CHECK (id = 1),
			through BIGINT NOT NULL
		)`,
		`INSERT INTO audit_prune (id, through) VALUES (1, 0)`,
		`DROP TRIGGER IF EXISTS audit_events_no_update`,
		`CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
		 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`,
		`DROP TRIGGER IF EXISTS audit_events_no_delete`,
		`CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
		 WHEN OLD.sequence > COALESCE((SELECT through FROM audit_prune WHERE id = 1), 0)
		   OR OLD.sequence > COALESCE((SELECT MAX(sequence) FROM audit_checkpoints), 0)
		 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`,
		`CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
		 BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END`,
		`CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
		 BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END`,
	},
	beginPrune: `UPDATE audit_prune SET through = CAST($1 AS INTEGER) WHERE id = 1`,
	endPrune:   `UPDATE audit_prune SET through = 0 WHERE id = 1`,
	blob:       "BLOB",
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
	auditGuardV2: []string{
		// The prune mark is a transaction-local setting: set_config(...,
		// true) ends with the transaction, committed or not, and no other
		// session can see it. After such a transaction the placeholder
		// reads '' rather than NULL, hence the NULLIF. A value that is not
		// a number fails the cast, which refuses the delete too. OLD is
		// read only in the nested IF, never for TRUNCATE.
		`CREATE OR REPLACE FUNCTION certsync_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN
			IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' THEN
				IF OLD.sequence <= COALESCE(NULLIF(current_setting('certsync.audit_prune', true), '')::BIGINT, 0)
				   AND OLD.sequence <= (SELECT COALESCE(MAX(sequence), 0) FROM audit_checkpoints) THEN
					RETURN OLD;
				END IF;
			END IF;
			RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
		 END $$`,
		`DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events`,
		`CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
		 FOR EACH ROW EXECUTE FUNCTION certsync_audit_append_only()`,
		`DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events`,
		`CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
		 FOR EACH STATEMENT EXECUTE FUNCTION certsync_audit_append_only()`,
		`CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
		 FOR EACH ROW EXECUTE FUNCTION certsync_audit_append_only()`,
		`CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
		 FOR EACH STATEMENT EXECUTE FUNCTION certsync_audit_append_only()`,
	},
	beginPrune: `SELECT set_config('certsync.audit_prune', $1, true)`,
	endPrune:   `SELECT set_config('certsync.audit_prune', '', true)`,
	blob:       "BYTEA",
	// The two-int4 key space of advisory locks does not overlap the
	// bigint one of migrationLockID.
	lockSourceCerts: `SELECT pg_advisory_xact_lock($1, $2)`,
	// SHARE ROW EXCLUSIVE conflicts with itself and with the ROW
	// EXCLUSIVE lock of any other insert, but not with SELECT.
	lockTargetRecords: `LOCK TABLE target_records IN SHARE ROW EXCLUSIVE MODE`,
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
	{version: 2, stmts: func(d dialect) []string {
		return append([]string{
			// One row per PruneAudit that removed events: the last event it
			// removed (sequence and hash, which the first remaining event's
			// previous_hash must equal), when, how many, and the cutoff it
			// was given. Append-only like the events; the newest row is
			// where VerifyAudit starts.
			`CREATE TABLE audit_checkpoints (
				sequence     BIGINT PRIMARY KEY,
				hash         TEXT NOT NULL,
				pruned_at    BIGINT NOT NULL,
				pruned_count BIGINT NOT NULL,
				cutoff       BIGINT NOT NULL
			)`,
		}, d.auditGuardV2...)
	}},
	{version: 3, stmts: func(d dialect) []string {
		return []string{
			// One row per version of IPS's outbound certificate that an
			// operator imported (IPS has no API to download it). der is
			// the certificate as parsed; sha256 is lower-case hex of
			// SHA-256(der), the key that makes importing the same
			// certificate again an update rather than a second row.
			`CREATE TABLE source_certificates (
				id          TEXT PRIMARY KEY,
				connection  TEXT NOT NULL,
				der         ` + d.blob + ` NOT NULL,
				sha256      TEXT NOT NULL,
				active      BOOLEAN NOT NULL,
				import_time BIGINT NOT NULL,
				imported_by TEXT NOT NULL,
				reason      TEXT NOT NULL
			)`,
			`CREATE UNIQUE INDEX source_certificates_der ON source_certificates (connection, sha256)`,
			// IPS shows exactly one Active certificate per source system;
			// the database holds at most one per connection.
			`CREATE UNIQUE INDEX source_certificates_active ON source_certificates (connection) WHERE active`,
			`CREATE INDEX source_certificates_newest ON source_certificates (connection, import_time DESC, id DESC)`,
		}
	}},
	{version: 4, stmts: func(d dialect) []string {
		// Besides the tables, version 4 lets the operation document carry
		// a manual re-registration (Operation.Manual; a step's
		// instruction, deadline and confirmer; a mapping's fingerprints
		// as a person recorded them). A version-3 binary would
		// drop those fields when it updated such an operation; the version
		// bump makes it refuse the database instead.
		return []string{
			// One row per observation of IPS's mapping in SF's Security
			// Center, for connections whose registry is manual (SF has no
			// API for it): what a person read off the screen, or what a
			// confirmed step of a manual re-registration says SF now
			// shows. Rows are only ever appended. absent is true when SF
			// shows no mapping; der is empty when the person gave no file.
			// seq is the insertion order (1, 2, ...), which breaks ties
			// between records of the same record_time: the later one is
			// the newer. It is not a serial column because SQLite has
			// those only as the primary key, and the id is that.
			`CREATE TABLE target_records (
				id                 TEXT PRIMARY KEY,
				seq                BIGINT NOT NULL,
				connection         TEXT NOT NULL,
				absent             BOOLEAN NOT NULL,
				configuration_name TEXT NOT NULL,
				integration_name   TEXT NOT NULL,
				login_name         TEXT NOT NULL,
				sha256             TEXT NOT NULL,
				sha1               TEXT NOT NULL,
				der                ` + d.blob + ` NOT NULL,
				note               TEXT NOT NULL,
				recorded_by        TEXT NOT NULL,
				record_time        BIGINT NOT NULL,
				operation          TEXT NOT NULL
			)`,
			`CREATE UNIQUE INDEX target_records_seq ON target_records (seq)`,
			`CREATE INDEX target_records_newest ON target_records (connection, record_time DESC, seq DESC)`,
			// One row per IPS provisioning job certsync started or looked
			// at, updated in place as the job runs. IPS's job ids are
			// unique per source system, hence the key. end_time is NULL
			// while the job runs.
			`CREATE TABLE ips_jobs (
				connection  TEXT NOT NULL,
				job_id      TEXT NOT NULL,
				job_type    TEXT NOT NULL,
				status      TEXT NOT NULL,
				done        BOOLEAN NOT NULL,
				succeeded   BOOLEAN NOT NULL,
				cause       TEXT NOT NULL,
				summary     TEXT NOT NULL,
				started_by  TEXT NOT NULL,
				operation   TEXT NOT NULL,
				start_time  BIGINT NOT NULL,
				update_time BIGINT NOT NULL,
				end_time    BIGINT,
				PRIMARY KEY (connection, job_id)
			)`,
			`CREATE INDEX ips_jobs_newest ON ips_jobs (connection, start_time DESC, job_id DESC)`,
		}
	}},
	{version: 5, stmts: func(dialect) []string {
		return []string{
			// Operations are kept, so without it each question would
			// read every finished operation.
			`CREATE INDEX operations_updated ON operations (update_time)`,
			// The SHA-256 of IPS's active certificate, as certsync read
			// it, when certsync started the job: a job speaks for that
			// certificate only. Empty for records written before.
			`ALTER TABLE ips_jobs ADD COLUMN source_sha256 TEXT NOT NULL DEFAULT ''`,
		}
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
