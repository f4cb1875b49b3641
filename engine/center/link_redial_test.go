package center

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/storage/bolt"
)

// scriptedSide plays one step per attempt: a failed dial, or a link served
// for a while that ends with an error (errHandover among them). After the
// script it stops r.
type scriptedSide struct {
	r     *redialer
	steps []step

	mu    sync.Mutex
	n     int
	cur   step            // the step of the link being served
	waits []time.Duration // the backoff of every failed dial and ended link, in order
	kinds []string        // "fail" or "down" for each wait
}

type step struct {
	dialErr  error
	serveFor time.Duration
	serveErr error
}

var errTestDial = errors.New("dial refused")

func (s *scriptedSide) next() (step, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == len(s.steps) {
		return step{}, false
	}
	s.n++
	return s.steps[s.n-1], true
}

func (s *scriptedSide) dial() (net.Conn, *bufio.Reader, error) {
	st, ok := s.next()
	if !ok {
		s.r.shutLocked() // the script is over; run takes no queue lock here
		return nil, nil, errTestDial
	}
	if st.dialErr != nil {
		return nil, nil, st.dialErr
	}
	s.cur = st
	a, b := net.Pipe()
	b.Close()
	return a, bufio.NewReader(a), nil
}

func (s *scriptedSide) serve(nc net.Conn, _ *bufio.Reader) error {
	defer nc.Close()
	time.Sleep(s.cur.serveFor)
	return s.cur.serveErr
}

func (s *scriptedSide) dialFailed(_ int, _ error, wait time.Duration) { s.record("fail", wait) }
func (s *scriptedSide) down(_ error, _, wait time.Duration)           { s.record("down", wait) }

func (s *scriptedSide) record(kind string, wait time.Duration) {
	s.mu.Lock()
	s.kinds, s.waits = append(s.kinds, kind), append(s.waits, wait)
	s.mu.Unlock()
}

// The shared reconnect loop waits a jittered backoff that doubles from lo
// to hi over failed dials and short links, starts over after a link that
// held longer than hi, dials at once after a handover, and ends when
// stopped.
func TestRedialerBackoff(t *testing.T) {
	// hi leaves a short link room to be short on a busy machine.
	const lo, hi = 20 * time.Millisecond, 160 * time.Millisecond
	r := newRedialer(lo, hi)
	down := errors.New("link down")
	s := &scriptedSide{r: &r, steps: []step{
		{dialErr: errTestDial},                       // ceiling lo
		{dialErr: errTestDial},                       // 2 lo
		{dialErr: errTestDial},                       // 4 lo
		{serveErr: down},                             // a short link: 8 lo = hi
		{dialErr: errTestDial},                       // hi (capped)
		{serveFor: 3 * hi, serveErr: down},           // held longer than hi: back to lo
		{serveErr: errHandover},                      // no wait
		{dialErr: errTestDial},                       // lo: the handover started over
		{serveFor: time.Millisecond, serveErr: down}, // 2 lo
	}}
	done := make(chan struct{})
	go func() { r.run(s); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not end after the script")
	}
	wantKinds := []string{"fail", "fail", "fail", "down", "fail", "down", "fail", "down"}
	ceilings := []time.Duration{lo, 2 * lo, 4 * lo, hi, hi, lo, lo, 2 * lo}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.kinds) != len(wantKinds) {
		t.Fatalf("events %v, want %v", s.kinds, wantKinds)
	}
	for i, w := range s.waits {
		if s.kinds[i] != wantKinds[i] || w < ceilings[i]/2 || w > ceilings[i] {
			t.Errorf("event %d: %s waiting %v, want %s waiting %v to %v", i, s.kinds[i], w, wantKinds[i],
				ceilings[i]/2, ceilings[i])
		}
	}
}

// Stopping a redialer ends its run at once, even in a long backoff, hands
// back the connection it serves for closing, and takes no new one.
func TestRedialerStopsInBackoffAndServe(t *testing.T) {
	r := newRedialer(time.Hour, time.Hour)
	s := &scriptedSide{r: &r, steps: []step{{dialErr: errTestDial}}}
	done := make(chan struct{})
	go func() { r.run(s); close(done) }()
	waitUntil(t, 10*time.Second, "the first dial failed", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.kinds) == 1
	})
	if _, ok := r.shutLocked(); !ok {
		t.Fatal("shutLocked: the first call did not stop it")
	}
	if _, ok := r.shutLocked(); ok {
		t.Fatal("shutLocked: the second call stopped it again")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run still waiting out its backoff after the stop")
	}

	r2 := newRedialer(time.Millisecond, time.Millisecond)
	a, b := net.Pipe()
	defer b.Close()
	if !r2.upLocked(a) || !r2.connected {
		t.Fatal("upLocked refused a connection before the stop")
	}
	if nc, _ := r2.shutLocked(); nc != a {
		t.Fatal("shutLocked did not hand back the served connection")
	}
	c, d := net.Pipe()
	defer d.Close()
	if r2.upLocked(c) {
		t.Fatal("upLocked took a connection after the stop")
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("a connection refused after the stop is left open")
	}
}

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
		c := NewLocalCenter(CenterConfig{ID: id, Store: st})
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
	waitUntil(t, 10*time.Second, "linked to the fallback", func() bool { return rc.Connected() && rc.Connects.Load() == 1 })
	if rc.DialFails.Load() == 0 {
		t.Fatal("the first center was not tried first")
	}
	back := startLinks(1, first)
	waitUntil(t, 10*time.Second, "moved back to the first center", func() bool {
		return rc.Failbacks.Load() == 1 && rc.Connects.Load() == 2 && rc.Connected()
	})
	if n := back.Accepted.Load(); n != 1 {
		t.Fatalf("the first center accepted %d links, want 1", n)
	}
}
