package center

// User-to-user file transfer across centers.
//
// A transfer lives on its sender's center, which checks every frame
// against it (files.go). When the receiver is a user of another center:
//
//   - OFFER, CANCEL and the answers the holding center routes to the sender
//     travel as point-to-point messages: FORWARDed with a RESULT
//     (center_cluster.go), stored offline where nobody takes them.
//   - A control frame (ACCEPT, REJECT, DONE, CHUNK_ACK, CANCEL) that the
//     receiver sends to its own center, which does not hold the transfer,
//     goes to the center that does, FORWARDed with link.ForwardFile and the
//     receiver as user; that center handles it as the receiver's, with a
//     SessionRef that stands for the receiver's sessions on the forwarding
//     center (remoteRef), and answers errors there.
//   - CHUNKs and re-offers go from the holding center to the receiver's
//     center with the same flag and the receiver as user (To, not From,
//     names it), which passes them to the receiver's session there and
//     tells the sender (ERROR code 5) when none takes them: a chunk is never
//     dropped without the sender hearing of it, so the sender pauses and
//     resumes with a re-offer as it does on one center.
//
// The receiver's center keeps a leg per such transfer: which of its
// sessions accepted (chunks go to that one only) and which center holds the
// transfer (control frames go straight there, with no route lookup). A
// control frame with no leg to follow, and a re-offer for a receiver that
// has no session on the holding center, wait for a route lookup on
// xferRouter, batched like the cluster's routers.
//
// Flow control is the sender's center's window, as on one center: the
// receiver's CHUNK_ACKs reach it over the link, and a receiver slow to
// drain its connection makes its center refuse chunks as busy.
//
// The receiver may resume on any center. A sender that comes back on
// another center offers anew there, which then holds a second copy of the
// transfer; the first one's center forgets its copy at the idle timeout,
// and tells both sides so.
//
// Lock order: an xfer shard's lock, then the xfer table's mu, a peer link's
// queue lock or peersMu, or an endpoint's locks (through Deliver).

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
)

// remoteBit marks a SessionRef that stands for a user's sessions on another
// center: Endpoint is remoteBit | that center's id, Session 0. Endpoint ids
// are 1 to 65535, so no session of this center's endpoints carries it.
const remoteBit = 1 << 31

// remoteRef stands for a user's sessions on center.
func remoteRef(center uint32) im.SessionRef { return im.SessionRef{Endpoint: remoteBit | center} }

// remoteCenter returns the center s stands for, or 0 for a session here.
func remoteCenter(s im.SessionRef) uint32 {
	if s.Endpoint&remoteBit == 0 {
		return 0
	}
	return s.Endpoint &^ remoteBit
}

// xferLeg is this center's part in a transfer held by another center whose
// receiver is a user of this center. Guarded by its shard's lock.
type xferLeg struct {
	to uint64 // the receiver
	// rs is the receiver's session that accepted; zero before it does and
	// while the transfer is paused (a chunk failed, the session closed).
	rs im.SessionRef
	// center holds the transfer; 0 while unknown.
	center uint32
	// started: accepted once, so the idle timeout applies, not the offer
	// TTL.
	started bool
	touched time.Time
}

// leg returns k's leg for receiver to, creating it when to has fewer than
// limit; nil when it has not (frames then go by route lookup and chunks to
// any session of to). sh's lock must be held.
func (t *xferTable) leg(sh *xferShard, k xferKey, to uint64, limit int, now time.Time) *xferLeg {
	if lg := sh.legs[k]; lg != nil {
		if lg.to == to {
			return lg
		}
		t.dropLeg(sh, k) // the sender's id went on to another transfer
	}
	t.mu.Lock()
	if t.legsPer[to] >= limit {
		t.mu.Unlock()
		return nil
	}
	t.legsPer[to]++
	t.mu.Unlock()
	t.legsN.Add(1)
	lg := &xferLeg{to: to, touched: now}
	sh.legs[k] = lg
	return lg
}

// dropLeg deletes k's leg, if any. sh's lock must be held.
func (t *xferTable) dropLeg(sh *xferShard, k xferKey) {
	lg := sh.legs[k]
	if lg == nil {
		return
	}
	delete(sh.legs, k)
	t.mu.Lock()
	if t.legsPer[lg.to]--; t.legsPer[lg.to] <= 0 {
		delete(t.legsPer, lg.to)
	}
	t.mu.Unlock()
	t.legsN.Add(-1)
}

// xferRouteQueue bounds the FILE frames waiting for a route lookup. Only
// the first control frames of a transfer (before its leg knows the holding
// center) and re-offers wait here, a few per transfer; beyond the bound they
// are refused as retryable.
const xferRouteQueue = 4096

