package center

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
)

// The center's point-to-point delivery state machine. A session is in one
// of two modes:
//
//   - live: a new message is pushed to it at once and tracked in its
//     window (sessState.flight) and in pending until the receipt;
//   - spill: new messages go to the store, and a drain pushes the stored
//     ones in MID order as the window frees.
//
// A session starts in spill (Online): what was stored for its user while it
// was away is pushed before anything newer, so the client never has to
// FETCH to keep per-sender order. A message goes to the store while the
// user is online when a session is spilling or its window is full; then
// every session of the user spills, and the decision is taken before the
// message leaves route, so that the next message of the same sender cannot
// overtake it live. A session goes back to live only when the store holds
// nothing it has not been pushed, no message is on its way to the store
// (storing), and no other session of the user holds a live push it lacks
// (such a push is stored when that session goes away, and would come after
// newer ones: the horizon).
//
// Order: MIDs grow per center; one sender's messages reach route one at a
// time (its session is read by one event loop) and reach the store through
// one writer in the order they were handed over, so a sender's messages
// are pushed, stored and drained in MID order. The sender's clock (Time)
// plays no part.

const storingShards = 64

type storingShard struct {
	mu sync.Mutex
	m  map[uint64]map[uint64]int // user → MID → times handed over
}

// storingAdd records a message (mid) for user handed to the offline
// writer.
func (c *LocalCenter) storingAdd(user, mid uint64) {
	sh := &c.storing[user%storingShards]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[uint64]map[uint64]int)
	}
	mids := sh.m[user]
	if mids == nil {
		mids = make(map[uint64]int)
		sh.m[user] = mids
	}
	mids[mid]++
	sh.mu.Unlock()
}

// storingDone records message mid for user written or refused; when none
// is left on its way, the user's spilling sessions drain again (a drain
// that found one on its way stopped without going live).
func (c *LocalCenter) storingDone(user, mid uint64) {
	sh := &c.storing[user%storingShards]
	sh.mu.Lock()
	mids := sh.m[user]
	if mids[mid]--; mids[mid] <= 0 {
		delete(mids, mid)
	}
	n := len(mids)
	if n == 0 {
		delete(sh.m, user)
	}
	sh.mu.Unlock()
	if n == 0 {
		c.kickDrains(user)
	}
}

func (c *LocalCenter) storingCount(user uint64) int {
	sh := &c.storing[user%storingShards]
	sh.mu.Lock()
	n := len(sh.m[user])
	sh.mu.Unlock()
	return n
}

// storingFloor returns the lowest MID on its way to the store for user,
// MaxUint64 when none is. A drain or FETCH pushes no stored message at or
// above it: a push that was live on a session that went away, or whose
// receipt timed out, is stored after newer messages of its sender may
// have been, and must still be pushed before them.
func (c *LocalCenter) storingFloor(user uint64) uint64 {
	floor := uint64(math.MaxUint64)
	sh := &c.storing[user%storingShards]
	sh.mu.Lock()
	for mid := range sh.m[user] {
		floor = min(floor, mid)
	}
	sh.mu.Unlock()
	return floor
}

// drainGrace is how long a new session waits for its client's FETCH
// before the server pushes the stored messages by itself: a client that
// fetches at once (as the docs say) gets them as its FETCH answer, one
// that does not gets them all the same.
const drainGrace = 2 * time.Second

// resumeSession ends the wait for a FETCH of a session an endpoint
// announced again (its client stays connected and will not fetch): its
// stored messages are pushed now.
func (c *LocalCenter) resumeSession(user uint64, s im.SessionRef) {
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if a.Session == s.Session {
			st := v.(*sessState)
			st.mu.Lock()
			st.holdUntil = 0
			st.mu.Unlock()
			c.resumeDrain(user, st)
		}
	})
}

// maxSessionsPerPush is how many sessions of one user route handles
// without allocating; more still work.
const maxSessionsPerPush = 8

