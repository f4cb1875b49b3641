package center

import (
	"context"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
)

// routeJob is a frame for a user with no session here, waiting for a
// lookup. p2p marks a message routed with a receipt (its MID set).
type routeJob struct {
	to   uint64
	buf  *bytebufferpool.ByteBuffer
	p2p  bool
	from uint64
	cid  uint64
	qos  frame.QoS
	// tried are the centers the message was forwarded to and that
	// answered moved: they are not picked again.
	tried centerList
}

// heldJob is a QoS 1 message whose lookup failed, stored offline at until
// unless a lookup succeeds first.
type heldJob struct {
	j     routeJob
	until time.Time
}

// retryList holds, in arrival order, the messages of one router whose
// lookup failed. Owned by its router goroutine.
type retryList struct {
	held             []heldJob
	bytes            int
	maxLen, maxBytes int
	backoff          time.Duration
}

// next returns the wait before the next retry: the backoff, doubled each
// time, but no later than when the oldest message is due to be stored.
func (h *retryList) next(now time.Time) time.Duration {
	h.backoff = min(max(2*h.backoff, retryMinBackoff), retryMaxBackoff)
	return max(min(h.backoff, h.held[0].until.Sub(now)), 0)
}

type fwdKey struct{ to, mid uint64 }

// fwdEntry is a forwarded QoS 1 message awaiting its RESULT.
type fwdEntry struct {
	buf       *bytebufferpool.ByteBuffer
	from, cid uint64
	qos       frame.QoS
	peer      uint32
	deadline  time.Time
	// tried are the centers forwarded to so far, peer last.
	tried centerList
}

type fwdShard = deadlineShard[fwdKey, *fwdEntry]

func (e *fwdEntry) due() time.Time { return e.deadline }

// router looks up the recipients of the jobs in, a batch at a time, and
// forwards or disposes of them. QoS 1 messages whose lookup failed wait in
// h and are looked up again with backoff until LookupRetry has passed;
// while any wait, new jobs join them without a lookup of their own (see the
// file comment).
func (cl *cluster) router(in chan routeJob, h *retryList) {
	defer cl.wg.Done()
	jobs := make([]routeJob, 0, routeBatch)
	users := make([]uint64, 0, routeBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var retry <-chan time.Time
		if len(h.held) > 0 {
			retry = timer.C
		}
		var first routeJob
		select {
		case first = <-in:
		case <-retry:
			users = cl.retry(h, users)
			if len(h.held) > 0 {
				timer.Reset(h.next(time.Now()))
			}
			continue
		case <-cl.stop:
			for i, hj := range h.held {
				cl.unrouted(hj.j)
				h.held[i] = heldJob{}
			}
			h.held, h.bytes = h.held[:0], 0
			for {
				select {
				case j := <-in:
					cl.unrouted(j)
				default:
					return
				}
			}
		}
		jobs = collectBatch(jobs, first, in, routeBatch)
		if len(h.held) > 0 {
			now := time.Now()
			for i, j := range jobs {
				cl.hold(h, j, now)
				jobs[i] = routeJob{}
			}
			continue
		}
		users = users[:0]
		for _, j := range jobs {
			users = append(users, j.to)
		}
		addrs, err := cl.lookup(users)
		now := time.Now()
		for i, j := range jobs {
			if err != nil {
				cl.hold(h, j, now)
			} else {
				cl.dispatch(j, addrs[j.to])
			}
			jobs[i] = routeJob{}
		}
		if len(h.held) > 0 {
			h.backoff = 0
			timer.Reset(h.next(now))
		}
	}
}

// hold keeps a QoS 1 message whose lookup failed for a retry; anything
// else, or a message that does not fit in h, is disposed of at once
// (unrouted: a message is stored).
func (cl *cluster) hold(h *retryList, j routeJob, now time.Time) {
	if !j.p2p || j.qos != frame.QoS1 || cl.cfg.LookupRetry < 0 ||
		len(h.held) >= h.maxLen || h.bytes+len(j.buf.B) > h.maxBytes {
		cl.unrouted(j)
		return
	}
	cl.Held.Add(1)
	h.held = append(h.held, heldJob{j: j, until: now.Add(cl.cfg.LookupRetry)})
	h.bytes += len(j.buf.B)
}

// retry looks the held messages up again, in order and routeBatch at a
// time, and dispatches them; at the first failure it stops and stores
// those whose time is up. users is scratch space, returned for reuse.
func (cl *cluster) retry(h *retryList, users []uint64) []uint64 {
	done := 0
	for done < len(h.held) {
		batch := h.held[done:min(done+routeBatch, len(h.held))]
		users = users[:0]
		for _, hj := range batch {
			users = append(users, hj.j.to)
		}
		addrs, err := cl.lookup(users)
		if err != nil {
			break
		}
		for i := range batch {
			j := batch[i].j
			batch[i] = heldJob{}
			h.bytes -= len(j.buf.B)
			cl.dispatch(j, addrs[j.to])
		}
		done += len(batch)
	}
	if done == len(h.held) {
		h.held, h.bytes, h.backoff = h.held[:0], 0, 0
		return users
	}
	// Still failing: what has waited long enough goes to the store. The
	// list is in arrival order, so those are a prefix of the rest.
	now := time.Now()
	for done < len(h.held) && !now.Before(h.held[done].until) {
		j := h.held[done].j
		h.held[done] = heldJob{}
		h.bytes -= len(j.buf.B)
		cl.HeldStored.Add(1)
		cl.unrouted(j)
		done++
	}
	n := copy(h.held, h.held[done:])
	clear(h.held[n:])
	h.held = h.held[:n]
	return users
}

