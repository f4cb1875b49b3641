package center

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// Tests of the receipts of stored messages (center_acks.go) on the
// embedded store, wrapped so that a test can hold a read of bob's
// messages after it read the store, and make deletes fail.

// gateStore is a real store whose next FetchOffline of a user can be held
// after it read the store, and whose DeleteOffline fails while failing > 0.
type gateStore struct {
	storage.Store

	mu      sync.Mutex
	gate    uint64        // the user whose next read is held, 0 if none
	reached chan struct{} // closed once the held read has read the store
	release chan struct{} // closing it lets the held read return
	failing int           // DeleteOffline calls still to fail
	deletes int           // DeleteOffline calls that committed
}

var errStoreDown = errors.New("store down")

// hold arms the gate for user's next read.
func (g *gateStore) hold(user uint64) {
	g.mu.Lock()
	g.gate, g.reached, g.release = user, make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
}

func (g *gateStore) FetchOffline(ctx context.Context, user, after uint64, limit int) ([]storage.Message, error) {
	msgs, err := g.Store.FetchOffline(ctx, user, after, limit)
	g.mu.Lock()
	held := g.gate == user
	reached, release := g.reached, g.release
	if held {
		g.gate = 0
	}
	g.mu.Unlock()
	if held {
		close(reached)
		<-release
	}
	return msgs, err
}

func (g *gateStore) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failing > 0 {
		g.failing--
		return errStoreDown
	}
	if err := g.Store.DeleteOffline(ctx, user, mids); err != nil {
		return err
	}
	g.deletes++
	return nil
}

// gateCenter is windowCenter on a gateStore.
func gateCenter(t *testing.T) (*LocalCenter, *fakeEndpoint, *gateStore) {
	t.Helper()
	var g *gateStore
	c, ep, _ := windowCenterOn(t, Config{AckTimeout: time.Hour}, func(st storage.Store) storage.Store {
		g = &gateStore{Store: st}
		return g
	})
	return c, ep, g
}

// storeForBob takes bob offline, has alice send him n messages (stored),
// and brings him back on bobS2, whose FETCH pushes them.
func storeForBob(t *testing.T, c *LocalCenter, ep *fakeEndpoint, g *gateStore, n int) []frame.Msg {
	t.Helper()
	c.Offline(bob, bobS, false)
	for cid := uint64(1); cid <= uint64(n); cid++ {
		aliceSends(c, cid)
	}
	eventually(t, "all stored", func() bool { return len(storedMIDs(t, g, bob)) == n })
	c.Online(bob, bobS2)
	fetchStored(t, c, ep, bob, bobS2, 1)
	eventually(t, "stored messages pushed", func() bool { return len(ep.msgs(bobS2)) == n })
	return ep.msgs(bobS2)
}

// fetchAgain sends a FETCH from cursor 0 without waiting for its answer.
func fetchAgain(c *LocalCenter, s im.SessionRef, req uint32) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendFetch(buf.B, req, frame.FetchP2P, 0, 0, 100)
	c.Handle(bob, s, buf)
}

// A receipt that comes, and whose delete commits, while a FETCH is between
// its store read and its pushes: the FETCH read the message, but must not
// push it again. (Before, the FETCH only skipped what was acked when it
// began, and the receipt's MID left the session's acked set at the commit.)
func TestAckDuringFetchReadIsNotPushedAgain(t *testing.T) {
	c, ep, g := gateCenter(t)
	ms := storeForBob(t, c, ep, g, 1)

	g.hold(bob)
	fetchAgain(c, bobS2, 2)
	<-g.reached // the FETCH read m (still stored, in flight to bobS2)
	ackMsg(c, ep, bobS2, ms[0])
	eventually(t, "delete committed", func() bool { return len(storedMIDs(t, g, bob)) == 0 })
	close(g.release)
	eventually(t, "FETCH answered", func() bool { return len(ep.frames(bobS2, frame.CmdFetch)) == 2 })
	if n := len(ep.msgs(bobS2)); n != 1 {
		t.Fatalf("bob's session was pushed %d messages, want the acked one once", n)
	}
}

// A delete that fails is retried until it commits, and meanwhile the
// session that acked the message never sees it again.
func TestAckedDeleteRetriedWhileHidden(t *testing.T) {
	c, ep, g := gateCenter(t)
	ms := storeForBob(t, c, ep, g, 3)
	g.mu.Lock()
	g.failing = 3
	g.mu.Unlock()
	for _, m := range ms {
		ackMsg(c, ep, bobS2, m)
	}
	fetchStored(t, c, ep, bob, bobS2, 2)
	eventually(t, "deletes committed after the failures", func() bool { return len(storedMIDs(t, g, bob)) == 0 })
	g.mu.Lock()
	failing := g.failing
	g.mu.Unlock()
	if failing != 0 {
		t.Fatalf("%d failures left: the deletes did not go through the store", failing)
	}
	fetchStored(t, c, ep, bob, bobS2, 3)
	if n := len(ep.msgs(bobS2)); n != 3 {
		t.Fatalf("bob's session was pushed %d messages, want the 3 acked ones once each", n)
	}
}

// Receipts that come together are deleted in fewer store calls than
// messages, and all of them are deleted.
func TestAckedDeletesBatched(t *testing.T) {
	c, ep, g := gateCenter(t)
	const n = 40
	ms := storeForBob(t, c, ep, g, n)
	g.mu.Lock() // holds every delete until all receipts are queued
	for _, m := range ms {
		ackMsg(c, ep, bobS2, m)
	}
	g.mu.Unlock()
	eventually(t, "store emptied", func() bool { return len(storedMIDs(t, g, bob)) == 0 })
	g.mu.Lock()
	calls := g.deletes
	g.mu.Unlock()
	if calls >= n {
		t.Fatalf("%d receipts took %d delete calls, want them batched", n, calls)
	}
}

// Receipts of MIDs the session was never pushed (an attacker's made-up
// ones) take no place in its state, even while the store holds every
// delete: the acked set stays within what the session was pushed.
func TestMadeUpReceiptsDoNotGrowTheSession(t *testing.T) {
	c, ep, g := gateCenter(t)
	ms := storeForBob(t, c, ep, g, 2)
	g.mu.Lock() // every delete waits
	for i := uint64(1); i <= 5000; i++ {
		buf := bytebufferpool.Get()
		buf.B, _ = frame.AppendAck(buf.B, 0, ms[1].MID()+i, alice, frame.AckReceived)
		c.Handle(bob, bobS2, buf)
	}
	ackMsg(c, ep, bobS2, ms[0])
	st := sessOf(c, bob, bobS2)
	st.mu.Lock()
	acked, queued := len(st.acked), len(st.delQ)
	st.mu.Unlock()
	g.mu.Unlock()
	if acked > 2 || queued > 2 {
		t.Fatalf("after 5,000 made-up receipts the session holds %d acked and %d queued MIDs, want at most the 2 it was pushed", acked, queued)
	}
	eventually(t, "the real receipt's delete", func() bool { return len(storedMIDs(t, g, bob)) == 1 })
}
