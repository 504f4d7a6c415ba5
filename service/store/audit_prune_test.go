package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The audit retention tests of the acceptance suite (see runSuite): pruning
// keeps the chain verifiable, the guard still refuses everything else, and
// version-1 databases are migrated.

func mustVerify(t *testing.T, s Store, checked, prunedThrough int64) AuditVerification {
	t.Helper()
	v, err := s.VerifyAudit(t.Context())
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if !v.Intact || v.FirstBadSequence != 0 || v.EventsChecked != checked || v.PrunedThrough != prunedThrough {
		t.Errorf("VerifyAudit = %+v, want intact with %d events checked, pruned through %d", v, checked, prunedThrough)
	}
	if prunedThrough > 0 {
		want := fmt.Sprintf("%d older events were pruned up to sequence %d", prunedThrough, prunedThrough)
		if !strings.Contains(v.Message, want) {
			t.Errorf("VerifyAudit message %q lacks %q", v.Message, want)
		}
	} else if strings.Contains(v.Message, "prune") {
		t.Errorf("VerifyAudit message %q mentions pruning, but nothing was pruned", v.Message)
	}
	return v
}

func mustPrune(t *testing.T, s Store, before time.Time, want int64) {
	t.Helper()
	n, err := s.PruneAudit(t.Context(), before)
	if err != nil || n != want {
		t.Fatalf("PruneAudit(%v) = %d, %v; want %d", before, n, err, want)
	}
}

// auditSequences lists the stored events' sequences, oldest first.
func auditSequences(t *testing.T, s Store) []int64 {
	t.Helper()
	evs, _, err := s.ListAudit(t.Context(), "", 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for i := len(evs) - 1; i >= 0; i-- {
		seqs = append(seqs, evs[i].Sequence)
	}
	return seqs
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func sameSeqs(t *testing.T, what string, got, want []int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: stored events %v, want %v", what, got, want)
	}
}

func testAuditPrune(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	mustPrune(t, s, at(100), 0) // empty log
	for i := 1; i <= 10; i++ {
		if err := s.AppendAudit(ctx, auditEvent(i, "conn-a")); err != nil {
			t.Fatal(err)
		}
	}
	mustPrune(t, s, time.Time{}, 0) // no retention: nothing is older
	mustPrune(t, s, at(1), 0)       // event 1 is at(1): not before it
	mustVerify(t, s, 10, 0)

	mustPrune(t, s, at(4), 3)
	v := mustVerify(t, s, 7, 3)
	t.Logf("after pruning: %s", v.Message)
	sameSeqs(t, "after pruning before at(4)", auditSequences(t, s), seqRange(4, 10))
	mustPrune(t, s, at(4), 0) // nothing left to prune

	// An event older than the cutoff that follows one that is not stays:
	// a prune removes the start of the chain and nothing else.
	ev11 := auditEvent(-5, "conn-b")
	if err := s.AppendAudit(ctx, ev11); err != nil || ev11.Sequence != 11 {
		t.Fatalf("append 11: %+v %v", ev11, err)
	}
	mustPrune(t, s, at(7), 3)
	mustVerify(t, s, 5, 6)
	sameSeqs(t, "after pruning before at(7)", auditSequences(t, s), seqRange(7, 11))

	// A cutoff after everything (and after the storable range) keeps the
	// newest event all the same.
	mustPrune(t, s, at(0).AddDate(1000, 0, 0), 4)
	mustVerify(t, s, 1, 10)
	sameSeqs(t, "after pruning everything", auditSequences(t, s), []int64{11})
	mustPrune(t, s, at(0).AddDate(1000, 0, 0), 0)

	// The chain goes on from its head.
	ev12 := auditEvent(12, "conn-a")
	if err := s.AppendAudit(ctx, ev12); err != nil {
		t.Fatal(err)
	}
	if ev12.Sequence != 12 || ev12.PreviousHash != ev11.Hash || ev12.Hash != HashEvent(ev12) {
		t.Errorf("append after prune: %+v (event 11's hash %s)", ev12, ev11.Hash)
	}
	op := newOp("op-1", "conn-a", at(13), StateRunning)
	ev13 := auditEvent(13, "conn-a")
	if _, err := s.CreateOperation(ctx, op, ev13); err != nil || ev13.Sequence != 13 {
		t.Fatalf("create with audit after prune: %+v %v", ev13, err)
	}
	mustVerify(t, s, 3, 10)
	page, _, err := s.ListAudit(ctx, "conn-b", 0, "")
	if err != nil || len(page) != 1 || page[0].Sequence != 11 {
		t.Errorf("ListAudit(conn-b) after prune: %v %v", page, err)
	}

	// Another process (and a restart) sees the same.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := db.open(t)
	mustVerify(t, s2, 3, 10)
	mustPrune(t, s2, at(13), 2)
	mustVerify(t, s2, 1, 12)
}

// execMustFail runs statements that the append-only guard must refuse.
func execMustFail(t *testing.T, db *testDB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if err := db.exec(t, q); err == nil {
			t.Errorf("%s: allowed", q)
		} else if !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the append-only guard's refusal", q, err)
		}
	}
}

