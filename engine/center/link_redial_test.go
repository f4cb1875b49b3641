package center

import (
	"net"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage/bolt"
)

// An endpoint's link that fell back to another center moves back to its
// first center once that one answers: the probe's link is handed over and
// served at once.
func TestRemoteCenterFailsBackToFirst(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	startLinks := func(id uint32, addr string) *LinkServer {
		t.Helper()
		c := NewLocalCenter(Config{ID: id, Store: st})
		ls, err := NewLinkServer(LinkServerConfig{Addr: addr, Center: c, Link: testLink})
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ls.Close(); c.Close() })
		return ls
	}
	// The first center's address, not listening yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := ln.Addr().String()
	ln.Close()
	fallback := startLinks(2, "127.0.0.1:0")
	rc, err := NewRemoteCenter(RemoteCenterConfig{Addr: first, Fallbacks: []string{fallback.Addr().String()},
		Link: testLink, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		FailbackInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rc.Attach(&recEndpoint{id: 5})
	t.Cleanup(rc.Close)
	testenv.WaitFor(t, 10*time.Second, "linked to the fallback", func() bool { return rc.Connected() && rc.Connects.Load() == 1 })
	if rc.DialFails.Load() == 0 {
		t.Fatal("the first center was not tried first")
	}
	back := startLinks(1, first)
	testenv.WaitFor(t, 10*time.Second, "moved back to the first center", func() bool {
		return rc.Failbacks.Load() == 1 && rc.Connects.Load() == 2 && rc.Connected()
	})
	if n := back.Accepted.Load(); n != 1 {
		t.Fatalf("the first center accepted %d links, want 1", n)
	}
}
