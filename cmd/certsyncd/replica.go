package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// replicaIdentity names this process in the leases of running operations.
//
// With SQLite only one process may use the data directory (an exclusive
// lock on it enforces that), so the name is the host's and stays the same
// across restarts: a restarted server takes over its own leases at once and
// resumes interrupted operations without waiting for them to expire. With
// PostgreSQL, replicas share the database and each needs a name of its own;
// a restarted replica waits for its old leases to expire like any other.
func replicaIdentity(storeSpec, dataDir string) (string, func(), error) {
	host, _ := os.Hostname()
	if strings.HasPrefix(storeSpec, "postgres://") || strings.HasPrefix(storeSpec, "postgresql://") {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b)), func() {}, nil
	}
	dir := dataDir
	if p, ok := strings.CutPrefix(storeSpec, "sqlite:"); ok && p != "" {
		dir = filepath.Dir(p)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "certsyncd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return "", nil, fmt.Errorf("another certsyncd uses the data directory %s (SQLite allows one process; use --store postgres://... for several replicas)", dir)
	}
	return "sqlite@" + host, func() { f.Close() }, nil
}
