package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// groupCall sends one GROUP request and returns the answer's JSON, or the
// ERROR it got instead.
func groupCall(t testing.TB, c *client.Conn, op byte, group uint64, js string) ([]byte, error) {
	t.Helper()
	var body []byte
	if js != "" {
		body = []byte(js)
	}
	req, err := c.Group(op, group, body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool {
		switch f.Cmd {
		case frame.CmdGroup:
			return frame.Group(f.Body).Req() == req
		case frame.CmdError:
			return frame.Error(f.Body).Ref() == uint64(req)
		}
		return false
	})
	if err != nil {
		t.Fatalf("group op %d: %v", op, err)
	}
	if f.Cmd == frame.CmdError {
		return nil, client.ParseServerError(f)
	}
	return frame.Group(f.Body).JSON(), nil
}

// fetchGroup fetches every group message the session may read.
func fetchGroup(t testing.TB, c *client.Conn) []string {
	t.Helper()
	if _, err := c.Fetch(frame.FetchGroup, 0, 100); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		f := recvCmd2(t, c, frame.CmdGroupMsg, frame.CmdFetch)
		if f.Cmd == frame.CmdFetch {
			return got
		}
		got = append(got, string(frame.Msg(f.Body).Content()))
	}
}

func TestGroupAttacks(t *testing.T) { testGroupAttacks(t, startMyimd(t)) }

func TestGroupAttacksMySQL(t *testing.T) {
	testGroupAttacks(t, startMyimd(t, "--mysql-dsn", testenv.MySQLDatabase(t)))
}

