package node_test

import "github.com/myim/myim/engine/internal/enginetest"

// The reactor on a loopback port, a connection to it, and a bounded wait
// come from enginetest, shared with the other engine packages' tests.
var (
	startServer = enginetest.StartServer
	dial        = enginetest.Dial
	eventually  = enginetest.Eventually
)
