package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// A session whose connection the network drops tries again with growing,
// jittered waits while the endpoints refuse it, and reconnects once they
// take connections again.
func TestSessionReconnectsWithBackoff(t *testing.T) {
	r := startRig(t)
	r.addUser("ann")
	s := r.runSession(r.cfg(), "ann")
	c1 := waitConn(t, s, nil)
	base := r.dials.Load()
	r.cut()
	select {
	case <-c1.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the connection outlived the cut")
	}
	if c1.Err() == nil {
		t.Fatal("a dropped connection has no error")
	}
	testenv.WaitFor(t, 30*time.Second, "three refused tries", func() bool { return r.dials.Load()-base >= 3 })
	// Without backoff the session would try hundreds of times a second;
	// with waits drawn below 0.1, 0.2, 0.4, 0.8 s... a second more adds a
	// handful at most.
	time.Sleep(time.Second)
	tries := r.dials.Load() - base
	if tries > 12 {
		t.Fatalf("%d tries while the endpoints refused: no backoff", tries)
	}
	if n := s.Renewals(); n != 0 {
		t.Fatalf("%d renewals counted while refused", n)
	}
	r.restore()
	c2 := waitConn(t, s, c1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c2.Ping(ctx); err != nil {
		t.Fatalf("ping on the new connection: %v", err)
	}
	if n := s.Renewals(); n != 1 {
		t.Fatalf("renewals %d, want 1", n)
	}
	t.Logf("%d tries before the endpoints came back", tries)
}

// A move notice (the endpoint drains) ends the connection with ErrMoved
// after the notice reaches Frames; the session logs in again and connects
// to the next endpoint of the list, the draining one refusing it.
func TestSessionFollowsMoveNotice(t *testing.T) {
	r := startRig(t)
	r.addUser("bob")
	s := r.runSession(r.cfg(), "bob")
	c1 := waitConn(t, s, nil)
	testenv.WaitFor(t, 10*time.Second, "session on endpoint 1", func() bool { return r.eps[0].Sessions() == 1 })
	if n := r.eps[0].Drain(); n != 1 {
		t.Fatalf("drain told %d sessions, want 1", n)
	}
	c2 := waitConn(t, s, c1)
	<-c1.Done()
	if err := c1.Err(); !errors.Is(err, client.ErrMoved) {
		t.Fatalf("old connection ended with %v, want ErrMoved", err)
	}
	if n := frame.Notice(recv(t, c1, frame.CmdNotice).Body); n.Code() != frame.NoticeMove {
		t.Fatalf("notice %d, want move", n.Code())
	}
	testenv.WaitFor(t, 10*time.Second, "session moved to endpoint 2", func() bool {
		return r.eps[1].Sessions() == 1 && r.eps[0].Sessions() == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c2.Ping(ctx); err != nil {
		t.Fatalf("ping after the move: %v", err)
	}
	if n := s.Renewals(); n != 1 {
		t.Fatalf("renewals %d, want 1", n)
	}
}

// A session the server closes (an operator's kick) logs in again and
// reconnects.
func TestSessionReconnectsAfterKick(t *testing.T) {
	r := startRig(t)
	cy := r.addUser("cy")
	s := r.runSession(r.cfg(), "cy")
	c1 := waitConn(t, s, nil)
	testenv.WaitFor(t, 10*time.Second, "session on endpoint 1", func() bool { return r.eps[0].Sessions() == 1 })
	if n := r.eps[0].Kick(cy); n != 1 {
		t.Fatalf("kick closed %d sessions, want 1", n)
	}
	c2 := waitConn(t, s, c1)
	if c1.Err() == nil {
		t.Fatal("the kicked connection has no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c2.Ping(ctx); err != nil {
		t.Fatalf("ping after the kick: %v", err)
	}
	if n := s.Renewals(); n != 1 {
		t.Fatalf("renewals %d, want 1", n)
	}
}
