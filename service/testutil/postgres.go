package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDatabase creates a fresh database on the server named by
// CERTSYNC_TEST_POSTGRES_URL (.ci/postgres starts one) and returns its URL;
// the database is dropped when the test ends. Without the variable the test
// is skipped on a developer's machine and fails in CI (CI=true or
// CERTSYNC_REQUIRE_POSTGRES=1): a suite that silently skips PostgreSQL in CI
// would prove nothing.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("CERTSYNC_TEST_POSTGRES_URL")
	if admin == "" {
		if os.Getenv("CI") == "true" || os.Getenv("CERTSYNC_REQUIRE_POSTGRES") == "1" {
			t.Fatal("CERTSYNC_TEST_POSTGRES_URL is not set; in CI the PostgreSQL tests must run (.ci/postgres start)")
		}
		t.Skip("CERTSYNC_TEST_POSTGRES_URL not set (eval \"$(.ci/postgres start)\" to run the PostgreSQL tests)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to %s: %v", redact(admin), err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "certsync_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
