package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// SQLiteFileName is the database file Open uses inside the data directory.
const SQLiteFileName = "certsync.db"

// Open opens the store that spec (the --store flag) names:
//
//	"" or "sqlite"                 SQLite at dataDir/certsync.db
//	"sqlite:PATH"                  SQLite at PATH
//	"postgres://..." or
//	"postgresql://..."             PostgreSQL
func Open(ctx context.Context, spec, dataDir string) (Store, error) {
	switch {
	case spec == "" || spec == "sqlite":
		if dataDir == "" {
			return nil, errors.New("store: no data directory for the SQLite database (set --data-dir or --store sqlite:PATH)")
		}
		return openSQLite(ctx, filepath.Join(dataDir, SQLiteFileName))
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return nil, errors.New(`store: "sqlite:" needs a path, as in sqlite:/var/lib/certsync/certsync.db`)
		}
		return openSQLite(ctx, path)
	case strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://"):
		p, err := OpenPostgres(ctx, spec)
		if err != nil {
			return nil, err // not a Store holding a nil *Postgres
		}
		return p, nil
	}
	// Only the part before the first ':' is echoed: the rest may be a URL
	// with a password in it.
	kind, _, _ := strings.Cut(spec, ":")
	return nil, fmt.Errorf(`store: unknown store %q: use "sqlite", "sqlite:PATH", or a postgres:// or postgresql:// URL`, kind)
}

func openSQLite(ctx context.Context, path string) (Store, error) {
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		return nil, err // not a Store holding a nil *SQLite
	}
	return s, nil
}
