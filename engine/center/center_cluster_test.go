package center

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/redis"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// recEndpoint records what a center delivers to it.
type recEndpoint struct {
	id uint32
	mu sync.Mutex
	in []frame.Frame
}

func (e *recEndpoint) ID() uint32 { return e.id }
func (e *recEndpoint) Deliver(_ im.SessionRef, buf *bytebufferpool.ByteBuffer) error {
	e.mu.Lock()
	e.in = append(e.in, frame.Frame(append([]byte(nil), buf.B...)))
	e.mu.Unlock()
	bytebufferpool.Put(buf)
	return nil
}

// wait returns the first delivered frame of cmd.
func (e *recEndpoint) wait(t *testing.T, cmd frame.Cmd) frame.Frame {
	t.Helper()
	return e.waitFor(t, cmd, func(frame.Frame) bool { return true })
}

// waitFor removes and returns the first delivered frame of cmd that match
// accepts, waiting up to 10 s for it.
func (e *recEndpoint) waitFor(t *testing.T, cmd frame.Cmd, match func(frame.Frame) bool) frame.Frame {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, f := range e.in {
			if f.Cmd() == cmd && match(f) {
				e.in = append(e.in[:i], e.in[i+1:]...)
				e.mu.Unlock()
				return f
			}
		}
		e.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("endpoint %d: no matching %s", e.id, cmd)
	return nil
}

// waitAck returns the ACK of the sender's message cid.
func (e *recEndpoint) waitAck(t *testing.T, cid uint64) frame.Ack {
	t.Helper()
	f := e.waitFor(t, frame.CmdAck, func(f frame.Frame) bool { return frame.Ack(f.Body()).CID() == cid })
	return frame.Ack(f.Body())
}

// waitDelivered waits for the ACK of the sender's message cid and fails
// the test unless it says delivered.
func (e *recEndpoint) waitDelivered(t *testing.T, cid uint64) {
	t.Helper()
	if a := e.waitAck(t, cid); a.Status() != frame.AckDelivered {
		t.Fatalf("endpoint %d: ack of cid %d has status %d, want delivered", e.id, cid, a.Status())
	}
}

// count reports how many delivered frames of cmd are waiting.
func (e *recEndpoint) count(cmd frame.Cmd) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, f := range e.in {
		if f.Cmd() == cmd {
			n++
		}
	}
	return n
}

// redisTables returns a maker of route tables on the Redis at addr under
// prefix: one client each, as separate processes would have. Each is
// closed at cleanup.
func redisTables(addr, prefix string) func(t testing.TB) route.Table {
	return func(t testing.TB) route.Table {
		t.Helper()
		r, err := redis.New(redis.Options{Addr: addr, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
}

// startCenters links n in-process centers (ids 1..n) over plain loopback
// links, with a shared store and a route table each from table; tune, if
// set, adjusts their cluster configuration. Center i's endpoint has id i.
func startCenters(t *testing.T, n int, table func(t testing.TB) route.Table,
	tune func(*ClusterConfig)) ([]*LocalCenter, []*recEndpoint) {
	t.Helper()
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var cs []*LocalCenter
	var eps []*recEndpoint
	for id := uint32(1); id <= uint32(n); id++ {
		routes := table(t) // closed after the center: cleanups run last first
		cc := &ClusterConfig{Routes: routes, Link: testLink, PeerInterval: 50 * time.Millisecond,
			RefreshInterval: 100 * time.Millisecond}
		if tune != nil {
			tune(cc)
		}
		c, ep := startCenter(t, id, st, cc)
		cs, eps = append(cs, c), append(eps, ep)
	}
	testenv.WaitFor(t, 10*time.Second, "centers linked", func() bool {
		for _, c := range cs {
			if c.PeersUp() != n-1 {
				return false
			}
		}
		return true
	})
	return cs, eps
}

// testLink is the link configuration of the in-process clusters: plain
// loopback links with heartbeats quick enough for a test to see a peer go.
var testLink = link.Config{Plaintext: true, Secret: []byte("test link secret, 32 bytes long!"), HeartbeatInterval: 100 * time.Millisecond}

// startCenter starts clustered center id on st with cc, a link listener
// on cc.Link registered in cc.Routes, and an endpoint (id id) that records
// what the center delivers. Both are closed when the test ends.
func startCenter(t testing.TB, id uint32, st storage.Store, cc *ClusterConfig) (*LocalCenter, *recEndpoint) {
	t.Helper()
	c := NewLocalCenter(Config{ID: id, Store: st, Cluster: cc})
	ls, err := NewLinkServer(LinkServerConfig{Addr: "127.0.0.1:0", Center: c, Link: cc.Link})
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Close(); c.Close() })
	if err := cc.Routes.RegisterServer(context.Background(), CenterServer(id, ls.Addr().String()), time.Minute); err != nil {
		t.Fatal(err)
	}
	ep := &recEndpoint{id: id}
	c.Attach(ep)
	return c, ep
}

func sendMsg(c *LocalCenter, from, to, cid uint64, s im.SessionRef) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendMsg(buf.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: from, To: to, CID: cid,
		Time: time.Now().UnixMilli()}, []byte("hi"))
	c.Handle(from, s, buf)
}

