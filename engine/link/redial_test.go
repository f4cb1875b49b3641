package link

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
)

// scriptedSide plays one step per attempt: a failed dial, or a link served
// for a while that ends with an error (ErrHandover among them). After the
// script it stops r.
type scriptedSide struct {
	r     *Redialer
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

func (s *scriptedSide) Dial() (net.Conn, *bufio.Reader, error) {
	st, ok := s.next()
	if !ok {
		s.r.Shut() // the script is over
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

func (s *scriptedSide) Serve(nc net.Conn, _ *bufio.Reader) error {
	defer nc.Close()
	time.Sleep(s.cur.serveFor)
	return s.cur.serveErr
}

func (s *scriptedSide) DialFailed(_ int, _ error, wait time.Duration) { s.record("fail", wait) }
func (s *scriptedSide) Down(_ error, _, wait time.Duration)           { s.record("down", wait) }

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
	r := NewRedialer(lo, hi)
	down := errors.New("link down")
	s := &scriptedSide{r: r, steps: []step{
		{dialErr: errTestDial},                       // ceiling lo
		{dialErr: errTestDial},                       // 2 lo
		{dialErr: errTestDial},                       // 4 lo
		{serveErr: down},                             // a short link: 8 lo = hi
		{dialErr: errTestDial},                       // hi (capped)
		{serveFor: 3 * hi, serveErr: down},           // held longer than hi: back to lo
		{serveErr: ErrHandover},                      // no wait
		{dialErr: errTestDial},                       // lo: the handover started over
		{serveFor: time.Millisecond, serveErr: down}, // 2 lo
	}}
	done := make(chan struct{})
	go func() { r.Run(s); close(done) }()
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
	r := NewRedialer(time.Hour, time.Hour)
	s := &scriptedSide{r: r, steps: []step{{dialErr: errTestDial}}}
	done := make(chan struct{})
	go func() { r.Run(s); close(done) }()
	testenv.WaitFor(t, 10*time.Second, "the first dial failed", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.kinds) == 1
	})
	if _, ok := r.Shut(); !ok {
		t.Fatal("Shut: the first call did not stop it")
	}
	if _, ok := r.Shut(); ok {
		t.Fatal("Shut: the second call stopped it again")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run still waiting out its backoff after the stop")
	}

	r2 := NewRedialer(time.Millisecond, time.Millisecond)
	a, b := net.Pipe()
	defer b.Close()
	if !r2.Up(a) || !r2.Connected() {
		t.Fatal("Up refused a connection before the stop")
	}
	if nc, _ := r2.Shut(); nc != a {
		t.Fatal("Shut did not hand back the served connection")
	}
	c, d := net.Pipe()
	defer d.Close()
	if r2.Up(c) {
		t.Fatal("Up took a connection after the stop")
	}
	select {
	case <-r2.Stopped():
	default:
		t.Fatal("Stopped not closed after Shut")
	}
	ctx, cancel := r2.Context(time.Hour)
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a dial context outlives the stop")
	}
}
