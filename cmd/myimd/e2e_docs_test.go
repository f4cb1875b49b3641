package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The tests in this file keep docs/ true against a real myimd.

// rootPubRe is the form docs/protocol.md gives root.pub.
var rootPubRe = regexp.MustCompile(`^[0-9a-f]{8}:[A-Za-z0-9_-]{43}\n$`)

func TestRootPubFormat(t *testing.T) {
	p := startMyimd(t)
	b, err := os.ReadFile(filepath.Join(p.dir, "root.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if !rootPubRe.Match(b) {
		t.Fatalf("root.pub is %q, not <8 hex digits>:<43 base64url characters> and a line feed", b)
	}
	p.roots(t) // and the reader takes it
}
