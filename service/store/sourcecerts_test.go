package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The source certificate tests of the acceptance suite (see runSuite):
// imported versions of IPS's certificate, one Active per connection, and
// version-2 databases migrated to version 3.

// der is stand-in certificate bytes: the store keeps bytes, it does not
// parse them. The zero bytes and the high bytes catch a backend that
// stores text.
func der(n int) []byte { return []byte{0x30, 0x82, 0x00, byte(n), 0xff, 0x00, byte(n >> 8)} }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustImport(t *testing.T, s Store, c *SourceCertificate, audit *AuditEvent) *SourceCertificate {
	t.Helper()
	got, err := s.ImportSourceCertificate(t.Context(), c, audit)
	if err != nil {
		t.Fatalf("ImportSourceCertificate(%s, active %v): %v", c.ID, c.Active, err)
	}
	return got
}

func sameSourceCert(t *testing.T, what string, got, want *SourceCertificate) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if !g.ImportTime.Equal(w.ImportTime) {
		t.Errorf("%s: import time %v, want %v", what, g.ImportTime, w.ImportTime)
	}
	if !bytes.Equal(g.DER, w.DER) {
		t.Errorf("%s: DER %x, want %x", what, g.DER, w.DER)
	}
	g.ImportTime, w.ImportTime, g.DER, w.DER = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func activeID(t *testing.T, s Store, connection string) string {
	t.Helper()
	c, err := s.ActiveSourceCertificate(t.Context(), connection)
	if errors.Is(err, ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("ActiveSourceCertificate(%s): %v", connection, err)
	}
	if !c.Active {
		t.Errorf("ActiveSourceCertificate(%s) returned %s, which is not active", connection, c.ID)
	}
	return c.ID
}

func listSourceIDs(t *testing.T, s Store, connection string, size int) []string {
	t.Helper()
	var ids []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatal("paging does not end")
		}
		got, next, err := s.ListSourceCertificates(t.Context(), connection, size, tok)
		if err != nil {
			t.Fatal(err)
		}
		if size > 0 && len(got) > size {
			t.Fatalf("page of %d, size %d", len(got), size)
		}
		for _, c := range got {
			ids = append(ids, c.ID)
		}
		if next == "" {
			return ids
		}
		tok = next
	}
}

