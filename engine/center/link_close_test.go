package center

import (
	"net"
	"testing"
	"time"
)

// slowCloseConn is a connection whose Close blocks until released, as a
// TLS connection's does while its close_notify waits to be written.
type slowCloseConn struct {
	net.Conn
	closing chan struct{} // closed when Close is entered
	release chan struct{}
}

func newSlowCloseConn() *slowCloseConn {
	c, _ := net.Pipe()
	return &slowCloseConn{Conn: c, closing: make(chan struct{}), release: make(chan struct{})}
}

func (c *slowCloseConn) Close() error {
	close(c.closing)
	<-c.release
	return c.Conn.Close()
}

// queueFree fails the test unless a producer can push to q while a close
// is under way (a deadlock guard, not a speed bound).
func queueFree(t *testing.T, q *linkQueue, nc *slowCloseConn) {
	t.Helper()
	select {
	case <-nc.closing:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was never closed")
	}
	locked := make(chan struct{})
	go func() {
		q.push(pingItem(linkPing, 1, 0)) // a producer, as an event loop is
		close(locked)
	}()
	select {
	case <-locked:
	case <-time.After(10 * time.Second):
		t.Fatal("the link's queue lock is held while its connection closes")
	}
	close(nc.release)
}

// Producers push to a link's queue from event loops: closing the link's
// connection, which for TLS waits for close_notify, must not hold the
// queue's lock.
func TestRemoteCenterClosesOutsideQueueLock(t *testing.T) {
	var lc LinkConfig
	lc.fillDefaults()
	nc := newSlowCloseConn()
	rc := &RemoteCenter{q: newLinkQueue(&lc), redialer: newRedialer(time.Second, time.Second)}
	rc.nc = nc
	closed := make(chan struct{})
	go func() {
		rc.Close()
		close(closed)
	}()
	queueFree(t, rc.q, nc)
	<-closed
}

func TestPeerLinkClosesOutsideQueueLock(t *testing.T) {
	var lc LinkConfig
	lc.fillDefaults()
	nc := newSlowCloseConn()
	p := &peerLink{q: newLinkQueue(&lc), redialer: newRedialer(time.Second, time.Second)}
	p.nc = nc
	closed := make(chan struct{})
	go func() {
		p.close()
		close(closed)
	}()
	queueFree(t, p.q, nc)
	close(p.done) // what the link's goroutine does when it ends
	<-closed
}
