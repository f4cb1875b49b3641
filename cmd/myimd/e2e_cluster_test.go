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
)

// cluster starts a first node (all roles, cluster CA) and a second endpoint
// process that joins it with the token `myimd cluster init` printed.
func startCluster(t *testing.T, extra ...string) (first, second *proc) {
	t.Helper()
	redis := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t, redis)
	dir1 := t.TempDir()
	if err := exec.Command(binPath, "cluster", "init", "--data-dir", dir1, "--server-id", "1").Run(); err != nil {
		t.Fatalf("cluster init: %v", err)
	}
	token := joinFile(t, dir1, "endpoint", 2)
	common := []string{"--redis-addr", redis, "--redis-prefix", prefix}
	first = startMyimdDir(t, dir1, append(append([]string{"--server-id", "1", "--join-addr", "127.0.0.1:0"}, common...), extra...)...)
	if first.addrs["join"] == "" || first.addrs["center"] == "" {
		t.Fatalf("first node lists no join or link listener: %v", first.addrs)
	}
	second = startMyimdDir(t, t.TempDir(), append([]string{"--role", "endpoint", "--server-id", "2",
		"--join-file", token, "--join-url", "https://" + first.addrs["join"], "--center-link", first.addrs["center"]}, common...)...)
	// Share the first node's HTTP and login listeners for registration.
	return first, second
}

// loginBoth logs a user in at the first node and waits until the server
// list has both endpoints.
func loginBoth(t *testing.T, p *proc, name string, dev *user) *client.LoginResult {
	t.Helper()
	var res *client.LoginResult
	testenv.WaitFor(t, 20*time.Second, "both endpoints in the server list", func() bool {
		var err error
		res, err = client.Login(context.Background(), p.cfg(t, dev.dev), p.addrs["login"], name, []byte("password-"+name))
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		return len(res.Servers) == 2
	})
	return res
}

func connectTo(t *testing.T, p *proc, u *user, res *client.LoginResult, serverID uint32) {
	t.Helper()
	for _, s := range res.Servers {
		if s.ID == serverID {
			c, err := client.Connect(context.Background(), p.cfg(t, u.dev), res, s)
			if err != nil {
				t.Fatalf("connect to %d: %v", serverID, err)
			}
			t.Cleanup(func() { c.Close() })
			u.id, u.login, u.conn = res.UserID, res, c
			return
		}
	}
	t.Fatalf("server %d not listed", serverID)
}

// TestClusterAcrossEndpointProcesses runs an endpoint as its own process,
// joined with a token and linked to the first node's center over mutual TLS:
// users on the two endpoints exchange messages and see each other's presence.
func TestClusterAcrossEndpointProcesses(t *testing.T) {
	first, _ := startCluster(t)
	first.register(t, "uma", "password-uma")
	first.register(t, "vic", "password-vic")
	uma, vic := &user{dev: newDevice(t)}, &user{dev: newDevice(t)}
	connectTo(t, first, uma, loginBoth(t, first, "uma", uma), 1)
	connectTo(t, first, vic, loginBoth(t, first, "vic", vic), 2)

	// vic's first send travels on its endpoint's link behind the report that
	// vic is online, so the center knows vic before uma's message comes in;
	// sent the other way round, uma's message could reach the center first
	// and be kept offline (acked as stored, then pushed) instead.
	for i, pair := range [][2]*user{{vic, uma}, {uma, vic}} {
		from, to := pair[0], pair[1]
		text := fmt.Sprintf("across endpoints %d", i)
		cid, err := from.conn.SendMsg(to.id, frame.QoS1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		m := frame.Msg(recvCmd(t, to.conn, frame.CmdMsg).Body)
		if string(m.Content()) != text || m.Srv() == m.DSrv() {
			t.Fatalf("got %q via srv %d dsrv %d", m.Content(), m.Srv(), m.DSrv())
		}
		_ = to.conn.Ack(m.MID(), m.From())
		if a := frame.Ack(recvCmd(t, from.conn, frame.CmdAck).Body); a.CID() != cid || a.Status() != frame.AckDelivered {
			t.Fatalf("ack status %d", a.Status())
		}
	}
	if code, body := first.post(t, "/v1/friends/requests", uma.login.Token, fmt.Sprintf(`{"to":%d}`, vic.id)); code != 202 {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := first.post(t, "/v1/friends/accept", vic.login.Token, fmt.Sprintf(`{"from":%d}`, uma.id)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	recvCmd(t, uma.conn, frame.CmdFriendNotify)
	_ = vic.conn.SetPresence(frame.StatusBusy, "")
	if n := frame.Presence(recvCmd(t, uma.conn, frame.CmdFriendNotify).Body); n.User() != vic.id || n.Status() != frame.StatusBusy {
		t.Fatalf("presence across endpoints: user %d status %d", n.User(), n.Status())
	}
}

// TestDrainMovesClients drains the first node's endpoint in the middle of a
// QoS 1 stream: its clients move to the other endpoint and every message
// acked to the sender arrives exactly once.
func TestDrainMovesClients(t *testing.T) {
	const secret = "drain-secret"
	first, _ := startCluster(t, "--admin-secret", secret)
	first.register(t, "wes", "password-wes")
	first.register(t, "xia", "password-xia")
	// wes sends from the second endpoint; xia is on the first, which drains.
	wes := &user{dev: newDevice(t)}
	connectTo(t, first, wes, loginBoth(t, first, "wes", wes), 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xia, sess, shown := followingUser(t, ctx, first, "xia", 1)
	mu, seen := &shown.mu, shown.seen

	const total = 200
	texts := map[uint64]string{}
	ackCh := ackedCIDs(wes.conn, total)
	drained := false
	for i := 0; i < total; i++ {
		text := fmt.Sprintf("m%03d", i)
		cid, err := wes.conn.SendMsg(xia.id, frame.QoS1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		texts[cid] = text
		if i == total/4 && !drained {
			if code, body := first.call(t, "POST", "/v1/admin/drain", secret, ""); code != 200 {
				t.Fatalf("drain: %d %s", code, body)
			}
			drained = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	acked := waitAcked(t, ackCh, texts, first)
	testenv.WaitFor(t, 30*time.Second, "every acked message shown", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= total
	})
	mu.Lock()
	defer mu.Unlock()
	for _, text := range acked {
		if seen[text] != 1 {
			t.Errorf("%s shown %d times", text, seen[text])
		}
	}
	if sess.Renewals() < 1 {
		t.Fatal("xia never moved")
	}
	if c, _ := sess.Conn(); c == nil {
		t.Fatal("xia not connected after the move")
	}
}

// ackedCIDs follows c's frames and sends the CID of every ACK on the
// returned channel, which holds n without a reader.
func ackedCIDs(c *client.Conn, n int) <-chan uint64 {
	ch := make(chan uint64, n)
	go func() {
		for f := range c.Frames() {
			if f.Cmd == frame.CmdAck {
				ch <- frame.Ack(f.Body).CID()
			}
		}
	}()
	return ch
}

// waitAcked takes an ACK for every message of texts (CID to text) from
// ch within 30 s and returns the acked messages' texts; on failure it
// shows p's log.
func waitAcked(t *testing.T, ch <-chan uint64, texts map[uint64]string, p *proc) map[uint64]string {
	t.Helper()
	acked := map[uint64]string{}
	deadline := time.After(30 * time.Second)
	for len(acked) < len(texts) {
		select {
		case cid := <-ch:
			acked[cid] = texts[cid]
		case <-deadline:
			t.Fatalf("%d of %d acked\n%s", len(acked), len(texts), p.out.String())
		}
	}
	return acked
}
