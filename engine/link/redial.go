package link

import (
	"bufio"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Redialer is the loop a reconnecting link client runs (an endpoint's link
// to its center, a center's link to another center): Run keeps one
// connection up until Shut, dialing, serving the connection until it
// fails, waiting a jittered exponential backoff, dialing again. Its
// methods are safe for concurrent use; its lock is a leaf, so an owner
// may call them under its own lock (which it does to keep Connected in
// step with its own state), and no connection is closed under it.
type Redialer struct {
	// lo and hi bound the backoff; a link that held longer than hi starts
	// the next round of attempts from lo again.
	lo, hi time.Duration

	// connected is written under mu and read without it: producers ask
	// for it on every push.
	connected atomic.Bool
	mu        sync.Mutex
	stopped   bool
	nc        net.Conn // the connection being served, nil while down

	stop chan struct{} // closed by Shut
	done chan struct{} // closed when Run returns
}

// NewRedialer returns a redialer, not yet running, whose backoff runs from
// lo to hi. The redialer is safe for concurrent use.
func NewRedialer(lo, hi time.Duration) *Redialer {
	return &Redialer{lo: lo, hi: hi, stop: make(chan struct{}), done: make(chan struct{})}
}

// Side is what a Redialer's owner does with each attempt. Run calls its
// methods on Run's goroutine, one at a time.
type Side interface {
	// Dial connects: TCP, TLS and HELLO.
	Dial() (net.Conn, *bufio.Reader, error)
	// Serve runs one connection until it fails. ErrHandover says that the
	// next connection is ready: it is dialed again at once.
	Serve(nc net.Conn, br *bufio.Reader) error
	// DialFailed reports the failed attempt n (from 1), and Down a link
	// that ended after upFor; wait is the backoff before the next attempt.
	DialFailed(n int, err error, wait time.Duration)
	Down(err error, upFor, wait time.Duration)
}

// Run dials and serves through side until the redialer is shut, then
// closes Done. Call it once, on a goroutine of its own.
func (r *Redialer) Run(side Side) {
	defer close(r.done)
	attempt := 0
	for {
		nc, br, err := side.Dial()
		if err != nil {
			if r.Stopping() {
				return
			}
			wait := backoff(attempt, r.lo, r.hi)
			attempt++
			side.DialFailed(attempt, err, wait)
			if !sleepUnless(r.stop, wait) {
				return
			}
			continue
		}
		start := time.Now()
		err = side.Serve(nc, br)
		if r.Stopping() {
			return
		}
		if errors.Is(err, ErrHandover) {
			attempt = 0
			continue
		}
		if time.Since(start) > r.hi {
			attempt = 0 // the link held: start over from the shortest wait
		}
		wait := backoff(attempt, r.lo, r.hi)
		attempt++
		side.Down(err, time.Since(start), wait)
		if !sleepUnless(r.stop, wait) {
			return
		}
	}
}

// Stopping reports whether Shut was called. Safe for concurrent use.
func (r *Redialer) Stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// Stopped returns a channel closed by Shut. Safe for concurrent use.
func (r *Redialer) Stopped() <-chan struct{} { return r.stop }

// Done returns a channel closed when Run returns. Safe for concurrent use.
func (r *Redialer) Done() <-chan struct{} { return r.done }

// Connected reports whether a connection is being served (between Up and
// Down). Safe for concurrent use; lock-free.
func (r *Redialer) Connected() bool { return r.connected.Load() }

// Up records nc as the connection being served; false once the redialer
// is shut, and then the caller closes nc (outside its locks: closing a TLS
// link waits for its close_notify to be written). Safe for concurrent
// use; Side.Serve calls it.
func (r *Redialer) Up(nc net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.connected.Store(true)
	r.nc = nc
	return true
}

// Down records that the connection ended. Safe for concurrent use;
// Side.Serve calls it.
func (r *Redialer) Down() {
	r.mu.Lock()
	r.connected.Store(false)
	r.nc = nil
	r.mu.Unlock()
}

// Shut stops the redialer: Run returns, and Up takes no new connection. It
// returns the connection being served, which the caller closes once it
// has released its own locks (closing a TLS link waits for its
// close_notify to be written, and producers on event loops must not wait
// behind that), and false when it was shut already. Safe for concurrent
// use; any number of calls.
func (r *Redialer) Shut() (net.Conn, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, false
	}
	r.stopped = true
	close(r.stop)
	return r.nc, true
}

// Context returns a context that ends after timeout or when the redialer
// is shut, whichever comes first: a dial that Shut interrupts. The caller
// calls cancel. Safe for concurrent use.
func (r *Redialer) Context(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// backoff returns the wait before reconnect attempt n (from 0): an
// exponential ceiling from lo to hi, of which a random half to all is
// waited, so that the links of a restarted peer do not all come back at
// once.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := hi
	if n < 30 {
		d = min(lo<<n, hi)
	}
	return d/2 + rand.N(d/2+1)
}

// sleepUnless waits d and reports true, or returns false at once when stop
// closes.
func sleepUnless(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}
