package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSQLite(t *testing.T) {
	runSuite(t, func(t *testing.T) *testDB {
		path := filepath.Join(t.TempDir(), "state", "certsync.db")
		tryOpen := func(ctx context.Context) (Store, error) {
			s, err := OpenSQLite(ctx, path)
			if err != nil {
				return nil, err // not a Store holding a nil *SQLite
			}
			return s, nil
		}
		return &testDB{
			kind:    "sqlite",
			open:    opener(tryOpen),
			tryOpen: tryOpen,
			exec: func(t *testing.T, query string, args ...any) error {
				t.Helper()
				// As OpenSQLite would, so that a test can lay out a
				// database before any store opened it.
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				_, err = db.ExecContext(t.Context(), query, args...)
				return err
			},
		}
	})
}

func TestSQLiteFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(t.Context(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, SQLiteFileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	var mode string
	if err := s.(*SQLite).b.queryRow(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpenSpec(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		spec, dataDir string
		wantPath      string // for SQLite
		wantErr       string
	}{
		{spec: "", dataDir: dir, wantPath: filepath.Join(dir, "certsync.db")},
		{spec: "sqlite", dataDir: dir, wantPath: filepath.Join(dir, "certsync.db")},
		{spec: "sqlite:" + filepath.Join(dir, "x", "other.db"), wantPath: filepath.Join(dir, "x", "other.db")},
		{spec: "", dataDir: "", wantErr: "no data directory"},
		{spec: "sqlite:", wantErr: "needs a path"},
		{spec: "mysql://root:hunter2@db/x", wantErr: `unknown store "mysql"`},
		{spec: "bolt", wantErr: `unknown store "bolt"`},
		{spec: "postgres://127.0.0.1:1/x?connect_timeout=1", wantErr: "store: postgres"},
	} {
		s, err := Open(t.Context(), tc.spec, tc.dataDir)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open(%q, %q) = %v, want error containing %q", tc.spec, tc.dataDir, err, tc.wantErr)
			}
			if s != nil {
				s.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q, %q): %v", tc.spec, tc.dataDir, err)
			continue
		}
		if got := s.(*SQLite).Path(); got != tc.wantPath {
			t.Errorf("Open(%q, %q) opened %s, want %s", tc.spec, tc.dataDir, got, tc.wantPath)
		}
		s.Close()
	}
}

func TestSchemaVersionIsLatestMigration(t *testing.T) {
	if latestMigration() != SchemaVersion {
		t.Errorf("SchemaVersion = %d but the last migration is %d", SchemaVersion, latestMigration())
	}
	for i, m := range migrations {
		if m.version != int64(i+1) {
			t.Errorf("migration %d has version %d", i, m.version)
		}
	}
}

func TestFinalStatesMatchDone(t *testing.T) {
	final := map[OperationState]bool{}
	for _, s := range finalStates {
		final[s] = true
	}
	for _, s := range []OperationState{StateRunning, StatePendingApproval, StateSucceeded, StateFailed,
		StateRolledBack, StateCancelled, "SOMETHING_NEW"} {
		if s.Done() != final[s] {
			t.Errorf("%s: Done() = %v but finalStates says %v", s, s.Done(), final[s])
		}
	}
}

func TestColumnTimeRange(t *testing.T) {
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	op := newOp("far", "c", at(0).AddDate(500, 0, 0), StateRunning)
	if _, err := s.CreateOperation(t.Context(), op, nil); err == nil || errors.Is(err, ErrConflict) {
		t.Errorf("create time in 2531: %v, want a range error", err)
	}
}
