package store

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgres runs the suite against the server at
// CERTSYNC_TEST_POSTGRES_URL (start one with: eval "$(.ci/postgres start)").
// Every subtest gets a database of its own, created through that URL and
// dropped afterwards, so that runs never see each other's data.
func TestPostgres(t *testing.T) {
	admin := os.Getenv("CERTSYNC_TEST_POSTGRES_URL")
	if admin == "" {
		// In CI a skipped suite would pass unnoticed; there the missing
		// server is the failure.
		if os.Getenv("CI") == "true" || os.Getenv("CERTSYNC_REQUIRE_POSTGRES") == "1" {
			t.Fatal("CERTSYNC_TEST_POSTGRES_URL is not set (CI or CERTSYNC_REQUIRE_POSTGRES=1 requires the PostgreSQL suite); start a server with: eval \"$(.ci/postgres start)\"")
		}
		t.Skip("CERTSYNC_TEST_POSTGRES_URL is not set; to run against PostgreSQL: eval \"$(.ci/postgres start)\"")
	}
	runSuite(t, func(t *testing.T) *testDB {
		dbURL := freshPostgresDatabase(t, admin)
		tryOpen := func(ctx context.Context) (Store, error) {
			s, err := OpenPostgres(ctx, dbURL)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
		return &testDB{
			kind:    "postgres",
			open:    opener(tryOpen),
			tryOpen: tryOpen,
			exec: func(t *testing.T, sql string, args ...any) error {
				t.Helper()
				conn, err := pgx.Connect(t.Context(), dbURL)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.WithoutCancel(t.Context()))
				_, err = conn.Exec(t.Context(), sql, args...)
				return err
			},
		}
	})
}

// freshPostgresDatabase creates an empty database with a random name on
// the admin URL's server and returns its URL; it is dropped when t ends.
func freshPostgresDatabase(t *testing.T, admin string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("CERTSYNC_TEST_POSTGRES_URL: %v", err)
	}
	name := "certsync_test_" + strings.ToLower(rand.Text()) // base32: letters and digits only
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to CERTSYNC_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)
	// template0: template1 may be in use by another session, which makes
	// CREATE DATABASE from it fail.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// FORCE ends connections a failed test may have left open.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