func testAuditPruneGuard(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	for i := 1; i <= 8; i++ {
		if err := s.AppendAudit(ctx, auditEvent(i, "conn-a")); err != nil {
			t.Fatal(err)
		}
	}
	mustPrune(t, s, at(5), 4)

	// Outside PruneAudit every change is still refused, also of events a
	// checkpoint covers (all gone) and of the checkpoints themselves.
	execMustFail(t, db,
		`DELETE FROM audit_events WHERE sequence = 5`,
		`DELETE FROM audit_events WHERE sequence <= 6`,
		`DELETE FROM audit_events`,
		`UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 6`,
		`DELETE FROM audit_checkpoints`,
		`UPDATE audit_checkpoints SET hash = 'forged'`,
	)
	if db.kind == "postgres" {
		execMustFail(t, db, `TRUNCATE audit_events`, `TRUNCATE audit_checkpoints`)
		// The prune mark alone does not open the guard: a checkpoint must
		// cover the events deleted, and none covers event 5.
		execMustFail(t, db, `BEGIN; SELECT set_config('certsync.audit_prune', '100', true);
			DELETE FROM audit_events WHERE sequence = 5; COMMIT`)
		// Nor does a mark that is not a sequence.
		if err := db.exec(t, `BEGIN; SELECT set_config('certsync.audit_prune', 'on', true);
			DELETE FROM audit_events WHERE sequence = 5; COMMIT`); err == nil {
			t.Error("DELETE with the prune mark 'on' was allowed")
		}
	} else {
		if err := db.exec(t, `UPDATE audit_prune SET through = 100`); err != nil {
			t.Fatal(err)
		}
		execMustFail(t, db, `DELETE FROM audit_events WHERE sequence = 5`)
		if err := db.exec(t, `UPDATE audit_prune SET through = 0`); err != nil {
			t.Fatal(err)
		}
	}
	sameSeqs(t, "after refused changes", auditSequences(t, s), seqRange(5, 8))
	mustVerify(t, s, 4, 4)
	// And PruneAudit still works after all those refusals.
	mustPrune(t, s, at(7), 2)
	mustVerify(t, s, 2, 6)
}

func insertAuditRow(t *testing.T, db *testDB, ev *AuditEvent) {
	t.Helper()
	if err := db.exec(t, `INSERT INTO audit_events (`+auditColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		ev.Sequence, ev.Time.UnixNano(), ev.Identity, ev.Role, ev.RPC, ev.Connection, ev.RequestID, ev.Reason,
		ev.Outcome, ev.Operation, ev.PreviousHash, ev.Hash); err != nil {
		t.Fatal(err)
	}
}

func wantBroken(t *testing.T, s Store, what string, firstBad, checked int64, inMessage string) {
	t.Helper()
	v, err := s.VerifyAudit(t.Context())
	if err != nil {
		t.Fatalf("%s: VerifyAudit: %v", what, err)
	}
	if v.Intact || v.FirstBadSequence != firstBad || v.EventsChecked != checked || !strings.Contains(v.Message, inMessage) {
		t.Errorf("%s: VerifyAudit = %+v, want first bad %d after %d checked, message with %q", what, v, firstBad, checked, inMessage)
	}
}

