package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// eachFrame calls fn for every frame a Session receives, across its
// reconnects, until ctx ends.
func eachFrame(ctx context.Context, s *client.Session, fn func(client.Frame)) {
	go func() {
		var seen *client.Conn
		for ctx.Err() == nil {
			c, changed := s.Conn()
			if c == nil || c == seen {
				select {
				case <-changed:
				case <-ctx.Done():
				}
				continue
			}
			seen = c
			for f := range c.Frames() {
				fn(f)
			}
		}
	}()
}

// sessionInbox collects the contents of the MSGs a Session receives.
func sessionInbox(ctx context.Context, s *client.Session) <-chan string {
	out := make(chan string, 64)
	eachFrame(ctx, s, func(f client.Frame) {
		if f.Cmd == frame.CmdMsg {
			out <- string(frame.Msg(f.Body).Content())
		}
	})
	return out
}

// msgCounter counts how often each MSG content was shown, across a
// Session's reconnects.
type msgCounter struct {
	mu   sync.Mutex
	seen map[string]int
}

func countMsgs(ctx context.Context, s *client.Session) *msgCounter {
	m := &msgCounter{seen: map[string]int{}}
	eachFrame(ctx, s, func(f client.Frame) {
		if f.Cmd == frame.CmdMsg {
			m.mu.Lock()
			m.seen[string(frame.Msg(f.Body).Content())]++
			m.mu.Unlock()
		}
	})
	return m
}

// TestSessionRenews runs myimd with a short session lifetime, standing in
// for the 24 hours a session may last: at its end the endpoint closes the
// session, the SDK logs in again (a fresh token, a full new handshake) and
// messaging goes on, nothing lost across the renewal.
func TestSessionRenews(t *testing.T) {
	p := startMyimd(t, "--max-session", "2s")
	p.register(t, "ray", "password-ray")
	lizID := p.register(t, "liz", "password-liz")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	session := func(name string) *client.Session {
		cfg := p.cfg(t, newDevice(t))
		cfg.AutoAck, cfg.AutoFetch, cfg.Dedupe = true, true, client.NewDedupe(0)
		s := client.NewSession(cfg, p.addrs["login"], name, []byte("password-"+name))
		go func() { _ = s.Run(ctx) }()
		return s
	}
	ray, liz := session("ray"), session("liz")
	inbox := sessionInbox(ctx, liz)
	send := func(text string) {
		t.Helper()
		for {
			c, _ := ray.Conn()
			if c != nil {
				if _, err := c.SendMsg(lizID, frame.QoS1, []byte(text)); err == nil {
					break
				}
			}
			time.Sleep(50 * time.Millisecond) // between two connections
		}
		select {
		case got := <-inbox:
			if got != text {
				t.Fatalf("liz got %q, want %q", got, text)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("liz never got %q", text)
		}
	}
	send("before renewal")
	testenv.WaitFor(t, 15*time.Second, "both sessions renewed", func() bool { return ray.Renewals() >= 1 && liz.Renewals() >= 1 })
	send("after renewal")
}

// followingUser logs name in through a client.Session (acking, fetching and
// deduplicating, as an application would), waits until it is connected to
// the server with id want, and counts the messages it is shown.
func followingUser(t *testing.T, ctx context.Context, p *proc, name string, want uint32) (*user, *client.Session, *msgCounter) {
	t.Helper()
	u := &user{dev: newDevice(t)}
	u.id = loginBoth(t, p, name, u).UserID
	cfg := p.cfg(t, u.dev)
	cfg.AutoAck, cfg.AutoFetch, cfg.Dedupe = true, true, client.NewDedupe(0)
	sess := client.NewSession(cfg, p.addrs["login"], name, []byte("password-"+name))
	go func() { _ = sess.Run(ctx) }()
	shown := countMsgs(ctx, sess)
	testenv.WaitFor(t, 10*time.Second, name+" connected", func() bool { c, _ := sess.Conn(); return c != nil })
	if srv := sess.Login().Servers[0]; srv.ID != want {
		t.Fatalf("%s's first server is %d, want %d", name, srv.ID, want)
	}
	return u, sess, shown
}
