package engine_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/node"
)

// A listener that stops anyway under a node's server turns the node's
// /readyz to 503 and is reported on Node.Fatal, for the process to exit.
func TestStoppedListenerFailsReadiness(t *testing.T) {
	n, err := node.NewNode(node.NodeConfig{Role: im.RoleLogin, LoginAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Limits: engine.Config{Loops: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	ready := func() int {
		resp, err := http.Get("http://" + n.Addrs()["http"].String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz %d before", code)
	}
	engine.CloseListener(n.Server("login")) // the listener dies under the server
	select {
	case err := <-n.Fatal():
		t.Logf("fatal: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no fatal error reported")
	}
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d after the listener stopped", code)
	}
}
