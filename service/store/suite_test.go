package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testDB is one fresh, empty database of some backend.
type testDB struct {
	kind string // "sqlite" or "postgres"
	// open opens a Store on the database; every call is a new "process"
	// (its own connections), closed when the test ends.
	open func(t *testing.T) Store
	// tryOpen is open without the test's failure handling.
	tryOpen func(ctx context.Context) (Store, error)
	// exec runs raw SQL on the database behind the store's back, the way
	// an operator (or an attacker) with database access could.
	exec func(t *testing.T, sql string, args ...any) error
}

// runSuite is the acceptance suite every Store implementation must pass.
// fresh returns a new empty database for each subtest.
func runSuite(t *testing.T, fresh func(t *testing.T) *testDB) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *testDB)
	}{
		{"RoundTrip", testRoundTrip},
		{"NilAndEmptyStayApart", testNilAndEmpty},
		{"Idempotency", testIdempotency},
		{"CompareAndSwap", testCompareAndSwap},
		{"ListPaging", testListPaging},
		{"ListUnfinished", testListUnfinished},
		{"ListEndedSince", testListEndedSince},
		{"Locks", testLocks},
		{"LockExpiry", testLockExpiry},
		{"AuditChain", testAuditChain},
		{"AuditTamper", testAuditTamper},
		{"AuditInSameTransaction", testAuditSameTransaction},
		{"AuditPrune", testAuditPrune},
		{"AuditPruneGuard", testAuditPruneGuard},
		{"AuditPruneTamper", testAuditPruneTamper},
		{"AuditPruneConcurrent", testAuditPruneConcurrent},
		{"MigrateFromVersion1", testMigrateFromVersion1},
		{"SourceCertificates", testSourceCertificates},
		{"SourceCertificatesPaging", testSourceCertificatesPaging},
		{"SourceCertificatesConcurrent", testSourceCertificatesConcurrent},
		{"MigrateFromVersion2", testMigrateFromVersion2},
		{"TargetRecords", testTargetRecords},
		{"TargetRecordsPaging", testTargetRecordsPaging},
		{"TargetRecordsConcurrent", testTargetRecordsConcurrent},
		{"IPSJobs", testIPSJobs},
		{"IPSJobSourceCertificate", testIPSJobSourceCertificate},
		{"MigrateFromVersion3", testMigrateFromVersion3},
		{"Concurrency", testConcurrency},
		{"Replicas", testReplicas},
		{"ConcurrentMigration", testConcurrentMigration},
		{"SchemaTooNew", testSchemaTooNew},
		{"Reopen", testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
}

// at is a fixed instant with nanoseconds in a zone other than UTC, so that
// a store dropping either is caught.
func at(sec int) time.Time {
	return time.Date(2031, 5, 6, 7, 8, 9+sec, 123456789, time.FixedZone("CEST", 2*3600))
}

// fullOperation has every field set, down to nested ones; checkAllSet
// fails when a field added to Operation is left out here (and so would go
// untested by the round trip).
func fullOperation(id string) *Operation {
	return &Operation{
		ID:                   id,
		Connection:           "conn-a",
		State:                StateRunning,
		Version:              7, // ignored by CreateOperation
		RequestID:            "req-" + id,
		Reason:               "CHG-42 \"quoted\" \u00e9\u00e8 \n newline",
		RequestedBy:          "alice",
		ApprovedBy:           "bob",
		ValidateOnly:         true,
		Automatic:            true,
		Manual:               true,
		LockKeys:             []string{"company/ACME", "mapping/CN=x"},
		Etag:                 "W/\"etag\"",
		MappingID:            "map-1",
		SourceCertificateDER: []byte{0x30, 0x82, 0x00, 0xff, 0x00},
		Backup: &Mapping{ID: "map-1", ConfigurationName: "cfg", IntegrationName: "Identity Provisioning Service",
			LoginName: "login", CertificateDER: []byte{1, 2, 3}, SHA256: "AA:BB", SHA1: "CC:DD"},
		NewMappingID: "map-2",
		Upload: &Mapping{ID: "map-2", ConfigurationName: "cfg2", IntegrationName: "IPS",
			LoginName: "login2", CertificateDER: []byte{4, 5, 6}, SHA256: "EE:FF", SHA1: "00:11"},
		Steps: []Step{
			{Kind: StepDeleteMapping, State: StepSucceeded, Message: "deleted", StartTime: at(1), EndTime: at(2), Attempts: 2,
				Instruction: &Instruction{Text: "Delete the mapping \"x\" \u00e9", CertificateDER: []byte{0x30, 0x00, 0xff},
					ConfigurationName: "cfg", IntegrationName: "Identity Provisioning Service", LoginName: "login",
					SHA256: "AB:CD:EF"},
				Deadline: at(8), ConfirmedBy: "carol", JobRequested: at(9)},
			{Kind: StepUploadCertificate, State: StepAwaitingConfirmation, Message: "uploading", StartTime: at(3), EndTime: at(4), Attempts: 1,
				Instruction: &Instruction{Text: "Upload", CertificateDER: []byte{0x30, 0x01}, ConfigurationName: "cfg2",
					IntegrationName: "IPS", LoginName: "login2", SHA256: "01:02"},
				Deadline: at(9), ConfirmedBy: "dave", JobRequested: at(10)},
		},
		Error: &OperationError{Code: "FAILED_PRECONDITION", Reason: "PROBE_FAILED", Message: "probe failed",
			Metadata: map[string]string{"step": "PROBE", "status": "401"}},
		FinalProbe: &Probe{Outcome: "INVALID_CLIENT_CERTIFICATE", HTTPStatus: 401, ErrorCode: "AUTH0032",
			ErrorMessage: "no", RequestURL: "https://cert.example/scim", Latency: 1234567891 * time.Nanosecond,
			ClientSHA256: "AB:CD", CheckedAt: at(5)},
		CancelRequested: true,
		CancelReason:    "operator asked",
		Notes:           []string{"recovered by replica-2", "second note"},
		CreateTime:      at(0),
		UpdateTime:      at(6),
		EndTime:         at(7),
	}
}

func checkAllSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("fullOperation leaves %s nil", path)
			return
		}
		checkAllSet(t, v.Elem(), path)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			if v.Interface().(time.Time).IsZero() {
				t.Errorf("fullOperation leaves %s zero", path)
			}
			return
		}
		for i := range v.NumField() {
			checkAllSet(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			t.Errorf("fullOperation leaves %s empty", path)
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
			for i := range v.Len() {
				checkAllSet(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	default:
		if v.IsZero() {
			t.Errorf("fullOperation leaves %s zero", path)
		}
	}
}

// utcTimes returns a deep copy of op with every time in UTC, so that
// reflect.DeepEqual compares instants (time.Equal) while still telling nil
// from empty.
func utcTimes(op *Operation) *Operation {
	if op == nil {
		return nil
	}
	c := *op
	c.CreateTime, c.UpdateTime, c.EndTime = c.CreateTime.UTC(), c.UpdateTime.UTC(), c.EndTime.UTC()
	if op.Steps != nil {
		c.Steps = make([]Step, len(op.Steps))
		for i, s := range op.Steps {
			s.StartTime, s.EndTime, s.Deadline, s.JobRequested = s.StartTime.UTC(), s.EndTime.UTC(), s.Deadline.UTC(), s.JobRequested.UTC()
			c.Steps[i] = s
		}
	}
	if op.FinalProbe != nil {
		p := *op.FinalProbe
		p.CheckedAt = p.CheckedAt.UTC()
		c.FinalProbe = &p
	}
	return &c
}

func sameOperation(t *testing.T, what string, got, want *Operation) {
	t.Helper()
	if !reflect.DeepEqual(utcTimes(got), utcTimes(want)) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, utcTimes(got), utcTimes(want))
	}
}