func testSourceCertificates(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	if _, err := s.ActiveSourceCertificate(ctx, "conn-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("nothing imported: %v, want ErrNotFound", err)
	}
	if got := listSourceIDs(t, s, "conn-a", 0); len(got) != 0 {
		t.Fatalf("nothing imported, listed %v", got)
	}

	a := &SourceCertificate{ID: "a", Connection: "conn-a", DER: der(1), Active: true, ImportTime: at(0),
		ImportedBy: "alice", Reason: "CHG-1 \"quoted\" \u00e9"}
	evA := auditEvent(1, "connections/conn-a")
	gotA := mustImport(t, s, a, evA)
	wantA := *a
	wantA.SHA256 = sha256Hex(a.DER)
	sameSourceCert(t, "import a", gotA, &wantA)
	if gotA.ImportTime.Location() != time.UTC {
		t.Errorf("import time in %v, want UTC", gotA.ImportTime.Location())
	}
	if evA.Sequence != 1 || evA.Hash == "" {
		t.Errorf("audit of the import: %+v", evA)
	}
	// The result shares nothing with the caller's record.
	gotA.DER[0] = 0
	if a.DER[0] != 0x30 {
		t.Error("the result aliases the caller's DER")
	}
	got, err := s.ActiveSourceCertificate(ctx, "conn-a")
	if err != nil {
		t.Fatal(err)
	}
	sameSourceCert(t, "active after importing a", got, &wantA)

	// An inactive version leaves the active one alone.
	b := mustImport(t, s, &SourceCertificate{ID: "b", Connection: "conn-a", DER: der(2), ImportTime: at(1), ImportedBy: "bob"}, auditEvent(2, "connections/conn-a"))
	if b.Active || activeID(t, s, "conn-a") != "a" {
		t.Errorf("inactive import: b active %v, active is %q", b.Active, activeID(t, s, "conn-a"))
	}
	// An active one replaces it.
	c := mustImport(t, s, &SourceCertificate{ID: "c", Connection: "conn-a", DER: der(3), Active: true, ImportTime: at(2), ImportedBy: "carol"}, nil)
	if !c.Active || activeID(t, s, "conn-a") != "c" {
		t.Errorf("active import: c active %v, active is %q", c.Active, activeID(t, s, "conn-a"))
	}
	// Another connection is another IPS system.
	other := mustImport(t, s, &SourceCertificate{ID: "other", Connection: "conn-b", DER: der(3), Active: true, ImportTime: at(3)}, nil)
	if other.ID != "other" || activeID(t, s, "conn-b") != "other" || activeID(t, s, "conn-a") != "c" {
		t.Errorf("same DER on another connection: %+v; active a %q b %q", other, activeID(t, s, "conn-a"), activeID(t, s, "conn-b"))
	}

	// The same DER again is no second version: it becomes active again,
	// and keeps its id, import time, importer and reason.
	again := mustImport(t, s, &SourceCertificate{ID: "a2", Connection: "conn-a", DER: der(1), Active: true, ImportTime: at(9), ImportedBy: "dave", Reason: "again"}, auditEvent(3, "connections/conn-a"))
	wantA.Active = true
	sameSourceCert(t, "re-import of a", again, &wantA)
	if activeID(t, s, "conn-a") != "a" {
		t.Errorf("after re-importing a as active, active is %q", activeID(t, s, "conn-a"))
	}
	if got := strings.Join(listSourceIDs(t, s, "conn-a", 0), ","); got != "c,b,a" {
		t.Errorf("listed %s, want c,b,a", got)
	}
	// ... and inactive: then no version is active.
	again = mustImport(t, s, &SourceCertificate{Connection: "conn-a", DER: der(1)}, nil)
	if again.ID != "a" || again.Active {
		t.Errorf("re-import of a as inactive: %+v", again)
	}
	if _, err := s.ActiveSourceCertificate(ctx, "conn-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no active version left: %v, want ErrNotFound", err)
	}

	// The listing carries every field.
	list, next, err := s.ListSourceCertificates(ctx, "conn-a", 10, "")
	if err != nil || next != "" || len(list) != 3 {
		t.Fatalf("list: %d, %q, %v", len(list), next, err)
	}
	wantA.Active = false
	sameSourceCert(t, "listed a", list[2], &wantA)
	if list[0].ID != "c" || list[0].ImportedBy != "carol" || list[0].SHA256 != sha256Hex(der(3)) || !bytes.Equal(list[0].DER, der(3)) {
		t.Errorf("listed c: %+v", list[0])
	}

	// A zero import time is stamped; an empty id is assigned.
	z := mustImport(t, s, &SourceCertificate{Connection: "conn-z", DER: der(4), Active: true}, nil)
	if z.ID == "" || z.ImportTime.IsZero() || time.Since(z.ImportTime) > time.Minute {
		t.Errorf("defaults: %+v", z)
	}
	zl, _, err := s.ListSourceCertificates(ctx, "conn-z", 0, "")
	if err != nil || len(zl) != 1 {
		t.Fatalf("list conn-z: %v %v", zl, err)
	}
	sameSourceCert(t, "defaulted version", zl[0], z)

	// A taken id is a conflict, and the refused import leaves no trace,
	// not even its audit event.
	before := countAudit(t, s)
	ev := auditEvent(4, "connections/conn-a")
	if got, err := s.ImportSourceCertificate(ctx, &SourceCertificate{ID: "c", Connection: "conn-a", DER: der(5), Active: true}, ev); !errors.Is(err, ErrConflict) || got != nil {
		t.Errorf("taken id: %v, %v; want ErrConflict", got, err)
	}
	if n := countAudit(t, s); n != before || ev.Sequence != 0 {
		t.Errorf("refused import: %d audit events (was %d), event %+v", n, before, ev)
	}
	if got := strings.Join(listSourceIDs(t, s, "conn-a", 0), ","); got != "c,b,a" {
		t.Errorf("after the refused import: %s", got)
	}
	for _, bad := range []*SourceCertificate{nil, {DER: der(6)}, {Connection: "conn-a"}} {
		if _, err := s.ImportSourceCertificate(ctx, bad, nil); err == nil {
			t.Errorf("ImportSourceCertificate(%+v) accepted", bad)
		}
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact || v.EventsChecked != 3 {
		t.Errorf("VerifyAudit = %+v %v", v, err)
	}
	// The database itself refuses a second active version.
	mustImport(t, s, &SourceCertificate{Connection: "conn-a", DER: der(3), Active: true}, nil)
	if err := db.exec(t, `UPDATE source_certificates SET active = $1 WHERE id = $2`, true, "b"); err == nil {
		t.Error("a second active version for conn-a was stored")
	}
	if id := activeID(t, s, "conn-a"); id != "c" {
		t.Errorf("active is %q, want c", id)
	}
}

