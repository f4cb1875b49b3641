package main

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/redis"
)

// startCenters starts two centers as separate processes, each of role all
// (center, endpoint, login), on one MariaDB database and one Redis prefix:
// the first holds the cluster CA and the root; the second joins it with a
// token and gets its link certificate and session keys from it. The second
// endpoint comes first in the server list. It returns both and a route
// table on the same Redis.
func startCenters(t *testing.T) (first, second *proc, routes route.Table) {
	t.Helper()
	redisAddr := testenv.RedisAddr(t)
	dsn := testenv.MySQLDatabase(t)
	prefix := testenv.RedisPrefix(t, redisAddr)
	dir1 := t.TempDir()
	if err := exec.Command(binPath, "cluster", "init", "--data-dir", dir1, "--server-id", "1").Run(); err != nil {
		t.Fatalf("cluster init: %v", err)
	}
	token := joinFile(t, dir1, "center", 2)
	common := []string{"--redis-addr", redisAddr, "--redis-prefix", prefix, "--mysql-dsn", dsn}
	first = startMyimdDir(t, dir1, append([]string{"--server-id", "1", "--join-addr", "127.0.0.1:0", "--priority", "5"},
		common...)...)
	second = startMyimdDir(t, t.TempDir(), append([]string{"--server-id", "2", "--join-file", token,
		"--join-url", "https://" + first.addrs["join"]}, common...)...)
	r, err := redis.New(redis.Options{Addr: redisAddr, Prefix: prefix, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, p := range []*proc{first, second} {
		testenv.WaitFor(t, 15*time.Second, "center links up", func() bool { return p.metric(t, "myim_cluster_peers_up") == 1 })
	}
	return first, second, r
}

// waitRoute waits until user is published as online on center.
func waitRoute(t *testing.T, routes route.Table, user uint64, center uint32) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("user %d routed to center %d", user, center), func() bool {
		as, _ := routes.Get(context.Background(), user)
		for _, a := range as {
			if a.Center == center {
				return true
			}
		}
		return false
	})
}

