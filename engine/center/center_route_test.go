package center

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage/bolt"
)

// stallingEndpoint is a fakeEndpoint whose second MSG delivery, once
// armed, waits until the test lets it go: an endpoint whose Deliver is
// slow (a contended mailbox, an eventfd write).
type stallingEndpoint struct {
	*fakeEndpoint
	armed   atomic.Bool
	count   atomic.Int32
	stalled atomic.Uint64 // the session of the stalled delivery
	entered chan struct{} // closed when the delivery starts waiting
	release chan struct{} // closing it lets it go
}

func (e *stallingEndpoint) Deliver(s im.SessionRef, buf *bytebufferpool.ByteBuffer) error {
	if e.armed.Load() && frame.Frame(buf.B).Cmd() == frame.CmdMsg && e.count.Add(1) == 2 {
		e.stalled.Store(s.Session)
		close(e.entered)
		<-e.release
	}
	return e.fakeEndpoint.Deliver(s, buf)
}

// A receipt does not wait for the pushes of its message to other sessions:
// no lock a receipt takes is held across Deliver. Bob has two sessions;
// the push to the second stalls inside Deliver, and the first one's
// receipt still gets alice her DELIVERED meanwhile.
func TestReceiptDoesNotWaitForAStalledPush(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := NewLocalCenter(Config{ID: 1, Store: st, Workers: 4, AckTimeout: time.Hour})
	t.Cleanup(c.Close)
	ep := &stallingEndpoint{fakeEndpoint: newFakeEndpoint(1), entered: make(chan struct{}), release: make(chan struct{})}
	c.Attach(ep)
	goLive(t, c, ep.fakeEndpoint, alice, aliceS)
	goLive(t, c, ep.fakeEndpoint, bob, bobS)
	goLive(t, c, ep.fakeEndpoint, bob, bobS2)
	ep.armed.Store(true)

	sent := make(chan struct{})
	go func() { aliceSends(c, 1); close(sent) }()
	<-ep.entered // pushed to one of bob's sessions, stalled on the other
	first, second := bobS, bobS2
	if ep.stalled.Load() == bobS.Session {
		first, second = bobS2, bobS
	}
	ms := ep.msgs(first)
	if len(ms) != 1 {
		close(ep.release)
		t.Fatalf("bob's first session has %d messages while the second push stalls, want 1", len(ms))
	}
	done := make(chan struct{})
	go func() { ackMsg(c, ep.fakeEndpoint, first, ms[0]); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(ep.release)
		t.Fatal("the receipt waited for the stalled push")
	}
	eventually(t, "alice acked while the push stalls", func() bool { return len(ep.acks(aliceS)[1]) == 1 })
	close(ep.release)
	<-sent
	checkAcks(t, ep.fakeEndpoint, map[uint64]byte{1: frame.AckDelivered})
	if n := len(ep.msgs(second)); n != 1 {
		t.Fatalf("bob's second session got %d messages, want 1", n)
	}
}