func newOp(id, connection string, created time.Time, state OperationState) *Operation {
	return &Operation{ID: id, Connection: connection, State: state, CreateTime: created, UpdateTime: created}
}

func mustCreate(t *testing.T, s Store, op *Operation) *Operation {
	t.Helper()
	got, err := s.CreateOperation(t.Context(), op, nil)
	if err != nil {
		t.Fatalf("CreateOperation(%s): %v", op.ID, err)
	}
	return got
}

func testRoundTrip(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	op := fullOperation("op-1")
	checkAllSet(t, reflect.ValueOf(op), "Operation")

	want := utcTimes(op)
	want.Version = 1
	created, err := s.CreateOperation(ctx, op, nil)
	if err != nil {
		t.Fatal(err)
	}
	if op.Version != 1 {
		t.Errorf("op.Version after create = %d, want 1", op.Version)
	}
	sameOperation(t, "CreateOperation result", created, want)
	got, err := s.GetOperation(ctx, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "GetOperation", got, want)
	if got.CreateTime.Nanosecond() != 123456789 {
		t.Errorf("nanoseconds lost: %v", got.CreateTime)
	}
	got, err = s.FindOperationByRequestID(ctx, "conn-a", "req-op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "FindOperationByRequestID", got, want)

	// The returned copy shares nothing with the caller's operation.
	created.SourceCertificateDER[0] = 0
	created.Error.Metadata["step"] = "changed"
	created.Steps[0].Instruction.CertificateDER[0] = 0
	if op.SourceCertificateDER[0] != 0x30 || op.Error.Metadata["step"] != "PROBE" || op.Steps[0].Instruction.CertificateDER[0] != 0x30 {
		t.Error("CreateOperation's result aliases the caller's operation")
	}

	if _, err := s.GetOperation(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetOperation(nope) = %v, want ErrNotFound", err)
	}
	if _, err := s.FindOperationByRequestID(ctx, "conn-a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindOperationByRequestID(nope) = %v, want ErrNotFound", err)
	}
	if _, err := s.FindOperationByRequestID(ctx, "conn-a", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindOperationByRequestID(\"\") = %v, want ErrNotFound", err)
	}

	// A zero create time is stamped; the stamp is kept exactly.
	z := &Operation{ID: "op-2", Connection: "conn-a", State: StateRunning}
	zc, err := s.CreateOperation(ctx, z, nil)
	if err != nil {
		t.Fatal(err)
	}
	if zc.CreateTime.IsZero() || !zc.UpdateTime.Equal(zc.CreateTime) || !z.CreateTime.Equal(zc.CreateTime) {
		t.Errorf("defaulted times: returned %v/%v, caller's %v", zc.CreateTime, zc.UpdateTime, z.CreateTime)
	}
	zg, err := s.GetOperation(ctx, "op-2")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "defaulted operation", zg, zc)
}

