// Package nodetest builds the in-process node that tests of several
// packages run against: an embedded store, the node's identity, a center
// and an endpoint handler on it. Test code only.
package nodetest

import (
	"testing"
	"time"

	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// Node is a center (id 1) and, unless asked otherwise, an endpoint handler
// (id 1) on an embedded store in a directory of the test's own. Everything
// closes when the test ends.
type Node struct {
	Dir      string
	Store    storage.Store
	Identity *clusterca.Identity
	Center   *center.LocalCenter
	Endpoint *endpoint.Handler // nil with Options.NoEndpoint
}

// Options tune New; the zero value gives the defaults.
type Options struct {
	// Center is the center's config; ID and Store are set by New.
	Center center.Config
	// NoSync opens the store without fsync.
	NoSync bool
	// NoEndpoint leaves the endpoint handler to the test.
	NoEndpoint bool
}

// New starts a Node. The endpoint handler takes handshakes without a rate
// limit; the test runs it on a reactor of its choice.
func New(tb testing.TB, o Options) *Node {
	tb.Helper()
	n := &Node{Dir: tb.TempDir()}
	st, err := bolt.Open(bolt.Config{Dir: n.Dir, NoSync: o.NoSync})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	n.Store = st
	if n.Identity, err = clusterca.LoadIdentity(n.Dir, 1, time.Now()); err != nil {
		tb.Fatal(err)
	}
	cfg := o.Center
	cfg.ID, cfg.Store = 1, st
	n.Center = center.NewLocalCenter(cfg)
	tb.Cleanup(n.Center.Close)
	if !o.NoEndpoint {
		n.Endpoint = endpoint.New(endpoint.Config{ID: 1, Identity: n.Identity, Center: n.Center, HandshakeRate: -1})
	}
	return n
}
