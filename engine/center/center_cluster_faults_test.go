package center

import (
	"context"
	"testing"
	"time"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
)

// Cluster routing faults: stale routes, a route table that goes away, and
// messages stored for users online on another center.

// stats returns a center's cluster counters.
func stats(c *LocalCenter) *ClusterStats { return c.ClusterStats() }

func noneStored(t *testing.T, cs []*LocalCenter) {
	t.Helper()
	for i, c := range cs {
		if n := c.StoredOffline.Load(); n != 0 {
			t.Fatalf("center %d stored %d messages offline", i+1, n)
		}
	}
}

// A route that went stale when its user reconnected to another center:
// the center it names holds nothing and answers moved, and the message is
// forwarded again to where the user is, live; routes naming no session at
// all end in the store after each center was tried once.
func TestClusterStaleRouteForwardsAgain(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	cs, eps := startCenters(t, 3, tables, nil)
	a, b, c := cs[0], cs[1], cs[2]
	ea, ec := eps[0], eps[2]
	routes := tables(t)
	ctx := context.Background()
	sa, sc := im.SessionRef{Endpoint: 1, Session: 1}, im.SessionRef{Endpoint: 3, Session: 1}
	online(t, a, 10, sa)
	online(t, c, 20, sc)
	eventuallyRouted(t, routes, 20, 3)
	// 20 was on center 2 before it reconnected to center 3; center 2's
	// route lingers, and center 1 tries it first (the lowest id).
	if err := routes.Set(ctx, 20, route.Addr{Endpoint: 2, Center: 2, Session: 9}, time.Minute); err != nil {
		t.Fatal(err)
	}

	sendMsg(a, 10, 20, 1, sa)
	m := frame.Msg(ec.wait(t, frame.CmdMsg).Body())
	if m.From() != 10 || m.To() != 20 {
		t.Fatalf("pushed %d -> %d", m.From(), m.To())
	}
	receipt(c, 20, sc, m)
	ea.waitDelivered(t, 1)
	if n := stats(b).Moved.Load(); n != 1 {
		t.Fatalf("center 2 answered moved %d times, want 1", n)
	}
	if n := stats(a).Rerouted.Load(); n != 1 {
		t.Fatalf("center 1 routed again %d times, want 1", n)
	}
	noneStored(t, cs)

	// 30 is online nowhere, and every center, center 1 itself included,
	// has a stale route: centers 2 and 3 are each tried once, then center
	// 1 stores the message and acks Stored.
	for id := uint32(1); id <= 3; id++ {
		if err := routes.Set(ctx, 30, route.Addr{Endpoint: id, Center: id, Session: 9}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	sendMsg(a, 10, 30, 2, sa)
	if ack := ea.waitAck(t, 2); ack.Status() != frame.AckStored {
		t.Fatalf("ack status %d, want stored", ack.Status())
	}
	if mb, mc, r := stats(b).Moved.Load(), stats(c).Moved.Load(), stats(a).Rerouted.Load(); mb != 2 || mc != 1 || r != 3 {
		t.Fatalf("moved by center 2: %d (want 2), by center 3: %d (want 1); routed again %d (want 3)", mb, mc, r)
	}
	if n := a.StoredOffline.Load(); n != 1 {
		t.Fatalf("center 1 stored %d, want 1", n)
	}
	if n := b.StoredOffline.Load() + c.StoredOffline.Load(); n != 0 {
		t.Fatalf("centers 2 and 3 stored %d, want 0", n)
	}
}

// While the route table is down, a QoS 1 message for a user of another
// center waits for it, and is delivered live when it is back in time.
func TestClusterRouteTableDownHoldsQoS1(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	tables := redisTables(rs.Addr(), "myimtest:")
	cs, eps := startCenters(t, 2, tables, func(cc *ClusterConfig) { cc.LookupRetry = 30 * time.Second })
	a, b, ea, eb := cs[0], cs[1], eps[0], eps[1]
	sa, sa2, sb := im.SessionRef{Endpoint: 1, Session: 1}, im.SessionRef{Endpoint: 1, Session: 2}, im.SessionRef{Endpoint: 2, Session: 1}
	online(t, a, 10, sa)
	online(t, a, 11, sa2)
	online(t, b, 20, sb)
	eventuallyRouted(t, tables(t), 20, 2)
	rs.Save() // the restart below brings the routes back
	rs.Kill()

	// Same center: delivered without the table.
	sendMsg(a, 10, 11, 1, sa)
	m := frame.Msg(ea.waitFor(t, frame.CmdMsg, func(f frame.Frame) bool { return frame.Msg(f.Body()).To() == 11 }).Body())
	receipt(a, 11, sa2, m)
	if ack := ea.waitAck(t, 1); ack.Status() != frame.AckDelivered {
		t.Fatalf("same center: ack status %d", ack.Status())
	}

	// Another center: held while the table is down.
	sendMsg(a, 10, 20, 2, sa)
	testenv.WaitFor(t, 10*time.Second, "message held", func() bool { return stats(a).Held.Load() == 1 })
	if n := stats(a).RouteErrors.Load(); n == 0 {
		t.Fatal("no route error counted")
	}
	if eb.count(frame.CmdMsg) != 0 || ea.count(frame.CmdAck) != 0 {
		t.Fatal("pushed or acked while the table was down")
	}

	rs.Start()
	m = frame.Msg(eb.wait(t, frame.CmdMsg).Body())
	if m.From() != 10 || m.To() != 20 {
		t.Fatalf("pushed %d -> %d", m.From(), m.To())
	}
	receipt(b, 20, sb, m)
	ea.waitDelivered(t, 2)
	if n := stats(a).HeldStored.Load(); n != 0 {
		t.Fatalf("%d held messages stored", n)
	}
	noneStored(t, cs)
}

// A route table that stays down past LookupRetry: the held message is
// stored and acked Stored, and the STORED hint has the recipient's session
// on the other center drain it without a fetch.
func TestClusterRouteTableDownStoresAfterRetry(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	tables := redisTables(rs.Addr(), "myimtest:")
	p := startPair(t, tables, func(cc *ClusterConfig) { cc.LookupRetry = 300 * time.Millisecond })
	a, b, ea, eb, sa, sb := p.a, p.b, p.ea, p.eb, p.sa, p.sb
	rs.Kill()

	start := time.Now()
	sendMsg(a, 10, 20, 1, sa)
	if ack := ea.waitAck(t, 1); ack.Status() != frame.AckStored {
		t.Fatalf("ack status %d, want stored", ack.Status())
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("stored after %v, before LookupRetry", d)
	}
	if h, s := stats(a).Held.Load(), stats(a).HeldStored.Load(); h != 1 || s != 1 {
		t.Fatalf("held %d, stored after the retry %d; want 1 and 1", h, s)
	}
	m := frame.Msg(eb.wait(t, frame.CmdMsg).Body())
	if m.From() != 10 || m.To() != 20 {
		t.Fatalf("drained %d -> %d", m.From(), m.To())
	}
	receipt(b, 20, sb, m)
	testenv.WaitFor(t, 10*time.Second, "stored message deleted after its receipt", func() bool {
		return b.OfflineDeleted.Load() == 1
	})
	if n := stats(b).HintsReceived.Load(); n == 0 {
		t.Fatal("no STORED hint received")
	}
}

// A message center 1 stores for a user online on center 2 (here the table
// lost the user's route) reaches that user without a fetch.
func TestClusterStoredHintDrainsOtherCenter(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	// No refresh and no loss check during the test: the route deleted
	// below stays deleted.
	p := startPair(t, tables, func(cc *ClusterConfig) { cc.RefreshInterval, cc.LossCheck = time.Minute, -1 })
	a, b, ea, eb, routes, sa, sb := p.a, p.b, p.ea, p.eb, p.routes, p.sa, p.sb
	if err := routes.Del(context.Background(), 20, route.Addr{Endpoint: 2, Center: 2, Session: 1}); err != nil {
		t.Fatal(err)
	}

	for cid := uint64(1); cid <= 3; cid++ {
		sendMsg(a, 10, 20, cid, sa)
		if ack := ea.waitAck(t, cid); ack.Status() != frame.AckStored {
			t.Fatalf("cid %d: ack status %d, want stored", cid, ack.Status())
		}
	}
	for cid := uint64(1); cid <= 3; cid++ {
		f := eb.waitFor(t, frame.CmdMsg, func(f frame.Frame) bool { return frame.Msg(f.Body()).CID() == cid })
		receipt(b, 20, sb, frame.Msg(f.Body()))
	}
	testenv.WaitFor(t, 10*time.Second, "stored messages deleted after their receipts", func() bool {
		return b.OfflineDeleted.Load() == 3
	})
	if s, r := stats(a).HintsSent.Load(), stats(b).HintsReceived.Load(); s == 0 || s != r {
		t.Fatalf("hints sent %d, received %d", s, r)
	}
	if n := eb.count(frame.CmdMsg); n != 0 {
		t.Fatalf("%d more messages pushed", n)
	}
}
