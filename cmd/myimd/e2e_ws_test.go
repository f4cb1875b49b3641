package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
)

// TestWebSocketSession logs in and holds a session over WebSocket (/login
// and /endpoint of --ws-addr) and exchanges QoS 1 messages both ways with
// a client on TCP.
func TestWebSocketSession(t *testing.T) {
	p := startMyimd(t)
	for _, name := range []string{"alice", "bob"} {
		p.register(t, name, "password-"+name)
	}
	wsSession(t, p, &client.WebSocketConfig{Addr: p.addrs["ws"], Origin: "http://" + p.addrs["ws"]})
}

// TestSecureWebSocketSession does the same over wss://, with the HTTP
// listener's certificate from the cluster CA (--http-tls-auto).
func TestSecureWebSocketSession(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(binPath, "cluster", "init", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("cluster init: %v\n%s", err, out)
	}
	p := startMyimdDir(t, dir, "--http-tls-auto")
	ca, err := os.ReadFile(filepath.Join(dir, "cluster-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in cluster-ca.pem")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, name := range []string{"alice", "bob"} {
		resp, err := hc.Post("https://"+p.addrs["http"]+"/v1/users", "application/json",
			strings.NewReader(`{"name":"`+name+`","password":"password-`+name+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("register %s: %s", name, resp.Status)
		}
	}
	wsSession(t, p, &client.WebSocketConfig{Addr: p.addrs["ws"], TLS: &tls.Config{RootCAs: pool}})
}

// wsSession logs alice in over wsc and has her exchange QoS 1 messages
// with bob on TCP; both are registered.
func wsSession(t *testing.T, p *proc, wsc *client.WebSocketConfig) {
	t.Helper()
	ctx := context.Background()
	bob := p.connect(t, "bob", newDevice(t)) // routed while alice logs in
	cfg := p.cfg(t, newDevice(t))
	cfg.WebSocket = wsc
	res, err := client.Login(ctx, cfg, "", "alice", []byte("password-alice"))
	if err != nil {
		t.Fatalf("login over WebSocket: %v", err)
	}
	ws, err := client.Connect(ctx, cfg, res, res.Servers[0])
	if err != nil {
		t.Fatalf("connect over WebSocket: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	if _, err := ws.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	cid, err := ws.SendMsg(bob.id, frame.QoS1, []byte("from a browser's transport"))
	if err != nil {
		t.Fatal(err)
	}
	m := frame.Msg(recvCmd(t, bob.conn, frame.CmdMsg).Body)
	if m.From() != res.UserID || string(m.Content()) != "from a browser's transport" {
		t.Fatalf("bob got from=%d %q", m.From(), m.Content())
	}
	if err := bob.conn.Ack(m.MID(), m.From()); err != nil {
		t.Fatal(err)
	}
	a := frame.Ack(recvCmd(t, ws, frame.CmdAck).Body)
	if a.CID() != cid || a.Status() != frame.AckDelivered {
		t.Fatalf("ack cid=%d status=%d", a.CID(), a.Status())
	}
	if _, err := bob.conn.SendMsg(res.UserID, frame.QoS1, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if m := frame.Msg(recvCmd(t, ws, frame.CmdMsg).Body); string(m.Content()) != "back" {
		t.Fatalf("alice got %q", m.Content())
	}
}
