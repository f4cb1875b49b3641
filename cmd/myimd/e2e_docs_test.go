package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// The tests in this file keep docs/ true against a real myimd.

// rootPubRe is the form docs/protocol.md gives root.pub.
var rootPubRe = regexp.MustCompile(`^[0-9a-f]{8}:[A-Za-z0-9_-]{43}\n$`)

func TestRootPubFormat(t *testing.T) {
	p := startMyimd(t)
	b, err := os.ReadFile(filepath.Join(p.dir, "root.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if !rootPubRe.Match(b) {
		t.Fatalf("root.pub is %q, not <8 hex digits>:<43 base64url characters> and a line feed", b)
	}
	p.roots(t) // and the reader takes it
}

// docJSON is a named JSON block of docs/protocol.md: a "Schema: name" or
// "Example: name" line, then a ```json block.
func docJSON(t testing.TB, path string) (schemas, examples map[string][]byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	schemas, examples = map[string][]byte{}, map[string][]byte{}
	var into map[string][]byte
	var name string
	var block *bytes.Buffer
	for i, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case block != nil && l == "```":
			if _, dup := into[name]; dup {
				t.Fatalf("%s:%d: %q given twice", path, i+1, name)
			}
			into[name] = block.Bytes()
			block, into = nil, nil
		case block != nil:
			block.WriteString(line + "\n")
		case strings.HasPrefix(l, "Schema: "):
			into, name = schemas, strings.TrimPrefix(l, "Schema: ")
		case strings.HasPrefix(l, "Example: "):
			into, name = examples, strings.TrimPrefix(l, "Example: ")
		case l == "```json" && into != nil:
			block = &bytes.Buffer{}
		case l != "":
			into = nil
		}
	}
	return schemas, examples
}

// answerSchemas loads the JSON answers' schemas of docs/protocol.md and
// checks every example against its schema.
func answerSchemas(t testing.TB) map[string]*openapi3.Schema {
	t.Helper()
	schemas, examples := docJSON(t, "../../docs/protocol.md")
	out := map[string]*openapi3.Schema{}
	for name, b := range schemas {
		s := &openapi3.Schema{}
		if err := json.Unmarshal(b, s); err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		if err := s.Validate(context.Background()); err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		out[name] = s
		ex, ok := examples[name]
		if !ok {
			t.Errorf("schema %s has no example", name)
			continue
		}
		if err := checkJSON(s, ex); err != nil {
			t.Errorf("example %s: %v", name, err)
		}
	}
	for name := range examples {
		if _, ok := schemas[name]; !ok {
			t.Errorf("example %s has no schema", name)
		}
	}
	return out
}

// checkJSON validates one JSON document against a schema.
func checkJSON(s *openapi3.Schema, doc []byte) error {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return err
	}
	return s.VisitJSON(v)
}

// answerChecker checks real answers against the doc's schemas and
// remembers which schemas real answers covered.
type answerChecker struct {
	t       testing.TB
	schemas map[string]*openapi3.Schema
	seen    map[string]int
}

func (a *answerChecker) check(name, what string, doc []byte) {
	a.t.Helper()
	s, ok := a.schemas[name]
	if !ok {
		a.t.Fatalf("docs/protocol.md has no schema %s", name)
	}
	if err := checkJSON(s, doc); err != nil {
		a.t.Errorf("%s answered %s, which breaks schema %s: %v", what, doc, name, err)
	}
	a.seen[name]++
}

// lookupAnswer waits for the answer to a lookup request.
func lookupAnswer(t testing.TB, c *client.Conn, cmd frame.Cmd, req uint32) (frame.Lookup, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool {
		switch f.Cmd {
		case cmd:
			return frame.Lookup(f.Body).Req() == req
		case frame.CmdError:
			return frame.Error(f.Body).Ref() == uint64(req)
		}
		return false
	})
	if err != nil {
		t.Fatalf("%v answer: %v", cmd, err)
	}
	if f.Cmd == frame.CmdError {
		return nil, client.ParseServerError(f)
	}
	return frame.Lookup(f.Body), nil
}

