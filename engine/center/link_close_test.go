package center

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
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

// queueFree fails the test unless produce, a producer's call on the link,
// returns while a close is under way (a deadlock guard, not a speed
// bound).
func queueFree(t *testing.T, produce func(), nc *slowCloseConn) {
	t.Helper()
	select {
	case <-nc.closing:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was never closed")
	}
	locked := make(chan struct{})
	go func() {
		produce() // a producer, as an event loop is
		close(locked)
	}()
	select {
	case <-locked:
	case <-time.After(10 * time.Second):
		t.Fatal("a lock producers take is held while the link's connection closes")
	}
	close(nc.release)
}

// Producers push to a link's queue from event loops: closing the link's
// connection, which for TLS waits for close_notify, must not hold the
// queue's lock, under which the owner keeps its own state.
func TestRemoteCenterClosesOutsideQueueLock(t *testing.T) {
	var lc link.Config
	lc.FillDefaults()
	nc := newSlowCloseConn()
	rc := &RemoteCenter{q: link.NewQueue(&lc), r: link.NewRedialer(time.Second, time.Second),
		sessions: make(map[uint64]*remoteSess)}
	rc.r.Up(nc)
	closed := make(chan struct{})
	go func() {
		rc.Close()
		close(closed)
	}()
	queueFree(t, func() { rc.Online(1, im.SessionRef{Endpoint: 1, Session: 1}) }, nc)
	<-closed
}

func TestPeerLinkClosesOutsideQueueLock(t *testing.T) {
	var lc link.Config
	lc.FillDefaults()
	nc := newSlowCloseConn()
	p := &peerLink{q: link.NewQueue(&lc), r: link.NewRedialer(time.Second, time.Second)}
	p.r.Up(nc)
	closed := make(chan struct{})
	go func() {
		p.close()
		close(closed)
	}()
	queueFree(t, func() { p.push(link.NewResult(1, 1, 0)) }, nc)
	go p.r.Run(stoppedSide{}) // the link's goroutine, which returns at once
	<-closed
}

// stoppedSide is a link.Side for a redialer that is shut already: its one
// dial fails, and Run returns.
type stoppedSide struct{}

func (stoppedSide) Dial() (net.Conn, *bufio.Reader, error)   { return nil, nil, errors.New("stopped") }
func (stoppedSide) Serve(net.Conn, *bufio.Reader) error      { return nil }
func (stoppedSide) DialFailed(int, error, time.Duration)     {}
func (stoppedSide) Down(error, time.Duration, time.Duration) {}