// xferJob is a FILE frame waiting in xfers.route for the routes of peer,
// the other party of its transfer.
type xferJob struct {
	buf  *bytebufferpool.ByteBuffer
	peer uint64
	user uint64        // the user of this center that sent buf
	s    im.SessionRef // its session, told when buf goes nowhere
	// deliver marks a re-offer for receiver peer, sent on to a session of
	// peer's rather than handled as peer's; prefer is the center to choose
	// when peer is on several.
	deliver bool
	prefer  uint32
}

// xferEnqueue queues j for xferRouter; false when the queue is full (the
// caller keeps j.buf). Never blocks.
func (c *LocalCenter) xferEnqueue(j xferJob) bool {
	select {
	case c.xfers.route <- j:
		return true
	default:
		return false
	}
}

// xferRouter looks up, a batch at a time, the centers of the users that
// queued FILE frames are for, and sends each frame on (xferDispatch). One
// goroutine keeps a transfer's frames in order.
func (c *LocalCenter) xferRouter() {
	defer c.wg.Done()
	in := c.xfers.route
	jobs := make([]xferJob, 0, routeBatch)
	users := make([]uint64, 0, routeBatch)
	for {
		var first xferJob
		select {
		case first = <-in:
		case <-c.stop:
			for {
				select {
				case j := <-in:
					bytebufferpool.Put(j.buf)
				default:
					return
				}
			}
		}
		jobs = collectBatch(jobs, first, in, routeBatch)
		users = users[:0]
		for _, j := range jobs {
			users = append(users, j.peer)
		}
		addrs, err := c.cl.lookup(users)
		for i, j := range jobs {
			c.xferDispatch(j, addrs[j.peer], err)
			jobs[i] = xferJob{}
		}
	}
}

// xferDispatch sends a looked-up frame to one center of addrs whose link is
// up (the one j prefers, or else the lowest id: a transfer is held by one
// center, and another would answer "unknown transfer"), and answers the
// sender when there is none.
func (c *LocalCenter) xferDispatch(j xferJob, addrs []route.Addr, lookupErr error) {
	f := frame.File(frame.Frame(j.buf.B).Body())
	op, xfer, cid := f.Op(), f.Xfer(), f.Msg().CID()
	var p *peerLink
	found := false
	for _, a := range addrs {
		if a.Center == c.cfg.ID || a.Center == 0 {
			continue
		}
		found = true
		if q := c.cl.peer(a.Center); q != nil && q.up() &&
			(p == nil || a.Center == j.prefer || (p.id != j.prefer && a.Center < p.id)) {
			p = q
		}
	}
	if j.deliver {
		if p != nil && p.push(link.NewForward(j.peer, link.ForwardFile, j.buf)) {
			return
		}
		bytebufferpool.Put(j.buf)
		c.errorTo(j.s, frame.ErrCodeRetry, cid, fmt.Sprintf("receiver offline; transfer %d paused", xfer))
		return
	}
	if p != nil {
		k := xferKey{j.peer, xfer}
		sh := c.xfers.shard(k)
		sh.mu.Lock()
		if lg := sh.legs[k]; lg != nil && lg.to == j.user {
			lg.center = p.id
		}
		sh.mu.Unlock()
		if p.push(link.NewForward(j.user, link.ForwardFile, j.buf)) {
			return
		}
	}
	var text string
	code := frame.ErrCodeRetry
	switch {
	case op == frame.FileCancel:
		c.p2p(j.user, j.s, j.buf) // routed as a message, as when no center holds the transfer
		return
	case op == frame.FileChunkAck:
		bytebufferpool.Put(j.buf) // as an ack for a sender that is gone
		return
	case lookupErr != nil:
		text = "route table unavailable; retry"
	case !found:
		code, text = frame.ErrCodeNotFound, fmt.Sprintf("unknown transfer %d", xfer)
	default:
		text = fmt.Sprintf("center of user %d unreachable; retry", j.peer)
	}
	bytebufferpool.Put(j.buf)
	c.errorTo(j.s, code, cid, text)
}