func testAuditPruneTamper(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	for i := 1; i <= 8; i++ {
		if err := s.AppendAudit(ctx, auditEvent(i, "conn-a")); err != nil {
			t.Fatal(err)
		}
	}
	mustPrune(t, s, at(5), 4)
	evs, _, err := s.ListAudit(ctx, "", 10, "")
	if err != nil || len(evs) != 4 || evs[3].Sequence != 5 {
		t.Fatalf("ListAudit: %v %v", evs, err)
	}
	ev5, ev6 := *evs[3], *evs[2]
	dropAuditGuard(t, db)

	// An altered event after the checkpoint.
	if err := db.exec(t, `UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 6`); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "altered event 6", 6, 1, "altered")
	// Pruning it would destroy the evidence: PruneAudit refuses, and
	// removes nothing.
	if n, err := s.PruneAudit(ctx, at(0).AddDate(1000, 0, 0)); !errors.Is(err, ErrAuditChainBroken) || n != 0 {
		t.Errorf("PruneAudit over an altered event = %d, %v; want ErrAuditChainBroken", n, err)
	}
	sameSeqs(t, "after a refused prune", auditSequences(t, s), seqRange(5, 8))
	if err := db.exec(t, `UPDATE audit_events SET reason = $1 WHERE sequence = 6`, ev6.Reason); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s, 4, 4)

	// The first remaining event, altered and re-hashed: its link to the
	// checkpoint breaks.
	if err := db.exec(t, `UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 5`); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "altered event 5", 5, 0, "altered")
	forged := ev5
	forged.Reason = "nothing to see"
	forged.Hash = HashEvent(&forged)
	if err := db.exec(t, `UPDATE audit_events SET hash = $1 WHERE sequence = 5`, forged.Hash); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "re-hashed event 5", 6, 1, "previous_hash")
	// ... and re-linked to a forged predecessor as well.
	forged.PreviousHash = strings.Repeat("0", 64)
	forged.Hash = HashEvent(&forged)
	if err := db.exec(t, `UPDATE audit_events SET previous_hash = $1, hash = $2 WHERE sequence = 5`,
		forged.PreviousHash, forged.Hash); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "re-linked event 5", 5, 0, "pruned")
	if err := db.exec(t, `UPDATE audit_events SET reason = $1, previous_hash = $2, hash = $3 WHERE sequence = 5`,
		ev5.Reason, ev5.PreviousHash, ev5.Hash); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s, 4, 4)

	// The first remaining event deleted, then one in the middle.
	if err := db.exec(t, `DELETE FROM audit_events WHERE sequence = 5`); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "deleted event 5", 5, 0, "missing")
	if n, err := s.PruneAudit(ctx, at(7)); !errors.Is(err, ErrAuditChainBroken) || n != 0 {
		t.Errorf("PruneAudit with event 5 missing = %d, %v; want ErrAuditChainBroken", n, err)
	}
	insertAuditRow(t, db, &ev5)
	mustVerify(t, s, 4, 4)
	if err := db.exec(t, `DELETE FROM audit_events WHERE sequence = 6`); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "deleted event 6", 6, 1, "missing")
	insertAuditRow(t, db, &ev6)
	mustVerify(t, s, 4, 4)

	// A checkpoint claiming a prune that did not happen (event 5 is still
	// stored) cannot make VerifyAudit skip events.
	if err := db.exec(t, `INSERT INTO audit_checkpoints (sequence, hash, pruned_at, pruned_count, cutoff)
		VALUES (5, $1, 0, 1, 0)`, ev5.Hash); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, s, "forged checkpoint", 5, 0, "still stored")
	if n, err := s.PruneAudit(ctx, at(7)); !errors.Is(err, ErrAuditChainBroken) || n != 0 {
		t.Errorf("PruneAudit after a forged checkpoint = %d, %v; want ErrAuditChainBroken", n, err)
	}
}

