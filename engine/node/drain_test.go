package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// TestDrainOverTellsEverySession drains a real endpoint with the move
// notices spread over a second: every session is told to move once, and
// new sessions are refused meanwhile.
func TestDrainOverTellsEverySession(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep := endpoint.New(endpoint.Config{ID: 5, Identity: lc.id, Center: lc.ctr})
	le := &linkedEndpoint{ep: ep, srv: startServer(t, ep)}
	var conns []*client.Conn
	for i := range 5 {
		conns = append(conns, lc.dial(t, le, lc.user(t, fmt.Sprintf("d%d", i))))
	}
	late := lc.user(t, "late")
	if n := ep.DrainOver(time.Second); n != 5 || !ep.Draining() {
		t.Fatalf("DrainOver: %d sessions to tell, draining %v", n, ep.Draining())
	}
	for i, c := range conns {
		if n := frame.Notice(recvCmd(t, c, frame.CmdNotice, nil)); n.Code() != frame.NoticeMove {
			t.Fatalf("session %d: notice %d, want move", i, n.Code())
		}
	}
	before := ep.Handshakes().Failed[im.HandshakeDraining].Load()
	if err := dialErr(lc, le, late); err == nil {
		t.Fatal("a new session was taken while draining")
	}
	if ep.Handshakes().Failed[im.HandshakeDraining].Load() != before+1 {
		t.Fatal("the refusal was not counted as draining")
	}
}

// dialErr is lc.dial that returns the error instead of failing.
func dialErr(lc *linkCluster, e *linkedEndpoint, user uint64) error {
	tok, err := session.IssueToken(lc.id.TokenKey, session.TokenRequest{UserID: user, Audience: lc.id.Audience,
		DeviceKey: lc.dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
	if err != nil {
		return err
	}
	cfg := client.Config{Device: lc.dev}
	c, err := client.Dial(context.Background(), cfg, e.srv.Addr().String(), lc.id.Static.PublicKey().Bytes(), tok)
	if err == nil {
		c.Close()
	}
	return err
}

// TestUndrainStopsTheNotices undoes a drain whose notices are spread over
// an hour: the sessions stay, are not told to move, and new sessions are
// taken again.
func TestUndrainStopsTheNotices(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep := endpoint.New(endpoint.Config{ID: 5, Identity: lc.id, Center: lc.ctr})
	le := &linkedEndpoint{ep: ep, srv: startServer(t, ep)}
	c := lc.dial(t, le, lc.user(t, "stay"))
	ep.DrainOver(time.Hour)
	ep.Undrain()
	if ep.Draining() {
		t.Fatal("still draining after Undrain")
	}
	lc.dial(t, le, lc.user(t, "again"))
	// The spread goroutine notices the undrain within its step: wait a few
	// of them, then the session must have had no notice.
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if f, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == frame.CmdNotice }); err == nil {
		t.Fatalf("notice %x after the drain was undone", f.Body)
	}
	if ep.Sessions() != 2 {
		t.Fatalf("sessions %d, want 2", ep.Sessions())
	}
}
