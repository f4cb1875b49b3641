package center

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// Tests of the point-to-point delivery state machine (center_delivery.go):
// receipts and their timeout, the per-session window with its spill to the
// store and drain, refusals by a slow reader, the dedupe table, and a
// session going away with pushes in flight. The center runs on the
// embedded store; the endpoint is fakeEndpoint, which records what each
// session is sent and refuses on demand.

// fakeEndpoint is an endpoint that records the frames delivered to each
// session and refuses a session's deliveries with the error set for it.
// It also counts each session's pushed messages not yet receipted (the
// test calls receipted before sending the receipt) and keeps the highest
// count seen, which the window bounds.
type fakeEndpoint struct {
	id uint32

	mu         sync.Mutex
	got        map[uint64][]frame.Frame // per session, in delivery order
	refuse     map[uint64]error
	unacked    map[uint64]int
	maxUnacked map[uint64]int
}

func newFakeEndpoint(id uint32) *fakeEndpoint {
	return &fakeEndpoint{id: id, got: make(map[uint64][]frame.Frame), refuse: make(map[uint64]error),
		unacked: make(map[uint64]int), maxUnacked: make(map[uint64]int)}
}

func (e *fakeEndpoint) ID() uint32 { return e.id }

// Deliver records buf for s, or refuses it with the error set for s.
func (e *fakeEndpoint) Deliver(s im.SessionRef, buf *bytebufferpool.ByteBuffer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.refuse[s.Session]; err != nil {
		return err
	}
	f := frame.Frame(append([]byte(nil), buf.B...))
	e.got[s.Session] = append(e.got[s.Session], f)
	if f.Cmd() == frame.CmdMsg {
		e.unacked[s.Session]++
		e.maxUnacked[s.Session] = max(e.maxUnacked[s.Session], e.unacked[s.Session])
	}
	bytebufferpool.Put(buf)
	return nil
}

// setRefuse makes s's deliveries fail with err (nil accepts them again).
func (e *fakeEndpoint) setRefuse(s im.SessionRef, err error) {
	e.mu.Lock()
	e.refuse[s.Session] = err
	e.mu.Unlock()
}

// receipted counts one receipt of s, before it is sent.
func (e *fakeEndpoint) receipted(s im.SessionRef) {
	e.mu.Lock()
	e.unacked[s.Session]--
	e.mu.Unlock()
}

// peak returns the most messages s held unreceipted at once.
func (e *fakeEndpoint) peak(s im.SessionRef) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.maxUnacked[s.Session]
}

// frames returns the frames of cmd delivered to s so far, in order.
func (e *fakeEndpoint) frames(s im.SessionRef, cmd frame.Cmd) []frame.Frame {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []frame.Frame
	for _, f := range e.got[s.Session] {
		if f.Cmd() == cmd {
			out = append(out, f)
		}
	}
	return out
}

// msgs returns the MSG bodies delivered to s so far, in order.
func (e *fakeEndpoint) msgs(s im.SessionRef) []frame.Msg {
	var out []frame.Msg
	for _, f := range e.frames(s, frame.CmdMsg) {
		out = append(out, frame.Msg(f.Body()))
	}
	return out
}

// acks returns the ACK bodies delivered to s so far, by CID.
func (e *fakeEndpoint) acks(s im.SessionRef) map[uint64][]frame.Ack {
	out := make(map[uint64][]frame.Ack)
	for _, f := range e.frames(s, frame.CmdAck) {
		a := frame.Ack(f.Body())
		out[a.CID()] = append(out[a.CID()], a)
	}
	return out
}

// Users and sessions of these tests: alice sends, bob receives.
const (
	alice, bob = 10, 20
)

var (
	aliceS = im.SessionRef{Endpoint: 1, Session: 1}
	bobS   = im.SessionRef{Endpoint: 1, Session: 2}
	bobS2  = im.SessionRef{Endpoint: 1, Session: 3} // bob's next connection
)