func testSourceCertificatesPaging(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	// Pairs share an import time, so the id must break the tie.
	for i, v := range []struct {
		id   string
		conn string
		sec  int
	}{{"a", "c1", 0}, {"b", "c2", 1}, {"c", "c1", 1}, {"d", "c1", 2}, {"e", "c1", 3}, {"f", "c1", 3}, {"g", "c1", 4}} {
		mustImport(t, s, &SourceCertificate{ID: v.id, Connection: v.conn, DER: der(i), ImportTime: at(v.sec)}, nil)
	}
	if got := strings.Join(listSourceIDs(t, s, "c1", 2), ","); got != "g,f,e,d,c,a" {
		t.Errorf("c1, pages of 2: %s", got)
	}
	if got := strings.Join(listSourceIDs(t, s, "c1", 0), ","); got != "g,f,e,d,c,a" {
		t.Errorf("c1, default size: %s", got)
	}
	if got := strings.Join(listSourceIDs(t, s, "", 3), ","); got != "g,f,e,d,c,b,a" {
		t.Errorf("all, pages of 3: %s", got)
	}
	if got := listSourceIDs(t, s, "none", 1); len(got) != 0 {
		t.Errorf("unknown connection: %v", got)
	}
	// An exact multiple of the page size ends without an empty page.
	if _, next, err := s.ListSourceCertificates(ctx, "c1", 6, ""); err != nil || next != "" {
		t.Errorf("one full page: next %q, err %v", next, err)
	}
	_, tok, err := s.ListSourceCertificates(ctx, "c1", 1, "")
	if err != nil || tok == "" {
		t.Fatal(tok, err)
	}
	if _, _, err := s.ListSourceCertificates(ctx, "c2", 1, tok); !errors.Is(err, ErrInvalidPageToken) {
		t.Errorf("token of another connection: %v, want ErrInvalidPageToken", err)
	}
	for _, bad := range []string{"!!", "bm90IGpzb24", "e30", encodePageToken(pageToken{Sequence: 3, Connection: "c1"})} {
		if _, _, err := s.ListSourceCertificates(ctx, "c1", 1, bad); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("token %q: %v, want ErrInvalidPageToken", bad, err)
		}
	}
}