func testNilAndEmpty(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	empty := &Operation{ID: "empty", Connection: "c", State: StateRunning, CreateTime: at(0), UpdateTime: at(0),
		LockKeys: []string{}, SourceCertificateDER: []byte{}, Steps: []Step{}, Notes: []string{},
		Backup: &Mapping{CertificateDER: []byte{}}, Error: &OperationError{Metadata: map[string]string{}},
		FinalProbe: &Probe{}}
	nils := &Operation{ID: "nils", Connection: "c", State: StateRunning, CreateTime: at(0), UpdateTime: at(0),
		Backup: &Mapping{}, Error: &OperationError{}}
	// A step without an instruction keeps it nil; an instruction's empty
	// certificate stays empty and a missing one nil.
	steps := &Operation{ID: "steps", Connection: "c", State: StateRunning, CreateTime: at(0), UpdateTime: at(0),
		Steps: []Step{
			{Kind: StepProbe, State: StepPending},
			{Kind: StepDeleteMapping, State: StepPending, Instruction: &Instruction{}},
			{Kind: StepUploadCertificate, State: StepPending, Instruction: &Instruction{Text: "t", CertificateDER: []byte{}}},
		}}
	for _, op := range []*Operation{empty, nils, steps} {
		mustCreate(t, s, op)
		got, err := s.GetOperation(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameOperation(t, op.ID, got, op)
	}
}

func testIdempotency(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	first := newOp("op-1", "conn-a", at(0), StateRunning)
	first.RequestID = "r1"
	mustCreate(t, s, first)

	dup := newOp("op-2", "conn-a", at(1), StateRunning)
	dup.RequestID = "r1"
	existing, err := s.CreateOperation(ctx, dup, nil)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate request id: err = %v, want ErrConflict", err)
	}
	if existing == nil || existing.ID != "op-1" {
		t.Fatalf("duplicate request id returned %+v, want op-1", existing)
	}
	if _, err := s.GetOperation(ctx, "op-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused operation was stored: %v", err)
	}

	// The key is per connection, and an empty request id is no key.
	other := newOp("op-3", "conn-b", at(2), StateRunning)
	other.RequestID = "r1"
	mustCreate(t, s, other)
	mustCreate(t, s, newOp("op-4", "conn-a", at(3), StateRunning))
	mustCreate(t, s, newOp("op-5", "conn-a", at(4), StateRunning))

	// A taken id is a conflict too, without an operation to return.
	got, err := s.CreateOperation(ctx, newOp("op-4", "conn-a", at(5), StateRunning), nil)
	if !errors.Is(err, ErrConflict) || got != nil {
		t.Errorf("duplicate id: %v, %v; want ErrConflict and nil", got, err)
	}
}