// windowCenter starts a center with cfg on a fresh embedded store, and a
// fakeEndpoint (id 1) attached to it, with alice and bob online and live.
// Both are closed when the test ends.
func windowCenter(t *testing.T, cfg Config) (*LocalCenter, *fakeEndpoint, storage.Store) {
	t.Helper()
	return windowCenterOn(t, cfg, nil)
}

// windowCenterOn is windowCenter with the store wrapped by wrap (nil: as is).
func windowCenterOn(t *testing.T, cfg Config, wrap func(storage.Store) storage.Store) (*LocalCenter, *fakeEndpoint, storage.Store) {
	t.Helper()
	var st storage.Store
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if wrap != nil {
		st = wrap(st)
	}
	cfg.ID, cfg.Store, cfg.Workers = 1, st, 4
	c := NewLocalCenter(cfg)
	t.Cleanup(c.Close)
	ep := newFakeEndpoint(1)
	c.Attach(ep)
	goLive(t, c, ep, alice, aliceS)
	goLive(t, c, ep, bob, bobS)
	return c, ep, st
}

// eventually waits up to 10 s for cond, failing the test with what otherwise.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, what, cond)
}

// sessOf returns the center's state of session s of user, nil if none.
func sessOf(c *LocalCenter, user uint64, s im.SessionRef) *sessState {
	var st *sessState
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if a.Session == s.Session {
			st = v.(*sessState)
		}
	})
	return st
}

// settled reports whether session s of user takes live pushes and no
// drain runs for it.
func settled(c *LocalCenter, user uint64, s im.SessionRef) bool {
	st := sessOf(c, user, s)
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return !st.spill && !st.draining
}

// goLive brings session s of user online, FETCHes as a client does on
// connecting (which ends the drain's wait for it), and waits until its
// first drain (of an empty store) ends and it takes live pushes.
func goLive(t *testing.T, c *LocalCenter, ep *fakeEndpoint, user uint64, s im.SessionRef) {
	t.Helper()
	c.Online(user, s)
	fetchStored(t, c, ep, user, s, 1000)
	eventually(t, "session live", func() bool { return settled(c, user, s) })
}

// aliceSends hands the center alice's QoS 1 message cid for bob.
func aliceSends(c *LocalCenter, cid uint64) { aliceSendsTo(c, bob, cid) }

// aliceSendsTo hands the center alice's QoS 1 message cid for user to.
func aliceSendsTo(c *LocalCenter, to, cid uint64) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendMsg(buf.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: alice, To: to, CID: cid,
		Time: time.Now().UnixMilli()}, []byte("hello"))
	c.Handle(alice, aliceS, buf)
}

// ackMsg sends bob's receipt of m from session s.
func ackMsg(c *LocalCenter, ep *fakeEndpoint, s im.SessionRef, m frame.Msg) {
	ackMsgOf(c, ep, bob, s, m)
}

// ackMsgOf sends user's receipt of m from session s.
func ackMsgOf(c *LocalCenter, ep *fakeEndpoint, user uint64, s im.SessionRef, m frame.Msg) {
	ep.receipted(s)
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendAck(buf.B, 0, m.MID(), m.From(), frame.AckReceived)
	c.Handle(user, s, buf)
}

// storedMIDs returns the MIDs the store holds for user, in order.
func storedMIDs(t *testing.T, st storage.Store, user uint64) []uint64 {
	t.Helper()
	msgs, err := st.FetchOffline(context.Background(), user, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mids := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		mids = append(mids, m.MID)
	}
	return mids
}

// receiveAll receipts every message s is pushed, as it comes, until s
// holds n; it returns them in delivery order.
func receiveAll(t *testing.T, c *LocalCenter, ep *fakeEndpoint, s im.SessionRef, n int) []frame.Msg {
	t.Helper()
	done := 0
	eventually(t, "all messages pushed", func() bool {
		ms := ep.msgs(s)
		for _, m := range ms[done:] {
			ackMsg(c, ep, s, m)
		}
		done = len(ms)
		return done >= n
	})
	return ep.msgs(s)
}