// testAuditPruneConcurrent prunes while two stores append and verify: every
// verification sees a consistent chain, and no event is lost or forked.
func testAuditPruneConcurrent(t *testing.T, db *testDB) {
	ctx := t.Context()
	stores := []Store{db.open(t), db.open(t)}
	const appenders, rounds = 4, 12
	var appending sync.WaitGroup
	var done atomic.Bool
	var pruned atomic.Int64
	for w := range appenders {
		appending.Go(func() {
			for r := range rounds {
				ev := &AuditEvent{Identity: fmt.Sprintf("w%d", w), RPC: "Append", Connection: "conn-a", Reason: fmt.Sprint(r)}
				if err := stores[w%2].AppendAudit(ctx, ev); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var others sync.WaitGroup
	for i := range 2 {
		others.Go(func() { // prunes
			for !done.Load() {
				n, err := stores[i].PruneAudit(ctx, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				pruned.Add(n)
				time.Sleep(time.Millisecond)
			}
		})
		others.Go(func() { // verifies
			for !done.Load() {
				v, err := stores[i].VerifyAudit(ctx)
				if err != nil || !v.Intact {
					t.Errorf("VerifyAudit during prunes = %+v, %v", v, err)
					return
				}
			}
		})
	}
	appending.Wait()
	done.Store(true)
	others.Wait()
	if t.Failed() {
		t.FailNow()
	}
	const total = appenders * rounds
	seqs := auditSequences(t, stores[0])
	p := pruned.Load()
	sameSeqs(t, fmt.Sprintf("after %d pruned", p), seqs, seqRange(p+1, total))
	v := mustVerify(t, stores[1], total-p, p)
	t.Logf("%d events appended, %d pruned: %s", total, p, v.Message)
	mustPrune(t, stores[0], time.Now(), total-p-1)
	mustVerify(t, stores[1], 1, total-1)
}

// createVersion1Database lays out a database the way a certsync of schema
// version 1 did: the migration bookkeeping and version 1's statements,
// which are never edited once released.
func createVersion1Database(t *testing.T, db *testDB) {
	t.Helper()
	d := sqliteDialect
	if db.kind == "postgres" {
		d = postgresDialect
	}
	var stmts []string
	if db.kind == "sqlite" {
		// Version 1 opened every database in WAL mode, which sticks.
		stmts = append(stmts, `PRAGMA journal_mode = WAL`)
	}
	stmts = append(stmts, `CREATE TABLE schema_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	)`)
	stmts = append(stmts, migrations[0].stmts(d)...)
	stmts = append(stmts, `INSERT INTO schema_version (id, version) VALUES (1, 1)`)
	for _, q := range stmts {
		if err := db.exec(t, q); err != nil {
			t.Fatalf("version 1 schema: %s: %v", q, err)
		}
	}
}

// sqlStoreOf reaches the sqlStore behind a Store the suite opened.
func sqlStoreOf(t *testing.T, s Store) *sqlStore {
	t.Helper()
	if c, ok := s.(*closeOnce); ok {
		s = c.Store
	}
	switch s := s.(type) {
	case *SQLite:
		return s.sqlStore
	case *Postgres:
		return s.sqlStore
	}
	t.Fatalf("no sqlStore in %T", s)
	return nil
}

func schemaVersionOf(t *testing.T, s Store) int64 {
	t.Helper()
	var v int64
	if err := sqlStoreOf(t, s).b.queryRow(t.Context(), `SELECT version FROM schema_version WHERE id = 1`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// testMigrateFromVersion1 upgrades a version-1 database holding an
// operation, a lease and an audit chain, written with raw SQL as a version-1
// certsync wrote them, and checks that everything survives and that
// retention works on it.
func testMigrateFromVersion1(t *testing.T, db *testDB) {
	ctx := t.Context()
	createVersion1Database(t, db)

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
	// It is a version-1 guard: it refuses every delete.
	execMustFail(t, db, `DELETE FROM audit_events WHERE sequence = 1`)

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
			t.Errorf("open %d of the version-1 database: %v", i, errs[i])
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
	want := utcTimes(op)
	sameOperation(t, "operation after migration", got, want)
	if l, held, err := s.GetLock(ctx, "company/ACME"); err != nil || !held || l.Owner != "replica-1" || !l.Expires.Equal(expires) {
		t.Errorf("lease after migration: %+v %v %v", l, held, err)
	}
	listed, _, err := s.ListAudit(ctx, "", 100, "")
	if err != nil || len(listed) != len(chain) {
		t.Fatalf("ListAudit after migration: %d events, %v", len(listed), err)
	}
	for i, ev := range listed {
		w := chain[len(chain)-1-i]
		if ev.Sequence != w.Sequence || ev.Hash != w.Hash || ev.PreviousHash != w.PreviousHash || !ev.Time.Equal(w.Time) || ev.Reason != w.Reason {
			t.Errorf("event after migration: %+v, want %+v", ev, w)
		}
	}
	mustVerify(t, s, 6, 0)

	// The new guard is in place: still append-only...
	execMustFail(t, db,
		`DELETE FROM audit_events WHERE sequence = 1`,
		`UPDATE audit_events SET reason = 'x' WHERE sequence = 1`,
	)
	// ... the chain goes on ...
	ev7 := auditEvent(7, "conn-a")
	if err := stores[1].AppendAudit(ctx, ev7); err != nil || ev7.Sequence != 7 || ev7.PreviousHash != chain[5].Hash {
		t.Fatalf("append after migration: %+v %v", ev7, err)
	}
	// ... and retention works.
	mustPrune(t, stores[2], at(4), 3)
	mustVerify(t, s, 4, 3)
	execMustFail(t, db, `DELETE FROM audit_events WHERE sequence = 4`)

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
	mustVerify(t, s2, 4, 3)
}
