// Package testenv holds the helpers MyIM's tests share: the test Redis and
// MySQL (MariaDB) servers, a private redis-server a test can kill and
// restart, and a TCP proxy that can cut a client off its backend.
//
// It is imported only by _test.go files; no program links it. Every
// helper takes the test's testing.TB, calls its Helper method and releases
// what it made in a t.Cleanup. A service or tool that is missing skips the
// test, except in CI (CI=true), where everything must be installed and the
// test fails instead.
//
// The package imports none of MyIM's own packages, so that every package's
// tests can import it.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"
)

// CI reports whether the tests run in CI (CI=true), where a missing service
// fails a test rather than skipping it.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable reports that something t needs (a service, a binary) is
// missing: it fails the test under CI, and skips it otherwise. It does not
// return. It must be called from the test's goroutine.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// envOr returns the environment variable name, or def when it is unset or
// empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// randomName returns prefix followed by 12 random hex digits, a name no
// other test run uses.
func randomName(t testing.TB, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// WaitFor polls cond every 10 ms until it holds, failing the test with what
// once within has passed. The bound only catches a hang: tests assert
// outcomes, not how soon they come.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