// checkOrder fails the test unless ms are the messages cids, in that
// order, each once, with growing MIDs.
func checkOrder(t *testing.T, ms []frame.Msg, cids ...uint64) {
	t.Helper()
	got := make([]uint64, len(ms))
	for i, m := range ms {
		got[i] = m.CID()
		if i > 0 && m.MID() <= ms[i-1].MID() {
			t.Errorf("message %d (cid %d) has MID %d after MID %d", i, m.CID(), m.MID(), ms[i-1].MID())
		}
	}
	if !slices.Equal(got, cids) {
		t.Fatalf("pushed cids %v, want %v", got, cids)
	}
}

// checkAcks fails the test unless alice got exactly one ACK of each cid,
// with the status want gives it.
func checkAcks(t *testing.T, ep *fakeEndpoint, want map[uint64]byte) {
	t.Helper()
	acks := ep.acks(aliceS)
	for cid, status := range want {
		if n := len(acks[cid]); n != 1 {
			t.Errorf("cid %d acked %d times, want once", cid, n)
			continue
		}
		if s := acks[cid][0].Status(); s != status {
			t.Errorf("cid %d acked with status %d, want %d", cid, s, status)
		}
	}
	if len(acks) != len(want) {
		t.Errorf("acks of %d cids, want %d", len(acks), len(want))
	}
}

// A QoS 1 message to an online session is acked DELIVERED only once the
// recipient's receipt comes, and never stored.
func TestWindowReceiptAcksDelivered(t *testing.T) {
	c, ep, st := windowCenter(t, Config{AckTimeout: time.Hour})
	aliceSends(c, 1)
	ms := ep.msgs(bobS) // pushed live, from alice's Handle
	if len(ms) != 1 || ms[0].CID() != 1 || ms[0].MID() == 0 {
		t.Fatalf("bob was pushed %d messages, want cid 1 with its MID", len(ms))
	}
	if n := len(ep.acks(aliceS)); n != 0 {
		t.Fatalf("alice acked %d times before bob's receipt", n)
	}
	ackMsg(c, ep, bobS, ms[0])
	checkAcks(t, ep, map[uint64]byte{1: frame.AckDelivered})
	if a := ep.acks(aliceS)[1][0]; a.MID() != ms[0].MID() || a.Peer() != bob {
		t.Fatalf("ack names MID %d peer %d, want %d and %d", a.MID(), a.Peer(), ms[0].MID(), bob)
	}
	if mids := storedMIDs(t, st, bob); len(mids) != 0 {
		t.Fatalf("a delivered message was stored: %v", mids)
	}
	if got := c.Delivered.Load(); got != 1 {
		t.Fatalf("Delivered = %d, want 1", got)
	}
}

// A push whose receipt does not come within AckTimeout is stored and acked
// STORED; it is not pushed again to the session, and its late receipt
// deletes it from the store without a second ack.
func TestWindowReceiptTimeoutStores(t *testing.T) {
	c, ep, st := windowCenter(t, Config{AckTimeout: 20 * time.Millisecond})
	aliceSends(c, 1)
	ms := ep.msgs(bobS)
	if len(ms) != 1 {
		t.Fatalf("bob was pushed %d messages, want 1", len(ms))
	}
	eventually(t, "alice acked", func() bool { return len(ep.acks(aliceS)) > 0 })
	checkAcks(t, ep, map[uint64]byte{1: frame.AckStored})
	if mids := storedMIDs(t, st, bob); !slices.Equal(mids, []uint64{ms[0].MID()}) {
		t.Fatalf("store holds %v, want [%d]", mids, ms[0].MID())
	}
	eventually(t, "bob's drain done", func() bool { return settled(c, bob, bobS) })
	if n := len(ep.msgs(bobS)); n != 1 {
		t.Fatalf("bob was pushed the message %d times", n)
	}
	ackMsg(c, ep, bobS, ms[0])
	eventually(t, "stored copy deleted", func() bool { return len(storedMIDs(t, st, bob)) == 0 })
	checkAcks(t, ep, map[uint64]byte{1: frame.AckStored})
}