func testCompareAndSwap(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	mustCreate(t, s, newOp("op-1", "conn-a", at(0), StateRunning))

	a, _ := s.GetOperation(ctx, "op-1")
	b, _ := s.GetOperation(ctx, "op-1")
	a.State = StateSucceeded
	a.Notes = []string{"done"}
	a.UpdateTime = at(9)
	if err := s.UpdateOperation(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	if a.Version != 2 {
		t.Errorf("Version after update = %d, want 2", a.Version)
	}
	b.State = StateFailed
	if err := s.UpdateOperation(ctx, b, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("stale update: %v, want ErrConflict", err)
	}
	if b.Version != 1 {
		t.Errorf("a refused update changed Version to %d", b.Version)
	}
	got, _ := s.GetOperation(ctx, "op-1")
	sameOperation(t, "after update", got, a)

	if err := s.UpdateOperation(ctx, a, nil); err != nil {
		t.Errorf("second update with the new version: %v", err)
	}
	if a.Version != 3 {
		t.Errorf("Version = %d, want 3", a.Version)
	}
	if err := s.UpdateOperation(ctx, newOp("ghost", "conn-a", at(0), StateRunning), nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing operation: %v, want ErrNotFound", err)
	}
}

func testListPaging(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	// Two pairs share a create time, so the id must break the tie.
	ops := []*Operation{
		newOp("a", "conn-a", at(0), StateSucceeded),
		newOp("b", "conn-b", at(1), StateRunning),
		newOp("c", "conn-a", at(1), StateRunning),
		newOp("d", "conn-a", at(2), StateFailed),
		newOp("e", "conn-b", at(3), StateRunning),
		newOp("f", "conn-a", at(3), StateRunning),
		newOp("g", "conn-a", at(4), StateRunning),
	}
	for _, op := range ops {
		mustCreate(t, s, op)
	}
	collect := func(f ListFilter) []string {
		t.Helper()
		var ids []string
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			got, next, err := s.ListOperations(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > f.PageSize && f.PageSize > 0 {
				t.Fatalf("page of %d, size %d", len(got), f.PageSize)
			}
			for _, op := range got {
				ids = append(ids, op.ID)
			}
			if next == "" {
				return ids
			}
			f.PageToken = next
		}
	}
	if got, want := strings.Join(collect(ListFilter{PageSize: 3}), ","), "g,f,e,d,c,b,a"; got != want {
		t.Errorf("all, pages of 3: %s, want %s", got, want)
	}
	if got, want := strings.Join(collect(ListFilter{}), ","), "g,f,e,d,c,b,a"; got != want {
		t.Errorf("all, default size: %s, want %s", got, want)
	}
	if got, want := strings.Join(collect(ListFilter{Connection: "conn-a", PageSize: 2}), ","), "g,f,d,c,a"; got != want {
		t.Errorf("conn-a, pages of 2: %s, want %s", got, want)
	}
	if got, want := strings.Join(collect(ListFilter{Connection: "conn-b", PageSize: 2}), ","), "e,b"; got != want {
		t.Errorf("conn-b: %s, want %s", got, want)
	}
	if got := collect(ListFilter{Connection: "none"}); len(got) != 0 {
		t.Errorf("unknown connection: %v", got)
	}
	// An exact multiple of the page size ends without an empty page.
	_, next, err := s.ListOperations(ctx, ListFilter{PageSize: 7})
	if err != nil || next != "" {
		t.Errorf("one full page: next %q, err %v", next, err)
	}

	_, tok, _ := s.ListOperations(ctx, ListFilter{PageSize: 1})
	if _, _, err := s.ListOperations(ctx, ListFilter{PageSize: 1, PageToken: tok, Connection: "conn-b"}); !errors.Is(err, ErrInvalidPageToken) {
		t.Errorf("token reused with another filter: %v, want ErrInvalidPageToken", err)
	}
	for _, bad := range []string{"!!", "bm90IGpzb24", "e30"} {
		if _, _, err := s.ListOperations(ctx, ListFilter{PageToken: bad}); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("token %q: %v, want ErrInvalidPageToken", bad, err)
		}
	}
}

func testListUnfinished(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	for i, st := range []OperationState{StateSucceeded, StateRunning, StateFailed, StatePendingApproval,
		StateRolledBack, StateCancelled, StateRunning} {
		mustCreate(t, s, newOp(fmt.Sprintf("op-%d", 9-i), "conn-a", at(i), st))
	}
	got, err := s.ListUnfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, op := range got {
		ids = append(ids, op.ID)
		if op.Done() {
			t.Errorf("%s is %s", op.ID, op.State)
		}
	}
	if got, want := strings.Join(ids, ","), "op-8,op-6,op-3"; got != want {
		t.Errorf("unfinished = %s, want %s (oldest first)", got, want)
	}
}

