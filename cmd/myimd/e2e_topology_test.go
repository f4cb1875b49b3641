package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/redis"
)

// restart starts p again on its data dir with args (its old ones when
// nil), after it was killed.
func (p *proc) restart(t *testing.T, args ...string) *proc {
	t.Helper()
	if args == nil {
		args = p.argv
	}
	return startMyimdDir(t, p.dir, args...)
}

// joinFile asks the CA holder in dir for a join token for node of role
// and returns a file holding it, for --join-file.
func joinFile(t *testing.T, dir, role string, node int) string {
	t.Helper()
	out, err := exec.Command(binPath, "cluster", "token", "--data-dir", dir, "--role", role,
		"--node", strconv.Itoa(node)).Output()
	if err != nil {
		t.Fatalf("cluster token: %v", err)
	}
	path := filepath.Join(t.TempDir(), "join")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// topology is a cluster of separate processes: two centers, a login node
// and endpoints, on one MariaDB database and the test's own redis-server.
type topology struct {
	redis         *testenv.RedisServer
	routes        route.Table
	c1, c2, login *proc
	eps           map[uint32]*proc
	common        []string
}

// endpoint starts endpoint process id, linked to the centers in order.
func (tp *topology) endpoint(t *testing.T, id, priority int, centers ...*proc) *proc {
	t.Helper()
	links := make([]string, len(centers))
	for i, c := range centers {
		links[i] = c.addrs["center"]
	}
	p := startMyimdDir(t, t.TempDir(), append([]string{"--role", "endpoint", "--server-id", strconv.Itoa(id),
		"--priority", strconv.Itoa(priority), "--join-file", joinFile(t, tp.c1.dir, "endpoint", id), "--join-url", "https://" + tp.c1.addrs["join"],
		"--center-link", strings.Join(links, ","), "--center-failback", "2s"}, tp.common...)...)
	tp.eps[uint32(id)] = p
	return p
}

// loginFull logs name in at the login node once every endpoint is listed.
func (tp *topology) loginFull(t *testing.T, name string, u *user) *client.LoginResult {
	t.Helper()
	var res *client.LoginResult
	testenv.WaitFor(t, 30*time.Second, "every endpoint in the server list", func() bool {
		var err error
		res, err = client.Login(context.Background(), tp.c1.cfg(t, u.dev), tp.login.addrs["login"], name, []byte("password-"+name))
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		return len(res.Servers) == len(tp.eps)
	})
	return res
}

// receiver counts the MSGs a connection is shown (acking each, dropping
// resends by their client id, as an application would).
type receiver struct {
	u    *user
	mu   sync.Mutex
	seen map[string]int
}

func (tp *topology) connectReceiver(t *testing.T, name string, server uint32) *receiver {
	t.Helper()
	u := &user{dev: newDevice(t)}
	res := tp.loginFull(t, name, u)
	cfg := tp.c1.cfg(t, u.dev)
	cfg.AutoAck, cfg.Dedupe = true, client.NewDedupe(0)
	for _, s := range res.Servers {
		if s.ID != server {
			continue
		}
		c, err := client.Connect(context.Background(), cfg, res, s)
		if err != nil {
			t.Fatalf("connect %s to %d: %v", name, server, err)
		}
		t.Cleanup(func() { c.Close() })
		u.id, u.login, u.conn = res.UserID, res, c
		r := &receiver{u: u, seen: map[string]int{}}
		go func() {
			for f := range c.Frames() {
				if f.Cmd == frame.CmdMsg {
					r.mu.Lock()
					r.seen[string(frame.Msg(f.Body).Content())]++
					r.mu.Unlock()
				}
			}
		}()
		return r
	}
	t.Fatalf("server %d not listed for %s", server, name)
	return nil
}

func (r *receiver) count(text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[text]
}

// TestTopology runs the design's full topology as separate processes on
// loopback: its own redis-server, MariaDB, two centers, a login node and
// four endpoints (two per center, each with the other center as fallback),
// every link over mutual TLS with certificates from `cluster init` and
// `--join`. Users spread over the endpoints exchange p2p messages at QoS 0
// and 1, group messages and a file across endpoints and centers, and see
// their friends' presence across centers, live and by lookup. Then, while one user streams QoS 1
// messages to users on every endpoint, it kills an endpoint, then a center
// (restarting both, as a supervisor would), then restarts Redis empty:
// every message acked to the sender is shown exactly once, clients come
// back through the server list, and endpoints go back to their first
// center once it is restarted.
func TestTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("nine processes")
	}
	dsn := testenv.MySQLDatabase(t)
	tp := &topology{redis: testenv.StartRedisServer(t), eps: map[uint32]*proc{}}
	prefix := fmt.Sprintf("myimtopo%d:", time.Now().UnixNano())
	tp.common = []string{"--redis-addr", tp.redis.Addr(), "--redis-prefix", prefix}
	var err error
	if tp.routes, err = redis.New(redis.Options{Addr: tp.redis.Addr(), Prefix: prefix, DisableCache: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.routes.Close() })

	// On failure, the end of every node's log says what the cluster saw.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		nodes := map[string]*proc{"center 1": tp.c1, "center 2": tp.c2, "login": tp.login}
		for id, p := range tp.eps {
			nodes[fmt.Sprintf("endpoint %d", id)] = p
		}
		for name, p := range nodes {
			if p != nil {
				lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
				t.Logf("%s, last log lines:\n%s", name, strings.Join(lines[max(0, len(lines)-25):], "\n"))
			}
		}
	})
	dir1 := t.TempDir()
	if err := exec.Command(binPath, "cluster", "init", "--data-dir", dir1, "--server-id", "1").Run(); err != nil {
		t.Fatalf("cluster init: %v", err)
	}
	centerArgs := func(id string) []string {
		return append([]string{"--role", "center", "--server-id", id, "--mysql-dsn", dsn}, tp.common...)
	}
	tp.c1 = startMyimdDir(t, dir1, append(centerArgs("1"), "--join-addr", "127.0.0.1:0")...)
	joinURL := "https://" + tp.c1.addrs["join"]
	tp.c2 = startMyimdDir(t, t.TempDir(), append(centerArgs("2"), "--join-file", joinFile(t, tp.c1.dir, "center", 2), "--join-url", joinURL)...)
	tp.login = startMyimdDir(t, t.TempDir(), append([]string{"--role", "login", "--server-id", "9",
		"--join-file", joinFile(t, tp.c1.dir, "login", 9), "--join-url", joinURL, "--mysql-dsn", dsn}, tp.common...)...)
	for _, p := range []*proc{tp.c1, tp.c2} {
		testenv.WaitFor(t, 20*time.Second, "center links up", func() bool { return p.metric(t, "myim_cluster_peers_up") == 1 })
	}
	// Endpoint 6 comes first in the server list (lowest priority number):
	// a Session user lands there and, when it dies, moves down the list.
	tp.endpoint(t, 3, 2, tp.c1, tp.c2)
	tp.endpoint(t, 4, 3, tp.c1, tp.c2)
	tp.endpoint(t, 5, 4, tp.c2, tp.c1)
	ep6 := tp.endpoint(t, 6, 1, tp.c2, tp.c1)

	for _, n := range []string{"amy", "bob", "cai", "dan", "eli", "xue"} {
		tp.c1.register(t, n, "password-"+n)
	}
	amy := &user{dev: newDevice(t)}
	connectTo(t, tp.c1, amy, tp.loginFull(t, "amy", amy), 3)
	bob, cai, xue := &user{dev: newDevice(t)}, &user{dev: newDevice(t)}, &user{dev: newDevice(t)}
	connectTo(t, tp.c1, bob, tp.loginFull(t, "bob", bob), 4)
	connectTo(t, tp.c1, cai, tp.loginFull(t, "cai", cai), 5)
	connectTo(t, tp.c1, xue, tp.loginFull(t, "xue", xue), 6)
	for u, center := range map[*user]uint32{amy: 1, bob: 1, cai: 2, xue: 2} {
		waitRoute(t, tp.routes, u.id, center)
	}

	steadyState(t, tp, amy, bob, cai, xue)
	streamThroughFaults(t, tp, amy, ep6)
}