// route pushes a point-to-point message, its MID set, to the sessions of
// to on this center and tracks the receipts of QoS 1. When to has no
// session here and remote is set, the message goes to the cluster's
// routers (another center may hold to); otherwise what cannot be pushed is
// stored offline. origin is the center that forwarded the message and is
// answered in place of its sender; 0 for a sender of this center. A QoS 1
// message forwarded for a user with no session here is not stored: origin
// is answered moved and routes it again (center_cluster.go).
// Ownership of buf passes.
func (c *LocalCenter) route(buf *bytebufferpool.ByteBuffer, user, cid uint64, qos frame.QoS, to uint64,
	origin uint32, remote bool) {
	var arr [maxSessionsPerPush]livePush
	pushes := arr[:0]
	blocked := false // a session spills or its window is full: the message goes to the store
	online := c.routes.Lookup(to, func(a route.Addr, v any) {
		st := v.(*sessState)
		st.mu.Lock()
		if len(st.flight) >= c.cfg.Window || st.spill {
			blocked = true
		}
		st.mu.Unlock()
		pushes = append(pushes, livePush{st: st, ep: a.Endpoint})
	})
	if online > 0 && !blocked && c.pushLive(buf, pushes, user, cid, qos, to, origin, remote) {
		return
	}
	if online == 0 && remote && c.cl.routeP2P(buf, user, cid, qos, to) {
		return
	}
	mid := frame.Msg(frame.Frame(buf.B).Body()).MID()
	if online == 0 && origin != 0 && qos == frame.QoS1 && c.cl.reroutes(origin) {
		c.cl.moved(origin, to, mid) // the route origin followed was stale
		bytebufferpool.Put(buf)
		return
	}
	if qos == frame.QoS0 && online > 0 {
		c.Shed.Add(1) // online but not pushable now: QoS 0 is shed first
		bytebufferpool.Put(buf)
		return
	}
	// Every session spills before the message leaves: the sender's next
	// message finds them spilling and follows this one into the store.
	// The offline writer starts their drains once it is stored.
	for _, p := range pushes {
		st := p.st
		st.mu.Lock()
		if !st.spill && !st.gone {
			st.spill = true
			c.spilling.Add(1)
		}
		st.spillGen++
		st.mu.Unlock()
	}
	c.storeAndAck(buf, user, cid, qos, to, origin)
}

// copyPushes makes each push's copy of buf, for the sessions whose
// endpoint is attached, and for QoS 1 (p set) enters the session in p
// and mid in its window. It returns how many copies it made.
func (c *LocalCenter) copyPushes(buf *bytebufferpool.ByteBuffer, pushes []livePush, mid uint64, p *pending) int {
	n := 0
	for i := range pushes {
		ps := &pushes[i]
		if ps.e = c.endpoint(ps.ep); ps.e == nil {
			continue
		}
		ps.out = bytebufferpool.Get()
		ps.out.B = append(ps.out.B, buf.B...)
		frame.Msg(frame.Frame(ps.out.B).Body()).SetDSrv(ps.ep)
		n++
		if p != nil {
			ps.st.mu.Lock()
			if ps.st.flight == nil {
				ps.st.flight = make(map[uint64]bool)
			}
			ps.st.flight[mid] = true
			ps.st.mu.Unlock()
			p.sessions = append(p.sessions, ps.st)
		}
	}
	return n
}

// livePush is one session route pushes a message to, with its copy.
type livePush struct {
	st      *sessState
	ep      uint32
	e       im.Endpoint // the endpoint ep, as copyPushes found it
	out     *bytebufferpool.ByteBuffer
	refused bool // the endpoint refused the push
}

