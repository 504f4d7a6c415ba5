package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The target record and IPS job tests of the acceptance suite (see
// runSuite), and version-3 databases migrated to version 4.

// setNow makes the store behind s stamp defaulted times with f's instant,
// so that tests can check the stamps without reading a clock.
func setNow(t *testing.T, s Store, f func() time.Time) {
	t.Helper()
	sqlStoreOf(t, s).now = f
}

func mustRecord(t *testing.T, s Store, r *TargetRecord, audit *AuditEvent) *TargetRecord {
	t.Helper()
	got, err := s.RecordTarget(t.Context(), r, audit)
	if err != nil {
		t.Fatalf("RecordTarget(%s, %s): %v", r.ID, r.Connection, err)
	}
	return got
}

func sameTargetRecord(t *testing.T, what string, got, want *TargetRecord) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if !g.RecordTime.Equal(w.RecordTime) {
		t.Errorf("%s: record time %v, want %v", what, g.RecordTime, w.RecordTime)
	}
	if !bytes.Equal(g.DER, w.DER) {
		t.Errorf("%s: DER %x, want %x", what, g.DER, w.DER)
	}
	g.RecordTime, w.RecordTime, g.DER, w.DER = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func latestTargetID(t *testing.T, s Store, connection string) string {
	t.Helper()
	r, err := s.LatestTargetRecord(t.Context(), connection)
	if errors.Is(err, ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("LatestTargetRecord(%s): %v", connection, err)
	}
	return r.ID
}

func listTargetIDs(t *testing.T, s Store, connection string, size int) []string {
	t.Helper()
	var ids []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatal("paging does not end")
		}
		got, next, err := s.ListTargetRecords(t.Context(), connection, size, tok)
		if err != nil {
			t.Fatal(err)
		}
		if size > 0 && len(got) > size {
			t.Fatalf("page of %d, size %d", len(got), size)
		}
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if next == "" {
			return ids
		}
		tok = next
	}
}