// xferForward sends a control frame (ACCEPT, REJECT, DONE, CHUNK_ACK,
// CANCEL) that user's session s sent about a transfer this center does not
// hold to the center that holds it: the one the transfer's leg names, or
// else, when the other party has no session here, the one the route table
// names. It reports whether it took buf; false leaves the frame to the
// caller (unknown transfer; CANCEL routed as a message). A frame that came
// from another center is never forwarded again.
func (c *LocalCenter) xferForward(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer, f frame.File) bool {
	if c.cl == nil || remoteCenter(s) != 0 {
		return false
	}
	m := f.Msg()
	other, op, cid := m.To(), f.Op(), m.CID()
	k := xferKey{other, f.Xfer()}
	now := time.Now()
	sh := c.xfers.shard(k)
	sh.mu.Lock()
	lg := sh.legs[k]
	switch {
	case lg != nil && lg.to != user:
		lg = nil // another receiver's: only the holding center may replace it
	case op == frame.FileAccept:
		if lg == nil {
			lg = c.xfers.leg(sh, k, user, c.cfg.Files.MaxXfers, now)
		}
		if lg != nil {
			lg.rs, lg.started = s, true
		}
	}
	var center uint32
	if lg != nil {
		center, lg.touched = lg.center, now
		if op == frame.FileReject || op == frame.FileDone || op == frame.FileCancel {
			c.xfers.dropLeg(sh, k)
		}
	}
	sh.mu.Unlock()
	if center != 0 {
		if p := c.cl.peer(center); p != nil && p.push(link.NewForward(user, link.ForwardFile, buf)) {
			return true
		}
		if op == frame.FileChunkAck {
			// Dropped as an ack for a sender that is gone: a later ack
			// taking another way could overtake it.
			bytebufferpool.Put(buf)
			return true
		}
	} else if c.routes.Lookup(other, func(route.Addr, any) {}) > 0 {
		return false // the other party is here and the transfer is not
	}
	if !c.xferEnqueue(xferJob{buf: buf, peer: other, user: user, s: s}) {
		bytebufferpool.Put(buf)
		if op != frame.FileChunkAck {
			c.errorTo(s, frame.ErrCodeRetry, cid, "server busy; retry")
		}
	}
	return true
}

// xferPush passes a chunk for user to center; ownership of buf passes on
// success. A link that is down reads as an unknown session and a full one
// as a slow reader, as Deliver would report them.
func (c *LocalCenter) xferPush(center uint32, user uint64, buf *bytebufferpool.ByteBuffer) error {
	p := c.cl.peer(center)
	if p == nil {
		return im.ErrUnknownSession
	}
	if p.push(link.NewForward(user, link.ForwardFile, buf)) {
		return nil
	}
	if p.up() {
		return im.ErrSlowReader
	}
	return im.ErrUnknownSession
}

// xferError sends an ERROR to user's session s, which may stand for its
// sessions on another center.
func (c *LocalCenter) xferError(user uint64, s im.SessionRef, code uint16, ref uint64, text string) {
	if center := remoteCenter(s); center != 0 {
		c.xferNotify(center, user, code, ref, text)
		return
	}
	c.errorTo(s, code, ref, text)
}

// xferNotify sends an ERROR to user's sessions on center, or, when that
// center is unknown (0) or its link is down, wherever user is.
func (c *LocalCenter) xferNotify(center uint32, user uint64, code uint16, ref uint64, text string) {
	if center != 0 && c.cl != nil {
		buf := bytebufferpool.Get()
		buf.B, _ = frame.AppendError(buf.B, code, ref, text)
		if p := c.cl.peer(center); p != nil && p.push(link.NewForward(user, 0, buf)) {
			return
		}
		bytebufferpool.Put(buf)
	}
	c.errorToUser(user, code, ref, text)
}

// onFile handles a FORWARD that carries a FILE frame from center origin
// (the first branch of onForward). It runs on the link's reader. Ownership
// of buf passes.
func (cl *cluster) onFile(origin uint32, user uint64, flags byte, buf *bytebufferpool.ByteBuffer) error {
	c := cl.c
	f := frame.Frame(buf.B)
	if f.Cmd() != frame.CmdFile {
		bytebufferpool.Put(buf)
		return ErrLinkProtocol
	}
	ff := frame.File(f.Body())
	m := ff.Msg()
	switch {
	case flags&link.ForwardP2P != 0:
		if m.To() != user || m.MID() == 0 {
			bytebufferpool.Put(buf)
			return ErrLinkProtocol
		}
		cl.Received.Add(1)
		c.legSeen(origin, user, ff)
		c.route(buf, m.From(), m.CID(), f.QoS(), user, origin, false)
	case flags&link.ForwardFile == 0: // relayed as is
		c.sendLocal(user, buf.B)
		bytebufferpool.Put(buf)
	case m.From() == user: // a control frame of user's for a transfer held here
		switch ff.Op() {
		case frame.FileAccept, frame.FileReject, frame.FileDone, frame.FileChunkAck, frame.FileCancel:
		default:
			bytebufferpool.Put(buf)
			return fmt.Errorf("%w: FILE op %d forwarded as a control frame", ErrLinkProtocol, ff.Op())
		}
		c.fileFrame(user, remoteRef(origin), buf)
	case m.To() == user: // a chunk or re-offer for user's session here
		c.xferDeliver(origin, user, buf, ff)
	default:
		bytebufferpool.Put(buf)
		return fmt.Errorf("%w: FILE frame forwarded for user %d, neither its sender nor its receiver", ErrLinkProtocol, user)
	}
	return nil
}

