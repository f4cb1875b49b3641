package link_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoReactor keeps the link off the reactor: neither engine nor gnet is
// among its dependencies, so that what links run on is goroutines of
// their own.
func TestNoReactor(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/myim/myim/engine/link").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/myim/myim/engine" || strings.HasPrefix(p, "github.com/panjf2000/gnet") {
			t.Errorf("engine/link depends on %s", p)
		}
	}
}