// lookup reads users' routes from the table.
func (cl *cluster) lookup(users []uint64) (map[uint64][]route.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	m, err := cl.cfg.Routes.GetMulti(ctx, users)
	if err != nil {
		if cl.RouteErrors.Add(1)%1000 == 1 {
			cl.log.Warn("route table read failed: QoS 1 messages for other centers wait for it, then go to the offline store",
				"err", err, "retry_for", cl.cfg.LookupRetry)
		}
	}
	return m, err
}

// unrouted disposes of a job that cannot be forwarded: a message is routed
// here again, which stores it when the recipient is still not here.
func (cl *cluster) unrouted(j routeJob) {
	if !j.p2p {
		bytebufferpool.Put(j.buf)
		return
	}
	cl.c.route(j.buf, j.from, j.cid, j.qos, j.to, 0, false)
}

// dispatch forwards a job to the centers addrs name.
func (cl *cluster) dispatch(j routeJob, addrs []route.Addr) {
	if !j.p2p {
		cl.copyTo(j.to, j.buf.B, addrs, 0)
		bytebufferpool.Put(j.buf)
		return
	}
	if cl.c.routes.Lookup(j.to, func(route.Addr, any) {}) > 0 || j.tried.full() {
		cl.unrouted(j) // came online here meanwhile, or tried enough centers
		return
	}
	var p *peerLink
	for _, a := range addrs {
		if a.Center == cl.c.cfg.ID || a.Center == 0 || j.tried.has(a.Center) {
			continue
		}
		if q := cl.peer(a.Center); q != nil && q.up() && (p == nil || a.Center < p.id) {
			p = q
		}
	}
	if p == nil {
		if len(addrs) > 0 {
			cl.Unrouted.Add(1)
		}
		cl.unrouted(j)
		return
	}
	if j.tried.n == 0 {
		// The user's devices on the other centers get a copy, as devices
		// on one center all get the push; the receipt of the one the
		// message is forwarded to acks it. Not again on a re-route: the
		// copies went out the first time.
		cl.copyTo(j.to, j.buf.B, addrs, p.id)
	}
	mid := frame.Msg(frame.Frame(j.buf.B).Body()).MID()
	if j.qos != frame.QoS1 {
		if !p.push(link.NewForward(j.to, link.ForwardP2P, j.buf)) {
			cl.Unrouted.Add(1)
			cl.unrouted(j)
		}
		return
	}
	k := fwdKey{j.to, mid}
	e := &fwdEntry{buf: j.buf, from: j.from, cid: j.cid, qos: j.qos, peer: p.id,
		deadline: time.Now().Add(cl.cfg.ForwardTimeout), tried: j.tried}
	e.tried.add(p.id) // not full: checked above
	sh := &cl.fwd[mid%pendingShards]
	sh.mu.Lock()
	sh.m[k] = e
	sh.mu.Unlock()
	out := bytebufferpool.Get()
	out.B = append(out.B, j.buf.B...)
	if p.push(link.NewForward(j.to, link.ForwardP2P, out)) {
		cl.Forwarded.Add(1)
		return
	}
	bytebufferpool.Put(out)
	if e := cl.takeFwd(k, p.id); e != nil {
		cl.Unrouted.Add(1)
		cl.c.storeAndAck(e.buf, e.from, e.cid, e.qos, j.to, 0)
	}
}

// copyTo sends a copy of frame b for user, without a RESULT, to each other
// center addrs name, except skip; the receiving center pushes it to the
// user's sessions there.
func (cl *cluster) copyTo(user uint64, b []byte, addrs []route.Addr, skip uint32) {
	var sent [4]uint32
	n := 0
next:
	for _, a := range addrs {
		if a.Center == cl.c.cfg.ID || a.Center == 0 || a.Center == skip {
			continue
		}
		for _, s := range sent[:n] {
			if s == a.Center {
				continue next
			}
		}
		if n < len(sent) {
			sent[n] = a.Center
			n++
		}
		if p := cl.peer(a.Center); p != nil {
			out := bytebufferpool.Get()
			out.B = append(out.B, b...)
			if p.push(link.NewForward(user, 0, out)) {
				cl.Relayed.Add(1)
			} else {
				bytebufferpool.Put(out)
			}
		}
	}
}

// takeFwd removes and returns a forwarded message's entry if it went to
// peer.
func (cl *cluster) takeFwd(k fwdKey, peer uint32) *fwdEntry {
	sh := &cl.fwd[k.mid%pendingShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil || e.peer != peer {
		return nil
	}
	delete(sh.m, k)
	return e
}

// fanout sends a group frame to members that have no session here, one
// FANOUT per other center. It runs on a center worker.
func (cl *cluster) fanout(users []uint64, b []byte) {
	addrs, err := cl.lookup(users)
	if err != nil {
		return // members fetch what they missed: group messages are stored first
	}
	by := map[uint32][]uint64{}
	for _, u := range users {
		for _, a := range addrs[u] {
			if a.Center == cl.c.cfg.ID || a.Center == 0 {
				continue
			}
			l := by[a.Center]
			if len(l) == 0 || l[len(l)-1] != u {
				by[a.Center] = append(l, u)
			}
		}
	}
	for id, us := range by {
		p := cl.peer(id)
		if p == nil {
			continue
		}
		it := link.NewFanout(us, b)
		if p.push(it) {
			cl.Relayed.Add(1)
		} else {
			it.Release()
		}
	}
}
