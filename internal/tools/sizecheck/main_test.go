package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckFindsLongFunctionsAndFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := "package p\n\nfunc (t *T) Long() {\n" + strings.Repeat("\t_ = 1\n", 99) + "}\n\ntype T struct{}\n"
	fits := "package p\n\nfunc Fits() {\n" + strings.Repeat("\t_ = 1\n", 98) + "}\n"
	big := "package p\n" + strings.Repeat("\n", 800)
	write("long.go", long)
	write("fits.go", fits)
	write("big.go", big)
	write("long_test.go", long)             // tests are exempt
	write("other/go.mod", "module other\n") // another module
	write("other/long.go", long)            // ... is not checked
	write("node_modules/x/long.go", long)   // nor are dependencies
	got, err := check(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d problems, want 2 (big.go, T.Long):\n%s", len(got), strings.Join(got, "\n"))
	}
	if !strings.Contains(got[0], "big.go: 801 lines") {
		t.Errorf("first problem %q, want big.go at 801 lines", got[0])
	}
	if !strings.Contains(got[1], "func T.Long: 101 lines") {
		t.Errorf("second problem %q, want T.Long at 101 lines", got[1])
	}
}