// steadyState: p2p at QoS 1 and 0 within a center and across centers,
// a group with members on three endpoints and both centers, and presence
// between friends on different centers.
func steadyState(t *testing.T, tp *topology, amy, bob, cai, xue *user) {
	for i, pair := range [][2]*user{{amy, cai}, {cai, amy}, {amy, bob}, {xue, bob}, {bob, xue}} {
		from, to := pair[0], pair[1]
		text := fmt.Sprintf("qos1 %d", i)
		cid, err := from.conn.SendMsg(to.id, frame.QoS1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		m := frame.Msg(recvCmd(t, to.conn, frame.CmdMsg).Body)
		if string(m.Content()) != text || m.From() != from.id || m.Srv() == m.DSrv() {
			t.Fatalf("%d got %q from %d via %d to %d", to.id, m.Content(), m.From(), m.Srv(), m.DSrv())
		}
		_ = to.conn.Ack(m.MID(), m.From())
		if a := frame.Ack(recvCmd(t, from.conn, frame.CmdAck).Body); a.CID() != cid || a.Status() != frame.AckDelivered {
			t.Fatalf("%s: ack cid %d status %d, want %d delivered", text, a.CID(), a.Status(), cid)
		}
		text = fmt.Sprintf("qos0 %d", i)
		if _, err := from.conn.SendMsg(to.id, frame.QoS0, []byte(text)); err != nil {
			t.Fatal(err)
		}
		if m := frame.Msg(recvCmd(t, to.conn, frame.CmdMsg).Body); string(m.Content()) != text {
			t.Fatalf("got %q, want %q", m.Content(), text)
		}
	}

	req, _ := amy.conn.Group(frame.GroupCreate, 0, []byte(`{"name":"everywhere","open":true}`))
	group, _ := groupReply(t, amy.conn, req)
	for _, u := range []*user{bob, cai, xue} {
		req, _ := u.conn.Group(frame.GroupJoin, group, nil)
		groupReply(t, u.conn, req)
	}
	members := []*user{amy, bob, cai, xue}
	for _, from := range []*user{amy, cai} {
		text := fmt.Sprintf("group from %d", from.id)
		_ = from.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, from.conn.NewCID(), []byte(text))
		if a := frame.Ack(recvCmd(t, from.conn, frame.CmdAck).Body); a.Status() != frame.AckStored || a.Peer() != group {
			t.Fatalf("group ack status %d peer %d", a.Status(), a.Peer())
		}
		for _, to := range members {
			if to == from {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := to.conn.Recv(ctx, func(f client.Frame) bool {
				return f.Cmd == frame.CmdGroupMsg && string(frame.Msg(f.Body).Content()) == text
			})
			cancel()
			if err != nil {
				t.Fatalf("user %d never got group message %q: %v", to.id, text, err)
			}
		}
	}

	if code, body := tp.c2.post(t, "/v1/friends/requests", amy.login.Token, fmt.Sprintf(`{"to":%d}`, cai.id)); code != 202 {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := tp.c1.post(t, "/v1/friends/accept", cai.login.Token, fmt.Sprintf(`{"from":%d}`, amy.id)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	_ = cai.conn.SetPresence(frame.StatusBusy, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := amy.conn.Recv(ctx, func(f client.Frame) bool {
		n := frame.Presence(f.Body)
		return f.Cmd == frame.CmdFriendNotify && n.User() == cai.id && n.Status() == frame.StatusBusy
	}); err != nil {
		t.Fatalf("cai's presence did not reach amy across centers: %v", err)
	}
	// A file from xue (endpoint 6, center 2) to amy (endpoint 3, center
	// 1): the transfer's state stays on center 2, amy's accept and
	// receipts cross to it, the chunks cross back.
	src := genFile{seed: 7, size: 3<<20 + 123}
	sum := src.sum(t)
	fctx := ctxT(t, time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, err := xue.conn.SendFile(fctx, amy.id, "across.bin", src, src.size, client.SendOptions{SHA256: sum})
		errc <- err
	}()
	o := recvOffer(t, amy.conn)
	sink := newSink()
	if err := amy.conn.ReceiveFile(fctx, o, sink, nil); err != nil {
		t.Fatalf("receive across centers: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("send across centers: %v", err)
	}
	if sink.n != src.size || sink.sum() != sum {
		t.Fatalf("received %d bytes, hash %s", sink.n, sink.sum())
	}

	// The friends-online lookup on center 1 sees cai, busy, on center 2.
	want := fmt.Sprintf(`[{"user":%d,"status":%d}]`, cai.id, frame.StatusBusy)
	var got string
	testenv.WaitFor(t, 10*time.Second, "cai busy in amy's friends-online lookup", func() bool {
		req, _ := amy.conn.Lookup(frame.CmdFriendsOnline, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f, err := amy.conn.Recv(ctx, func(f client.Frame) bool {
			return f.Cmd == frame.CmdFriendsOnline && frame.Lookup(f.Body).Req() == req
		})
		if err != nil {
			t.Fatalf("friends-online lookup: %v", err)
		}
		got = string(frame.Lookup(f.Body).JSON())
		return got == want
	})
}

// streamThroughFaults: amy (endpoint 3, center 1) streams QoS 1 messages
// to bob (endpoint 4, center 1), cai (endpoint 5, center 2) and dan (a
// Session, on endpoint 6, center 2), later also to eli on the restarted
// endpoint 6, while endpoint 6, then center 2, then Redis fail.
func streamThroughFaults(t *testing.T, tp *topology, amy *user, ep6 *proc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bob := tp.connectReceiver(t, "bob", 4)
	cai := tp.connectReceiver(t, "cai", 5)
	// dan follows the server list through a client.Session.
	dan := &user{dev: newDevice(t)}
	dan.id = tp.loginFull(t, "dan", dan).UserID
	cfg := tp.c1.cfg(t, dan.dev)
	cfg.AutoAck, cfg.AutoFetch, cfg.Dedupe = true, true, client.NewDedupe(0)
	danSess := client.NewSession(cfg, tp.login.addrs["login"], "dan", []byte("password-dan"))
	go func() { _ = danSess.Run(ctx) }()
	danShown := countMsgs(ctx, danSess)
	testenv.WaitFor(t, 20*time.Second, "dan connected", func() bool { c, _ := danSess.Conn(); return c != nil })
	if srv := danSess.Login().Servers[0]; srv.ID != 6 {
		t.Fatalf("dan's first server is %d, want 6", srv.ID)
	}
	for u, center := range map[uint64]uint32{bob.u.id: 1, cai.u.id: 2, dan.id: 2} {
		waitRoute(t, tp.routes, u, center)
	}

	type sent struct {
		to   uint64
		text string
	}
	var mu sync.Mutex
	texts := map[uint64]sent{} // by client id
	status := map[uint64]byte{}
	refused := map[uint64]string{}
	go func() {
		for f := range amy.conn.Frames() {
			mu.Lock()
			switch f.Cmd {
			case frame.CmdAck:
				a := frame.Ack(f.Body)
				if _, ok := texts[a.CID()]; !ok {
					t.Logf("ack outside the stream: cid %d mid %x peer %d status %d", a.CID(), a.MID(), a.Peer(), a.Status())
				}
				status[a.CID()] = a.Status()
			case frame.CmdError:
				e := frame.Error(f.Body)
				refused[e.Ref()] = string(e.Text())
			}
			mu.Unlock()
		}
	}()
	shownTo := map[uint64]func(string) int{
		bob.u.id: bob.count,
		cai.u.id: cai.count,
		dan.id: func(text string) int {
			danShown.mu.Lock()
			defer danShown.mu.Unlock()
			return danShown.seen[text]
		},
	}
	var targets []uint64
	var targetsMu sync.Mutex
	targets = append(targets, bob.u.id, cai.u.id, dan.id)

	stop := make(chan struct{})
	streamed := make(chan int)
	go func() {
		n := 0
		defer func() { streamed <- n }()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		// Bounded: at most 6,000 messages (a minute at this pace).
		for ; n < 6000; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			targetsMu.Lock()
			to := targets[n%len(targets)]
			targetsMu.Unlock()
			text := fmt.Sprintf("s%05d", n)
			cid := amy.conn.NewCID()
			mu.Lock()
			texts[cid] = sent{to, text}
			mu.Unlock()
			if err := amy.conn.SendMsgCID(frame.CmdMsg, to, frame.QoS1, cid, []byte(text)); err != nil {
				t.Errorf("send: %v", err)
				return
			}
		}
	}()
	acked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(status)
	}
	// progress waits until the stream has moved on by n more acks.
	progress := func(what string, n int) {
		t.Helper()
		base := acked()
		testenv.WaitFor(t, 60*time.Second, what, func() bool { return acked() >= base+n })
	}

	progress("stream running", 50)
	ep6.kill()
	at := time.Now()
	testenv.WaitFor(t, 30*time.Second, "dan back through the server list", func() bool {
		c, _ := danSess.Conn()
		return danSess.Renewals() >= 1 && c != nil
	})
	t.Logf("fault 1: endpoint 6 killed; dan back through the server list after %v", time.Since(at).Round(time.Millisecond))
	progress("stream after the endpoint kill", 50)

	tp.c2.kill()
	at = time.Now()
	progress("stream after the center kill", 100)
	t.Logf("fault 2: center 2 killed; 100 more messages acked after %v", time.Since(at).Round(time.Millisecond))
	// A supervisor restarts both; endpoint 6 comes back linked to the
	// restarted center 2 (its listener moved), with eli on it.
	tp.c2 = tp.c2.restart(t, append(tp.c2.argv, "--center-addr", tp.c2.addrs["center"])...)
	testenv.WaitFor(t, 20*time.Second, "center 2 linked again", func() bool { return tp.c2.metric(t, "myim_cluster_peers_up") == 1 })
	args := append([]string(nil), ep6.argv...)
	for i := range args {
		if args[i] == "--center-link" {
			args[i+1] = tp.c2.addrs["center"] + "," + tp.c1.addrs["center"]
		}
	}
	tp.eps[6] = ep6.restart(t, args...)
	// Endpoint 5 moved to center 1 and goes back to center 2, its first,
	// by itself: cai is routed there again without reconnecting.
	at = time.Now()
	testenv.WaitFor(t, 30*time.Second, "cai routed through center 2 only", func() bool {
		as, _ := tp.routes.Get(context.Background(), cai.u.id)
		for _, a := range as {
			if a.Center != 2 {
				return false
			}
		}
		return len(as) > 0
	})
	t.Logf("endpoint 5 back on the restarted center 2 after %v", time.Since(at).Round(time.Millisecond))
	eli := tp.connectReceiver(t, "eli", 6)
	waitRoute(t, tp.routes, eli.u.id, 2)
	shownTo[eli.u.id] = eli.count
	targetsMu.Lock()
	targets = append(targets, eli.u.id)
	targetsMu.Unlock()
	progress("stream to eli", 50)

	tp.redis.Kill()
	time.Sleep(time.Second)
	tp.redis.Start()
	at = time.Now()
	waitRoute(t, tp.routes, eli.u.id, 2) // the center's refresh writes it again
	routed := time.Since(at)
	testenv.WaitFor(t, 30*time.Second, "endpoints registered again", func() bool {
		res, err := client.Login(context.Background(), tp.c1.cfg(t, newDevice(t)), tp.login.addrs["login"], "xue", []byte("password-xue"))
		return err == nil && len(res.Servers) == len(tp.eps)
	})
	t.Logf("fault 3: Redis down 1 s and restarted empty; routes back after %v, full server list after %v",
		routed.Round(time.Millisecond), time.Since(at).Round(time.Millisecond))
	progress("stream after the Redis restart", 100)
	close(stop)
	total := <-streamed

	testenv.WaitFor(t, 60*time.Second, "every message answered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(status)+len(refused) >= total
	})
	mu.Lock()
	ack := make(map[uint64]byte, len(status))
	for cid, st := range status {
		if _, ok := texts[cid]; !ok {
			// An ack for a message of the steady phase, late or repeated.
			t.Logf("ack for cid %d, not of the stream: status %d", cid, st)
			continue
		}
		ack[cid] = st
	}
	byCID := make(map[uint64]sent, len(texts))
	for cid, s := range texts {
		byCID[cid] = s
	}
	nRefused := len(refused)
	mu.Unlock()
	missing := func() []string {
		var out []string
		for cid, st := range ack {
			s := byCID[cid]
			if shownTo[s.to](s.text) == 0 {
				out = append(out, fmt.Sprintf("%s to %d (ack status %d)", s.text, s.to, st))
			}
		}
		sort.Strings(out)
		return out
	}
	for deadline := time.Now().Add(60 * time.Second); len(missing()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			m := missing()
			t.Fatalf("%d of %d acked messages never shown: %v", len(m), len(ack), m[:min(len(m), 20)])
		}
	}
	stored := 0
	for cid, st := range ack {
		s := byCID[cid]
		if n := shownTo[s.to](s.text); n != 1 {
			t.Errorf("%s to %d shown %d times (ack status %d)", s.text, s.to, n, st)
		}
		if st == frame.AckStored {
			stored++
		}
	}
	t.Logf("%d messages streamed through three faults: %d acked (%d as stored offline), %d refused as retryable",
		total, len(ack), stored, nRefused)
}
