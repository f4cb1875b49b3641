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
	// The center and its links run off the event loops: neither links the
	// reactor (the center reaches endpoints only through engine/im).
	for _, pkg := range []string{"github.com/myim/myim/engine/link", "github.com/myim/myim/engine/center"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, p := range strings.Fields(string(out)) {
			if p == "github.com/myim/myim/engine" || strings.HasPrefix(p, "github.com/panjf2000/gnet") {
				t.Errorf("%s depends on %s", pkg, p)
			}
		}
	}
}