// testGroupAttacks is what a user who is not in a group tries against it,
// over frames and HTTP: list its members, join it, read its messages, post
// to it, read a file shared with it. All are refused; then the owner's and
// admins' rights, and the open flag.
func testGroupAttacks(t *testing.T, p *proc) {
	names := []string{"olga", "mal", "ann", "pat", "eve"}
	for _, n := range names {
		p.register(t, n, "password-"+n)
	}
	olga := p.connect(t, "olga", newDevice(t)) // the owner
	mal := p.connect(t, "mal", newDevice(t))   // the attacker
	ann := p.connect(t, "ann", newDevice(t))   // a member, later an admin
	pat := p.connect(t, "pat", newDevice(t))   // a plain member
	eve := p.connect(t, "eve", newDevice(t))   // joins once the group is open

	js, err := groupCall(t, olga.conn, frame.GroupCreate, 0, `{"name":"private"}`)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Group uint64 `json:"group"`
		Owner uint64 `json:"owner"`
		Open  bool   `json:"open"`
	}
	_ = sonic.Unmarshal(js, &info)
	g := info.Group
	if g == 0 || info.Owner != olga.id || info.Open {
		t.Fatalf("created %s", js)
	}
	if _, err := groupCall(t, olga.conn, frame.GroupInvite, g, fmt.Sprintf(`{"user":%d}`, ann.id)); err != nil {
		t.Fatal(err)
	}
	fi, err := olga.conn.Upload(context.Background(), "plan.txt", bytes.NewReader([]byte("the plan")), 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := olga.conn.ShareFile(context.Background(), fi.ID, 0, g); err != nil {
		t.Fatal(err)
	}

	// The attack, over frames: the ids are sequential, so mal knows g.
	const closed = "the group is closed or does not exist"
	_, err = groupCall(t, mal.conn, frame.GroupMembers, g, "")
	wantServerErr(t, err, frame.ErrCodeForbidden, "not a member")
	_, err = groupCall(t, mal.conn, frame.GroupJoin, g, "")
	wantServerErr(t, err, frame.ErrCodeForbidden, closed)
	_, err = groupCall(t, mal.conn, frame.GroupJoin, g+100, "") // no such group: the same answer
	wantServerErr(t, err, frame.ErrCodeForbidden, closed)
	_, err = groupCall(t, mal.conn, frame.GroupInvite, g, fmt.Sprintf(`{"user":%d}`, mal.id+0))
	wantServerErr(t, err, frame.ErrCodeBadRequest, "another user") // inviting oneself
	_, err = groupCall(t, mal.conn, frame.GroupInvite, g, fmt.Sprintf(`{"user":%d}`, eve.id))
	wantServerErr(t, err, frame.ErrCodeForbidden, "not a member")
	_, err = groupCall(t, mal.conn, frame.GroupOpen, g, `{"open":true}`)
	wantServerErr(t, err, frame.ErrCodeForbidden, "not a member")
	// And over HTTP.
	for _, c := range []struct{ method, path, body string }{
		{"GET", fmt.Sprintf("/v1/groups/%d/members", g), ""},
		{"POST", fmt.Sprintf("/v1/groups/%d/join", g), ""},
		{"POST", fmt.Sprintf("/v1/groups/%d/invite", g), fmt.Sprintf(`{"user":%d}`, eve.id)},
		{"PATCH", fmt.Sprintf("/v1/groups/%d", g), `{"open":true}`},
		{"POST", fmt.Sprintf("/v1/groups/%d/role", g), fmt.Sprintf(`{"user":%d,"role":"admin"}`, ann.id)},
	} {
		if code, body := p.call(t, c.method, c.path, mal.login.Token, c.body); code != http.StatusForbidden {
			t.Fatalf("%s %s by a non-member: %d %s", c.method, c.path, code, body)
		}
	}
	// Messages posted now are not for mal, fetched or pushed; mal cannot
	// post; the shared file is not mal's to read.
	_ = olga.conn.SendMsgCID(frame.CmdGroupMsg, g, frame.QoS1, olga.conn.NewCID(), []byte("secret"))
	if a := frame.Ack(recvCmd(t, olga.conn, frame.CmdAck).Body); a.Status() != frame.AckStored {
		t.Fatalf("olga's message: ack status %d", a.Status())
	}
	if got := fetchGroup(t, mal.conn); len(got) != 0 {
		t.Fatalf("mal fetched %q", got)
	}
	cid := mal.conn.NewCID()
	_ = mal.conn.SendMsgCID(frame.CmdGroupMsg, g, frame.QoS1, cid, []byte("spam"))
	if e := frame.Error(recvCmd(t, mal.conn, frame.CmdError).Body); e.Code() != frame.ErrCodeForbidden || e.Ref() != cid {
		t.Fatalf("mal's post: error code %d ref %d", e.Code(), e.Ref())
	}
	_, err = mal.conn.Stat(context.Background(), fi.ID)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such file")
	// ann, online, had it pushed, and fetches it too until she acks it.
	if got := fetchGroup(t, ann.conn); len(got) == 0 || got[len(got)-1] != "secret" {
		t.Fatalf("ann, a member, got %q", got)
	}
	if _, err := ann.conn.Stat(context.Background(), fi.ID); err != nil {
		t.Fatalf("ann reads the shared file: %v", err)
	}

	// Rights: a plain member neither invites nor removes; the owner names
	// an admin, who then invites and removes plain members but not the
	// owner; only the owner opens the group.
	_, err = groupCall(t, ann.conn, frame.GroupInvite, g, fmt.Sprintf(`{"user":%d}`, pat.id))
	wantServerErr(t, err, frame.ErrCodeForbidden, "owner and admins")
	js, err = groupCall(t, olga.conn, frame.GroupRole, g, fmt.Sprintf(`{"user":%d,"role":"admin"}`, ann.id))
	if err != nil || string(js) != fmt.Sprintf(`{"group":%d,"user":%d,"join_seq":0,"role":"admin"}`, g, ann.id) {
		t.Fatalf("make ann admin: %s %v", js, err)
	}
	if _, err := groupCall(t, ann.conn, frame.GroupInvite, g, fmt.Sprintf(`{"user":%d}`, pat.id)); err != nil {
		t.Fatalf("admin invites: %v", err)
	}
	_, err = groupCall(t, pat.conn, frame.GroupRemove, g, fmt.Sprintf(`{"user":%d}`, ann.id))
	wantServerErr(t, err, frame.ErrCodeForbidden, "owner and admins")
	_, err = groupCall(t, ann.conn, frame.GroupRemove, g, fmt.Sprintf(`{"user":%d}`, olga.id))
	wantServerErr(t, err, frame.ErrCodeForbidden, "only the group's owner")
	_, err = groupCall(t, ann.conn, frame.GroupOpen, g, `{"open":true}`)
	wantServerErr(t, err, frame.ErrCodeForbidden, "only the group's owner")
	js, err = groupCall(t, pat.conn, frame.GroupMembers, g, "")
	want := fmt.Sprintf(`{"group":%d,"name":"private","owner":%d,"open":false,"members":[%d,%d,%d],"admins":[%d]}`,
		g, olga.id, olga.id, ann.id, pat.id, ann.id)
	if err != nil || string(js) != want {
		t.Fatalf("members: %s %v, want %s", js, err, want)
	}
	if _, err := groupCall(t, ann.conn, frame.GroupRemove, g, fmt.Sprintf(`{"user":%d}`, pat.id)); err != nil {
		t.Fatalf("admin removes a member: %v", err)
	}
	_, err = groupCall(t, pat.conn, frame.GroupMembers, g, "")
	wantServerErr(t, err, frame.ErrCodeForbidden, "not a member")

	// Open: anyone joins, over HTTP too; the owner leaves last.
	if code, body := p.call(t, "PATCH", fmt.Sprintf("/v1/groups/%d", g), olga.login.Token, `{"open":true}`); code != http.StatusOK {
		t.Fatalf("open: %d %s", code, body)
	}
	code, body := p.post(t, fmt.Sprintf("/v1/groups/%d/join", g), eve.login.Token, "")
	if code != http.StatusOK || string(body) != fmt.Sprintf(`{"group":%d,"user":%d,"join_seq":1,"role":"member"}`, g, eve.id) {
		t.Fatalf("eve joins the open group: %d %s", code, body)
	}
	if code, body := p.post(t, fmt.Sprintf("/v1/groups/%d/leave", g), olga.login.Token, ""); code != http.StatusConflict {
		t.Fatalf("the owner leaves first: %d %s", code, body)
	}
}