func testTargetRecords(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	if _, err := s.LatestTargetRecord(ctx, "conn-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("nothing recorded: %v, want ErrNotFound", err)
	}
	if got := listTargetIDs(t, s, "conn-a", 0); len(got) != 0 {
		t.Fatalf("nothing recorded, listed %v", got)
	}

	// Every field round-trips; the fingerprints come back lower-case.
	a := &TargetRecord{ID: "a", Connection: "conn-a", ConfigurationName: "cfg",
		IntegrationName: "Identity Provisioning Service", LoginName: "login",
		SHA256: strings.ToUpper(sha256Hex(der(1))), SHA1: "AABBCCDD", DER: der(1),
		Note: "seen \"quoted\" \u00e9\n second line", RecordedBy: "alice", RecordTime: at(0), Operation: "op-1"}
	evA := auditEvent(1, "connections/conn-a")
	gotA := mustRecord(t, s, a, evA)
	wantA := *a
	wantA.SHA256, wantA.SHA1 = sha256Hex(der(1)), "aabbccdd"
	sameTargetRecord(t, "record a", gotA, &wantA)
	if gotA.RecordTime.Location() != time.UTC {
		t.Errorf("record time in %v, want UTC", gotA.RecordTime.Location())
	}
	if evA.Sequence != 1 || evA.Hash == "" {
		t.Errorf("audit of the record: %+v", evA)
	}
	if a.SHA256 != strings.ToUpper(sha256Hex(der(1))) {
		t.Error("RecordTarget changed the caller's record")
	}
	// The result shares nothing with the caller's record.
	gotA.DER[0] = 0
	if a.DER[0] != 0x30 {
		t.Error("the result aliases the caller's DER")
	}
	got, err := s.LatestTargetRecord(ctx, "conn-a")
	if err != nil {
		t.Fatal(err)
	}
	sameTargetRecord(t, "latest after a", got, &wantA)

	// A newer record that SF shows none wins.
	b := &TargetRecord{ID: "b", Connection: "conn-a", Absent: true, Note: "deleted", RecordedBy: "bob",
		RecordTime: at(1), Operation: "op-2"}
	gotB := mustRecord(t, s, b, auditEvent(2, "connections/conn-a"))
	sameTargetRecord(t, "record b", gotB, b)
	got, err = s.LatestTargetRecord(ctx, "conn-a")
	if err != nil {
		t.Fatal(err)
	}
	sameTargetRecord(t, "latest after b", got, b)
	if got.DER != nil || got.SHA256 != "" || !got.Absent {
		t.Errorf("absent record read back as %+v", got)
	}
	// One of the same time recorded later is newer, whatever the ids
	// ("0" sorts before "b").
	mustRecord(t, s, &TargetRecord{ID: "0", Connection: "conn-a", SHA1: "DEADBEEF", RecordTime: at(1)}, nil)
	if id := latestTargetID(t, s, "conn-a"); id != "0" {
		t.Errorf("latest of two with one record time is %q, want the later one, 0", id)
	}
	// One recorded later with an older time is not the latest.
	mustRecord(t, s, &TargetRecord{ID: "d", Connection: "conn-a", SHA256: sha256Hex(der(4)), RecordTime: at(-1)}, nil)
	if id := latestTargetID(t, s, "conn-a"); id != "0" {
		t.Errorf("latest after an older record is %q, want 0", id)
	}
	// Another connection is another IPS system.
	mustRecord(t, s, &TargetRecord{ID: "e", Connection: "conn-b", SHA1: "ee", RecordTime: at(0)}, nil)
	if a, b := latestTargetID(t, s, "conn-a"), latestTargetID(t, s, "conn-b"); a != "0" || b != "e" {
		t.Errorf("latest: conn-a %q, conn-b %q; want 0 and e", a, b)
	}
	if got := strings.Join(listTargetIDs(t, s, "conn-a", 0), ","); got != "0,b,a,d" {
		t.Errorf("listed %s, want 0,b,a,d", got)
	}
	// The listing carries every field.
	list, next, err := s.ListTargetRecords(ctx, "conn-a", 10, "")
	if err != nil || next != "" || len(list) != 4 {
		t.Fatalf("list: %d, %q, %v", len(list), next, err)
	}
	sameTargetRecord(t, "listed a", list[2], &wantA)
	sameTargetRecord(t, "listed b", list[1], b)

	// An empty id is assigned, a zero time stamped with the store's clock.
	setNow(t, s, func() time.Time { return at(30) })
	z := mustRecord(t, s, &TargetRecord{Connection: "conn-a", Absent: true}, nil)
	if z.ID == "" || !z.RecordTime.Equal(at(30)) {
		t.Errorf("defaults: %+v", z)
	}
	got, err = s.LatestTargetRecord(ctx, "conn-a")
	if err != nil {
		t.Fatal(err)
	}
	sameTargetRecord(t, "defaulted record", got, z)

	// A taken id is a conflict, and the refused record leaves no trace,
	// not even its audit event.
	before := countAudit(t, s)
	ev := auditEvent(3, "connections/conn-b")
	if got, err := s.RecordTarget(ctx, &TargetRecord{ID: "a", Connection: "conn-b", SHA1: "ff", RecordTime: at(40)}, ev); !errors.Is(err, ErrConflict) || got != nil {
		t.Errorf("taken id: %v, %v; want ErrConflict", got, err)
	}
	if n := countAudit(t, s); n != before || ev.Sequence != 0 {
		t.Errorf("refused record: %d audit events (was %d), event %+v", n, before, ev)
	}
	if id := latestTargetID(t, s, "conn-b"); id != "e" {
		t.Errorf("after the refused record, latest of conn-b is %q", id)
	}

	// An audit event that cannot be stored (its time is out of range)
	// rolls the record back.
	bad := auditEvent(4, "connections/conn-a")
	bad.Time = at(0).AddDate(500, 0, 0)
	if got, err := s.RecordTarget(ctx, &TargetRecord{ID: "rolled-back", Connection: "conn-a", SHA1: "ff", RecordTime: at(50)}, bad); err == nil || errors.Is(err, ErrConflict) || got != nil {
		t.Errorf("record with a failing audit: %v, %v; want an error", got, err)
	}
	if id := latestTargetID(t, s, "conn-a"); id != z.ID {
		t.Errorf("after the rolled-back record, latest is %q, want %q", id, z.ID)
	}
	if n := countAudit(t, s); n != before || bad.Sequence != 0 {
		t.Errorf("rolled-back record: %d audit events (was %d), event %+v", n, before, bad)
	}
	// ... and leaves its id free.
	mustRecord(t, s, &TargetRecord{ID: "rolled-back", Connection: "conn-a", SHA1: "ff", RecordTime: at(50)}, nil)
	if id := latestTargetID(t, s, "conn-a"); id != "rolled-back" {
		t.Errorf("latest is %q, want rolled-back", id)
	}

	// A record needs a connection, and one that is not absent a
	// fingerprint or the certificate; any one of them suffices.
	for _, bad := range []*TargetRecord{nil, {SHA1: "ff"}, {Connection: "conn-c"},
		{Connection: "conn-c", ConfigurationName: "cfg", LoginName: "l", Note: "n", DER: []byte{}}} {
		if _, err := s.RecordTarget(ctx, bad, nil); err == nil || errors.Is(err, ErrConflict) {
			t.Errorf("RecordTarget(%+v) = %v, want a plain error", bad, err)
		}
	}
	if id := latestTargetID(t, s, "conn-c"); id != "" {
		t.Errorf("a refused record was stored: %s", id)
	}
	for i, r := range []*TargetRecord{{SHA256: "AB"}, {SHA1: "CD"}, {DER: der(9)}} {
		r.Connection, r.RecordTime = "conn-c", at(i)
		mustRecord(t, s, r, nil)
	}
	if got := len(listTargetIDs(t, s, "conn-c", 0)); got != 3 {
		t.Errorf("conn-c has %d records, want 3", got)
	}
	if _, err := s.LatestTargetRecord(ctx, "none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown connection: %v, want ErrNotFound", err)
	}
	mustVerify(t, s, 2, 0)
}