// pushLive pushes buf to the sessions of pushes. A QoS 1 message is
// entered in pending, with every session in its window, before the first
// push, so that a receipt that comes before the pushes end (even from
// inside Deliver) finds it; the shard lock is held only over that entry,
// never across Deliver. Every copy is made before the entry exists: from
// then on a receipt may release buf. A session whose push is refused
// leaves the entry again. It reports whether the message was handled;
// false (buf still the caller's) when no session took it.
func (c *LocalCenter) pushLive(buf *bytebufferpool.ByteBuffer, pushes []livePush, user, cid uint64,
	qos frame.QoS, to uint64, origin uint32, remote bool) bool {
	mid := frame.Msg(frame.Frame(buf.B).Body()).MID()
	var p *pending
	if qos == frame.QoS1 {
		p = getPending()
		p.from, p.cid, p.qos, p.origin = user, cid, qos, origin
		p.deadline = time.Now().Add(c.cfg.AckTimeout)
	}
	if c.copyPushes(buf, pushes, mid, p) == 0 {
		if p != nil {
			putPending(p)
		}
		return false
	}
	var rb *bytebufferpool.ByteBuffer
	if remote && c.cl != nil {
		// The user's devices on other centers get a copy once a push
		// here succeeded.
		rb = bytebufferpool.Get()
		rb.B = append(rb.B, buf.B...)
	}
	k := pendKey{to, mid}
	if p != nil {
		p.buf = buf
		c.pending.put(k, p)
	}
	pushed, refused := 0, 0
	for i := range pushes {
		ps := &pushes[i]
		if ps.out == nil {
			continue
		}
		if err := ps.e.Deliver(ps.st.ref, ps.out); err == nil {
			pushed++
			continue
		}
		bytebufferpool.Put(ps.out)
		ps.out, ps.refused = nil, true
		refused++
		if p != nil {
			ps.st.mu.Lock()
			if live := ps.st.flight[mid]; live {
				delete(ps.st.flight, mid)
			}
			ps.st.mu.Unlock()
		}
	}
	if pushed == 0 {
		if rb != nil {
			bytebufferpool.Put(rb)
		}
		if p == nil {
			return false // QoS 0: the caller sheds it
		}
		// No session was pushed it, so no receipt came; but a session
		// that went offline meanwhile may have stored it (Offline).
		mine := c.pending.takeIf(k, p)
		if mine {
			putPending(p)
		}
		return !mine // mine: the caller spills the sessions and stores it
	}
	if p != nil && refused > 0 {
		for _, ps := range pushes {
			if ps.refused {
				c.dropFromPending(to, mid, ps.st) // the last one out stores it
			}
		}
	}
	c.Delivered.Add(1)
	if rb != nil {
		c.cl.relayBuf(to, rb)
	}
	if p == nil {
		bytebufferpool.Put(buf)
	}
	return true
}

// setSpill puts st in spill mode; it reports whether a drain must be
// started (none runs).
func (c *LocalCenter) setSpill(st *sessState) bool {
	st.mu.Lock()
	if st.gone {
		st.mu.Unlock()
		return false
	}
	if !st.spill {
		st.spill = true
		c.spilling.Add(1)
	}
	st.spillGen++
	start := !st.draining
	st.draining = true
	st.mu.Unlock()
	return start
}

// spillTo is called once a message for user was stored (or its storing
// failed): every online session of user drains the store from now on.
func (c *LocalCenter) spillTo(user uint64) {
	c.routes.Lookup(user, func(_ route.Addr, v any) {
		st := v.(*sessState)
		if c.setSpill(st) {
			c.startDrain(user, st)
		}
	})
}

// startDrain queues a drain of st, which the caller marked draining.
func (c *LocalCenter) startDrain(user uint64, st *sessState) {
	if !c.submit(func() { c.drain(user, st) }) {
		st.mu.Lock()
		st.draining = false // the next store or receipt retries
		st.mu.Unlock()
	}
}

// resumeDrain restarts a spilling session's drain, unless one runs.
func (c *LocalCenter) resumeDrain(user uint64, st *sessState) {
	st.mu.Lock()
	start := st.spill && !st.draining && len(st.flight) < c.cfg.Window
	if start {
		st.draining = true
	}
	st.mu.Unlock()
	if start {
		c.startDrain(user, st)
	}
}