// testListEndedSince: the gate learns from it that another replica ended a
// re-registration; an operation that ends later than its creation is found
// by the time it ended, and unfinished ones never.
func testListEndedSince(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	mustCreate(t, s, newOp("old", "conn-a", at(0), StateSucceeded))
	mustCreate(t, s, newOp("running", "conn-a", at(1), StateRunning))
	late := mustCreate(t, s, newOp("late", "conn-b", at(2), StateRunning))
	mustCreate(t, s, newOp("new", "conn-c", at(6), StateFailed))
	late.State, late.UpdateTime = StateCancelled, at(8)
	if err := s.UpdateOperation(ctx, late, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListEndedSince(ctx, at(5))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, op := range got {
		ids = append(ids, op.ID)
	}
	if got, want := strings.Join(ids, ","), "new,late"; got != want {
		t.Errorf("ended since = %s, want %s (by update, oldest first)", got, want)
	}
}

// testIPSJobSourceCertificate: the certificate a job started with is kept,
// and a later status update that does not know it keeps it too.
func testIPSJobSourceCertificate(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	j := &JobRecord{Connection: "conn-a", JobID: "j1", Type: "READ", Status: "Running", SourceSHA256: "AA:BB"}
	if err := s.PutJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	update := &JobRecord{Connection: "conn-a", JobID: "j1", Type: "READ", Status: "Success", Done: true, Succeeded: true}
	if err := s.PutJob(ctx, update); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "conn-a", "j1")
	if err != nil {
		t.Fatal(err)
	}
	if got.SourceSHA256 != "AA:BB" || update.SourceSHA256 != "AA:BB" || got.Status != "Success" {
		t.Errorf("after an update without it: stored %q, written back %q, status %q", got.SourceSHA256, update.SourceSHA256, got.Status)
	}
}

func testLocks(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	const ttl = time.Minute
	ok, l, err := s.AcquireLock(ctx, "company/ACME", "a", ttl)
	if err != nil || !ok || l.Owner != "a" || l.Key != "company/ACME" {
		t.Fatalf("first acquire: %v %+v %v", ok, l, err)
	}
	if d := time.Until(l.Expires); d < ttl-10*time.Second || d > ttl+10*time.Second {
		t.Errorf("expires in %v, want about %v", d, ttl)
	}
	ok, holder, err := s.AcquireLock(ctx, "company/ACME", "b", ttl)
	if err != nil || ok {
		t.Fatalf("second owner acquired: %v %v", ok, err)
	}
	if holder.Owner != "a" || !holder.Expires.Equal(l.Expires) {
		t.Errorf("holder = %+v, want a's lease %+v", holder, l)
	}
	time.Sleep(5 * time.Millisecond) // so that the renewal's clock has moved
	ok, renewed, err := s.AcquireLock(ctx, "company/ACME", "a", ttl)
	if err != nil || !ok || !renewed.Expires.After(l.Expires) {
		t.Errorf("renewal: %v %+v %v (was %v)", ok, renewed, err, l.Expires)
	}
	got, held, err := s.GetLock(ctx, "company/ACME")
	if err != nil || !held || got.Owner != "a" || !got.Expires.Equal(renewed.Expires) {
		t.Errorf("GetLock = %+v %v %v", got, held, err)
	}
	if err := s.ReleaseLock(ctx, "company/ACME", "b"); err != nil {
		t.Error(err)
	}
	if _, held, _ := s.GetLock(ctx, "company/ACME"); !held {
		t.Error("another owner's release ended the lease")
	}
	if err := s.ReleaseLock(ctx, "company/ACME", "a"); err != nil {
		t.Error(err)
	}
	if _, held, _ := s.GetLock(ctx, "company/ACME"); held {
		t.Error("lease survives its release")
	}
	if err := s.ReleaseLock(ctx, "company/ACME", "a"); err != nil {
		t.Errorf("releasing a lease not held: %v", err)
	}
	if ok, _, err := s.AcquireLock(ctx, "company/ACME", "b", ttl); !ok || err != nil {
		t.Errorf("acquire after release: %v %v", ok, err)
	}
	if _, held, _ := s.GetLock(ctx, "other"); held {
		t.Error("GetLock of an unknown key")
	}
	if _, _, err := s.AcquireLock(ctx, "k", "a", 0); err == nil {
		t.Error("zero ttl accepted")
	}
}