// testSourceCertificatesConcurrent has importers on two Store instances of
// one database import at once: each of several certificates, as active,
// and the same certificate many times. Every import succeeds; one version
// per certificate is stored and exactly one is active.
func testSourceCertificatesConcurrent(t *testing.T, db *testDB) {
	ctx := t.Context()
	stores := []Store{db.open(t), db.open(t)}
	const workers, rounds = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			s := stores[w%2]
			for r := range rounds {
				// Workers 0-3 import certificates of their own; 4-7 all
				// import one and the same certificate.
				d := der(100 + w*rounds + r)
				if w >= workers/2 {
					d = der(7)
				}
				ev := auditEvent(r, "connections/conn-a")
				c, err := s.ImportSourceCertificate(ctx, &SourceCertificate{Connection: "conn-a", DER: d, Active: true, ImportedBy: fmt.Sprint("worker-", w)}, ev)
				if err != nil {
					errs <- err
					continue
				}
				if c.SHA256 != sha256Hex(d) || !c.Active || ev.Sequence == 0 {
					errs <- fmt.Errorf("worker %d round %d: %+v, audit %+v", w, r, c, ev)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, _, err := stores[0].ListSourceCertificates(ctx, "conn-a", 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := workers/2*rounds + 1; len(list) != want {
		t.Errorf("%d versions stored, want %d", len(list), want)
	}
	active := 0
	for _, c := range list {
		if c.Active {
			active++
		}
	}
	if active != 1 {
		t.Errorf("%d active versions, want 1", active)
	}
	if activeID(t, stores[1], "conn-a") == "" {
		t.Error("no active version")
	}
	if v, err := stores[1].VerifyAudit(ctx); err != nil || !v.Intact || v.EventsChecked != workers*rounds {
		t.Errorf("VerifyAudit = %+v %v, want %d events", v, err, workers*rounds)
	}
}

// createDatabaseAt lays out a database the way a certsync of the given
// schema version did: the migration bookkeeping and the released
// migrations up to that version, which are never edited.
func createDatabaseAt(t *testing.T, db *testDB, version int64) {
	t.Helper()
	d := sqliteDialect
	if db.kind == "postgres" {
		d = postgresDialect
	}
	var stmts []string
	if db.kind == "sqlite" {
		stmts = append(stmts, `PRAGMA journal_mode = WAL`)
	}
	stmts = append(stmts, `CREATE TABLE schema_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	)`)
	for _, m := range migrations[:version] {
		stmts = append(stmts, m.stmts(d)...)
	}
	stmts = append(stmts, fmt.Sprintf(`INSERT INTO schema_version (id, version) VALUES (1, %d)`, version))
	for _, q := range stmts {
		if err := db.exec(t, q); err != nil {
			t.Fatalf("version %d schema: %s: %v", version, q, err)
		}
	}
}

// pruneRaw removes the audit events up to through behind the store's back,
// the way a version-2 PruneAudit did: checkpoint first, under the prune
// mark, in one transaction.
func pruneRaw(t *testing.T, db *testDB, through int64, hash string, at time.Time) {
	t.Helper()
	checkpoint := fmt.Sprintf(`INSERT INTO audit_checkpoints (sequence, hash, pruned_at, pruned_count, cutoff)
		VALUES (%d, '%s', %d, %d, %d)`, through, hash, at.UnixNano(), through, at.UnixNano())
	deleteOld := fmt.Sprintf(`DELETE FROM audit_events WHERE sequence <= %d`, through)
	if db.kind == "postgres" {
		// One simple-protocol string is one transaction, so the
		// transaction-local prune mark covers the delete.
		if err := db.exec(t, fmt.Sprintf(`SELECT set_config('certsync.audit_prune', '%d', true); %s; %s`, through, checkpoint, deleteOld)); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, q := range []string{fmt.Sprintf(`UPDATE audit_prune SET through = %d WHERE id = 1`, through), checkpoint, deleteOld,
		`UPDATE audit_prune SET through = 0 WHERE id = 1`} {
		if err := db.exec(t, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// testMigrateFromVersion2 upgrades a version-2 database holding an
// operation, a lease and an audit chain pruned once, written with raw SQL
// as a version-2 certsync wrote them, and checks that everything survives,
// that the chain and retention go on, and that source certificates work.
func testMigrateFromVersion2(t *testing.T, db *testDB) {
	ctx := t.Context()
	createDatabaseAt(t, db, 2)

	op := fullOperation("op-1")
	op.Version = 1
	r, err := toRow(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.exec(t, `INSERT INTO operations (`+opColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		op.ID, op.Connection, string(op.State), op.RequestID, r.created, r.updated, op.Version, r.doc); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour).UTC()
	if err := db.exec(t, `INSERT INTO locks (lock_key, owner, expires_at) VALUES ('company/ACME', 'replica-1', $1)`,
		expires.UnixNano()); err != nil {
		t.Fatal(err)
	}
	var chain []*AuditEvent
	prev := ""
	for i := 1; i <= 6; i++ {
		ev := auditEvent(i, "conn-a")
		ev.Sequence, ev.PreviousHash = int64(i), prev
		ev.Hash = HashEvent(ev)
		insertAuditRow(t, db, ev)
		prev = ev.Hash
		chain = append(chain, ev)
	}
	if err := db.exec(t, `UPDATE audit_head SET sequence = 6, hash = $1 WHERE id = 1`, prev); err != nil {
		t.Fatal(err)
	}
	pruneRaw(t, db, 2, chain[1].Hash, at(10))
	// It is a version-2 database: no source certificates yet.
	if err := db.exec(t, `SELECT COUNT(*) FROM source_certificates`); err == nil {
		t.Fatal("the version-2 layout already has source_certificates")
	}

	// Several processes start at once on the old database; one migrates.
	var wg sync.WaitGroup
	stores := make([]Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = db.tryOpen(ctx) })
	}
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { _ = s.Close() })
		}
		if errs[i] != nil {
			t.Errorf("open %d of the version-2 database: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	s := stores[0]
	if v := schemaVersionOf(t, s); v != SchemaVersion {
		t.Errorf("schema version after migration = %d, want %d", v, SchemaVersion)
	}

	// The data is intact.
	got, err := s.GetOperation(ctx, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "operation after migration", got, utcTimes(op))
	if l, held, err := s.GetLock(ctx, "company/ACME"); err != nil || !held || l.Owner != "replica-1" || !l.Expires.Equal(expires) {
		t.Errorf("lease after migration: %+v %v %v", l, held, err)
	}
	sameSeqs(t, "after migration", auditSequences(t, s), seqRange(3, 6))
	mustVerify(t, s, 4, 2)
	// The guard is still in place.
	execMustFail(t, db,
		`DELETE FROM audit_events WHERE sequence = 3`,
		`UPDATE audit_events SET reason = 'x' WHERE sequence = 3`,
		`DELETE FROM audit_checkpoints`,
	)

	// Source certificates work, with their audit in the chain ...
	ev7 := auditEvent(7, "connections/conn-a")
	imported := mustImport(t, stores[1], &SourceCertificate{Connection: "conn-a", DER: der(1), Active: true, ImportedBy: "alice"}, ev7)
	if ev7.Sequence != 7 || ev7.PreviousHash != chain[5].Hash {
		t.Errorf("audit of the first import: %+v", ev7)
	}
	if id := activeID(t, stores[2], "conn-a"); id != imported.ID {
		t.Errorf("active after migration: %q, want %q", id, imported.ID)
	}
	// ... and retention goes on.
	mustPrune(t, stores[2], at(5), 2)
	mustVerify(t, s, 3, 4)

	// Opening the migrated database again changes nothing.
	for _, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s2 := db.open(t)
	if v := schemaVersionOf(t, s2); v != SchemaVersion {
		t.Errorf("schema version after reopening = %d", v)
	}
	mustVerify(t, s2, 3, 4)
	if id := activeID(t, s2, "conn-a"); id != imported.ID {
		t.Errorf("active after reopening: %q, want %q", id, imported.ID)
	}
}
