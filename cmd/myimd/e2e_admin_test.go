package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// TestAdminRevokeAndKickDevice closes one device's session, then revokes
// another's token: its session closes at once and the token no longer
// opens one, while a fresh login does.
func TestAdminRevokeAndKickDevice(t *testing.T) {
	const secret = "s3cret-for-tests"
	p := startMyimd(t, "--admin-secret", secret)
	p.register(t, "kay", "password-kay")
	devA, devB := newDevice(t), newDevice(t)
	a := p.connect(t, "kay", devA)
	b := p.connect(t, "kay", devB)

	code, body := p.call(t, "GET", "/v1/admin/users/online", secret, "")
	var online struct {
		Sessions []struct {
			User    uint64 `json:"user"`
			Session uint64 `json:"session"`
			SID     string `json:"sid"`
			Device  string `json:"device"`
		} `json:"sessions"`
	}
	if code != http.StatusOK || sonic.Unmarshal(body, &online) != nil || len(online.Sessions) != 2 {
		t.Fatalf("online: %d %s", code, body)
	}
	for _, s := range online.Sessions {
		if s.SID == "" || len(s.Device) != 64 {
			t.Fatalf("session without sid or device: %+v", s)
		}
	}
	hash := session.DeviceKeyHash(devA.PublicKey().Bytes())
	code, body = p.call(t, "POST", fmt.Sprintf("/v1/admin/users/%d/devices/%s/kick", a.id, hex.EncodeToString(hash[:])), secret, "")
	if code != http.StatusOK {
		t.Fatalf("kick device: %d %s", code, body)
	}
	select {
	case <-a.conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("kicked device still connected")
	}
	if _, err := b.conn.Ping(context.Background()); err != nil {
		t.Fatalf("the other device was closed too: %v", err)
	}

	// Revoke b's token: b is closed, its token opens nothing any more.
	if code, body := p.call(t, "POST", "/v1/admin/tokens/revoke", secret,
		fmt.Sprintf(`{"token":%q}`, b.login.Token)); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	select {
	case <-b.conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("revoked session still open")
	}
	s := b.login.Servers[0]
	_, err := client.Dial(context.Background(), p.cfg(t, devB), b.login.EndpointAddr(s), s.Key, b.login.Token)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Text != "token revoked" {
		t.Fatalf("revoked token: %v", err)
	}
	// A fresh login on that device gets a new token that works, and the
	// frames it exchanges show in the per-command metrics.
	again := p.connect(t, "kay", devB)
	req, _ := again.conn.Lookup(frame.CmdSignature, 0)
	if l := frame.Lookup(recvCmd(t, again.conn, frame.CmdSignature).Body); l.Req() != req {
		t.Fatal("lookup after re-login")
	}
	if n := p.metric(t, `myim_session_frames_total{cmd="SIGNATURE",dir="in"}`); n < 1 {
		t.Fatalf("frames by command: %v", n)
	}
}

// TestRevokedTokenRefusedByHTTPAndAfterRestart revokes a token with the
// admin API and uses it anyway: the HTTP API refuses it (it took it
// before), and after a restart both the HTTP API and the endpoint still do,
// while a fresh token of the same user works.
func TestRevokedTokenRefusedByHTTPAndAfterRestart(t *testing.T) {
	const secret = "s3cret-for-tests"
	p := startMyimd(t, "--admin-secret", secret)
	p.register(t, "rex", "password-rex")
	dev := newDevice(t)
	u := p.connect(t, "rex", dev)
	tok := u.login.Token
	if resp, body := p.httpCall(t, "GET", "/v1/friends", tok, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the revocation: %d %s", resp.StatusCode, body)
	}
	if code, body := p.call(t, "POST", "/v1/admin/tokens/revoke", secret, fmt.Sprintf(`{"token":%q}`, tok)); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	refused := func(p *proc, when string) {
		t.Helper()
		if resp, body := p.httpCall(t, "GET", "/v1/friends", tok, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: HTTP API answered %d %s to a revoked token", when, resp.StatusCode, body)
		}
		s := u.login.Servers[0]
		_, err := client.Dial(context.Background(), p.cfg(t, dev), p.addrs["endpoint"], s.Key, tok)
		var se *client.ServerError
		if !errors.As(err, &se) || se.Text != "token revoked" {
			t.Fatalf("%s: endpoint: %v, want token revoked", when, err)
		}
	}
	refused(p, "after the revocation")
	p.stop(t)
	p2 := p.restart(t)
	refused(p2, "after a restart")
	again := p2.connect(t, "rex", dev)
	if resp, body := p2.httpCall(t, "GET", "/v1/friends", again.login.Token, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh token: %d %s", resp.StatusCode, body)
	}
}
