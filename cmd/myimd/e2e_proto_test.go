package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// Protocol correctness as a client written from the docs sees it: each
// test drives a real myimd and fails on the server that had the bug.

// befriend makes a and b friends through the HTTP API and drains the
// FRIEND_NOTIFY each gets on acceptance.
func (p *proc) befriend(t testing.TB, a, b *user) {
	t.Helper()
	if code, body := p.post(t, "/v1/friends/requests", a.login.Token, fmt.Sprintf(`{"to":%d}`, b.id)); code != http.StatusAccepted {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := p.post(t, "/v1/friends/accept", b.login.Token, fmt.Sprintf(`{"from":%d}`, a.id)); code != http.StatusOK {
		t.Fatalf("accept: %d %s", code, body)
	}
	recvCmd(t, a.conn, frame.CmdFriendNotify)
	recvCmd(t, b.conn, frame.CmdFriendNotify)
}

// fetchPage sends a FETCH and returns the messages of the page and the
// answer.
func fetchPage(t testing.TB, c *client.Conn, kind byte, cursor uint64, count uint16) ([]frame.Msg, frame.Fetch) {
	t.Helper()
	req, err := c.Fetch(kind, cursor, count)
	if err != nil {
		t.Fatal(err)
	}
	msgCmd := frame.CmdMsg
	if kind == frame.FetchGroup {
		msgCmd = frame.CmdGroupMsg
	}
	var msgs []frame.Msg
	for {
		f := recvCmd2(t, c, msgCmd, frame.CmdFetch)
		if f.Cmd == frame.CmdFetch {
			fe := frame.Fetch(f.Body)
			if fe.Req() != req {
				t.Fatalf("fetch answer for request %d, want %d", fe.Req(), req)
			}
			return msgs, fe
		}
		msgs = append(msgs, frame.Msg(f.Body))
	}
}

// lookupJSON sends a lookup and returns its answer's JSON; an ERROR fails.
func lookupJSON(t testing.TB, c *client.Conn, cmd frame.Cmd, target uint64) []byte {
	t.Helper()
	req, _ := c.Lookup(cmd, target)
	for {
		f := recvCmd2(t, c, cmd, frame.CmdError)
		if f.Cmd == frame.CmdError {
			t.Fatalf("%s about %d: %v", cmd, target, client.ParseServerError(f))
		}
		if l := frame.Lookup(f.Body); l.Req() == req {
			return append([]byte(nil), l.JSON()...)
		}
	}
}

// wantError waits for an ERROR with this ref and checks its code.
func wantError(t testing.TB, c *client.Conn, ref uint64, code uint16, what string) *client.ServerError {
	t.Helper()
	for {
		f := recvCmd(t, c, frame.CmdError)
		e := client.ParseServerError(f).(*client.ServerError)
		if e.Ref != ref {
			continue
		}
		if e.Code != code {
			t.Fatalf("%s: ERROR %d %q, want code %d", what, e.Code, e.Text, code)
		}
		return e
	}
}

// ---- 1. a session reads its own acks

func TestFetchAfterAckReturnsNothingAcked(t *testing.T) { testFetchAfterAck(t, startMyimd(t)) }

func TestFetchAfterAckReturnsNothingAckedMySQL(t *testing.T) {
	testFetchAfterAck(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

// testFetchAfterAck: B fetches 20 stored messages, acks them all and
// fetches again at once, five times over: the second fetch never returns
// what was acked, though the deletes run on other workers.
func testFetchAfterAck(t *testing.T, p *proc) {
	p.register(t, "ann", "password-ann")
	ann := p.connect(t, "ann", newDevice(t))
	const n = 20
	for round := 0; round < 5; round++ {
		// A recipient per round, offline while ann sends: what she sends
		// is stored.
		name := fmt.Sprintf("ben%d", round)
		benID := p.register(t, name, "password-"+name)
		for i := 0; i < n; i++ {
			if _, err := ann.conn.SendMsg(benID, frame.QoS1, []byte(fmt.Sprintf("m%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < n; i++ {
			if a := frame.Ack(recvCmd(t, ann.conn, frame.CmdAck).Body); a.Status() != frame.AckStored {
				t.Fatalf("round %d: ack status %d, want stored", round, a.Status())
			}
		}
		ben := p.connect(t, name, newDevice(t))
		// The stored messages come as the FETCH's page or pushed by the
		// drain that an online session gets; either way each once.
		msgs, _ := fetchPage(t, ben.conn, frame.FetchP2P, 0, 100)
		for len(msgs) < n {
			msgs = append(msgs, frame.Msg(recvCmd(t, ben.conn, frame.CmdMsg).Body))
		}
		seen := map[uint64]bool{}
		for _, m := range msgs {
			seen[m.MID()] = true
		}
		if len(msgs) != n || len(seen) != n {
			t.Fatalf("round %d: got %d messages, %d distinct, want %d", round, len(msgs), len(seen), n)
		}
		for _, m := range msgs {
			if err := ben.conn.Ack(m.MID(), m.From()); err != nil {
				t.Fatal(err)
			}
		}
		again, fe := fetchPage(t, ben.conn, frame.FetchP2P, 0, 100)
		if len(again) != 0 || fe.Count() != 0 {
			var first, second []uint64
			for _, m := range msgs {
				first = append(first, m.MID())
			}
			for _, m := range again {
				second = append(second, m.MID())
			}
			t.Fatalf("round %d: a FETCH right after acking all %d returned %d of them: acked %v, got %v", round, n, len(again), first, second)
		}
		ben.conn.Close()
	}
}

// ---- 2. group paging walks forward and ends, across groups

func TestGroupFetchPagesForward(t *testing.T) { testGroupPaging(t, startMyimd(t)) }

func TestGroupFetchPagesForwardMySQL(t *testing.T) {
	testGroupPaging(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

func testGroupPaging(t *testing.T, p *proc) {
	p.register(t, "gia", "password-gia")
	p.register(t, "gus", "password-gus")
	gia := p.connect(t, "gia", newDevice(t))
	gus := p.connect(t, "gus", newDevice(t))
	var groups [2]uint64
	for i := range groups {
		req, _ := gia.conn.Group(frame.GroupCreate, 0, []byte(fmt.Sprintf(`{"name":"g%d","open":true}`, i)))
		groups[i], _ = groupReply(t, gia.conn, req)
		req, _ = gus.conn.Group(frame.GroupJoin, groups[i], nil)
		groupReply(t, gus.conn, req)
	}
	gus.conn.Close()
	type key struct{ group, seq uint64 }
	var want []key
	for i, g := range groups {
		for seq := uint64(1); seq <= uint64(3+i); seq++ {
			_ = gia.conn.SendMsgCID(frame.CmdGroupMsg, g, frame.QoS1, gia.conn.NewCID(), []byte(fmt.Sprintf("%d/%d", g, seq)))
			recvCmd(t, gia.conn, frame.CmdAck)
			want = append(want, key{g, seq})
		}
	}
	gus = p.connect(t, "gus", gus.dev)
	// Pages of one, following the documented cursor, until "more" clears.
	var got []key
	cursor := uint64(0)
	for page := 0; ; page++ {
		if page > 2*len(want) {
			t.Fatalf("paging does not end: %d pages for %d messages, got %v", page, len(want), got)
		}
		msgs, fe := fetchPage(t, gus.conn, frame.FetchGroup, cursor, 1)
		for _, m := range msgs {
			got = append(got, key{m.To(), m.MID()})
		}
		if fe.Flags()&frame.FetchMore == 0 {
			break
		}
		cursor = fe.Cursor()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged %v, want %v", got, want)
	}
	// Read your own acks: after GROUP_READ for all, a fetch from the start
	// returns nothing.
	_ = gus.conn.AckGroup(groups[0], 3)
	_ = gus.conn.AckGroup(groups[1], 4)
	if msgs, _ := fetchPage(t, gus.conn, frame.FetchGroup, 0, 100); len(msgs) != 0 {
		t.Fatalf("a group FETCH right after GROUP_READ returned %d acked messages", len(msgs))
	}
}

// ---- 3. presence text reaches friends; 11.9 presence only to friends

func TestPresenceTextReachesFriends(t *testing.T) {
	p := startMyimd(t)
	for _, n := range []string{"pia", "pam", "sid"} {
		p.register(t, n, "password-"+n)
	}
	pia := p.connect(t, "pia", newDevice(t))
	pam := p.connect(t, "pam", newDevice(t))
	p.befriend(t, pia, pam)
	_ = pam.conn.SetPresence(frame.StatusBusy, "in a meeting")
	n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body)
	if n.User() != pam.id || n.Status() != frame.StatusBusy || string(n.Text()) != "in a meeting" {
		t.Fatalf("FRIEND_NOTIFY user %d status %d text %q", n.User(), n.Status(), n.Text())
	}
	want := fmt.Sprintf(`[{"user":%d,"status":3,"text":"in a meeting"}]`, pam.id)
	if js := lookupJSON(t, pia.conn, frame.CmdFriendsOnline, 0); string(js) != want {
		t.Fatalf("FRIENDS_ONLINE %s, want %s", js, want)
	}
	var info struct {
		Status *byte  `json:"status"`
		Text   string `json:"text"`
	}
	_ = sonic.Unmarshal(lookupJSON(t, pia.conn, frame.CmdFriendInfo, pam.id), &info)
	if info.Status == nil || *info.Status != frame.StatusBusy || info.Text != "in a meeting" {
		t.Fatalf("FRIEND_INFO status %v text %q", info.Status, info.Text)
	}
	// A new text alone is news too.
	_ = pam.conn.SetPresence(frame.StatusBusy, "back at 3")
	if n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body); string(n.Text()) != "back at 3" {
		t.Fatalf("text change notified as %q", n.Text())
	}
	// A second device online outranks busy; when it leaves, friends see
	// the first device's status and text again.
	pam2 := p.connect(t, "pam", newDevice(t))
	if n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body); n.Status() != frame.StatusOnline || len(n.Text()) != 0 {
		t.Fatalf("second device: status %d text %q", n.Status(), n.Text())
	}
	_ = pam2.conn.Bye()
	if n := frame.Presence(recvCmd(t, pia.conn, frame.CmdFriendNotify).Body); n.Status() != frame.StatusBusy || string(n.Text()) != "back at 3" {
		t.Fatalf("after the second device left: status %d text %q", n.Status(), n.Text())
	}
	// Oversized or broken text is refused.
	_ = pam.conn.SetPresence(frame.StatusAway, strings.Repeat("x", 256))
	wantError(t, pam.conn, 0, frame.ErrCodeBadRequest, "256-byte status text")
}

// TestSignatureHidesPresenceFromStrangers: SIGNATURE answers anyone with
// the name and signature, but the live status only to the user and its
// friends.
func TestSignatureHidesPresenceFromStrangers(t *testing.T) {
	p := startMyimd(t)
	for _, n := range []string{"pia", "pam", "sid"} {
		p.register(t, n, "password-"+n)
	}
	pia := p.connect(t, "pia", newDevice(t))
	pam := p.connect(t, "pam", newDevice(t))
	sid := p.connect(t, "sid", newDevice(t))
	p.befriend(t, pia, pam)
	_ = pam.conn.SetPresence(frame.StatusAway, "lunch")
	recvCmd(t, pia.conn, frame.CmdFriendNotify)

	js := lookupJSON(t, sid.conn, frame.CmdSignature, pam.id)
	if !bytes.Contains(js, []byte(`"name":"pam"`)) || bytes.Contains(js, []byte(`"status"`)) || bytes.Contains(js, []byte("lunch")) {
		t.Fatalf("a stranger's SIGNATURE lookup shows presence: %s", js)
	}
	// pam going offline is not visible to sid either.
	for _, c := range []*user{pia, pam} {
		js := lookupJSON(t, c.conn, frame.CmdSignature, pam.id)
		if !bytes.Contains(js, []byte(`"status":2`)) || !bytes.Contains(js, []byte(`"text":"lunch"`)) {
			t.Fatalf("user %d sees %s", c.id, js)
		}
	}
	// Target 0 is oneself.
	if js := lookupJSON(t, pam.conn, frame.CmdSignature, 0); !bytes.Contains(js, []byte(fmt.Sprintf(`"user":%d`, pam.id))) {
		t.Fatalf("SIGNATURE target 0: %s", js)
	}
}

// ---- 4. invalid requests are refused for good; one mapping for both APIs

func TestInvalidRequestsAreNotRetry(t *testing.T) { testRefusals(t, startMyimd(t)) }

func TestInvalidRequestsAreNotRetryMySQL(t *testing.T) {
	testRefusals(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

func testRefusals(t *testing.T, p *proc) {
	for _, n := range []string{"ria", "rob", "ray"} {
		p.register(t, n, "password-"+n)
	}
	ria := p.connect(t, "ria", newDevice(t))
	rob := p.connect(t, "rob", newDevice(t))
	ray := p.connect(t, "ray", newDevice(t))
	p.befriend(t, ria, rob)
	tok := ria.login.Token
	for _, c := range []struct {
		what, method, path, body string
		status                   int
	}{
		{"accept a request from oneself", "POST", "/v1/friends/accept", fmt.Sprintf(`{"from":%d}`, ria.id), 400},
		{"accept a request from user 0", "POST", "/v1/friends/accept", `{"from":0}`, 400},
		{"unfriend oneself", "DELETE", fmt.Sprintf("/v1/friends/%d", ria.id), "", 400},
		{"create a group with an empty name", "POST", "/v1/groups", `{"name":""}`, 400},
		{"accept a request nobody made", "POST", "/v1/friends/accept", fmt.Sprintf(`{"from":%d}`, ray.id), 404},
		{"join a group that does not exist", "POST", "/v1/groups/999999/join", "", 403},
		{"befriend a friend again", "POST", "/v1/friends/requests", fmt.Sprintf(`{"to":%d}`, rob.id), 409},
	} {
		code, body := p.httpCall(t, c.method, c.path, tok, strings.NewReader(c.body), nil)
		if code.StatusCode != c.status {
			t.Errorf("%s: HTTP %d %s, want %d", c.what, code.StatusCode, body, c.status)
		}
		if bytes.Contains(body, []byte("retry")) {
			t.Errorf("%s: %s says retry", c.what, body)
		}
	}
	// The same over frames.
	req, _ := ria.conn.Group(frame.GroupCreate, 0, []byte(`{"name":""}`))
	wantError(t, ria.conn, uint64(req), frame.ErrCodeBadRequest, "GROUP CREATE with an empty name")
	req, _ = ria.conn.Group(frame.GroupJoin, 999999, nil)
	wantError(t, ria.conn, uint64(req), frame.ErrCodeForbidden, "GROUP JOIN of an unknown group")
	req, _ = ria.conn.Lookup(frame.CmdSignature, 999999)
	wantError(t, ria.conn, uint64(req), frame.ErrCodeNotFound, "SIGNATURE of an unknown user")
	req, _ = ray.conn.Lookup(frame.CmdFriendInfo, ria.id)
	wantError(t, ray.conn, uint64(req), frame.ErrCodeForbidden, "FRIEND_INFO about a stranger")
	req, _ = ria.conn.Group(frame.GroupCreate, 0, []byte(`{"name":"closed"}`))
	group, _ := groupReply(t, ria.conn, req)
	cid := ray.conn.NewCID()
	_ = ray.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, cid, []byte("not a member"))
	wantError(t, ray.conn, cid, frame.ErrCodeForbidden, "GROUP_MSG from a non-member")
}

// ---- 5. setting one's signature and profile

func TestSetProfile(t *testing.T) { testSetProfile(t, startMyimd(t)) }

func TestSetProfileMySQL(t *testing.T) {
	testSetProfile(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

func testSetProfile(t *testing.T, p *proc) {
	for _, n := range []string{"sue", "sam"} {
		p.register(t, n, "password-"+n)
	}
	sue := p.connect(t, "sue", newDevice(t))
	sam := p.connect(t, "sam", newDevice(t))
	p.befriend(t, sue, sam)
	setOver := func(js string) (frame.Lookup, *client.ServerError) {
		t.Helper()
		req, _ := sue.conn.SetProfile([]byte(js))
		for {
			f := recvCmd2(t, sue.conn, frame.CmdProfile, frame.CmdError)
			if f.Cmd == frame.CmdError {
				if e := client.ParseServerError(f).(*client.ServerError); e.Ref == uint64(req) {
					return nil, e
				}
				continue
			}
			if l := frame.Lookup(f.Body); l.Req() == req {
				return l, nil
			}
		}
	}
	l, e := setOver(`{"signature":"on holiday","profile":{"city":"Oslo"}}`)
	if e != nil || l.Target() != sue.id || !bytes.Contains(l.JSON(), []byte(`"signature":"on holiday"`)) ||
		!bytes.Contains(l.JSON(), []byte(`"profile":{"city":"Oslo"}`)) {
		t.Fatalf("PROFILE answer %s, %v", l.JSON(), e)
	}
	// A friend sees it on its next lookup.
	js := lookupJSON(t, sam.conn, frame.CmdFriendInfo, sue.id)
	if !bytes.Contains(js, []byte(`"signature":"on holiday"`)) || !bytes.Contains(js, []byte(`"city":"Oslo"`)) {
		t.Fatalf("friend sees %s", js)
	}
	// A field left out keeps its value.
	if l, e = setOver(`{"signature":"back"}`); e != nil || !bytes.Contains(l.JSON(), []byte(`"city":"Oslo"`)) {
		t.Fatalf("signature only: %s %v", l.JSON(), e)
	}
	// Limits, over frames...
	for _, bad := range []string{
		fmt.Sprintf(`{"signature":%q}`, strings.Repeat("s", 256)),
		`{"profile":[1,2]}`,
		fmt.Sprintf(`{"profile":{"bio":%q}}`, strings.Repeat("b", 5000)),
		`not json`,
	} {
		if _, e := setOver(bad); e == nil || e.Code != frame.ErrCodeBadRequest {
			t.Fatalf("PROFILE %.40s: %v, want BAD_REQUEST", bad, e)
		}
	}
	// ...and over HTTP, where PUT /v1/me takes the same JSON.
	resp, body := p.httpCall(t, "PUT", "/v1/me", sam.login.Token, strings.NewReader(`{"signature":"at work"}`), nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"signature":"at work"`)) {
		t.Fatalf("PUT /v1/me: %d %s", resp.StatusCode, body)
	}
	resp, body = p.httpCall(t, "PUT", "/v1/me", sam.login.Token, strings.NewReader(fmt.Sprintf(`{"signature":%q}`, strings.Repeat("s", 256))), nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("PUT /v1/me with a 256-byte signature: %d %s", resp.StatusCode, body)
	}
	if js := lookupJSON(t, sue.conn, frame.CmdSignature, sam.id); !bytes.Contains(js, []byte(`"signature":"at work"`)) {
		t.Fatalf("after PUT /v1/me sue sees %s", js)
	}
}

// ---- 6. expired group messages are deleted

func TestExpiredGroupMessagesDeleted(t *testing.T) { testGroupSweep(t) }

func TestExpiredGroupMessagesDeletedMySQL(t *testing.T) {
	testGroupSweep(t, "--mysql-dsn", testenv.MySQLDatabase(t))
}

// testGroupSweep: messages that a member never acknowledges expire after
// 1 s and the sweep deletes their rows (the admin group view counts what
// the store holds).
func testGroupSweep(t *testing.T, args ...string) {
	p := startMyimd(t, append(args, "--group-ttl", "1s", "--group-sweep", "200ms", "--admin-secret", "s3cret")...)
	p.register(t, "gia", "password-gia")
	p.register(t, "gus", "password-gus")
	gia := p.connect(t, "gia", newDevice(t))
	gus := p.connect(t, "gus", newDevice(t))
	req, _ := gia.conn.Group(frame.GroupCreate, 0, []byte(`{"name":"short-lived","open":true}`))
	group, _ := groupReply(t, gia.conn, req)
	req, _ = gus.conn.Group(frame.GroupJoin, group, nil)
	groupReply(t, gus.conn, req)
	gus.conn.Close() // never acknowledges: nothing is deleted for being read
	const n = 5
	for i := 0; i < n; i++ {
		_ = gia.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, gia.conn.NewCID(), []byte("soon gone"))
		if a := frame.Ack(recvCmd(t, gia.conn, frame.CmdAck).Body); a.Status() != frame.AckStored {
			t.Fatalf("group ack status %d", a.Status())
		}
	}
	var g struct {
		HighestSeq     uint64 `json:"highest_seq"`
		StoredMessages int    `json:"stored_messages"`
	}
	testenv.WaitFor(t, 30*time.Second, "expired group messages deleted", func() bool {
		code, body := p.call(t, "GET", fmt.Sprintf("/v1/admin/groups/%d", group), "s3cret", "")
		if code != http.StatusOK {
			t.Fatalf("admin group view: %d %s", code, body)
		}
		_ = sonic.Unmarshal(body, &g)
		return g.StoredMessages == 0
	})
	if g.HighestSeq != n {
		t.Fatalf("highest seq %d, want %d", g.HighestSeq, n)
	}
	// The counter is added once the sweep's last batch returns, a moment
	// after the rows are gone.
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("myim_group_purged_total %d", n), func() bool {
		code, body := p.call(t, "GET", "/metrics", "s3cret", "")
		return code == http.StatusOK && bytes.Contains(body, []byte(fmt.Sprintf("myim_group_purged_total %d", n)))
	})
}

// ---- 8. pushed and fetched group messages carry the same DSrv

func TestGroupMsgDSrvAndEcho(t *testing.T) {
	p := startMyimd(t)
	for _, n := range []string{"gia", "gus", "gil"} {
		p.register(t, n, "password-"+n)
	}
	gia := p.connect(t, "gia", newDevice(t))
	gia2 := p.connect(t, "gia", newDevice(t)) // gia's second device
	gus := p.connect(t, "gus", newDevice(t))
	gil := p.connect(t, "gil", newDevice(t))
	req, _ := gia.conn.Group(frame.GroupCreate, 0, []byte(`{"name":"dsrv","open":true}`))
	group, _ := groupReply(t, gia.conn, req)
	for _, u := range []*user{gus, gil} {
		req, _ = u.conn.Group(frame.GroupJoin, group, nil)
		groupReply(t, u.conn, req)
	}
	gil.conn.Close()
	cid := gia.conn.NewCID()
	_ = gia.conn.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, cid, []byte("where from"))
	// The ACK and the sender's echo come in either order: the echo is
	// one of the group's pushes, the ACK a reply to the sender.
	var echo frame.Msg
	for got := 0; got < 2; got++ {
		f := recvCmd2(t, gia.conn, frame.CmdAck, frame.CmdGroupMsg)
		if f.Cmd == frame.CmdGroupMsg {
			echo = frame.Msg(f.Body)
		}
	}
	if echo == nil {
		t.Fatal("two ACKs and no echo")
	}
	pushed := frame.Msg(recvCmd(t, gus.conn, frame.CmdGroupMsg).Body)
	other := frame.Msg(recvCmd(t, gia2.conn, frame.CmdGroupMsg).Body)
	gil = p.connect(t, "gil", gil.dev)
	msgs, _ := fetchPage(t, gil.conn, frame.FetchGroup, 0, 10)
	if len(msgs) != 1 {
		t.Fatalf("gil fetched %d messages", len(msgs))
	}
	fetched := msgs[0]
	ep := gus.login.Servers[0].ID
	for what, m := range map[string]frame.Msg{"pushed": pushed, "sender's other device": other, "sender's echo": echo, "fetched": fetched} {
		if m.DSrv() != ep || m.MID() != 1 || m.From() != gia.id || m.To() != group || m.CID() != cid {
			t.Errorf("%s: dsrv %d (want %d) seq %d from %d to %d cid %d", what, m.DSrv(), ep, m.MID(), m.From(), m.To(), m.CID())
		}
	}
}

// ---- 11.12 file names are validated on every path

func TestFileNamesValidated(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "fay", "password-fay")
	p.register(t, "fox", "password-fox")
	fay := p.connect(t, "fay", newDevice(t))
	fox := p.connect(t, "fox", newDevice(t))
	sum := strings.Repeat("ab", 32)
	bad := map[string]string{
		"../../etc/passwd":       "path separator",
		`..\..\boot.ini`:         "path separator",
		"..":                     "is a path",
		"nul\x00.txt":            "control character",
		"bell\a.txt":             "control character",
		"c1\u0085.txt":           "control character",
		"bad\xff utf8":           "not valid UTF-8",
		strings.Repeat("n", 256): "longer than 255",
		"":                       "empty",
	}
	ctx := ctxT(t, time.Minute)
	for name, why := range bad {
		// HTTP upload.
		resp, body := p.httpCall(t, "PUT", "/v1/files?sha256="+sum+"&name="+urlQuery(name), fay.login.Token,
			strings.NewReader("abc"), nil)
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte(why)) {
			t.Errorf("PUT /v1/files name %q: %d %s, want 400 %q", name, resp.StatusCode, body, why)
		}
		// File server over frames.
		_, err := fay.conn.StartUpload(ctx, name, 3, sum)
		wantServerErr(t, err, frame.ErrCodeBadRequest, why)
		// User-to-user offer.
		js, _ := sonic.Marshal(map[string]any{"name": name, "size": 3, "sha256": sum, "chunk": 1024})
		sendRaw(t, fay, fox.id, 0, frame.FileOffer, 42, 0, js)
		if e := recvErr(t, fay); e.Code != frame.ErrCodeBadRequest || !strings.Contains(e.Text, why) {
			t.Errorf("FILE offer name %q: %d %q, want %q", name, e.Code, e.Text, why)
		}
	}
	// A plain name with spaces and non-ASCII letters is fine.
	if _, err := fay.conn.StartUpload(ctx, "Résumé 2026 (final).pdf", 3, sum); err != nil {
		t.Fatalf("a good name refused: %v", err)
	}
}

// urlQuery escapes s for a query string.
func urlQuery(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// ---- 10. the admin views use the store's device and count methods

func TestAdminViewsShowDevicesAndCounts(t *testing.T) {
	p := startMyimd(t, "--admin-secret", "s3cret")
	p.register(t, "ann", "password-ann")
	benID := p.register(t, "ben", "password-ben")
	ann := p.connect(t, "ann", newDevice(t))
	for i := 0; i < 2; i++ {
		_, _ = ann.conn.SendMsg(benID, frame.QoS1, []byte("wait for me"))
		recvCmd(t, ann.conn, frame.CmdAck)
	}
	var u struct {
		Devices []struct {
			Device string `json:"device"`
		} `json:"devices"`
		Offline int `json:"offline"`
	}
	code, body := p.call(t, "GET", fmt.Sprintf("/v1/admin/users/%d", ann.id), "s3cret", "")
	if _ = sonic.Unmarshal(body, &u); code != http.StatusOK || len(u.Devices) != 1 || len(u.Devices[0].Device) != 64 {
		t.Fatalf("ann: %d %s", code, body)
	}
	code, body = p.call(t, "GET", fmt.Sprintf("/v1/admin/users/%d", benID), "s3cret", "")
	if u.Devices, u.Offline = nil, 0; sonic.Unmarshal(body, &u) != nil || code != http.StatusOK || len(u.Devices) != 0 || u.Offline != 2 {
		t.Fatalf("ben: %d %s", code, body)
	}
	if code, body := p.call(t, "GET", "/v1/admin/groups/12345", "s3cret", ""); code != http.StatusNotFound {
		t.Fatalf("unknown group: %d %s", code, body)
	}
}
