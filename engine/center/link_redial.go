package center

import (
	"bufio"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"time"
)

// redialer is what the two reconnecting link clients share: RemoteCenter
// (an endpoint's link to its center) and peerLink (a center's link to
// another center). Its run loop keeps one connection up until stopped:
// dial, serve the connection until it fails, wait a jittered exponential
// backoff, dial again. The fields marked are guarded by the owner's link
// queue lock (q.mu).
type redialer struct {
	// lo and hi bound the backoff; a link that held longer than hi starts
	// the next round of attempts from lo again.
	lo, hi time.Duration

	// Guarded by q.mu.
	connected bool
	stopped   bool
	nc        net.Conn // the connection being served, nil while down

	stop chan struct{} // closed by shutLocked
	done chan struct{} // closed when run returns
}

func newRedialer(lo, hi time.Duration) redialer {
	return redialer{lo: lo, hi: hi, stop: make(chan struct{}), done: make(chan struct{})}
}

// linkSide is what a redialer's owner does with each attempt. The methods
// run on the run goroutine.
type linkSide interface {
	// dial connects: TCP, TLS and HELLO.
	dial() (net.Conn, *bufio.Reader, error)
	// serve runs one connection until it fails. errHandover says that the
	// next connection is ready: it is dialed again at once.
	serve(nc net.Conn, br *bufio.Reader) error
	// dialFailed reports the failed attempt n (from 1), and down a link
	// that ended after upFor; wait is the backoff before the next attempt.
	dialFailed(n int, err error, wait time.Duration)
	down(err error, upFor, wait time.Duration)
}

// errHandover ends a link whose successor is already connected.
var errHandover = errors.New("center: link handed over")

// run dials and serves until the redialer is stopped, then closes done.
func (r *redialer) run(side linkSide) {
	defer close(r.done)
	attempt := 0
	for {
		nc, br, err := side.dial()
		if err != nil {
			if r.stopping() {
				return
			}
			wait := backoff(attempt, r.lo, r.hi)
			attempt++
			side.dialFailed(attempt, err, wait)
			if !sleepUnless(r.stop, wait) {
				return
			}
			continue
		}
		start := time.Now()
		err = side.serve(nc, br)
		if r.stopping() {
			return
		}
		if errors.Is(err, errHandover) {
			attempt = 0
			continue
		}
		if time.Since(start) > r.hi {
			attempt = 0 // the link held: start over from the shortest wait
		}
		wait := backoff(attempt, r.lo, r.hi)
		attempt++
		side.down(err, time.Since(start), wait)
		if !sleepUnless(r.stop, wait) {
			return
		}
	}
}

func (r *redialer) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// upLocked records nc as the connection being served; false (nc is
// closed) once the redialer is stopped. q.mu held.
func (r *redialer) upLocked(nc net.Conn) bool {
	if r.stopped {
		nc.Close()
		return false
	}
	r.connected, r.nc = true, nc
	return true
}

// downLocked records that the connection ended. q.mu held.
func (r *redialer) downLocked() { r.connected, r.nc = false, nil }

// shutLocked stops the redialer: run returns, and upLocked takes no new
// connection. It returns the connection being served, which the caller
// closes once it has released q.mu (closing a TLS link waits for its
// close_notify to be written, and producers on event loops must not wait
// behind that), and false when it was stopped already. q.mu held.
func (r *redialer) shutLocked() (net.Conn, bool) {
	if r.stopped {
		return nil, false
	}
	r.stopped = true
	close(r.stop)
	return r.nc, true
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

// stoppableContext returns a context that ends after timeout or when stop
// closes, whichever comes first: a dial that shutdown can interrupt.
func stoppableContext(stop <-chan struct{}, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
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
