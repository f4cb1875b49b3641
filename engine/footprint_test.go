package engine_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxGatewayBytes bounds the example gateway's binary (decimal megabytes):
// the reactor alone links to about 7.4 MB; the whole server, when engine
// held it, made it 16.9 MB.
const maxGatewayBytes = 8_000_000

// TestReactorFootprint keeps engine a library a gateway can afford: its
// third-party modules are gnet's and bytebufferpool, and the example
// gateway (internal/examplegw) builds to at most maxGatewayBytes.
func TestReactorFootprint(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list and build: %v", err)
	}
	modules := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	allowed := append(modules("github.com/panjf2000/gnet/v2"),
		"github.com/myim/myim", "github.com/valyala/bytebufferpool")
	var extra []string
	for _, m := range modules("github.com/myim/myim/engine") {
		if !slices.Contains(allowed, m) && !slices.Contains(extra, m) {
			extra = append(extra, m)
		}
	}
	if len(extra) > 0 {
		t.Errorf("engine links modules beyond gnet's and bytebufferpool: %v", extra)
	}

	bin := filepath.Join(t.TempDir(), "gw")
	build := exec.Command(goTool, "build", "-o", bin, "./internal/examplegw")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("example gateway: %.1f MB", float64(fi.Size())/1e6)
	if fi.Size() > maxGatewayBytes {
		t.Errorf("example gateway is %d bytes, over %d", fi.Size(), maxGatewayBytes)
	}
}
