package center

import (
	"testing"
	"time"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// TestClusterRewritesLostRoutes wipes the route table, as a Redis that
// restarts empty does: the centers write their routes again within their
// loss check, long before their refresh would, and a message between them
// is delivered live again rather than stored.
func TestClusterRewritesLostRoutes(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t, addr)
	tables := redisTables(addr, prefix)
	p := startPair(t, tables, func(cc *ClusterConfig) {
		cc.RefreshInterval, cc.LossCheck = time.Hour, 100*time.Millisecond
	})
	a, b, ea, eb, routes, sa, sb := p.a, p.b, p.ea, p.eb, p.routes, p.sa, p.sb

	// The routes the sessions wrote at start are in before the wipe: a
	// write still on its way would come back by itself, not by the check.
	eventuallyRouted(t, routes, 20, 2)
	eventuallyRouted(t, routes, 10, 1)
	testenv.DeleteRedisPrefix(t, addr, prefix)
	testenv.WaitFor(t, 5*time.Second, "center 2 noticed its routes were lost", func() bool {
		return b.ClusterStats().Republished.Load() > 0
	})
	eventuallyRouted(t, routes, 20, 2) // an hour before the refresh
	eventuallyRouted(t, routes, 10, 1)
	sendMsg(a, 10, 20, 1, sa)
	receipt(b, 20, sb, frame.Msg(eb.wait(t, frame.CmdMsg).Body()))
	ea.waitDelivered(t, 1)
}