func testTargetRecordsPaging(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	// z and y share a record time (and b of c2 too): the later recorded
	// is the newer, although the ids sort the other way.
	for _, v := range []struct {
		id   string
		conn string
		sec  int
	}{{"a", "c1", 0}, {"b", "c2", 1}, {"z", "c1", 1}, {"y", "c1", 1}, {"c", "c1", 2}, {"x", "c1", 3}, {"w", "c1", 4}} {
		mustRecord(t, s, &TargetRecord{ID: v.id, Connection: v.conn, SHA1: "ab", RecordTime: at(v.sec)}, nil)
	}
	for _, size := range []int{0, 1, 2, 4} {
		if got := strings.Join(listTargetIDs(t, s, "c1", size), ","); got != "w,x,c,y,z,a" {
			t.Errorf("c1, pages of %d: %s, want w,x,c,y,z,a", size, got)
		}
	}
	if got := strings.Join(listTargetIDs(t, s, "", 3), ","); got != "w,x,c,y,z,b,a" {
		t.Errorf("all, pages of 3: %s", got)
	}
	if got := listTargetIDs(t, s, "none", 1); len(got) != 0 {
		t.Errorf("unknown connection: %v", got)
	}
	// An exact multiple of the page size ends without an empty page.
	if _, next, err := s.ListTargetRecords(ctx, "c1", 6, ""); err != nil || next != "" {
		t.Errorf("one full page: next %q, err %v", next, err)
	}
	// A record added between two pages neither repeats nor shifts them.
	first, tok, err := s.ListTargetRecords(ctx, "c1", 2, "")
	if err != nil || len(first) != 2 || tok == "" {
		t.Fatal(first, tok, err)
	}
	mustRecord(t, s, &TargetRecord{ID: "v", Connection: "c1", SHA1: "ab", RecordTime: at(5)}, nil)
	mustRecord(t, s, &TargetRecord{ID: "u", Connection: "c1", SHA1: "ab", RecordTime: at(3)}, nil)
	second, _, err := s.ListTargetRecords(ctx, "c1", 3, tok)
	if err != nil || len(second) != 3 || second[0].ID != "c" || second[1].ID != "y" || second[2].ID != "z" {
		t.Errorf("second page after inserts: %v %v", second, err)
	}

	if _, _, err := s.ListTargetRecords(ctx, "c2", 1, tok); !errors.Is(err, ErrInvalidPageToken) {
		t.Errorf("token of another connection: %v, want ErrInvalidPageToken", err)
	}
	for _, bad := range []string{"!!", "bm90IGpzb24", "e30",
		// An audit listing's token and a source certificate listing's.
		encodePageToken(pageToken{Sequence: 3, Connection: "c1"}),
		encodePageToken(pageToken{Time: at(1).UnixNano(), ID: "z", Connection: "c1"})} {
		if _, _, err := s.ListTargetRecords(ctx, "c1", 1, bad); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("token %q: %v, want ErrInvalidPageToken", bad, err)
		}
	}
}