// Past the window, messages go to the store (acked STORED); as the
// recipient's receipts free the window, the drain pushes them in MID
// order, each once, never more than the window unacked; then the session
// takes live pushes again.
func TestWindowSpillsAndDrainsInOrder(t *testing.T) {
	const window, n = 4, 10
	c, ep, st := windowCenter(t, Config{Window: window, AckTimeout: time.Hour})
	for cid := uint64(1); cid <= n; cid++ {
		aliceSends(c, cid)
	}
	if got := len(ep.msgs(bobS)); got != window {
		t.Fatalf("bob was pushed %d messages before any receipt, want the window (%d)", got, window)
	}
	eventually(t, "overflow stored", func() bool { return len(ep.acks(aliceS)) == n-window })
	if mids := storedMIDs(t, st, bob); len(mids) != n-window {
		t.Fatalf("store holds %d messages, want %d", len(mids), n-window)
	}
	want := map[uint64]byte{}
	cids := make([]uint64, 0, n+1)
	for cid := uint64(1); cid <= n; cid++ {
		want[cid] = frame.AckStored
		if cid <= window {
			want[cid] = frame.AckDelivered
		}
		cids = append(cids, cid)
	}
	checkOrder(t, receiveAll(t, c, ep, bobS, n), cids...)
	if p := ep.peak(bobS); p > window {
		t.Fatalf("bob held %d unacked pushes, window %d", p, window)
	}
	eventually(t, "store emptied", func() bool { return len(storedMIDs(t, st, bob)) == 0 })
	eventually(t, "bob live again", func() bool { return settled(c, bob, bobS) })
	checkAcks(t, ep, want)

	aliceSends(c, n+1) // live again: pushed at once
	ms := ep.msgs(bobS)
	checkOrder(t, ms, append(cids, n+1)...)
	ackMsg(c, ep, bobS, ms[n])
	want[n+1] = frame.AckDelivered
	checkAcks(t, ep, want)
}

// A recipient whose endpoint refuses its pushes (a slow reader) has its
// messages stored and acked STORED; once it reads again, a FETCH and the
// drain push every one in MID order, none lost and none twice.
func TestWindowSlowReaderStored(t *testing.T) {
	c, ep, st := windowCenter(t, Config{Window: 8, AckTimeout: time.Hour})
	ep.setRefuse(bobS, im.ErrSlowReader)
	const refused, more = 12, 3
	want := map[uint64]byte{}
	var cids []uint64
	for cid := uint64(1); cid <= refused; cid++ {
		aliceSends(c, cid)
		want[cid] = frame.AckStored
		cids = append(cids, cid)
	}
	eventually(t, "refused messages stored", func() bool { return len(ep.acks(aliceS)) == refused })
	checkAcks(t, ep, want)
	if mids := storedMIDs(t, st, bob); len(mids) != refused {
		t.Fatalf("store holds %d messages, want %d", len(mids), refused)
	}
	eventually(t, "drains stopped", func() bool {
		s := sessOf(c, bob, bobS)
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.draining
	})

	ep.setRefuse(bobS, nil)
	fetchStored(t, c, ep, bob, bobS, 1)
	for cid := uint64(refused + 1); cid <= refused+more; cid++ {
		aliceSends(c, cid)
		want[cid] = frame.AckStored
		cids = append(cids, cid)
	}
	checkOrder(t, receiveAll(t, c, ep, bobS, refused+more), cids...)
	eventually(t, "store emptied", func() bool { return len(storedMIDs(t, st, bob)) == 0 })
	eventually(t, "bob live again", func() bool { return settled(c, bob, bobS) })
	eventually(t, "every message acked", func() bool { return len(ep.acks(aliceS)) == refused+more })
	checkAcks(t, ep, want)
}

