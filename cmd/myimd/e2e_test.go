package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// The end-to-end tests run a real myimd and talk to it through the SDK.

func (p *proc) roots(t testing.TB) []session.VerifyKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "root.pub"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := session.ParseVerifyKey(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return []session.VerifyKey{k}
}

func (p *proc) register(t testing.TB, name, password string) uint64 {
	t.Helper()
	code, body := p.post(t, "/v1/users", "", fmt.Sprintf(`{"name":%q,"password":%q}`, name, password))
	if code != http.StatusCreated {
		t.Fatalf("register %s: %d %s", name, code, body)
	}
	var out struct {
		ID uint64 `json:"id"`
	}
	_ = sonic.Unmarshal(body, &out)
	return out.ID
}

func (p *proc) post(t testing.TB, path, token, body string) (int, []byte) {
	t.Helper()
	return p.call(t, "POST", path, token, body)
}

func newDevice(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := session.LoadOrCreateDeviceKey(filepath.Join(t.TempDir(), "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (p *proc) cfg(t testing.TB, dev *ecdh.PrivateKey) client.Config {
	return client.Config{Roots: p.roots(t), Device: dev, Fingerprint: session.Fingerprint("test-machine", "myim"),
		DeviceName: "test", DialTimeout: 30 * time.Second}
}

// user is a logged-in, connected test user.
type user struct {
	id    uint64
	dev   *ecdh.PrivateKey
	login *client.LoginResult
	conn  *client.Conn
}

func (p *proc) connect(t testing.TB, name string, dev *ecdh.PrivateKey) *user {
	t.Helper()
	ctx := context.Background()
	res, err := client.Login(ctx, p.cfg(t, dev), p.addrs["login"], name, []byte("password-"+name))
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	if len(res.Servers) == 0 {
		t.Fatal("empty server list")
	}
	c, err := client.Connect(ctx, p.cfg(t, dev), res, res.Servers[0])
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &user{id: res.UserID, dev: dev, login: res, conn: c}
}

func recvCmd(t testing.TB, c *client.Conn, cmd frame.Cmd) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == cmd })
	if err != nil {
		t.Fatalf("waiting for %s: %v", cmd, err)
	}
	return f
}

