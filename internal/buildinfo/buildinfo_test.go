package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "1.2.3"
	in := Get()
	if in.Version != "1.2.3" || in.GoVersion != runtime.Version() {
		t.Fatalf("got %+v", in)
	}
	if s := in.String("myimd"); !strings.HasPrefix(s, "myimd 1.2.3 (") {
		t.Fatalf("String: %q", s)
	}
	Version = ""
	if v := Get().Version; v == "" {
		t.Fatal("empty version without a link-time value")
	}
}
