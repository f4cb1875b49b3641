package login_test

import "github.com/myim/myim/engine/internal/enginetest"

// The reactor on a loopback port and a connection to it come from
// enginetest, shared with the other engine packages' tests.
var (
	startServer = enginetest.StartServer
	dial        = enginetest.Dial
)
