package node_test

import (
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/nodetest"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// linkCluster is one LocalCenter behind a LinkServer, with endpoint servers
// linked to it, all in process on loopback.
type linkCluster struct {
	st  storage.Store
	id  *clusterca.Identity
	ctr *center.LocalCenter
	ls  *center.LinkServer
	dev *ecdh.PrivateKey
}

type linkedEndpoint struct {
	rc  *center.RemoteCenter
	ep  *endpoint.Handler
	srv *engine.Server
}

// testLinkSecret authenticates the tests' plain-text links.
var testLinkSecret = []byte("test link secret, 32 bytes long!")

// fastLink makes a dead link show within a second in tests.
func fastLink(tlsCfg *tls.Config) link.Config {
	lc := link.Config{TLS: tlsCfg, Plaintext: tlsCfg == nil,
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: time.Second, RecheckInterval: 100 * time.Millisecond}
	if tlsCfg == nil {
		lc.Secret = testLinkSecret
	}
	return lc
}

func startLinkCenter(t testing.TB, serverTLS *tls.Config) *linkCluster {
	t.Helper()
	n := nodetest.New(t, nodetest.Options{NoEndpoint: true})
	st, id, ctr := n.Store, n.Identity, n.Center
	ls, err := center.NewLinkServer(center.LinkServerConfig{Addr: "127.0.0.1:0", Center: ctr, Link: fastLink(serverTLS)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Close() })
	dev, err := session.NewStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	return &linkCluster{st: st, id: id, ctr: ctr, ls: ls, dev: dev}
}

// endpoint starts endpoint server id linked to the center at addr (the
// cluster's own link server when empty).
func (lc *linkCluster) endpoint(t testing.TB, id uint32, clientTLS *tls.Config, addr string, queueLen int) *linkedEndpoint {
	t.Helper()
	if addr == "" {
		addr = lc.ls.Addr().String()
	}
	link := fastLink(clientTLS)
	link.QueueLen = queueLen
	rc, err := center.NewRemoteCenter(center.RemoteCenterConfig{Addr: addr, Link: link,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint.New(endpoint.Config{ID: id, Identity: lc.id, Center: rc})
	srv := startServer(t, ep)
	t.Cleanup(rc.Close) // runs before the server stops: sessions close on a closed link
	return &linkedEndpoint{rc: rc, ep: ep, srv: srv}
}

func (lc *linkCluster) user(t testing.TB, name string) uint64 {
	t.Helper()
	u, err := lc.st.CreateUser(context.Background(), storage.User{Name: name, PassHash: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (lc *linkCluster) dial(t testing.TB, e *linkedEndpoint, user uint64) *client.Conn {
	t.Helper()
	tok, err := session.IssueToken(lc.id.TokenKey, session.TokenRequest{UserID: user, Audience: lc.id.Audience,
		DeviceKey: lc.dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.Config{Device: lc.dev, AutoAck: true, Dedupe: client.NewDedupe(0)}
	c, err := client.Dial(context.Background(), cfg, e.srv.Addr().String(), lc.id.Static.PublicKey().Bytes(), tok)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recvCmd(t testing.TB, c *client.Conn, cmd frame.Cmd, match func([]byte) bool) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == cmd && (match == nil || match(f.Body)) })
	if err != nil {
		t.Fatalf("user %d waiting for %v: %v", c.UserID(), cmd, err)
	}
	return f.Body
}

// roundTrip waits for a lookup answer: everything c's endpoint sent to the
// center before it (ONLINE above all) has been handled there.
func roundTrip(t testing.TB, c *client.Conn) {
	t.Helper()
	req, err := c.Lookup(frame.CmdSignature, 0)
	if err != nil {
		t.Fatal(err)
	}
	recvCmd(t, c, frame.CmdSignature, func(b []byte) bool { return frame.Lookup(b).Req() == req })
}

func TestLinkAcrossEndpoints(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep1, ep2 := lc.endpoint(t, 1, nil, "", 0), lc.endpoint(t, 2, nil, "", 0)
	ctx := context.Background()
	a, b, c := lc.user(t, "a"), lc.user(t, "b"), lc.user(t, "c")
	if err := lc.st.RequestFriend(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if err := lc.st.AcceptFriend(ctx, b, a); err != nil {
		t.Fatal(err)
	}
	ca := lc.dial(t, ep1, a)
	roundTrip(t, ca)
	cb := lc.dial(t, ep2, b)
	// Presence crosses endpoints: b came online on endpoint 2.
	recvCmd(t, ca, frame.CmdFriendNotify, func(p []byte) bool {
		return frame.Presence(p).User() == b && frame.Presence(p).Status() == frame.StatusOnline
	})
	roundTrip(t, cb)

	// p2p QoS 0 and QoS 1, both ways.
	if _, err := ca.SendMsg(b, frame.QoS0, []byte("q0 a->b")); err != nil {
		t.Fatal(err)
	}
	recvCmd(t, cb, frame.CmdMsg, func(m []byte) bool { return string(frame.Msg(m).Content()) == "q0 a->b" })
	for _, dir := range []struct {
		from, to *client.Conn
		peer     uint64
	}{{ca, cb, b}, {cb, ca, a}} {
		cid, err := dir.from.SendMsg(dir.peer, frame.QoS1, []byte("q1"))
		if err != nil {
			t.Fatal(err)
		}
		m := frame.Msg(recvCmd(t, dir.to, frame.CmdMsg, func(m []byte) bool { return frame.Msg(m).CID() == cid }))
		if m.From() != dir.from.UserID() || m.DSrv() == 0 || m.MID() == 0 {
			t.Fatalf("pushed message header %+v", m.Header())
		}
		ack := frame.Ack(recvCmd(t, dir.from, frame.CmdAck, func(a []byte) bool { return frame.Ack(a).CID() == cid }))
		if ack.Status() != frame.AckDelivered {
			t.Fatalf("ack status %d, want delivered", ack.Status())
		}
	}

	// A group message from endpoint 1 reaches members on endpoint 2.
	g, err := lc.st.CreateGroup(ctx, a, "g")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []uint64{b, c} {
		if _, err := lc.st.JoinGroup(ctx, g, u); err != nil {
			t.Fatal(err)
		}
	}
	cc := lc.dial(t, ep2, c)
	roundTrip(t, cc)
	if err := ca.SendMsgCID(frame.CmdGroupMsg, g, frame.QoS1, 77, []byte("to the group")); err != nil {
		t.Fatal(err)
	}
	if ack := frame.Ack(recvCmd(t, ca, frame.CmdAck, func(a []byte) bool { return frame.Ack(a).CID() == 77 })); ack.Status() != frame.AckStored {
		t.Fatalf("group ack status %d, want stored", ack.Status())
	}
	for _, m := range []*client.Conn{cb, cc} {
		recvCmd(t, m, frame.CmdGroupMsg, func(b []byte) bool { return string(frame.Msg(b).Content()) == "to the group" })
	}
	// b and c are both on endpoint 2: the message crossed its link once.
	if n := ep2.rc.DeliveredMany.Load(); n != 1 {
		t.Fatalf("endpoint 2 got %d DELIVER_MANY frames for one group message to two of its sessions", n)
	}

	// b leaves: a hears it across endpoints.
	cb.Bye()
	recvCmd(t, ca, frame.CmdFriendNotify, func(p []byte) bool {
		return frame.Presence(p).User() == b && frame.Presence(p).Status() == frame.StatusOffline
	})
	if got := lc.ls.Links(); len(got) != 2 {
		t.Fatalf("links %v", got)
	}
}

// TestLinkReconnect breaks each endpoint's link in the middle of a stream
// of QoS 1 messages: the endpoints reconnect, and every message acked to
// its sender arrives exactly once.
func TestLinkReconnect(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep1, ep2 := lc.endpoint(t, 1, nil, "", 0), lc.endpoint(t, 2, nil, "", 0)
	a, b := lc.user(t, "a"), lc.user(t, "b")
	ca, cb := lc.dial(t, ep1, a), lc.dial(t, ep2, b)
	roundTrip(t, ca)
	roundTrip(t, cb)

	const n = 400
	var (
		mu    sync.Mutex
		acked = make(map[uint64]byte)
		got   = make(map[uint64]int)
	)
	go func() {
		for f := range ca.Frames() {
			if f.Cmd == frame.CmdAck {
				mu.Lock()
				acked[frame.Ack(f.Body).CID()] = frame.Ack(f.Body).Status()
				mu.Unlock()
			}
		}
	}()
	go func() {
		for f := range cb.Frames() {
			if f.Cmd == frame.CmdMsg {
				mu.Lock()
				got[frame.Msg(f.Body).CID()]++
				mu.Unlock()
			}
		}
	}()
	for i := uint64(1); i <= n; i++ {
		if err := ca.SendMsgCID(frame.CmdMsg, b, frame.QoS1, i, []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
		switch i {
		case n / 3:
			lc.ls.CloseLink(2) // the recipient's endpoint
		case 2 * n / 3:
			lc.ls.CloseLink(1) // the sender's endpoint
		}
		time.Sleep(time.Millisecond)
	}
	eventually(t, 5*time.Second, func() bool { return ep1.rc.Connected() && ep2.rc.Connected() })
	// The sender resends what was not acked, with the same client id,
	// as a client does after a timeout.
	deadline, resends := time.Now().Add(15*time.Second), 0
	for {
		mu.Lock()
		var missing []uint64
		for i := uint64(1); i <= n; i++ {
			if _, ok := acked[i]; !ok {
				missing = append(missing, i)
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages never acked, e.g. %v", len(missing), missing[0])
		}
		resends += len(missing)
		for _, i := range missing {
			if err := ca.SendMsgCID(frame.CmdMsg, b, frame.QoS1, i, []byte(fmt.Sprint("m", i))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	eventually(t, 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	time.Sleep(300 * time.Millisecond) // late duplicates would show now
	mu.Lock()
	defer mu.Unlock()
	for i := uint64(1); i <= n; i++ {
		if got[i] != 1 {
			t.Fatalf("message %d arrived %d times", i, got[i])
		}
	}
	if ep1.rc.Connects.Load() < 2 || ep2.rc.Connects.Load() < 2 {
		t.Fatalf("connects %d and %d, want reconnects", ep1.rc.Connects.Load(), ep2.rc.Connects.Load())
	}
	t.Logf("acked %d; resent by the sender %d, by endpoint 1 %d; duplicates dropped by the recipient %d",
		len(acked), resends, ep1.rc.Resent.Load(), cb.Duplicates())
}

// TestLinkQueueFull: with the center unreachable and the queue full, a QoS
// 1 send is refused at once with ErrCodeRetry naming its client id.
func TestLinkQueueFull(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep := lc.deadEndpoint(t, 4)
	c := lc.dial(t, ep, lc.user(t, "lonely"))
	for cid := uint64(1); cid <= 10; cid++ {
		if err := c.SendMsgCID(frame.CmdMsg, 12345, frame.QoS1, cid, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for cid := uint64(5); cid <= 10; cid++ {
		e := frame.Error(recvCmd(t, c, frame.CmdError, nil))
		if e.Code() != frame.ErrCodeRetry || e.Ref() != cid {
			t.Fatalf("error code %d ref %d, want %d ref %d", e.Code(), e.Ref(), frame.ErrCodeRetry, cid)
		}
	}
	if ep.rc.Connected() || ep.rc.Refused.Load() != 6 || ep.rc.Queued() != 4 {
		t.Fatalf("connected %v refused %d queued %d", ep.rc.Connected(), ep.rc.Refused.Load(), ep.rc.Queued())
	}
}

// TestLinkTLS runs the links on mutual TLS with certificates from the
// cluster CA: a joined endpoint links and messages flow; a node of another
// cluster, or one claiming another endpoint's id, is refused.
func TestLinkTLS(t *testing.T) {
	ctx := context.Background()
	caDir := t.TempDir()
	if err := clusterca.InitCluster(caDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(caDir, 100, im.RoleCenter); err != nil {
		t.Fatal(err)
	}
	joinURL := startJoinService(t, caDir)
	nodeTLS := func(dir string) (*tls.Config, *tls.Config) {
		t.Helper()
		s, c, err := clusterca.LoadNodeTLS(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s, c
	}
	var epTLS [3]*tls.Config
	for id := uint32(1); id <= 2; id++ {
		dir := t.TempDir()
		token := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint})
		if err := clusterca.Join(ctx, joinURL, token, dir, id, im.RoleEndpoint); err != nil {
			t.Fatal(err)
		}
		_, epTLS[id] = nodeTLS(dir)
	}
	centerTLS, _ := nodeTLS(caDir)
	lc := startLinkCenter(t, centerTLS)
	ep1, ep2 := lc.endpoint(t, 1, epTLS[1], "", 0), lc.endpoint(t, 2, epTLS[2], "", 0)
	a, b := lc.user(t, "a"), lc.user(t, "b")
	ca, cb := lc.dial(t, ep1, a), lc.dial(t, ep2, b)
	roundTrip(t, ca)
	roundTrip(t, cb)
	cid, err := ca.SendMsg(b, frame.QoS1, []byte("over mTLS"))
	if err != nil {
		t.Fatal(err)
	}
	recvCmd(t, cb, frame.CmdMsg, func(m []byte) bool { return frame.Msg(m).CID() == cid })
	recvCmd(t, ca, frame.CmdAck, func(m []byte) bool { return frame.Ack(m).CID() == cid })

	// A node of another cluster.
	otherDir := t.TempDir()
	if err := clusterca.InitCluster(otherDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(otherDir, 3, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	_, otherTLS := nodeTLS(otherDir)
	rejected := lc.ls.Rejected.Load()
	foreign := lc.endpoint(t, 3, otherTLS, "", 0)
	// Endpoint 1's certificate used by a node announcing itself as 4.
	impostor := lc.endpoint(t, 4, epTLS[1], "", 0)
	eventually(t, 5*time.Second, func() bool {
		return foreign.rc.DialFails.Load() >= 2 && impostor.rc.DialFails.Load() >= 2 && lc.ls.Rejected.Load() >= rejected+4
	})
	if foreign.rc.Connected() || impostor.rc.Connected() || len(lc.ls.Links()) != 2 {
		t.Fatalf("refused nodes linked: %v", lc.ls.Links())
	}
	// No client certificate at all.
	conn, err := tls.Dial("tcp", lc.ls.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a node without a certificate was served")
	}
}

// newToken makes a join token on the CA holder in caDir.
func newToken(t testing.TB, caDir string, spec clusterca.JoinTokenSpec) string {
	t.Helper()
	token, _, err := clusterca.NewJoinToken(caDir, spec)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// TestRemovedNodeLosesItsLinks removes a linked endpoint from the cluster:
// the center, which holds the deny list, closes the endpoint's live link
// at its next check and refuses its new ones, while another endpoint keeps
// its link.
func TestRemovedNodeLosesItsLinks(t *testing.T) {
	ctx := context.Background()
	caDir := t.TempDir()
	if err := clusterca.InitCluster(caDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(caDir, 100, im.RoleCenter); err != nil {
		t.Fatal(err)
	}
	joinURL := startJoinService(t, caDir)
	var epTLS [3]*tls.Config
	for id := uint32(1); id <= 2; id++ {
		dir := t.TempDir()
		if err := clusterca.Join(ctx, joinURL, newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint, NodeID: id}),
			dir, id, im.RoleEndpoint); err != nil {
			t.Fatal(err)
		}
		_, epTLS[id], _ = clusterca.LoadNodeTLS(dir)
	}
	centerTLS, _, err := clusterca.LoadNodeTLS(caDir)
	if err != nil {
		t.Fatal(err)
	}
	lc := startLinkCenter(t, centerTLS)
	ep1, ep2 := lc.endpoint(t, 1, epTLS[1], "", 0), lc.endpoint(t, 2, epTLS[2], "", 0)
	eventually(t, 10*time.Second, func() bool { return len(lc.ls.Links()) == 2 })
	c1 := lc.dial(t, ep1, lc.user(t, "a"))
	roundTrip(t, c1)

	if err := clusterca.RemoveNode(caDir, 1); err != nil {
		t.Fatal(err)
	}
	rejected := lc.ls.Rejected.Load()
	eventually(t, 10*time.Second, func() bool {
		l := lc.ls.Links()
		return len(l) == 1 && l[0] == 2 && lc.ls.Rejected.Load() > rejected && !ep1.rc.Connected()
	})
	if !ep2.rc.Connected() {
		t.Fatal("the other endpoint lost its link")
	}
}

// startJoinService serves the CA holder's join endpoint over HTTPS and
// returns its base URL.
func startJoinService(t testing.TB, caDir string) string {
	t.Helper()
	return startJoinServiceWith(t, caDir, nil)
}

// startJoinServiceWith also serves the identity service with id's keys.
func startJoinServiceWith(t testing.TB, caDir string, id *clusterca.Identity) string {
	t.Helper()
	svc, err := clusterca.JoinHandler(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := svc.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+clusterca.JoinPath, svc)
	mux.HandleFunc("GET "+clusterca.DenyPath, svc.ServeDenied)
	if id != nil {
		mux.Handle(clusterca.IdentityPath, clusterca.IdentityHandler(id, svc, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // refused handshakes are expected
	go hs.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { hs.Close() })
	return "https://" + ln.Addr().String()
}

// deadEndpoint starts endpoint 9 linked to an address where nothing
// listens, with a link queue of queue items: the center is unreachable.
func (lc *linkCluster) deadEndpoint(t *testing.T, queue int) *linkedEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	return lc.endpoint(t, 9, nil, dead, queue)
}
