package main

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's flag table from the flag set")

const (
	flagsBegin = "<!-- flags:begin: generated from the flag set; after adding a flag run: go test ./cmd/myimd -run TestREADMEFlagTable -update -->"
	flagsEnd   = "<!-- flags:end -->"
)

// TestREADMEFlagTable wants the README's flag table to be exactly the one
// made from the flag set, so that a flag added without its row fails here.
func TestREADMEFlagTable(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, flagsBegin), strings.Index(doc, flagsEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q markers", flagsBegin, flagsEnd)
	}
	got := doc[i+len(flagsBegin) : j]
	want := "\n" + flagTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc[:i+len(flagsBegin)]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("README.md flag table rewritten")
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for k := 0; k < max(len(gl), len(wl)); k++ {
		var g, w string
		if k < len(gl) {
			g = gl[k]
		}
		if k < len(wl) {
			w = wl[k]
		}
		if g != w {
			t.Fatalf("README.md's flag table is not the flag set's (run: go test ./cmd/myimd -run TestREADMEFlagTable -update)\nREADME: %s\nflags:  %s", g, w)
		}
	}
}

var myimdFlagRe = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)

// TestDocsNameRealFlags wants every flag given to myimd in the README's and
// docs/operations.md's commands to exist.
func TestDocsNameRealFlags(t *testing.T) {
	known := map[string]bool{"help": true, "version": true}
	c := defaults()
	for _, o := range c.options() {
		known[o.name] = true
	}
	for _, path := range []string{"../../README.md", "../../docs/operations.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cont := false
		for n, line := range strings.Split(string(b), "\n") {
			l := strings.TrimSpace(line)
			// A myimd command line (and its continuation lines), or inline
			// code that starts with myimd.
			isCmd := cont || strings.HasPrefix(l, "myimd ") || strings.HasPrefix(l, "go run ./cmd/myimd")
			cont = isCmd && strings.HasSuffix(l, "\\")
			var spans []string
			if isCmd {
				spans = []string{l}
			}
			for _, m := range regexp.MustCompile("`(myimd [^`]*)`").FindAllStringSubmatch(line, -1) {
				spans = append(spans, m[1])
			}
			for _, s := range spans {
				if strings.HasPrefix(strings.TrimLeft(s, "#` "), "myimd cluster") {
					continue // the cluster commands have flags of their own
				}
				for _, m := range myimdFlagRe.FindAllStringSubmatch(s, -1) {
					if !known[m[1]] {
						t.Errorf("%s:%d: myimd has no flag --%s: %s", path, n+1, m[1], l)
					}
				}
			}
		}
	}
}