// legSeen notes a message-routed FILE frame from center origin for
// receiver to: an OFFER opens (or restarts) a leg held by origin when to
// has a session here, a CANCEL ends it.
func (c *LocalCenter) legSeen(origin uint32, to uint64, f frame.File) {
	op := f.Op()
	switch {
	case op != frame.FileOffer && op != frame.FileCancel:
		return
	case op == frame.FileOffer && c.routes.Lookup(to, func(route.Addr, any) {}) == 0:
		return // not here after all: the offer goes back to origin
	}
	k := xferKey{f.Msg().From(), f.Xfer()}
	now := time.Now()
	sh := c.xfers.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if op == frame.FileCancel {
		if lg := sh.legs[k]; lg != nil && lg.to == to {
			c.xfers.dropLeg(sh, k)
		}
		return
	}
	if lg := c.xfers.leg(sh, k, to, c.cfg.Files.MaxXfers, now); lg != nil {
		*lg = xferLeg{to: to, center: origin, touched: now} // a new offer waits for its ACCEPT
	}
}

// xferDeliver passes a chunk or a re-offer that center origin, which holds
// the transfer, sent for receiver user: a chunk to the session that
// accepted (to any session of user when there is no leg), a re-offer to any
// session. When none takes it the sender hears so, as from xferChunk.
// Ownership of buf passes.
func (c *LocalCenter) xferDeliver(origin uint32, user uint64, buf *bytebufferpool.ByteBuffer, f frame.File) {
	m := f.Msg()
	from, xfer, cid := m.From(), f.Xfer(), m.CID()
	k := xferKey{from, xfer}
	now := time.Now()
	sh := c.xfers.shard(k)
	err := im.ErrUnknownSession
	switch f.Op() {
	case frame.FileChunk:
		sh.mu.Lock()
		if lg := sh.legs[k]; lg != nil && lg.to == user {
			lg.center, lg.touched = origin, now
			if lg.rs.Session != 0 {
				if ep := c.endpoint(lg.rs.Endpoint); ep != nil {
					m.SetDSrv(lg.rs.Endpoint)
					err = ep.Deliver(lg.rs, buf)
				}
				if err != nil {
					lg.rs = im.SessionRef{} // paused until the receiver accepts again
				}
			}
			sh.mu.Unlock()
			break
		}
		sh.mu.Unlock()
		if c.deliverLive(user, im.SessionRef{}, buf) {
			err = nil
		}
	case frame.FileOffer:
		var prefer im.SessionRef
		sh.mu.Lock()
		if lg := c.xfers.leg(sh, k, user, c.cfg.Files.MaxXfers, now); lg != nil {
			lg.center, lg.touched, prefer = origin, now, lg.rs
		}
		sh.mu.Unlock()
		if c.deliverLive(user, prefer, buf) {
			err = nil
		}
	default:
		bytebufferpool.Put(buf) // nothing else is sent this way
		return
	}
	if err == nil {
		return
	}
	bytebufferpool.Put(buf)
	text := fmt.Sprintf("receiver offline; transfer %d paused", xfer)
	if errors.Is(err, im.ErrSlowReader) {
		text = fmt.Sprintf("receiver busy; transfer %d paused", xfer)
	}
	c.xferNotify(origin, from, frame.ErrCodeRetry, cid, text)
}

// legsOffline pauses the legs whose accepting session s of user closed and
// tells each transfer's sender, as xferOffline does for transfers held
// here.
func (c *LocalCenter) legsOffline(user uint64, s im.SessionRef) {
	type note struct {
		center     uint32
		from, xfer uint64
	}
	var notes []note
	for i := range c.xfers.shards {
		sh := &c.xfers.shards[i]
		sh.mu.Lock()
		for k, lg := range sh.legs {
			if lg.to == user && lg.rs == s {
				lg.rs = im.SessionRef{}
				notes = append(notes, note{lg.center, k.from, k.xfer})
			}
		}
		sh.mu.Unlock()
	}
	for _, n := range notes {
		c.xferNotify(n.center, n.from, frame.ErrCodeRetry, n.xfer, fmt.Sprintf("receiver offline; transfer %d paused", n.xfer))
	}
}

// sweepLegs forgets legs that saw no traffic for as long as the holding
// center keeps such a transfer; that center tells both sides when it ends
// one.
func (c *LocalCenter) sweepLegs(now time.Time) {
	for i := range c.xfers.shards {
		sh := &c.xfers.shards[i]
		sh.mu.Lock()
		for k, lg := range sh.legs {
			ttl := c.cfg.Files.OfferTTL
			if lg.started {
				ttl = c.cfg.Files.XferIdle
			}
			if now.Sub(lg.touched) > ttl {
				c.xfers.dropLeg(sh, k)
			}
		}
		sh.mu.Unlock()
	}
}
