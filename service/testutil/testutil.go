// Package testutil holds helpers shared by the tests of several packages:
// free loopback ports, waiting for a server, and the tools the end-to-end
// tests run. It is imported only from _test.go files.
package testutil

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// WaitListening waits until addr accepts TCP connections.
func WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tool returns the path of an external tool the test needs. On a developer's
// machine a missing tool skips the test; in CI (CERTSYNC_REQUIRE_TOOLS=1) it
// fails it, so that a test never passes by not running.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CERTSYNC_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is required (CERTSYNC_REQUIRE_TOOLS is set) but not on PATH: %v", name, err)
		}
		t.Skipf("%s not on PATH (run make tools)", name)
	}
	return p
}

// Run runs a tool with a timeout and returns its combined output and exit code.
func Run(t testing.TB, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}
