package main

import (
	"context"
	"testing"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
)

// TestWebSocketSession logs in and holds a session over WebSocket (/login
// and /endpoint of --ws-addr) and exchanges QoS 1 messages both ways with
// a client on TCP.
func TestWebSocketSession(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "alice", "password-alice")
	p.register(t, "bob", "password-bob")
	ctx := context.Background()
	dev := newDevice(t)
	cfg := p.cfg(t, dev)
	cfg.WebSocket = &client.WebSocketConfig{Addr: p.addrs["ws"], Origin: "http://" + p.addrs["ws"]}
	res, err := client.Login(ctx, cfg, "", "alice", []byte("password-alice"))
	if err != nil {
		t.Fatalf("login over WebSocket: %v", err)
	}
	ws, err := client.Connect(ctx, cfg, res, res.Servers[0])
	if err != nil {
		t.Fatalf("connect over WebSocket: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	bob := p.connect(t, "bob", newDevice(t))
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