// A slow reader that holds an unacked push needs no FETCH: once it reads
// again, its receipt of that push restarts the drain, which pushes what
// was stored meanwhile in MID order, each once.
func TestWindowSlowReaderResumesOnReceipt(t *testing.T) {
	c, ep, st := windowCenter(t, Config{Window: 8, AckTimeout: time.Hour})
	aliceSends(c, 1)
	first := ep.msgs(bobS)
	if len(first) != 1 {
		t.Fatalf("bob was pushed %d messages, want 1", len(first))
	}
	ep.setRefuse(bobS, im.ErrSlowReader)
	want := map[uint64]byte{1: frame.AckDelivered}
	for cid := uint64(2); cid <= 6; cid++ {
		aliceSends(c, cid)
		want[cid] = frame.AckStored
	}
	eventually(t, "refused messages stored", func() bool { return len(storedMIDs(t, st, bob)) == 5 })
	eventually(t, "drains stopped", func() bool {
		s := sessOf(c, bob, bobS)
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.draining
	})
	ep.setRefuse(bobS, nil)
	checkOrder(t, receiveAll(t, c, ep, bobS, 6), 1, 2, 3, 4, 5, 6)
	eventually(t, "store emptied", func() bool { return len(storedMIDs(t, st, bob)) == 0 })
	eventually(t, "every message acked", func() bool { return len(ep.acks(aliceS)) == 6 })
	checkAcks(t, ep, want)
}

// fetchStored sends a FETCH of stored messages from session s of user and
// waits for its answer.
func fetchStored(t *testing.T, c *LocalCenter, ep *fakeEndpoint, user uint64, s im.SessionRef, req uint32) {
	t.Helper()
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendFetch(buf.B, req, frame.FetchP2P, 0, 0, 100)
	c.Handle(user, s, buf)
	eventually(t, "FETCH answered", func() bool {
		for _, f := range ep.frames(s, frame.CmdFetch) {
			if frame.Fetch(f.Body()).Req() == req {
				return true
			}
		}
		return false
	})
}

// A resend with a CID already seen is acked DUPLICATE with the first MID,
// and neither pushed nor stored again: while its receipt is awaited,
// after it, and when the message was stored.
func TestWindowDedupeResend(t *testing.T) {
	c, ep, st := windowCenter(t, Config{AckTimeout: time.Hour})
	aliceSends(c, 7)
	ms := ep.msgs(bobS)
	if len(ms) != 1 {
		t.Fatalf("bob was pushed %d messages, want 1", len(ms))
	}
	mid := ms[0].MID()
	dup := func(cid, mid uint64, seen int) {
		t.Helper()
		aliceSends(c, cid)
		acks := ep.acks(aliceS)[cid]
		if len(acks) != seen+1 {
			t.Fatalf("cid %d: %d acks after resend, want %d", cid, len(acks), seen+1)
		}
		if a := acks[seen]; a.Status() != frame.AckDuplicate || a.MID() != mid {
			t.Fatalf("resend of cid %d acked status %d MID %d, want duplicate of %d", cid, a.Status(), a.MID(), mid)
		}
	}
	dup(7, mid, 0) // receipt still awaited
	ackMsg(c, ep, bobS, ms[0])
	dup(7, mid, 2) // after the DELIVERED ack
	if n := len(ep.msgs(bobS)); n != 1 {
		t.Fatalf("bob was pushed cid 7 %d times", n)
	}
	if a := ep.acks(aliceS)[7][1]; a.Status() != frame.AckDelivered {
		t.Fatalf("the receipt acked status %d, want delivered", a.Status())
	}

	c.Offline(bob, bobS, false)
	aliceSends(c, 8)
	eventually(t, "cid 8 stored", func() bool { return len(ep.acks(aliceS)[8]) == 1 })
	stored := storedMIDs(t, st, bob)
	if len(stored) != 1 {
		t.Fatalf("store holds %v, want one message", stored)
	}
	dup(8, stored[0], 1)
	if mids := storedMIDs(t, st, bob); !slices.Equal(mids, stored) {
		t.Fatalf("store holds %v after the resend, want %v", mids, stored)
	}
}