// receipt sends user's receipt of a pushed message m from session s.
func receipt(c *LocalCenter, user uint64, s im.SessionRef, m frame.Msg) {
	ack := bytebufferpool.Get()
	ack.B, _ = frame.AppendAck(ack.B, 0, m.MID(), m.From(), frame.AckReceived)
	c.Handle(user, s, ack)
}

// centerPair is two linked centers, user 10 online on the first (session
// sa of endpoint 1) and user 20 on the second (sb of endpoint 2), the
// second's route written.
type centerPair struct {
	a, b   *LocalCenter
	ea, eb *recEndpoint
	routes route.Table
	sa, sb im.SessionRef
}

func startPair(t *testing.T, tables func(t testing.TB) route.Table, tune func(*ClusterConfig)) *centerPair {
	t.Helper()
	cs, eps := startCenters(t, 2, tables, tune)
	p := &centerPair{a: cs[0], b: cs[1], ea: eps[0], eb: eps[1], routes: tables(t),
		sa: im.SessionRef{Endpoint: 1, Session: 1}, sb: im.SessionRef{Endpoint: 2, Session: 1}}
	online(t, p.a, 10, p.sa)
	online(t, p.b, 20, p.sb)
	eventuallyRouted(t, p.routes, 20, 2)
	return p
}

func TestClusterForwardsAndAcks(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	p := startPair(t, tables, nil)
	a, b, ea, eb, routes, sa, sb := p.a, p.b, p.ea, p.eb, p.routes, p.sa, p.sb

	sendMsg(a, 10, 20, 1, sa)
	m := frame.Msg(eb.wait(t, frame.CmdMsg).Body())
	if m.From() != 10 || m.MID()&midSlotMask != 1 {
		t.Fatalf("from %d mid %x", m.From(), m.MID())
	}
	receipt(b, 20, sb, m)
	if a := ea.waitAck(t, 1); a.Status() != frame.AckDelivered {
		t.Fatalf("ack status %d", a.Status())
	}

	// A stale route: 20 left center 2, whose route lingers; center 2 keeps
	// nothing and answers moved, and center 1, with no other center to
	// try, stores the message and acks Stored.
	b.Offline(20, sb, false)
	if err := routes.Set(context.Background(), 20, route.Addr{Endpoint: 2, Center: 2, Session: 9}, time.Minute); err != nil {
		t.Fatal(err)
	}
	sendMsg(a, 10, 20, 2, sa)
	if a := ea.waitAck(t, 2); a.Status() != frame.AckStored {
		t.Fatalf("stale route: ack status %d", a.Status())
	}
	if n := b.ClusterStats().Moved.Load(); n != 1 {
		t.Fatalf("center 2 answered moved %d times", n)
	}
}

func eventuallyRouted(t *testing.T, routes route.Table, user uint64, center uint32) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "user routed to its center", func() bool {
		as, _ := routes.Get(context.Background(), user)
		for _, a := range as {
			if a.Center == center {
				return true
			}
		}
		return false
	})
}

// online brings a session online and waits until it takes live pushes: a
// session first drains what the store holds for its user (empty here), and
// a message sent meanwhile would be stored and acked STORED, where these
// tests check DELIVERED.
func online(t testing.TB, c *LocalCenter, user uint64, s im.SessionRef) {
	t.Helper()
	c.Online(user, s)
	testenv.WaitFor(t, 10*time.Second, "session live", func() bool {
		live := false
		c.routes.Lookup(user, func(a route.Addr, v any) {
			if a.Session == s.Session {
				st := v.(*sessState)
				st.mu.Lock()
				live = !st.spill
				st.mu.Unlock()
			}
		})
		return live
	})
}