// kickDrains resumes the drains of user's spilling sessions: something
// that held them back (a message on its way to the store, another
// session's live push) is resolved.
func (c *LocalCenter) kickDrains(user uint64) {
	if c.spilling.Load() == 0 {
		return
	}
	c.routes.Lookup(user, func(_ route.Addr, v any) { c.resumeDrain(user, v.(*sessState)) })
}

// horizon returns the lowest MID pushed live to another session of user,
// and not to st, whose receipt is still awaited: if that session goes, the
// message is stored, so st may not be pushed any stored message above it
// first. MaxUint64 when there is none.
func (c *LocalCenter) horizon(user uint64, st *sessState) uint64 {
	h := uint64(math.MaxUint64)
	var live []uint64
	c.routes.Lookup(user, func(_ route.Addr, v any) {
		o := v.(*sessState)
		if o == st {
			return
		}
		o.mu.Lock()
		for mid, l := range o.flight {
			if l && mid < h {
				live = append(live, mid)
			}
		}
		o.mu.Unlock()
	})
	if len(live) == 0 {
		return h
	}
	st.mu.Lock()
	for _, mid := range live {
		if _, mine := st.flight[mid]; !mine && mid < h {
			h = mid
		}
	}
	st.mu.Unlock()
	return h
}

// pushStored pushes a stored message to st and records it in its window.
// pushMu must be held. False when the endpoint refused it (a slow reader's
// full queue) or the session is gone: the message is then taken out of
// the window again, so that the next drain or FETCH pushes it.
func (c *LocalCenter) pushStored(st *sessState, mid uint64, b []byte) bool {
	// Recorded before the push: a receipt may come before sendRef returns.
	st.mu.Lock()
	if st.flight == nil {
		st.flight = make(map[uint64]bool)
	}
	st.flight[mid] = false
	st.mu.Unlock()
	if c.sendRef(st.ref, b) {
		return true
	}
	st.mu.Lock()
	if live, ok := st.flight[mid]; ok && !live {
		delete(st.flight, mid)
	}
	st.mu.Unlock()
	return false
}

// has is skipped with st.mu taken.
func (st *sessState) has(mid uint64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.skipped(mid)
}

// skipped reports whether a stored message is already with st (pushed
// and unacked, or acked and being deleted). st.mu must be held.
func (st *sessState) skipped(mid uint64) bool {
	if _, ok := st.flight[mid]; ok {
		return true
	}
	_, ok := st.acked[mid]
	return ok
}

// drain pushes a spilling session's stored messages, lowest MID first, as
// far as its window and the horizon allow; receipts delete them from the
// store and resume the drain. Every round reads the store from its start
// and skips what the session already has, so that a message stored below
// one already pushed (another sender's, committed later) is never passed
// over. When nothing is left, nothing is on its way to the store and no
// other session holds a live push this one lacks, the session goes back to
// live pushes, unless a message was stored meanwhile (spillGen moved).
func (c *LocalCenter) drain(user uint64, st *sessState) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st.pushMu.Lock()
	defer st.pushMu.Unlock()
	stop := func() {
		st.mu.Lock()
		st.draining = false
		st.mu.Unlock()
	}
	for {
		st.mu.Lock()
		room := c.cfg.Window - len(st.flight)
		gen, have := st.spillGen, len(st.flight)+len(st.acked)
		if !st.spill {
			st.draining = false
			st.mu.Unlock()
			return
		}
		// A new session waits for its client's FETCH a little, when there
		// is something to push (if the store is empty it goes live now).
		hold := monoNow() < st.holdUntil
		st.mu.Unlock()
		if room <= 0 {
			stop() // resumeDrain restarts it on a receipt
			return
		}
		h := min(c.horizon(user, st), c.storingFloor(user))
		limit := room + have
		pushed, held, ok := c.drainRound(ctx, user, st, h, limit, room, hold)
		if !ok {
			stop() // the next store or receipt, the FETCH or the grace timer resumes it
			return
		}
		if pushed > 0 {
			continue // more may follow: the window decides
		}
		st.mu.Lock()
		if st.spillGen != gen {
			st.mu.Unlock()
			continue // stored meanwhile: go round again
		}
		if held || c.storingCount(user) > 0 {
			// A receipt, a stored message or the end of the storing
			// restarts it (kickDrains).
			st.draining = false
			st.mu.Unlock()
			return
		}
		st.spill, st.draining = false, false
		c.spilling.Add(-1)
		st.mu.Unlock()
		return
	}
}