// A session that goes offline with pushes unacked (live ones and ones
// drained from the store) leaves them all in the store, the live ones
// acked STORED; the user's next session FETCHes them in MID order, each
// once, and not the one it had acked.
func TestWindowOfflineInFlight(t *testing.T) {
	c, ep, st := windowCenter(t, Config{Window: 2, AckTimeout: time.Hour})
	for cid := uint64(1); cid <= 4; cid++ {
		aliceSends(c, cid) // 1 and 2 pushed live, 3 and 4 stored
	}
	eventually(t, "overflow stored", func() bool { return len(ep.acks(aliceS)) == 2 })
	ackMsg(c, ep, bobS, ep.msgs(bobS)[0])
	eventually(t, "cid 3 drained", func() bool { return len(ep.msgs(bobS)) == 3 })
	checkOrder(t, ep.msgs(bobS), 1, 2, 3)

	c.Offline(bob, bobS, false)
	eventually(t, "cid 2 stored", func() bool { return len(ep.acks(aliceS)[2]) == 1 })
	checkAcks(t, ep, map[uint64]byte{1: frame.AckDelivered, 2: frame.AckStored, 3: frame.AckStored, 4: frame.AckStored})
	if mids := storedMIDs(t, st, bob); len(mids) != 3 {
		t.Fatalf("store holds %d messages, want 3", len(mids))
	}

	c.Online(bob, bobS2)
	fetchStored(t, c, ep, bob, bobS2, 1)
	checkOrder(t, receiveAll(t, c, ep, bobS2, 3), 2, 3, 4)
	eventually(t, "store emptied", func() bool { return len(storedMIDs(t, st, bob)) == 0 })
	eventually(t, "new session live", func() bool { return settled(c, bob, bobS2) })
	if n := len(ep.msgs(bobS2)); n != 3 {
		t.Fatalf("the new session was pushed %d messages, want 3", n)
	}
}

// A client that reconnects at once finds its old session's unacked live
// push still on its way to the store; its FETCH and the drain must still
// push what the store holds in MID order, each once.
func TestWindowReconnectAtOnce(t *testing.T) { reconnectRounds(t, false) }

// The same when the new connection comes before the old one is seen to
// close, and the old one goes while the new one FETCHes.
func TestWindowReconnectBeforeOffline(t *testing.T) { reconnectRounds(t, true) }

// reconnectRounds runs 20 rounds, each with its own recipient, of a
// session going away with cid 2 pushed live and unacked and cid 3 pushed
// from the store, and the recipient's next session fetching: it must get
// 2, 3 and 4 in that order, each once. With early, the next session comes
// online first and the old one goes while it FETCHes. The rounds give the
// races a chance to show.
func reconnectRounds(t *testing.T, early bool) {
	c, ep, st := windowCenter(t, Config{Window: 2, AckTimeout: time.Hour})
	for round := range uint64(20) {
		to := 1000 + round
		old := im.SessionRef{Endpoint: 1, Session: 100 + 2*round}
		next := im.SessionRef{Endpoint: 1, Session: 101 + 2*round}
		goLive(t, c, ep, to, old)
		for cid := uint64(1); cid <= 4; cid++ {
			aliceSendsTo(c, to, round*10+cid) // 1 and 2 live, 3 and 4 stored
		}
		eventually(t, "overflow stored", func() bool { return len(storedMIDs(t, st, to)) == 2 })
		ackMsgOf(c, ep, to, old, ep.msgs(old)[0])
		eventually(t, "third drained", func() bool { return len(ep.msgs(old)) == 3 })

		if early {
			c.Online(to, next)
			var wg sync.WaitGroup
			wg.Go(func() { c.Offline(to, old, false) })
			fetchStored(t, c, ep, to, next, uint32(round+1))
			wg.Wait()
		} else {
			c.Offline(to, old, false)
			c.Online(to, next)
			fetchStored(t, c, ep, to, next, uint32(round+1))
		}
		done := 0
		eventually(t, "all pushed to the new session", func() bool {
			ms := ep.msgs(next)
			for _, m := range ms[done:] {
				ackMsgOf(c, ep, to, next, m)
			}
			done = len(ms)
			return done >= 3
		})
		checkOrder(t, ep.msgs(next), round*10+2, round*10+3, round*10+4)
		eventually(t, "store emptied", func() bool { return len(storedMIDs(t, st, to)) == 0 })
	}
}