// TestTwoCenters has users on two centers exchange QoS 1 messages both
// ways with receipts, a group message and presence; then it kills the
// second center with kill -9 in the middle of a QoS 1 stream to one of its
// users, who comes back through the first center: every message acked to
// the sender reaches it exactly once.
func TestTwoCenters(t *testing.T) {
	first, second, routes := startCenters(t)
	for _, n := range []string{"uma", "vic", "wes", "xia"} {
		first.register(t, n, "password-"+n)
	}
	uma, vic := &user{dev: newDevice(t)}, &user{dev: newDevice(t)}
	connectTo(t, first, uma, loginBoth(t, first, "uma", uma), 1)
	connectTo(t, first, vic, loginBoth(t, first, "vic", vic), 2)
	waitRoute(t, routes, uma.id, 1)
	waitRoute(t, routes, vic.id, 2)

	// Point to point, both ways, with the recipient's receipt.
	for i, pair := range [][2]*user{{uma, vic}, {vic, uma}} {
		from, to := pair[0], pair[1]
		waitLive(t, from, to)
		text := fmt.Sprintf("across centers %d", i)
		cid, err := from.conn.SendMsg(to.id, frame.QoS1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		m := frame.Msg(recvCmd(t, to.conn, frame.CmdMsg).Body)
		if string(m.Content()) != text || m.From() != from.id {
			t.Fatalf("got %q from %d", m.Content(), m.From())
		}
		_ = to.conn.Ack(m.MID(), m.From())
		if a := frame.Ack(recvCmd(t, from.conn, frame.CmdAck).Body); a.CID() != cid || a.Status() != frame.AckDelivered || a.MID() != m.MID() {
			t.Fatalf("ack cid %d status %d mid %d, want %d delivered %d", a.CID(), a.Status(), a.MID(), cid, m.MID())
		}
	}

	// Presence: friends on different centers.
	if code, body := first.post(t, "/v1/friends/requests", uma.login.Token, fmt.Sprintf(`{"to":%d}`, vic.id)); code != 202 {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := first.post(t, "/v1/friends/accept", vic.login.Token, fmt.Sprintf(`{"from":%d}`, uma.id)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	if n := frame.Presence(recvCmd(t, vic.conn, frame.CmdFriendNotify).Body); n.User() != uma.id || n.Status() != frame.StatusOnline {
		t.Fatalf("vic told user %d status %d", n.User(), n.Status())
	}
	_ = vic.conn.SetPresence(frame.StatusBusy, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := uma.conn.Recv(ctx, func(f client.Frame) bool {
		n := frame.Presence(f.Body)
		return f.Cmd == frame.CmdFriendNotify && n.User() == vic.id && n.Status() == frame.StatusBusy
	})
	cancel()
	if err != nil {
		t.Fatalf("vic's presence did not reach uma: %v", err)
	}

	// A group with a member on each center.
	req, _ := uma.conn.Group(frame.GroupCreate, 0, []byte(`{"name":"two centers","open":true}`))
	group, _ := groupReply(t, uma.conn, req)
	req, _ = vic.conn.Group(frame.GroupJoin, group, nil)
	groupReply(t, vic.conn, req)
	for _, pair := range [][2]*user{{uma, vic}, {vic, uma}} {
		from, to := pair[0], pair[1]
		text := fmt.Sprintf("group from %d", from.id)
		_ = from.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, from.conn.NewCID(), []byte(text))
		if a := frame.Ack(recvCmd(t, from.conn, frame.CmdAck).Body); a.Status() != frame.AckStored || a.Peer() != group {
			t.Fatalf("group ack status %d peer %d", a.Status(), a.Peer())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := to.conn.Recv(ctx, func(f client.Frame) bool {
			return f.Cmd == frame.CmdGroupMsg && string(frame.Msg(f.Body).Content()) == text
		})
		cancel()
		if err != nil {
			t.Fatalf("group message %q did not cross centers: %v", text, err)
		}
	}

	crashMidStream(t, first, second, routes)
}

// crashMidStream: wes on center 1 streams QoS 1 messages to xia on center
// 2; center 2 dies with kill -9 after a quarter of them.
func crashMidStream(t *testing.T, first, second *proc, routes route.Table) {
	wes := &user{dev: newDevice(t)}
	connectTo(t, first, wes, loginBoth(t, first, "wes", wes), 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xia, sess, shown := followingUser(t, ctx, first, "xia", 2)
	mu, seen := &shown.mu, shown.seen
	waitRoute(t, routes, xia.id, 2)

	const total = 200
	texts := map[uint64]string{}
	acks := make(chan frame.Ack, total)
	go func() {
		for f := range wes.conn.Frames() {
			if f.Cmd == frame.CmdAck {
				acks <- frame.Ack(append([]byte(nil), f.Body...))
			}
		}
	}()
	for i := 0; i < total; i++ {
		text := fmt.Sprintf("m%03d", i)
		cid, err := wes.conn.SendMsg(xia.id, frame.QoS1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		texts[cid] = text
		if i == total/4 {
			second.kill()
		}
		time.Sleep(5 * time.Millisecond)
	}
	acked := map[uint64]byte{}
	deadline := time.After(40 * time.Second)
	for len(acked) < total {
		select {
		case a := <-acks:
			acked[a.CID()] = a.Status()
		case <-deadline:
			t.Fatalf("%d of %d acked\n%s", len(acked), total, first.out.String())
		}
	}
	stored := 0
	for _, st := range acked {
		if st == frame.AckStored {
			stored++
		}
	}
	if stored == 0 {
		t.Error("no message was stored: the crash did not happen mid-stream")
	}
	testenv.WaitFor(t, 30*time.Second, "every acked message shown", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= total
	})
	mu.Lock()
	defer mu.Unlock()
	for cid := range acked {
		if n := seen[texts[cid]]; n != 1 {
			t.Errorf("%s shown %d times", texts[cid], n)
		}
	}
	if c, _ := sess.Conn(); c == nil {
		t.Fatal("xia not connected after the crash")
	}
	t.Logf("%d of %d messages acked as stored around the crash", stored, total)
}

// waitLive sends QoS 1 probes from one user to another until one is acked
// as delivered: a new session takes what the store holds before live
// pushes, so the first messages to it may be stored (and acked so) even
// after its route is up.
func waitLive(t *testing.T, from, to *user) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		cid, err := from.conn.SendMsg(to.id, frame.QoS1, []byte("probe"))
		if err != nil {
			t.Fatal(err)
		}
		m := frame.Msg(recvCmd(t, to.conn, frame.CmdMsg).Body)
		_ = to.conn.Ack(m.MID(), m.From())
		for {
			a := frame.Ack(recvCmd(t, from.conn, frame.CmdAck).Body)
			if a.CID() != cid {
				continue
			}
			if a.Status() == frame.AckDelivered {
				return
			}
			break
		}
	}
	t.Fatalf("no probe from %d to %d was delivered live", from.id, to.id)
}