func testLockExpiry(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	ok, l, err := s.AcquireLock(ctx, "mapping/x", "a", time.Second)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, _, err := s.AcquireLock(ctx, "mapping/y", "a", time.Second); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _, _ := s.AcquireLock(ctx, "mapping/x", "b", time.Minute); ok {
		t.Fatal("b took a live lease")
	}
	if _, held, _ := s.GetLock(ctx, "mapping/y"); !held {
		t.Fatal("a's fresh lease on mapping/y is not held")
	}
	// Expiry is judged by the database clock; poll rather than trust ours.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, nl, err := s.AcquireLock(ctx, "mapping/x", "b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if nl.Owner != "b" || !nl.Expires.After(l.Expires) {
				t.Errorf("took over as %+v", nl)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired lease never became free")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// GetLock ignores an expired lease (taken just after mapping/x's).
	for {
		_, held, err := s.GetLock(ctx, "mapping/y")
		if err != nil {
			t.Fatal(err)
		}
		if !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("GetLock still reports an expired lease")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func auditEvent(i int, connection string) *AuditEvent {
	return &AuditEvent{
		Time: at(i), Identity: fmt.Sprintf("user-%d", i), Role: "operator", RPC: "ReregisterCertificate",
		Connection: connection, RequestID: fmt.Sprintf("req-%d", i), Reason: fmt.Sprintf("CHG-%d", i),
		Outcome: "OK", Operation: fmt.Sprintf("operations/op-%d", i),
	}
}

func testAuditChain(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact || v.EventsChecked != 0 {
		t.Errorf("empty chain: %+v %v", v, err)
	}
	var appended []*AuditEvent
	for i := 1; i <= 5; i++ {
		conn := "conn-a"
		if i%2 == 0 {
			conn = "conn-b"
		}
		ev := auditEvent(i, conn)
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if ev.Sequence != int64(i) {
			t.Errorf("Sequence = %d, want %d", ev.Sequence, i)
		}
		prev := ""
		if i > 1 {
			prev = appended[i-2].Hash
		}
		if ev.PreviousHash != prev || ev.Hash != HashEvent(ev) {
			t.Errorf("event %d: previous %q hash %q", i, ev.PreviousHash, ev.Hash)
		}
		appended = append(appended, ev)
	}
	// A zero time is stamped.
	ev := &AuditEvent{RPC: "CancelOperation", Connection: "conn-a"}
	if err := s.AppendAudit(ctx, ev); err != nil || ev.Time.IsZero() || ev.Sequence != 6 {
		t.Errorf("zero time: %+v %v", ev, err)
	}
	appended = append(appended, ev)

	var all []*AuditEvent
	tok := ""
	for {
		page, next, err := s.ListAudit(ctx, "", 4, tok)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		tok = next
	}
	if len(all) != 6 {
		t.Fatalf("listed %d events, want 6", len(all))
	}
	for i, got := range all {
		want := appended[5-i] // newest first
		if !got.Time.Equal(want.Time) {
			t.Errorf("event %d time %v, want %v", want.Sequence, got.Time, want.Time)
		}
		g, w := *got, *want
		g.Time, w.Time = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("listed %+v, want %+v", g, w)
		}
	}
	page, next, err := s.ListAudit(ctx, "conn-b", 0, "")
	if err != nil || next != "" || len(page) != 2 || page[0].Sequence != 4 || page[1].Sequence != 2 {
		t.Errorf("conn-b: %v %q %v", page, next, err)
	}
	if _, _, err := s.ListAudit(ctx, "", 1, "garbage!"); !errors.Is(err, ErrInvalidPageToken) {
		t.Errorf("bad token: %v", err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || !v.Intact || v.EventsChecked != 6 || v.FirstBadSequence != 0 {
		t.Errorf("VerifyAudit = %+v, %v", v, err)
	}
}

// dropAuditGuard removes the append-only triggers, as someone with DDL
// rights could, so that the tests can tamper with the chain.
func dropAuditGuard(t *testing.T, db *testDB) {
	t.Helper()
	stmts := []string{`DROP TRIGGER audit_events_no_update`, `DROP TRIGGER audit_events_no_delete`}
	if db.kind == "postgres" {
		stmts = []string{`DROP TRIGGER audit_events_no_update ON audit_events`}
	}
	for _, q := range stmts {
		if err := db.exec(t, q); err != nil {
			t.Fatal(err)
		}
	}
}

func testAuditTamper(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	for i := 1; i <= 5; i++ {
		if err := s.AppendAudit(ctx, auditEvent(i, "conn-a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.exec(t, `UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 3`); err == nil {
		t.Error("UPDATE of an audit event was allowed")
	}
	if err := db.exec(t, `DELETE FROM audit_events WHERE sequence = 5`); err == nil {
		t.Error("DELETE of an audit event was allowed")
	}

	dropAuditGuard(t, db)
	if err := db.exec(t, `UPDATE audit_events SET reason = 'nothing to see' WHERE sequence = 3`); err != nil {
		t.Fatal(err)
	}
	v, err := s.VerifyAudit(ctx)
	if err != nil || v.Intact || v.FirstBadSequence != 3 || v.EventsChecked != 2 || !strings.Contains(v.Message, "3") {
		t.Errorf("altered event 3: %+v %v", v, err)
	}

	// Re-hashing the altered event hides nothing: the next link breaks.
	evs, _, _ := s.ListAudit(ctx, "", 10, "")
	ev3 := *evs[2]
	if ev3.Sequence != 3 {
		t.Fatalf("listed %d", ev3.Sequence)
	}
	if err := db.exec(t, `UPDATE audit_events SET hash = $1 WHERE sequence = 3`, HashEvent(&ev3)); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.VerifyAudit(ctx); v.Intact || v.FirstBadSequence != 4 {
		t.Errorf("re-hashed event 3: %+v, want first bad 4", v)
	}

	// Cutting events off the end is noticed through the chain head.
	if err := db.exec(t, `DELETE FROM audit_events WHERE sequence >= 3`); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.VerifyAudit(ctx); v.Intact || v.FirstBadSequence != 3 {
		t.Errorf("truncated chain: %+v, want first bad 3", v)
	}
}

func countAudit(t *testing.T, s Store) int {
	t.Helper()
	evs, _, err := s.ListAudit(t.Context(), "", 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func testAuditSameTransaction(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	op := newOp("op-1", "conn-a", at(0), StateRunning)
	op.RequestID = "r1"
	ev := auditEvent(1, "conn-a")
	if _, err := s.CreateOperation(ctx, op, ev); err != nil {
		t.Fatal(err)
	}
	if ev.Sequence != 1 || ev.Hash == "" {
		t.Errorf("audit of the create: %+v", ev)
	}

	dup := newOp("op-2", "conn-a", at(1), StateRunning)
	dup.RequestID = "r1"
	ev2 := auditEvent(2, "conn-a")
	if _, err := s.CreateOperation(ctx, dup, ev2); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	if n := countAudit(t, s); n != 1 {
		t.Errorf("%d audit events after a refused create, want 1", n)
	}
	if ev2.Sequence != 0 || ev2.Hash != "" {
		t.Errorf("refused create filled in its event: %+v", ev2)
	}

	stale := *op
	stale.Version = 0
	if err := s.UpdateOperation(ctx, &stale, auditEvent(3, "conn-a")); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if n := countAudit(t, s); n != 1 {
		t.Errorf("%d audit events after a refused update, want 1", n)
	}
	op.State = StateSucceeded
	ev4 := auditEvent(4, "conn-a")
	if err := s.UpdateOperation(ctx, op, ev4); err != nil {
		t.Fatal(err)
	}
	if ev4.Sequence != 2 || countAudit(t, s) != 2 {
		t.Errorf("audit of the update: %+v", ev4)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact {
		t.Errorf("VerifyAudit = %+v %v", v, err)
	}
}

// testConcurrency has 8 goroutines, on two Store instances of one database,
// append audit events and create operations at once; the chain must come out
// gapless, unforked and verifiable.
func testConcurrency(t *testing.T, db *testDB) {
	ctx := t.Context()
	stores := []Store{db.open(t), db.open(t)}
	const workers, rounds = 8, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*2)
	for w := range workers {
		wg.Go(func() {
			s := stores[w%2]
			for r := range rounds {
				if err := s.AppendAudit(ctx, auditEvent(r, fmt.Sprintf("conn-%d", w))); err != nil {
					errs <- err
				}
				op := newOp(fmt.Sprintf("op-%d-%d", w, r), fmt.Sprintf("conn-%d", w), time.Now(), StateRunning)
				op.RequestID = fmt.Sprintf("r-%d", r)
				if _, err := s.CreateOperation(ctx, op, auditEvent(r, op.Connection)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	evs, _, err := stores[0].ListAudit(ctx, "", 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != workers*rounds*2 {
		t.Fatalf("%d events, want %d", len(evs), workers*rounds*2)
	}
	for i, ev := range evs {
		if want := int64(len(evs) - i); ev.Sequence != want {
			t.Fatalf("event at %d has sequence %d, want %d", i, ev.Sequence, want)
		}
		if i > 0 && evs[i-1].PreviousHash != ev.Hash {
			t.Fatalf("chain forks at %d", evs[i-1].Sequence)
		}
	}
	v, err := stores[1].VerifyAudit(ctx)
	if err != nil || !v.Intact || v.EventsChecked != int64(len(evs)) {
		t.Errorf("VerifyAudit = %+v %v", v, err)
	}
	ops, _, err := stores[1].ListOperations(ctx, ListFilter{PageSize: 1000})
	if err != nil || len(ops) != workers*rounds {
		t.Errorf("%d operations, %v; want %d", len(ops), err, workers*rounds)
	}
}

// testReplicas: two Store instances on one database, as two certsyncd
// processes, see each other's writes and share locks.
func testReplicas(t *testing.T, db *testDB) {
	ctx := t.Context()
	r1, r2 := db.open(t), db.open(t)
	op := mustCreate(t, r1, newOp("op-1", "conn-a", at(0), StateRunning))
	got, err := r2.GetOperation(ctx, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "seen from the other replica", got, op)
	got.State = StateSucceeded
	if err := r2.UpdateOperation(ctx, got, nil); err != nil {
		t.Fatal(err)
	}
	if err := r1.UpdateOperation(ctx, op, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("replica 1's stale update: %v", err)
	}

	if ok, _, _ := r1.AcquireLock(ctx, "company/ACME", "replica-1", time.Minute); !ok {
		t.Fatal("replica 1 could not lock")
	}
	ok, holder, err := r2.AcquireLock(ctx, "company/ACME", "replica-2", time.Minute)
	if ok || err != nil || holder.Owner != "replica-1" {
		t.Errorf("replica 2: %v %+v %v", ok, holder, err)
	}

	// Many contenders for one free lease: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range 8 {
		wg.Go(func() {
			owner := fmt.Sprintf("contender-%d", i)
			ok, _, err := []Store{r1, r2}[i%2].AcquireLock(ctx, "mapping/contended", owner, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				winners = append(winners, owner)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("winners: %v, want exactly one", winners)
	}
	l, held, err := r1.GetLock(ctx, "mapping/contended")
	if err != nil || !held || l.Owner != winners[0] {
		t.Errorf("GetLock = %+v %v %v, want %s", l, held, err, winners[0])
	}
}

func testConcurrentMigration(t *testing.T, db *testDB) {
	var wg sync.WaitGroup
	stores := make([]Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = db.tryOpen(t.Context()) })
	}
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { _ = s.Close() })
		}
		if errs[i] != nil {
			t.Errorf("concurrent open %d: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	mustCreate(t, stores[0], newOp("op-1", "c", at(0), StateRunning))
	if _, err := stores[3].GetOperation(t.Context(), "op-1"); err != nil {
		t.Error(err)
	}
}

func testSchemaTooNew(t *testing.T, db *testDB) {
	s := db.open(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.exec(t, `UPDATE schema_version SET version = 7`); err != nil {
		t.Fatal(err)
	}
	s, err := db.tryOpen(t.Context())
	if err == nil {
		_ = s.Close()
		t.Fatal("opened a database with a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("err = %v, want ErrSchemaTooNew", err)
	}
	var tooNew *SchemaTooNewError
	if !errors.As(err, &tooNew) || tooNew.Database != 7 || tooNew.Supported != SchemaVersion {
		t.Errorf("err = %#v", err)
	}
	want := fmt.Sprintf("database schema version 7 is newer than this certsync supports (version %d): upgrade certsync or use another database", SchemaVersion)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}
}

func testReopen(t *testing.T, db *testDB) {
	ctx := t.Context()
	s := db.open(t)
	op := fullOperation("op-1")
	ev := auditEvent(1, "conn-a")
	created, err := s.CreateOperation(ctx, op, ev)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.AcquireLock(ctx, "k", "a", time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := db.open(t)
	got, err := s2.GetOperation(ctx, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	sameOperation(t, "after reopening", got, created)
	if l, held, _ := s2.GetLock(ctx, "k"); !held || l.Owner != "a" {
		t.Errorf("lock after reopening: %+v %v", l, held)
	}
	if v, err := s2.VerifyAudit(ctx); err != nil || !v.Intact || v.EventsChecked != 1 {
		t.Errorf("audit after reopening: %+v %v", v, err)
	}
	// The chain continues where it was.
	ev2 := auditEvent(2, "conn-a")
	if err := s2.AppendAudit(ctx, ev2); err != nil || ev2.Sequence != 2 || ev2.PreviousHash != ev.Hash {
		t.Errorf("append after reopening: %+v %v", ev2, err)
	}
}
