package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/sonic"
	"github.com/go-sql-driver/mysql"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

func TestOfflineStoreAndFetch(t *testing.T) { testOffline(t, startMyimd(t)) }

// TestOfflineStoreAndFetchMySQL runs the same against MariaDB.
func TestOfflineStoreAndFetchMySQL(t *testing.T) {
	testOffline(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

func testOffline(t *testing.T, p *proc) {
	p.register(t, "ann", "password-ann")
	bobID := p.register(t, "ben", "password-ben")
	ann := p.connect(t, "ann", newDevice(t))
	const n = 5
	cids := map[uint64]bool{}
	for i := 0; i < n; i++ {
		cid, err := ann.conn.SendMsg(bobID, frame.QoS1, []byte(fmt.Sprintf("m%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		cids[cid] = true
	}
	for i := 0; i < n; i++ {
		a := frame.Ack(recvCmd(t, ann.conn, frame.CmdAck).Body)
		if !cids[a.CID()] || a.Status() != frame.AckStored {
			t.Fatalf("ack cid=%d status=%d", a.CID(), a.Status())
		}
	}
	// A resend of an accepted message is not stored twice.
	for cid := range cids {
		_ = ann.conn.SendMsgCID(frame.CmdMsg, bobID, frame.QoS1, cid, []byte("again"))
		if a := frame.Ack(recvCmd(t, ann.conn, frame.CmdAck).Body); a.Status() != frame.AckDuplicate {
			t.Fatalf("resend: status %d", a.Status())
		}
		break
	}
	ben := p.connect(t, "ben", newDevice(t))
	req, _ := ben.conn.Fetch(frame.FetchP2P, 0, 100)
	var got []string
	for {
		f := recvCmd2(t, ben.conn, frame.CmdMsg, frame.CmdFetch)
		if f.Cmd == frame.CmdFetch {
			fe := frame.Fetch(f.Body)
			if fe.Req() != req || int(fe.Count()) != n || fe.Flags()&frame.FetchMore != 0 {
				t.Fatalf("fetch answer req=%d count=%d flags=%d", fe.Req(), fe.Count(), fe.Flags())
			}
			break
		}
		m := frame.Msg(f.Body)
		got = append(got, string(m.Content()))
		_ = ben.conn.Ack(m.MID(), m.From())
	}
	for i, s := range got {
		if s != fmt.Sprintf("m%d", i) {
			t.Fatalf("order: %v", got)
		}
	}
	// Acked messages are gone.
	testenv.WaitFor(t, 10*time.Second, "acked messages deleted", func() bool {
		_, _ = ben.conn.Fetch(frame.FetchP2P, 0, 100)
		f := recvCmd2(t, ben.conn, frame.CmdMsg, frame.CmdFetch)
		return f.Cmd == frame.CmdFetch && frame.Fetch(f.Body).Count() == 0
	})
}

func recvCmd2(t testing.TB, c *client.Conn, a, b frame.Cmd) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == a || f.Cmd == b })
	if err != nil {
		t.Fatalf("waiting for %s/%s: %v", a, b, err)
	}
	return f
}

func groupReply(t testing.TB, c *client.Conn, req uint32) (uint64, []byte) {
	t.Helper()
	for {
		f := recvCmd2(t, c, frame.CmdGroup, frame.CmdError)
		if f.Cmd == frame.CmdError {
			t.Fatalf("group op: %v", client.ParseServerError(f))
		}
		if g := frame.Group(f.Body); g.Req() == req {
			return g.Group(), g.JSON()
		}
	}
}

func TestGroupsFanOutAndJoinCutoff(t *testing.T) { testGroups(t, startMyimd(t)) }

func TestGroupsFanOutAndJoinCutoffMySQL(t *testing.T) {
	testGroups(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

func testGroups(t *testing.T, p *proc) {
	for _, n := range []string{"gia", "gus", "gil"} {
		p.register(t, n, "password-"+n)
	}
	gia := p.connect(t, "gia", newDevice(t))
	gus := p.connect(t, "gus", newDevice(t))
	req, _ := gia.conn.Group(frame.GroupCreate, 0, []byte(`{"name":"team","open":true}`))
	group, _ := groupReply(t, gia.conn, req)
	req, _ = gus.conn.Group(frame.GroupJoin, group, nil)
	groupReply(t, gus.conn, req)

	_ = gia.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, gia.conn.NewCID(), []byte("before gil"))
	if a := frame.Ack(recvCmd(t, gia.conn, frame.CmdAck).Body); a.Status() != frame.AckStored || a.Peer() != group {
		t.Fatalf("group ack status %d peer %d", a.Status(), a.Peer())
	}
	m := frame.Msg(recvCmd(t, gus.conn, frame.CmdGroupMsg).Body)
	if string(m.Content()) != "before gil" || m.To() != group || m.MID() != 1 {
		t.Fatalf("gus got %q to=%d seq=%d", m.Content(), m.To(), m.MID())
	}

	// gil joins after seq 1 and never sees it; a later message reaches it
	// through fetch.
	gil := p.connect(t, "gil", newDevice(t))
	req, _ = gil.conn.Group(frame.GroupJoin, group, nil)
	_, js := groupReply(t, gil.conn, req)
	var jr struct {
		JoinSeq uint64 `json:"join_seq"`
	}
	_ = sonic.Unmarshal(js, &jr)
	if jr.JoinSeq != 1 {
		t.Fatalf("join seq %d", jr.JoinSeq)
	}
	gil.conn.Close()
	_ = gia.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, gia.conn.NewCID(), []byte("after gil"))
	recvCmd(t, gia.conn, frame.CmdAck)
	gil = p.connect(t, "gil", gil.dev)
	_, _ = gil.conn.Fetch(frame.FetchGroup, 0, 100)
	var got []string
	for {
		f := recvCmd2(t, gil.conn, frame.CmdGroupMsg, frame.CmdFetch)
		if f.Cmd == frame.CmdFetch {
			break
		}
		got = append(got, string(frame.Msg(f.Body).Content()))
	}
	if len(got) != 1 || got[0] != "after gil" {
		t.Fatalf("gil fetched %q", got)
	}
}

func TestPresenceAndFriends(t *testing.T) { testPresence(t, startMyimd(t)) }

func TestPresenceAndFriendsMySQL(t *testing.T) {
	testPresence(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

func testPresence(t *testing.T, p *proc) {
	p.register(t, "pia", "password-pia")
	p.register(t, "pam", "password-pam")
	pia := p.connect(t, "pia", newDevice(t))
	pam := p.connect(t, "pam", newDevice(t))
	if code, body := p.post(t, "/v1/friends/requests", pia.login.Token, fmt.Sprintf(`{"to":%d}`, pam.id)); code != 202 {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := p.post(t, "/v1/friends/accept", pam.login.Token, fmt.Sprintf(`{"from":%d}`, pia.id)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	// Each is told the other's status on acceptance.
	if n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body); n.User() != pam.id || n.Status() != frame.StatusOnline {
		t.Fatalf("pia notified of %d status %d", n.User(), n.Status())
	}
	recvCmd(t, pam.conn, frame.CmdFriendNotify)
	// Away, then friends-online lookup.
	_ = pam.conn.SetPresence(frame.StatusAway, "lunch")
	if n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body); n.Status() != frame.StatusAway {
		t.Fatalf("status %d", n.Status())
	}
	req, _ := pia.conn.Lookup(frame.CmdFriendsOnline, 0)
	l := frame.Lookup(recvCmd(t, pia.conn, frame.CmdFriendsOnline).Body)
	want := fmt.Sprintf(`[{"user":%d,"status":2,"text":"lunch"}]`, pam.id)
	if l.Req() != req || string(l.JSON()) != want {
		t.Fatalf("friends online: %s, want %s", l.JSON(), want)
	}
	// The terminal's offline confirmation tells friends at once.
	_ = pam.conn.Bye()
	if n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body); n.User() != pam.id || n.Status() != frame.StatusOffline {
		t.Fatalf("after bye: %d status %d", n.User(), n.Status())
	}
}

// TestStoreDownRefusesQoS1 runs myimd on MariaDB through a proxy and cuts
// it: a QoS 1 message to an offline user gets a retryable refusal, never an
// ack; once the store is back the same message, resent, is stored once.
func TestStoreDownRefusesQoS1(t *testing.T) {
	dsn := testenv.MySQLDatabase(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := testenv.StartProxy(t, cfg.Addr)
	cfg.Addr = px.Addr()
	p := startMyimd(t, "--mysql-dsn", cfg.FormatDSN())
	p.register(t, "dora", "password-dora")
	eveID := p.register(t, "eve", "password-eve")
	dora := p.connect(t, "dora", newDevice(t))

	px.Cut()
	cid, err := dora.conn.SendMsg(eveID, frame.QoS1, []byte("while the store is down"))
	if err != nil {
		t.Fatal(err)
	}
	f := recvCmd2(t, dora.conn, frame.CmdAck, frame.CmdError)
	if f.Cmd != frame.CmdError {
		t.Fatalf("acked a message the store did not keep: %+v", frame.Ack(f.Body).Status())
	}
	if e := frame.Error(f.Body); e.Code() != frame.ErrCodeRetry || e.Ref() != cid {
		t.Fatalf("refusal code %d ref %d, want %d ref %d", e.Code(), e.Ref(), frame.ErrCodeRetry, cid)
	}
	// Requests that read the store say retry too, over frames and HTTP
	// alike: the store is really unavailable.
	req, _ := dora.conn.Group(frame.GroupList, 0, nil)
	if e := wantError(t, dora.conn, uint64(req), frame.ErrCodeRetry, "GROUP LIST with the store down"); !strings.Contains(e.Text, "retry") {
		t.Fatalf("GROUP LIST refusal %q", e.Text)
	}
	if resp, body := p.httpCall(t, "GET", "/v1/friends", dora.login.Token, nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET /v1/friends with the store down: %d %s", resp.StatusCode, body)
	}

	px.Restore()
	testenv.WaitFor(t, 20*time.Second, "the resend stored", func() bool {
		_ = dora.conn.SendMsgCID(frame.CmdMsg, eveID, frame.QoS1, cid, []byte("while the store is down"))
		f := recvCmd2(t, dora.conn, frame.CmdAck, frame.CmdError)
		return f.Cmd == frame.CmdAck && frame.Ack(f.Body).Status() == frame.AckStored
	})
	eve := p.connect(t, "eve", newDevice(t))
	_, _ = eve.conn.Fetch(frame.FetchP2P, 0, 100)
	n := 0
	for {
		f := recvCmd2(t, eve.conn, frame.CmdMsg, frame.CmdFetch)
		if f.Cmd == frame.CmdFetch {
			break
		}
		n++
	}
	if n != 1 {
		t.Fatalf("eve got %d copies, want 1", n)
	}
}