// TestJSONAnswersMatchDocs gets every kind of JSON answer from a real
// myimd, over frames and, for groups, over HTTP, and checks each against
// the schema docs/protocol.md gives it.
func TestJSONAnswersMatchDocs(t *testing.T) {
	a := &answerChecker{t: t, schemas: answerSchemas(t), seen: map[string]int{}}
	p := startMyimd(t)
	for _, n := range []string{"jo", "kim", "lu"} {
		p.register(t, n, "password-"+n)
	}
	jo := p.connect(t, "jo", newDevice(t))
	kim := p.connect(t, "kim", newDevice(t))
	lu := p.connect(t, "lu", newDevice(t))
	if code, body := p.post(t, "/v1/friends/requests", jo.login.Token, fmt.Sprintf(`{"to":%d}`, kim.id)); code != http.StatusAccepted {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := p.post(t, "/v1/friends/accept", kim.login.Token, fmt.Sprintf(`{"from":%d}`, jo.id)); code != http.StatusOK {
		t.Fatalf("accept: %d %s", code, body)
	}

	// SIGNATURE with Target 0 answers for oneself, with one's own id.
	req, _ := jo.conn.Lookup(frame.CmdSignature, 0)
	l, err := lookupAnswer(t, jo.conn, frame.CmdSignature, req)
	if err != nil || l.Target() != jo.id {
		t.Fatalf("SIGNATURE of oneself: target %d, %v", l.Target(), err)
	}
	a.check("user-card", "SIGNATURE target 0", l.JSON())
	var card struct {
		User uint64 `json:"user"`
		Name string `json:"name"`
	}
	_ = json.Unmarshal(l.JSON(), &card)
	if card.User != jo.id || card.Name != "jo" {
		t.Fatalf("SIGNATURE of oneself: %s", l.JSON())
	}
	req, _ = jo.conn.Lookup(frame.CmdSignature, lu.id)
	l, err = lookupAnswer(t, jo.conn, frame.CmdSignature, req)
	if err != nil {
		t.Fatal(err)
	}
	a.check("user-card", "SIGNATURE of a stranger", l.JSON())
	req, _ = jo.conn.LookupName("lu")
	l, err = lookupAnswer(t, jo.conn, frame.CmdSignature, req)
	if err != nil || l.Target() != lu.id {
		t.Fatalf("SIGNATURE by name: target %d, %v", l.Target(), err)
	}
	a.check("user-card", "SIGNATURE by name", l.JSON())
	req, _ = jo.conn.Lookup(frame.CmdFriendInfo, kim.id)
	l, err = lookupAnswer(t, jo.conn, frame.CmdFriendInfo, req)
	if err != nil {
		t.Fatal(err)
	}
	a.check("user-card", "FRIEND_INFO", l.JSON())
	req, _ = jo.conn.Lookup(frame.CmdFriendsOnline, 0)
	l, err = lookupAnswer(t, jo.conn, frame.CmdFriendsOnline, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(l.JSON()), fmt.Sprintf(`"user":%d`, kim.id)) {
		t.Fatalf("FRIENDS_ONLINE without kim: %s", l.JSON())
	}
	a.check("friends-online", "FRIENDS_ONLINE", l.JSON())
	req, _ = lu.conn.Lookup(frame.CmdFriendsOnline, 0)
	l, err = lookupAnswer(t, lu.conn, frame.CmdFriendsOnline, req)
	if err != nil {
		t.Fatal(err)
	}
	a.check("friends-online", "FRIENDS_ONLINE without friends", l.JSON())
	req, _ = jo.conn.Lookup(frame.CmdServerList, 0)
	l, err = lookupAnswer(t, jo.conn, frame.CmdServerList, req)
	if err != nil {
		t.Fatal(err)
	}
	a.check("server-list", "SERVER_LIST", l.JSON())

	// Presence text and the profile, as friends and the user see them.
	_ = kim.conn.SetPresence(frame.StatusBusy, "in a meeting")
	testenv.WaitFor(t, 10*time.Second, "kim's text in FRIENDS_ONLINE", func() bool {
		req, _ := jo.conn.Lookup(frame.CmdFriendsOnline, 0)
		l, err := lookupAnswer(t, jo.conn, frame.CmdFriendsOnline, req)
		return err == nil && strings.Contains(string(l.JSON()), `"text":"in a meeting"`)
	})
	req, _ = jo.conn.Lookup(frame.CmdFriendsOnline, 0)
	if l, err = lookupAnswer(t, jo.conn, frame.CmdFriendsOnline, req); err != nil {
		t.Fatal(err)
	}
	a.check("friends-online", "FRIENDS_ONLINE with a status text", l.JSON())
	req, _ = kim.conn.SetProfile([]byte(`{"signature":"on holiday","profile":{"city":"Oslo"}}`))
	if l, err = lookupAnswer(t, kim.conn, frame.CmdProfile, req); err != nil {
		t.Fatal(err)
	}
	a.check("user-card", "PROFILE", l.JSON())
	req, _ = jo.conn.Lookup(frame.CmdFriendInfo, kim.id)
	if l, err = lookupAnswer(t, jo.conn, frame.CmdFriendInfo, req); err != nil {
		t.Fatal(err)
	}
	a.check("user-card", "FRIEND_INFO with text and profile", l.JSON())
	resp, body := p.httpCall(t, "PUT", "/v1/me", jo.login.Token, strings.NewReader(`{"signature":"at work"}`), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/me: %d %s", resp.StatusCode, body)
	}
	a.check("user-card", "PUT /v1/me", body)

	// Every group operation, over frames, then over HTTP.
	op := func(c *user, o byte, group uint64, js, schema string) []byte {
		t.Helper()
		out, err := groupCall(t, c.conn, o, group, js)
		if err != nil {
			t.Fatalf("group op %d: %v", o, err)
		}
		a.check(schema, fmt.Sprintf("GROUP op %d", o), out)
		return out
	}
	var info struct {
		Group uint64 `json:"group"`
	}
	_ = json.Unmarshal(op(jo, frame.GroupCreate, 0, `{"name":"docs"}`, "group-info"), &info)
	g := info.Group
	op(jo, frame.GroupList, 0, "", "group-list")
	op(lu, frame.GroupList, 0, "", "group-list")
	op(jo, frame.GroupInvite, g, fmt.Sprintf(`{"user":%d}`, kim.id), "group-membership")
	op(jo, frame.GroupRole, g, fmt.Sprintf(`{"user":%d,"role":"admin"}`, kim.id), "group-membership")
	op(kim, frame.GroupMembers, g, "", "group-member-list")
	op(jo, frame.GroupOpen, g, `{"open":true}`, "group-info")
	joined := op(lu, frame.GroupJoin, g, "", "group-membership")
	if !strings.Contains(string(joined), `"join_seq":0`) {
		t.Fatalf("JOIN of a group without messages: %s, want join_seq 0 present", joined)
	}
	op(kim, frame.GroupRemove, g, fmt.Sprintf(`{"user":%d}`, lu.id), "group-membership")
	op(lu, frame.GroupJoin, g, "", "group-membership")
	op(lu, frame.GroupLeave, g, "", "group-membership")

	httpOp := func(u *user, method, path, body string, want int, schema string) {
		t.Helper()
		code, out := p.call(t, method, path, u.login.Token, body)
		if code != want {
			t.Fatalf("%s %s: %d %s", method, path, code, out)
		}
		a.check(schema, method+" "+path, out)
	}
	gp := fmt.Sprintf("/v1/groups/%d", g)
	httpOp(lu, "POST", gp+"/join", "", http.StatusOK, "group-membership")
	httpOp(jo, "POST", gp+"/role", fmt.Sprintf(`{"user":%d,"role":"member"}`, kim.id), http.StatusOK, "group-membership")
	httpOp(jo, "POST", gp+"/remove", fmt.Sprintf(`{"user":%d}`, lu.id), http.StatusOK, "group-membership")
	httpOp(jo, "POST", gp+"/invite", fmt.Sprintf(`{"user":%d}`, lu.id), http.StatusOK, "group-membership")
	httpOp(lu, "GET", gp+"/members", "", http.StatusOK, "group-member-list")
	httpOp(jo, "PATCH", gp, `{"open":false}`, http.StatusOK, "group-info")
	httpOp(jo, "GET", "/v1/groups", "", http.StatusOK, "group-list")
	httpOp(jo, "POST", "/v1/groups", `{"name":"over http","open":true}`, http.StatusCreated, "group-info")

	for name := range a.schemas {
		if a.seen[name] == 0 {
			t.Errorf("no real answer checked against schema %s", name)
		}
	}
}

// TestFindUserByName looks users up by name over frames and HTTP, and
// spends the budget the privacy rule sets.
func TestFindUserByName(t *testing.T) {
	p := startMyimd(t)
	for _, n := range []string{"ria", "sol"} {
		p.register(t, n, "password-"+n)
	}
	ria := p.connect(t, "ria", newDevice(t))
	sol := p.connect(t, "sol", newDevice(t))
	code, body := p.call(t, "GET", "/v1/users?name=sol", ria.login.Token, "")
	if want := fmt.Sprintf(`{"user":%d,"name":"sol","signature":""}`, sol.id); code != http.StatusOK || string(body) != want {
		t.Fatalf("GET /v1/users?name=sol: %d %s, want %s", code, body, want)
	}
	if code, _ := p.call(t, "GET", "/v1/users?name=sol", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous lookup: %d", code)
	}
	for _, name := range []string{"SOL", "so", "s%25", ""} { // exact names only
		if code, body := p.call(t, "GET", "/v1/users?name="+name, ria.login.Token, ""); code != http.StatusNotFound {
			t.Fatalf("lookup of %q: %d %s", name, code, body)
		}
	}
	req, _ := ria.conn.LookupName("nobody")
	_, err := lookupAnswer(t, ria.conn, frame.CmdSignature, req)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such user")
	// The budget: lookups, hits and misses, until one is refused; then
	// HTTP is refused too, since both share it.
	refused := false
	for i := 0; i < 100 && !refused; i++ {
		req, _ := ria.conn.LookupName("sol")
		l, err := lookupAnswer(t, ria.conn, frame.CmdSignature, req)
		if err != nil {
			wantServerErr(t, err, frame.ErrCodeRetry, "too many lookups")
			refused = true
			break
		}
		if l.Target() != sol.id {
			t.Fatalf("lookup of sol: target %d", l.Target())
		}
	}
	if !refused {
		t.Fatal("100 lookups by name in a row, none refused")
	}
	resp, body := p.httpCall(t, "GET", "/v1/users?name=sol", ria.login.Token, nil, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP lookup over the budget: %d %s", resp.StatusCode, body)
	}
	// Another user's budget is its own.
	code, _ = p.call(t, "GET", "/v1/users?name=ria", sol.login.Token, "")
	if code != http.StatusOK {
		t.Fatalf("sol's lookup: %d", code)
	}
	// Walking ids: SIGNATURE lookups of a stranger run out too (a larger
	// budget), while looking oneself up never does.
	refused = false
	for i := 0; i < 2000 && !refused; i++ {
		req, _ := ria.conn.Lookup(frame.CmdSignature, sol.id)
		if _, err := lookupAnswer(t, ria.conn, frame.CmdSignature, req); err != nil {
			wantServerErr(t, err, frame.ErrCodeRetry, "too many lookups")
			refused = true
		}
	}
	if !refused {
		t.Fatal("2,000 SIGNATURE lookups of a stranger in a row, none refused")
	}
	req, _ = ria.conn.Lookup(frame.CmdSignature, 0)
	if l, err := lookupAnswer(t, ria.conn, frame.CmdSignature, req); err != nil || l.Target() != ria.id {
		t.Fatalf("looking oneself up over the budget: %v", err)
	}
}
