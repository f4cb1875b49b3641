package center

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
)

// writeItem writes one link item to nc, as a link's writer would.
func writeItem(t *testing.T, nc net.Conn, it link.Item) {
	t.Helper()
	b := it.AppendTo(nil)
	it.Release()
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestClusterOlderPeer links a center to a peer that answers HELLO as an
// older center does, without link.HelloRerouting: the center sends it no
// STORED hint and answers its forwarded message for a user it does not
// have with RESULT stored (the message kept), never moved.
func TestClusterOlderPeer(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	cs, eps := startCenters(t, 1, tables, func(cc *ClusterConfig) { cc.LossCheck = -1 })
	a, ea := cs[0], eps[0]
	routes := tables(t)
	ctx := context.Background()

	// The older center 2: it listens for center 1's link and dials center
	// 1's link listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := routes.RegisterServer(ctx, CenterServer(2, ln.Addr().String()), time.Minute); err != nil {
		t.Fatal(err)
	}
	in, err := ln.Accept() // center 1's peer link
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_ = in.SetDeadline(time.Now().Add(10 * time.Second))
	if err := link.AuthAccept(in, testLink.Secret); err != nil {
		t.Fatal(err)
	}
	lr := link.NewReader(bufio.NewReader(in), 1<<20)
	if h, err := lr.Hello(); err != nil || h.ID != 1 || h.Flags&link.HelloRerouting == 0 {
		t.Fatalf("center 1's HELLO: id %d flags %x, %v", h.ID, h.Flags, err)
	}
	if err := link.WriteHello(in, link.Hello{ID: 2, Flags: link.HelloCenter}, time.Second); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "center 1 linked to the older center", func() bool { return a.PeersUp() == 1 })

	// A message for a user online nowhere is stored: no STORED hint goes to
	// the older center. A message for user 40, routed to center 2, follows
	// on the same link as a FORWARD: anything sent before it shows first.
	sa := im.SessionRef{Endpoint: 1, Session: 1}
	online(t, a, 10, sa)
	sendMsg(a, 10, 30, 1, sa)
	if ack := ea.waitAck(t, 1); ack.Status() != frame.AckStored {
		t.Fatalf("ack status %d, want stored", ack.Status())
	}
	if err := routes.Set(ctx, 40, route.Addr{Endpoint: 2, Center: 2, Session: 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	sendMsg(a, 10, 40, 2, sa)
	fixed, body := expect(t, lr, link.OpForward)
	if user := be64(fixed); user != 40 || frame.Frame(body).Cmd() != frame.CmdMsg {
		t.Fatalf("FORWARD for user %d, cmd %v", user, frame.Frame(body).Cmd())
	}

	// The older center forwards a message for user 60, whom center 1 does
	// not have: center 1 keeps it and answers RESULT stored.
	var links []route.Server
	testenv.WaitFor(t, 5*time.Second, "center 1 registered", func() bool {
		links, _ = routes.Servers(ctx, im.RoleCenter)
		for _, s := range links {
			if s.ID == centerRegistryBit|1 {
				return true
			}
		}
		return false
	})
	var aAddr string
	for _, s := range links {
		if s.ID == centerRegistryBit|1 {
			aAddr = s.Addr
		}
	}
	out, err := net.Dial("tcp", aAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	_ = out.SetDeadline(time.Now().Add(10 * time.Second))
	if err := link.AuthDial(out, testLink.Secret); err != nil {
		t.Fatal(err)
	}
	if err := link.WriteHello(out, link.Hello{ID: 2, Flags: link.HelloCenter}, time.Second); err != nil {
		t.Fatal(err)
	}
	if h, err := link.NewReader(bufio.NewReader(out), 64).Hello(); err != nil || h.ID != 1 ||
		h.Flags&link.HelloRerouting == 0 {
		t.Fatalf("center 1's answer: id %d flags %x, %v", h.ID, h.Flags, err)
	}
	const mid = 0x1234502
	m := bytebufferpool.Get()
	m.B, _ = frame.AppendMsg(m.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 50, To: 60, CID: 9, MID: mid,
		Time: time.Now().UnixMilli()}, []byte("from an older center"))
	writeItem(t, out, link.NewForward(60, link.ForwardP2P, m))
	fixed, _ = expect(t, lr, link.OpResult)
	if to, got, status := be64(fixed), be64(fixed[8:]), fixed[16]; to != 60 || got != mid || status != frame.AckStored {
		t.Fatalf("RESULT to %d mid %x status %x, want 60 %x stored", to, got, status, mid)
	}
	if n := a.ClusterStats().Moved.Load(); n != 0 {
		t.Fatalf("answered moved %d times", n)
	}
	msgs, err := a.cfg.Store.FetchOffline(ctx, 60, 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].MID != mid {
		t.Fatalf("stored for user 60: %v, %v", msgs, err)
	}
}

// TestClusterReplaysHintsToLatePeer: a center stores a message for a user
// with no session on it while no other center is linked; a center whose
// link comes up afterwards (restarted, or new) still gets the STORED hint,
// so that its session of that user drains the store.
func TestClusterReplaysHintsToLatePeer(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	cs, eps := startCenters(t, 1, tables, func(cc *ClusterConfig) { cc.LossCheck = -1 })
	a, ea := cs[0], eps[0]
	routes := tables(t)
	sa := im.SessionRef{Endpoint: 1, Session: 1}
	online(t, a, 10, sa)
	sendMsg(a, 10, 30, 1, sa)
	if ack := ea.waitAck(t, 1); ack.Status() != frame.AckStored {
		t.Fatalf("ack status %d, want stored", ack.Status())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := routes.RegisterServer(context.Background(), CenterServer(2, ln.Addr().String()), time.Minute); err != nil {
		t.Fatal(err)
	}
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_ = in.SetDeadline(time.Now().Add(10 * time.Second))
	if err := link.AuthAccept(in, testLink.Secret); err != nil {
		t.Fatal(err)
	}
	lr := link.NewReader(bufio.NewReader(in), 1<<20)
	if _, err := lr.Hello(); err != nil {
		t.Fatal(err)
	}
	if err := link.WriteHello(in, link.Hello{ID: 2, Flags: link.HelloCenter | link.HelloRerouting}, time.Second); err != nil {
		t.Fatal(err)
	}
	fixed, body := expect(t, lr, link.OpStored)
	if n := be32(fixed); n != 1 || len(body) != 8 || be64(body) != 30 {
		t.Fatalf("STORED of %d users %x, want user 30", n, body)
	}
}

func be32(b []byte) uint32 { return uint32(be64(append(make([]byte, 4), b[:4]...))) }

func be64(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}