// testTargetRecordsConcurrent has writers on two Store instances of one
// database record at once, all with one record time, each with an audit
// event. Every record is stored, and the listing's order (insertion order,
// as the times are equal) is the order of the audit chain, which was
// appended in the same transactions.
func testTargetRecordsConcurrent(t *testing.T, db *testDB) {
	ctx := t.Context()
	stores := []Store{db.open(t), db.open(t)}
	const workers, rounds = 8, 4
	var mu sync.Mutex
	auditSeq := map[string]int64{} // record id -> its audit event's sequence
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			s := stores[w%2]
			for r := range rounds {
				ev := auditEvent(r, "connections/conn-a")
				rec, err := s.RecordTarget(ctx, &TargetRecord{Connection: "conn-a", SHA256: sha256Hex(der(w*rounds + r)),
					RecordedBy: fmt.Sprint("worker-", w), RecordTime: at(0)}, ev)
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				auditSeq[rec.ID] = ev.Sequence
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	list, next, err := stores[0].ListTargetRecords(ctx, "conn-a", 1000, "")
	if err != nil || next != "" || len(list) != workers*rounds {
		t.Fatalf("listed %d records, %q, %v; want %d", len(list), next, err, workers*rounds)
	}
	for i, r := range list {
		if want := int64(len(list) - i); auditSeq[r.ID] != want {
			t.Fatalf("record %d of the listing (%s) was audited as event %d, want %d", i, r.ID, auditSeq[r.ID], want)
		}
	}
	if id := latestTargetID(t, stores[1], "conn-a"); id != list[0].ID {
		t.Errorf("latest is %q, want %q", id, list[0].ID)
	}
	mustVerify(t, stores[1], workers*rounds, 0)
}

func mustPutJob(t *testing.T, s Store, j *JobRecord) {
	t.Helper()
	if err := s.PutJob(t.Context(), j); err != nil {
		t.Fatalf("PutJob(%s, %s): %v", j.Connection, j.JobID, err)
	}
}

func sameJob(t *testing.T, what string, got, want *JobRecord) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	for _, p := range []struct {
		name string
		g, w *time.Time
	}{{"start", &g.StartTime, &w.StartTime}, {"update", &g.UpdateTime, &w.UpdateTime}, {"end", &g.EndTime, &w.EndTime}} {
		if !p.g.Equal(*p.w) || p.g.IsZero() != p.w.IsZero() {
			t.Errorf("%s: %s time %v, want %v", what, p.name, *p.g, *p.w)
		}
		*p.g, *p.w = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func mustGetJob(t *testing.T, s Store, connection, jobID string) *JobRecord {
	t.Helper()
	j, err := s.GetJob(t.Context(), connection, jobID)
	if err != nil {
		t.Fatalf("GetJob(%s, %s): %v", connection, jobID, err)
	}
	return j
}

func jobIDs(t *testing.T, s Store, connection string, limit int) string {
	t.Helper()
	jobs, err := s.LatestJobs(t.Context(), connection, limit)
	if err != nil {
		t.Fatalf("LatestJobs(%s, %d): %v", connection, limit, err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.JobID)
	}
	return strings.Join(ids, ",")
}

func testIPSJobs(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	if _, err := s.GetJob(ctx, "conn-a", "job-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no job: %v, want ErrNotFound", err)
	}
	if ids := jobIDs(t, s, "conn-a", 10); ids != "" {
		t.Fatalf("no job, latest %s", ids)
	}

	// A running job: no end time.
	running := JobRecord{Connection: "conn-a", JobID: "job-1", Type: "READ", Status: "RUNNING",
		Summary: "reading \"users\" \u00e9", StartedBy: "alice", Operation: "op-1", StartTime: at(0), UpdateTime: at(1)}
	j := running
	mustPutJob(t, s, &j)
	sameJob(t, "running job", mustGetJob(t, s, "conn-a", "job-1"), &running)
	sameJob(t, "written back", &j, &running)

	// It failed: the record with the same key is replaced, every field.
	failed := JobRecord{Connection: "conn-a", JobID: "job-1", Type: "RESYNC", Status: "ERROR", Done: true,
		Cause: "CERTIFICATE_EXPIRED", Summary: "failed", StartedBy: "bob", Operation: "op-2",
		StartTime: at(-1), UpdateTime: at(5), EndTime: at(5)}
	j = failed
	mustPutJob(t, s, &j)
	sameJob(t, "failed job", mustGetJob(t, s, "conn-a", "job-1"), &failed)

	// An update without a start time keeps the stored one; a zero update
	// time is the store's now, and a zero end time clears the old one.
	setNow(t, s, func() time.Time { return at(20) })
	j = JobRecord{Connection: "conn-a", JobID: "job-1", Type: "READ", Status: "SUCCESS", Done: true, Succeeded: true}
	mustPutJob(t, s, &j)
	want := j
	want.StartTime, want.UpdateTime = at(-1), at(20)
	sameJob(t, "update without times", mustGetJob(t, s, "conn-a", "job-1"), &want)
	sameJob(t, "times written back", &j, &want)

	// A new job without a start time started now.
	j = JobRecord{Connection: "conn-a", JobID: "job-0", Type: "READ"}
	mustPutJob(t, s, &j)
	if got := mustGetJob(t, s, "conn-a", "job-0"); !got.StartTime.Equal(at(20)) || !got.UpdateTime.Equal(at(20)) || !got.EndTime.IsZero() {
		t.Errorf("defaulted job: %+v", got)
	}

	// Another connection is another IPS system, with job ids of its own.
	other := JobRecord{Connection: "conn-b", JobID: "job-1", Type: "RESYNC", StartTime: at(30), UpdateTime: at(30)}
	mustPutJob(t, s, &other)
	sameJob(t, "conn-b's job-1", mustGetJob(t, s, "conn-b", "job-1"), &other)
	sameJob(t, "conn-a's job-1", mustGetJob(t, s, "conn-a", "job-1"), &want)
	if _, err := s.GetJob(ctx, "conn-b", "job-0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("conn-b's job-0: %v, want ErrNotFound", err)
	}

	// Newest start first; job-2 and job-3 share one, so the job id
	// breaks the tie.
	for _, v := range []struct {
		id  string
		sec int
	}{{"job-2", 3}, {"job-3", 3}, {"job-4", 1}} {
		mustPutJob(t, s, &JobRecord{Connection: "conn-a", JobID: v.id, Type: "READ", StartTime: at(v.sec), UpdateTime: at(v.sec)})
	}
	if got := jobIDs(t, s, "conn-a", 10); got != "job-0,job-3,job-2,job-4,job-1" {
		t.Errorf("latest jobs: %s, want job-0,job-3,job-2,job-4,job-1", got)
	}
	if got := jobIDs(t, s, "conn-a", 2); got != "job-0,job-3" {
		t.Errorf("latest 2 jobs: %s, want job-0,job-3", got)
	}
	if got := jobIDs(t, s, "conn-a", 0); got != "job-0,job-3,job-2,job-4,job-1" {
		t.Errorf("latest jobs, default limit: %s", got)
	}
	if got := jobIDs(t, s, "conn-b", 10); got != "job-1" {
		t.Errorf("conn-b's latest jobs: %s", got)
	}
	if got := jobIDs(t, s, "none", 10); got != "" {
		t.Errorf("unknown connection's latest jobs: %s", got)
	}
	// The listing carries every field.
	jobs, err := s.LatestJobs(ctx, "conn-a", 10)
	if err != nil || len(jobs) != 5 {
		t.Fatalf("LatestJobs: %d, %v", len(jobs), err)
	}
	sameJob(t, "listed job-1", jobs[4], &want)

	for _, bad := range []*JobRecord{nil, {JobID: "job-9"}, {Connection: "conn-a"}} {
		if err := s.PutJob(ctx, bad); err == nil {
			t.Errorf("PutJob(%+v) accepted", bad)
		}
	}
	if err := s.PutJob(ctx, &JobRecord{Connection: "conn-a", JobID: "far", StartTime: at(0).AddDate(500, 0, 0)}); err == nil {
		t.Error("a start time in 2531 was accepted")
	}
	if _, err := s.GetJob(ctx, "conn-a", "far"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused job: %v, want ErrNotFound", err)
	}
}

// version3Doc returns doc, an operation document this binary wrote, as
// schema version 3 wrote it: without the manual re-registration's fields.
func version3Doc(t *testing.T, doc string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	delete(m, "manual")
	for _, k := range []string{"backup", "upload"} {
		if mapping, ok := m[k].(map[string]any); ok {
			delete(mapping, "sha256")
			delete(mapping, "sha1")
		}
	}
	steps, _ := m["steps"].([]any)
	for _, st := range steps {
		for _, k := range []string{"instruction", "deadline", "confirmed_by"} {
			delete(st.(map[string]any), k)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"manual"`, `"instruction"`, `"deadline"`, `"confirmed_by"`, `"sha256"`, `"sha1"`} {
		if strings.Contains(string(b), k) {
			t.Fatalf("version-3 document still has %s: %s", k, b)
		}
	}
	return string(b)
}

// testMigrateFromVersion3 upgrades a version-3 database holding an
// operation (its document as version 3 wrote it), a source certificate and
// an audit chain, written with raw SQL, and checks that everything
// survives, that the chain goes on, and that target records, jobs and the
// operation's new fields work.
func testMigrateFromVersion3(t *testing.T, db *testDB) {
	ctx := t.Context()
	createDatabaseAt(t, db, 3)

	op := fullOperation("op-1")
	op.Version = 1
	op.Manual = false
	for i := range op.Steps {
		op.Steps[i].Instruction, op.Steps[i].Deadline, op.Steps[i].ConfirmedBy = nil, time.Time{}, ""
	}
	op.Backup.SHA256, op.Backup.SHA1, op.Upload.SHA256, op.Upload.SHA1 = "", "", "", ""
	r, err := toRow(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.exec(t, `INSERT INTO operations (`+opColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		op.ID, op.Connection, string(op.State), op.RequestID, r.created, r.updated, op.Version, version3Doc(t, r.doc)); err != nil {
		t.Fatal(err)
	}
	cert := &SourceCertificate{ID: "sc-1", Connection: "conn-a", DER: der(1), SHA256: sha256Hex(der(1)), Active: true,
		ImportTime: at(0), ImportedBy: "alice", Reason: "CHG-1"}
	if err := db.exec(t, `INSERT INTO source_certificates (`+sourceCertColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		cert.ID, cert.Connection, cert.DER, cert.SHA256, cert.Active, cert.ImportTime.UnixNano(), cert.ImportedBy, cert.Reason); err != nil {
		t.Fatal(err)
	}
	var chain []*AuditEvent
	prev := ""
	for i := 1; i <= 3; i++ {
		ev := auditEvent(i, "conn-a")
		ev.Sequence, ev.PreviousHash = int64(i), prev
		ev.Hash = HashEvent(ev)
		insertAuditRow(t, db, ev)
		prev = ev.Hash
		chain = append(chain, ev)
	}
	if err := db.exec(t, `UPDATE audit_head SET sequence = 3, hash = $1 WHERE id = 1`, prev); err != nil {
		t.Fatal(err)
	}
	// It is a version-3 database: no target records or jobs yet.
	for _, table := range []string{"target_records", "ips_jobs"} {
		if err := db.exec(t, `SELECT COUNT(*) FROM `+table); err == nil {
			t.Fatalf("the version-3 layout already has %s", table)
		}
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
			t.Errorf("open %d of the version-3 database: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	s := stores[0]
	if v := schemaVersionOf(t, s); v != SchemaVersion {
		t.Errorf("schema version after migration = %d, want %d", v, SchemaVersion)
	}

	// The data is intact; the old document reads with the new fields unset.
	got, err := s.GetOperation(ctx, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "operation after migration", got, utcTimes(op))
	active, err := s.ActiveSourceCertificate(ctx, "conn-a")
	if err != nil {
		t.Fatal(err)
	}
	sameSourceCert(t, "source certificate after migration", active, cert)
	mustVerify(t, s, 3, 0)
	execMustFail(t, db, `DELETE FROM audit_events WHERE sequence = 1`)

	// Target records work, with their audit in the chain ...
	ev4 := auditEvent(4, "connections/conn-a")
	rec := mustRecord(t, stores[1], &TargetRecord{Connection: "conn-a", SHA256: sha256Hex(der(1)), DER: der(1),
		RecordedBy: "alice", RecordTime: at(10)}, ev4)
	if ev4.Sequence != 4 || ev4.PreviousHash != chain[2].Hash {
		t.Errorf("audit of the first target record: %+v", ev4)
	}
	latest, err := stores[2].LatestTargetRecord(ctx, "conn-a")
	if err != nil {
		t.Fatal(err)
	}
	sameTargetRecord(t, "target record after migration", latest, rec)
	// ... and so do jobs ...
	job := JobRecord{Connection: "conn-a", JobID: "job-1", Type: "READ", Status: "RUNNING", StartTime: at(11), UpdateTime: at(11)}
	mustPutJob(t, stores[2], &job)
	sameJob(t, "job after migration", mustGetJob(t, stores[0], "conn-a", "job-1"), &job)
	// ... and the migrated operation takes the new fields.
	got.Manual = true
	got.Steps[0].Instruction = &Instruction{Text: "Delete the mapping", CertificateDER: der(1), SHA256: "AB:CD"}
	got.Steps[0].Deadline, got.Steps[0].ConfirmedBy = at(12), "carol"
	got.Backup.SHA256, got.Backup.SHA1 = "AB:CD", "EF:01"
	if err := stores[1].UpdateOperation(ctx, got, nil); err != nil {
		t.Fatal(err)
	}
	updated, err := stores[0].GetOperation(ctx, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "operation updated after migration", updated, got)

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
	mustVerify(t, s2, 4, 0)
	if latest, err := s2.LatestTargetRecord(ctx, "conn-a"); err != nil {
		t.Error(err)
	} else {
		sameTargetRecord(t, "target record after reopening", latest, rec)
	}
	sameJob(t, "job after reopening", mustGetJob(t, s2, "conn-a", "job-1"), &job)
	if reopened, err := s2.GetOperation(ctx, "op-1"); err != nil {
		t.Error(err)
	} else {
		sameOperation(t, "operation after reopening", reopened, got)
	}
}

// TestOperationDocumentVersion3 decodes a document exactly as schema
// version 3 wrote it: the fields version 4 added come out unset.
func TestOperationDocumentVersion3(t *testing.T) {
	const doc = `{"reason":"r","requested_by":"alice","approved_by":"","validate_only":false,"automatic":true,` +
		`"lock_keys":["company/ACME"],"etag":"","mapping_id":"m","source_certificate_der":"MAA=","backup":null,` +
		`"new_mapping_id":"","upload":null,"steps":[{"kind":"DELETE_MAPPING","state":"SUCCEEDED","message":"deleted",` +
		`"start_time":"2031-05-06T05:08:10.123456789Z","end_time":"","attempts":1}],"error":null,"final_probe":null,` +
		`"cancel_requested":false,"cancel_reason":"","notes":null,"end_time":""}`
	op := Operation{ID: "op-3"}
	if err := decodeOpDoc(doc, &op); err != nil {
		t.Fatal(err)
	}
	want := Operation{ID: "op-3", Reason: "r", RequestedBy: "alice", Automatic: true, LockKeys: []string{"company/ACME"},
		MappingID: "m", SourceCertificateDER: []byte{0x30, 0x00},
		Steps: []Step{{Kind: StepDeleteMapping, State: StepSucceeded, Message: "deleted", StartTime: at(1).UTC(), Attempts: 1}}}
	if !reflect.DeepEqual(op, want) {
		t.Errorf("decoded\n %+v\nwant %+v", op, want)
	}
	// Encoding it again and decoding gives the same operation.
	enc, err := encodeOpDoc(&op)
	if err != nil {
		t.Fatal(err)
	}
	again := Operation{ID: "op-3"}
	if err := decodeOpDoc(enc, &again); err != nil || !reflect.DeepEqual(again, want) {
		t.Errorf("re-decoded %+v, %v", again, err)
	}
}