func TestLoginAndMessageRoundTrip(t *testing.T) {
	p := startMyimd(t)
	aliceID := p.register(t, "alice", "password-alice")
	bobID := p.register(t, "bob", "password-bob")
	alice := p.connect(t, "alice", newDevice(t))
	bob := p.connect(t, "bob", newDevice(t))
	if alice.id != aliceID || bob.id != bobID {
		t.Fatalf("ids %d/%d, registered %d/%d", alice.id, bob.id, aliceID, bobID)
	}
	if !alice.login.NewDevice {
		t.Fatal("first login not flagged as a new device")
	}
	// PING/PONG keep the note's bytes on an encrypted session too.
	if _, err := alice.conn.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A QoS 1 message: bob receives it sealed, acks, alice gets the ack.
	cid, err := alice.conn.SendMsg(bob.id, frame.QoS1, []byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	f := recvCmd(t, bob.conn, frame.CmdMsg)
	m := frame.Msg(f.Body)
	if m.From() != alice.id || string(m.Content()) != "hello bob" || m.MID() == 0 || m.Srv() == 0 || m.DSrv() == 0 {
		t.Fatalf("bob got from=%d %q mid=%d srv=%d dsrv=%d", m.From(), m.Content(), m.MID(), m.Srv(), m.DSrv())
	}
	if err := bob.conn.Ack(m.MID(), m.From()); err != nil {
		t.Fatal(err)
	}
	a := frame.Ack(recvCmd(t, alice.conn, frame.CmdAck).Body)
	if a.CID() != cid || a.MID() != m.MID() || a.Status() != frame.AckDelivered {
		t.Fatalf("ack cid=%d mid=%d status=%d", a.CID(), a.MID(), a.Status())
	}
	// A sender may only be the session's own user.
	body := frame.AppendMsgHeader(nil, frame.MsgHeader{From: bob.id, To: alice.id, CID: 7})
	if err := alice.conn.Send(frame.CmdMsg, frame.QoS1, body); err != nil {
		t.Fatal(err)
	}
	e := frame.Error(recvCmd(t, alice.conn, frame.CmdError).Body)
	if e.Code() != frame.ErrCodeForbidden || e.Ref() != 7 {
		t.Fatalf("forged sender: code %d ref %d", e.Code(), e.Ref())
	}
	// Lookups answer sealed JSON.
	req, _ := alice.conn.Lookup(frame.CmdSignature, bob.id)
	l := frame.Lookup(recvCmd(t, alice.conn, frame.CmdSignature).Body)
	if l.Req() != req || !bytes.Contains(l.JSON(), []byte(`"name":"bob"`)) {
		t.Fatalf("signature lookup: %s", l.JSON())
	}
}

func TestLoginFailuresLeaveServerServing(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "carol", "password-carol")
	ctx := context.Background()
	dev := newDevice(t)
	var se *client.ServerError
	if _, err := client.Login(ctx, p.cfg(t, dev), p.addrs["login"], "carol", []byte("wrong-password")); !errors.As(err, &se) ||
		se.Code != frame.ErrCodeAuthFailed || se.Text != "wrong name or password" {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := client.Login(ctx, p.cfg(t, dev), p.addrs["login"], "nobody", []byte("whatever-pw")); !errors.As(err, &se) ||
		se.Text != "wrong name or password" {
		t.Fatalf("unknown user: %v", err)
	}
	// A client pinning another root refuses the server before sending the
	// password.
	other, _ := session.NewSigningKey()
	cfg := p.cfg(t, dev)
	cfg.Roots = []session.VerifyKey{other.Verify()}
	if _, err := client.Login(ctx, cfg, p.addrs["login"], "carol", []byte("password-carol")); !errors.Is(err, session.ErrCertUnknownRoot) &&
		!errors.Is(err, session.ErrCertSignature) {
		t.Fatalf("foreign root: %v", err)
	}
	// The server still serves.
	p.connect(t, "carol", dev)
}

func TestEndpointRefusesBadTokens(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "dave", "password-dave")
	devA, devB := newDevice(t), newDevice(t)
	dave := p.connect(t, "dave", devA)
	s := dave.login.Servers[0]
	addr := dave.login.EndpointAddr(s)
	ctx := context.Background()
	tokenKey, err := session.LoadSigningKey(filepath.Join(p.dir, "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	aud := fmt.Sprintf("myim:%08x", p.roots(t)[0].ID)
	expired, _ := session.IssueToken(tokenKey, session.TokenRequest{UserID: dave.id, Audience: aud,
		DeviceKey: devA.PublicKey().Bytes(), TTL: time.Hour}, time.Now().Add(-3*time.Hour))
	foreignKey, _ := session.NewSigningKey()
	foreign, _ := session.IssueToken(foreignKey, session.TokenRequest{UserID: dave.id, Audience: aud,
		DeviceKey: devA.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
	cases := []struct {
		name  string
		dev   *ecdh.PrivateKey
		token string
		text  string
	}{
		{"another device's token", devB, dave.login.Token, "token bound to another device"},
		{"expired token", devA, expired, "token expired"},
		{"token from another cluster", devA, foreign, "token signature invalid"},
	}
	for _, tc := range cases {
		_, err := client.Dial(ctx, p.cfg(t, tc.dev), addr, s.Key, tc.token)
		var se *client.ServerError
		if !errors.As(err, &se) || se.Text != tc.text {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// A server list entry whose key the root did not certify is refused
	// before any byte goes to it.
	forged := s
	forged.Key = devB.PublicKey().Bytes()
	if _, err := client.Connect(ctx, p.cfg(t, devA), dave.login, forged); !errors.Is(err, session.ErrCertStaticKey) {
		t.Errorf("forged endpoint key: %v", err)
	}
	if _, err := dave.conn.Ping(ctx); err != nil {
		t.Fatalf("existing session disturbed: %v", err)
	}
}

// rawSession runs the IK handshake by hand so that the test can send bytes
// the SDK never would.
func rawSession(t *testing.T, p *proc, u *user) (net.Conn, *bufio.Reader, *session.Keys) {
	t.Helper()
	s := u.login.Servers[0]
	nc, err := net.Dial("tcp", u.login.EndpointAddr(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	hs, _ := session.NewEndpointClient(nil, u.dev, s.Key, u.login.Token)
	msg1, _ := hs.WriteFrame(nil, nil)
	_, _ = nc.Write(msg1)
	r := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f := readRaw(t, r)
	if _, err := hs.ReadFrame(nil, f); err != nil {
		t.Fatal(err)
	}
	keys, _ := hs.Keys()
	return nc, r, keys
}

func readRaw(t *testing.T, r *bufio.Reader) frame.Frame {
	t.Helper()
	b, _ := r.Peek(4)
	size, err := frame.Split(b, 0)
	if err != nil || size == 0 {
		t.Fatalf("bad frame header % x: %v", b, err)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	return buf
}

// expectCryptoClose reads until the connection closes and wants the sealed
// crypto ERROR last... the server can no longer seal for a peer it cannot
// trust, so it sends the error sealed with its own send key.
func expectClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection not closed")
	}
}

func TestTamperedAndReplayedFramesClose(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "erin", "password-erin")
	erin := p.connect(t, "erin", newDevice(t))
	lookup, _ := frame.AppendLookup(nil, frame.CmdSignature, 1, 0, nil)

	// Tampered: one ciphertext byte flipped.
	nc, _, keys := rawSession(t, p, erin)
	sealed, _ := keys.Seal(nil, frame.CmdSignature, frame.QoS0, frame.Frame(lookup).Body())
	sealed[len(sealed)-5] ^= 0x01
	_, _ = nc.Write(sealed)
	expectClosed(t, nc)

	// Replayed: the same sealed frame twice; the first is answered.
	nc, r, keys := rawSession(t, p, erin)
	sealed, _ = keys.Seal(nil, frame.CmdSignature, frame.QoS0, frame.Frame(lookup).Body())
	_, _ = nc.Write(sealed)
	if f := readRaw(t, r); f.Cmd() != frame.CmdSignature {
		t.Fatalf("first copy: got %s", f.Cmd())
	}
	_, _ = nc.Write(sealed)
	expectClosed(t, nc)

	// The server keeps serving the SDK session.
	if _, err := erin.conn.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeDeadline(t *testing.T) {
	p := startMyimd(t, "--handshake-timeout", "500ms")
	nc, err := net.Dial("tcp", p.addrs["endpoint"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A PING is answered, but does not stand in for the handshake.
	_, _ = nc.Write(frame.Ping)
	start := time.Now()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(nc)
	if !bytes.HasPrefix(out, frame.Pong) || time.Since(start) < 400*time.Millisecond {
		t.Fatalf("got % x after %v", out, time.Since(start))
	}
	f, _, err := frame.Decode(out[3:], 0)
	if err != nil || frame.Error(f.Body()).Code() != frame.ErrCodeUnauthorized {
		t.Fatalf("want an unauthorized error before close, got % x", out)
	}
}

func TestNewDeviceNotice(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "frank", "password-frank")
	devA := newDevice(t)
	first := p.connect(t, "frank", devA)
	if again := p.connect(t, "frank", devA); again.login.NewDevice {
		t.Fatal("known device flagged as new")
	}
	second := p.connect(t, "frank", newDevice(t))
	if !second.login.NewDevice {
		t.Fatal("second device not flagged")
	}
	n := frame.Notice(recvCmd(t, first.conn, frame.CmdNotice).Body)
	if n.Code() != frame.NoticeNewDevice || !bytes.Contains(n.JSON(), []byte("new_device")) {
		t.Fatalf("notice %d %s", n.Code(), n.JSON())
	}
}

// TestMyimctlUserAdd registers a user with the admin command against a real
// myimd, then logs in as that user.
func TestMyimctlUserAdd(t *testing.T) {
	p := startMyimd(t)
	bin := filepath.Join(t.TempDir(), "myimctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../myimctl").CombinedOutput(); err != nil {
		t.Fatalf("build myimctl: %v\n%s", err, out)
	}
	run := func(name, password string) (int, string) {
		cmd := exec.Command(bin, "--http", p.addrs["http"], "user", "add", name)
		cmd.Stdin = strings.NewReader(password + "\n")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := run("hal", "password-hal"); code != 0 || !strings.Contains(out, "user hal created") {
		t.Fatalf("user add: exit %d: %s", code, out)
	}
	if code, out := run("hal", "password-hal"); code != 1 || !strings.Contains(out, "name taken") {
		t.Fatalf("duplicate: exit %d: %s", code, out)
	}
	if code, out := run("ivy", "short"); code != 1 || !strings.Contains(out, "at least 8") {
		t.Fatalf("weak password: exit %d: %s", code, out)
	}
	p.connect(t, "hal", newDevice(t))
}
