package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
)

// recEndpoint records what a center delivers to it.
type recEndpoint struct {
	id uint32
	mu sync.Mutex
	in []frame.Frame
}

func (e *recEndpoint) ID() uint32 { return e.id }
func (e *recEndpoint) Deliver(_ SessionRef, buf *bytebufferpool.ByteBuffer) error {
	e.mu.Lock()
	e.in = append(e.in, frame.Frame(append([]byte(nil), buf.B...)))
	e.mu.Unlock()
	bytebufferpool.Put(buf)
	return nil
}

// wait returns the first delivered frame of cmd.
func (e *recEndpoint) wait(t *testing.T, cmd frame.Cmd) frame.Frame {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, f := range e.in {
			if f.Cmd() == cmd {
				e.in = append(e.in[:i], e.in[i+1:]...)
				e.mu.Unlock()
				return f
			}
		}
		e.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("endpoint %d: no %s", e.id, cmd)
	return nil
}

// failingTable is a route table whose reads and writes fail, as with Redis
// down; the registry still answers so that the centers stay linked.
type failingTable struct{ route.Table }

func (failingTable) GetMulti(context.Context, []uint64) (map[uint64][]route.Addr, error) {
	return nil, route.ErrUnavailable
}

// twoCenters links two in-process centers over plain loopback links with a
// shared store and route table.
func twoCenters(t *testing.T, routes route.Table) (a, b *LocalCenter, ea, eb *recEndpoint) {
	t.Helper()
	st, err := storage.Open(storage.Config{DataDir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lc := LinkConfig{Plaintext: true, HeartbeatInterval: 100 * time.Millisecond}
	mk := func(id uint32) (*LocalCenter, *recEndpoint) {
		c := NewLocalCenter(CenterConfig{ID: id, Store: st, Cluster: &ClusterConfig{Routes: routes, Link: lc,
			PeerInterval: 50 * time.Millisecond, RefreshInterval: 100 * time.Millisecond}})
		ls, err := NewLinkServer(LinkServerConfig{Addr: "127.0.0.1:0", Center: c, Link: lc})
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ls.Close(); c.Close() })
		if err := routes.RegisterServer(context.Background(), CenterServer(id, ls.Addr().String()), time.Minute); err != nil {
			t.Fatal(err)
		}
		ep := &recEndpoint{id: id}
		c.Attach(ep)
		return c, ep
	}
	a, ea = mk(1)
	b, eb = mk(2)
	deadline := time.Now().Add(10 * time.Second)
	for a.PeersUp() != 1 || b.PeersUp() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("centers did not link")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a, b, ea, eb
}

func sendMsg(c *LocalCenter, from, to, cid uint64, s SessionRef) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendMsg(buf.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: from, To: to, CID: cid,
		Time: time.Now().UnixMilli()}, []byte("hi"))
	c.Handle(from, s, buf)
}

func TestClusterForwardsAndAcks(t *testing.T) {
	routes := route.NewMemory()
	a, b, ea, eb := twoCenters(t, routes)
	sa, sb := SessionRef{Endpoint: 1, Session: 1}, SessionRef{Endpoint: 2, Session: 1}
	a.Online(10, sa)
	b.Online(20, sb)
	eventuallyRouted(t, routes, 20, 2)

	sendMsg(a, 10, 20, 1, sa)
	m := frame.Msg(eb.wait(t, frame.CmdMsg).Body())
	if m.From() != 10 || m.MID()&midSlotMask != 1 {
		t.Fatalf("from %d mid %x", m.From(), m.MID())
	}
	ack := bytebufferpool.Get()
	ack.B, _ = frame.AppendAck(ack.B, 0, m.MID(), 10, frame.AckReceived)
	b.Handle(20, sb, ack)
	if a := frame.Ack(ea.wait(t, frame.CmdAck).Body()); a.CID() != 1 || a.Status() != frame.AckDelivered {
		t.Fatalf("ack cid %d status %d", a.CID(), a.Status())
	}

	// A stale route: 20 left center 2, whose route lingers; center 2
	// stores the message and acks Stored through center 1.
	b.Offline(20, sb, false)
	_ = routes.Set(context.Background(), 20, route.Addr{Endpoint: 2, Center: 2, Session: 9}, time.Minute)
	sendMsg(a, 10, 20, 2, sa)
	if a := frame.Ack(ea.wait(t, frame.CmdAck).Body()); a.CID() != 2 || a.Status() != frame.AckStored {
		t.Fatalf("stale route: ack cid %d status %d", a.CID(), a.Status())
	}
}

func TestClusterRoutesDownStoresOffline(t *testing.T) {
	routes := failingTable{route.NewMemory()}
	a, _, ea, _ := twoCenters(t, routes)
	sa := SessionRef{Endpoint: 1, Session: 1}
	a.Online(10, sa)
	a.Online(11, SessionRef{Endpoint: 1, Session: 2})
	// Same center: delivered without the table.
	sendMsg(a, 10, 11, 1, sa)
	ea.wait(t, frame.CmdMsg)
	// Elsewhere, unknown: stored, and acked only once stored.
	sendMsg(a, 10, 30, 2, sa)
	if a := frame.Ack(ea.wait(t, frame.CmdAck).Body()); a.CID() != 2 || a.Status() != frame.AckStored {
		t.Fatalf("ack cid %d status %d", a.CID(), a.Status())
	}
	if a.ClusterStats().RouteErrors.Load() == 0 {
		t.Fatal("no route error counted")
	}
}

func eventuallyRouted(t *testing.T, routes route.Table, user uint64, center uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		as, _ := routes.Get(context.Background(), user)
		for _, a := range as {
			if a.Center == center {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("user %d not routed to center %d", user, center)
}