// drainRound reads up to limit of the user's stored messages and pushes
// to st, in MID order, up to room of those it lacks below the horizon h.
// ok is false when the drain must stop: the store failed, a push was
// refused, or the session waits for its FETCH (hold) with something to
// push. held reports a message at or past the horizon.
func (c *LocalCenter) drainRound(ctx context.Context, user uint64, st *sessState, h uint64,
	limit, room int, hold bool) (pushed int, held, ok bool) {
	defer st.beginRead()() // center_acks.go: acks of what the read returns stay visible
	msgs, err := c.cfg.Store.FetchOffline(ctx, user, 0, limit)
	if err != nil {
		return 0, false, false
	}
	for _, m := range msgs {
		if st.has(m.MID) {
			continue
		}
		if m.MID >= h {
			return pushed, true, true
		}
		if hold || !c.pushStored(st, m.MID, appendStored(m, st.ref.Endpoint)) {
			return pushed, false, false
		}
		if pushed++; pushed == room {
			break
		}
	}
	return pushed, false, true
}

// ack handles a client's receipt.
func (c *LocalCenter) ack(user uint64, s im.SessionRef, a frame.Ack) {
	mid := a.MID()
	switch a.Status() {
	case frame.AckReceived:
		p := c.pending.take(pendKey{user, mid})
		if p == nil { // a message pushed from the store, or stored at its receipt timeout
			c.ackStored(user, s, mid)
			return
		}
		for _, st := range p.sessions {
			st.mu.Lock()
			delete(st.flight, mid)
			st.mu.Unlock()
			c.resumeDrain(user, st)
		}
		if p.qos == frame.QoS1 {
			c.acked(p.from, p.cid, mid, user, p.origin, frame.AckDelivered)
		}
		bytebufferpool.Put(p.buf)
		putPending(p)
		c.kickDrains(user) // a horizon may have moved
	case frame.AckGroupRead:
		group := a.Peer()
		c.routes.Lookup(user, func(a route.Addr, v any) {
			if a.Session == s.Session {
				st := v.(*sessState)
				st.mu.Lock()
				if st.groupAcked == nil {
					st.groupAcked = make(map[uint64]uint64)
				}
				st.groupAcked[group] = max(st.groupAcked[group], mid)
				st.mu.Unlock()
			}
		})
		c.ackGroupRead(group, user, mid)
	}
}

// sweeper stores pushed messages whose receipt is overdue and acks their
// senders STORED. The push stays outstanding in the sessions' windows: it
// is not pushed to them again (which would put it after newer ones), and
// its late receipt deletes it from the store. If the session goes first,
// the stored copy reaches the user's next session in MID order.
func (c *LocalCenter) sweeper() {
	defer c.wg.Done()
	every := min(time.Second, max(c.cfg.AckTimeout/4, 10*time.Millisecond))
	sweepExpired(c.stop, every, c.pending.shards[:], func(k pendKey, p *pending) {
		// Handed to the writer first: until then the live push holds
		// back the drains of the user's other sessions (horizon), from
		// then on its storing does (storingFloor).
		c.storeAndAck(p.buf, p.from, p.cid, p.qos, k.to, p.origin)
		for _, st := range p.sessions {
			st.mu.Lock()
			if _, ok := st.flight[k.mid]; ok {
				st.flight[k.mid] = false
			}
			st.mu.Unlock()
		}
		putPending(p)
	})
}
