package center

import (
	"context"
	"time"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/route"
)

// Receipts of stored messages. A session that acks a stored message must
// never see it again, from a drain or a FETCH, though the delete reaches
// the store later and on another goroutine. Three rules make that so:
//
//   - the MID joins st.acked at the receipt, before anything else;
//   - a store read of the session's messages (drain or FETCH) runs between
//     beginRead and the func it returns, and checks st.skipped for every message it
//     read before pushing it;
//   - a MID leaves st.acked only once its delete has committed and no read
//     that began before the commit is still running (st.limbo holds it
//     until the last such read ends).
//
// A read that began after the commit does not see the message; one that
// began before it finds the MID still in st.acked. The deletes of a session
// are batched: one store call for the receipts that came while the
// previous call ran, retried with backoff when the store fails.

const (
	// deleteBatch bounds the MIDs of one DeleteOffline call; the MySQL
	// driver splits it into statements of its own size.
	deleteBatch = 512
	// deleteRetries is how many times a failed delete is tried again
	// (about 40 s in all with deleteBackoff) before it is given up and
	// logged: the message then comes back in a later session, where the
	// client's dedupe by MID hides it.
	deleteRetries = 10
	deleteBackoff = 100 * time.Millisecond
	deleteMaxWait = 8 * time.Second
)

// ackStored deletes an acked stored message; until the delete is done the
// session's drain and fetch skip it.
func (c *LocalCenter) ackStored(user uint64, s im.SessionRef, mid uint64) {
	var st *sessState
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if a.Session == s.Session {
			st = v.(*sessState)
		}
	})
	if st == nil { // the session is gone: delete, nothing to hide it from
		c.deleteOnce(user, mid)
		return
	}
	st.mu.Lock()
	if _, pushed := st.flight[mid]; !pushed {
		// Not a message this session was pushed: nothing to hide from it,
		// and no entry of its own, so that receipts of made-up MIDs cannot
		// grow the session's state while the store is slow.
		st.mu.Unlock()
		c.deleteOnce(user, mid)
		return
	}
	delete(st.flight, mid)
	if st.acked == nil {
		st.acked = make(map[uint64]struct{})
	}
	st.acked[mid] = struct{}{}
	st.delQ = append(st.delQ, mid)
	start := !st.delBusy
	st.delBusy = true
	st.mu.Unlock()
	if start {
		c.scheduleDeletes(user, st, 0)
	}
	c.resumeDrain(user, st)
}

// scheduleDeletes hands the session's queued deletes to a worker, at once
// or, for a retry, after a backoff. When the job queue is full it tries
// again later: the MIDs stay hidden from the session meanwhile.
func (c *LocalCenter) scheduleDeletes(user uint64, st *sessState, attempt int) {
	run := func() {
		select {
		case <-c.stop: // a stopping center drops the retry
			return
		default:
		}
		if !c.submit(func() { c.flushDeletes(user, st, attempt) }) {
			if ok, n := c.storeWarn.Allow(); ok {
				c.cfg.Logger.Warn("offline delete delayed: queue full", "user", user, "suppressed", n)
			}
			c.retryDeletes(user, st, attempt)
		}
	}
	if attempt == 0 {
		run()
		return
	}
	time.AfterFunc(min(deleteBackoff<<min(attempt-1, 16), deleteMaxWait), run)
}

// retryDeletes schedules the next attempt, or gives the batch up.
func (c *LocalCenter) retryDeletes(user uint64, st *sessState, attempt int) {
	select {
	case <-c.stop:
		return
	default:
	}
	if attempt < deleteRetries {
		c.scheduleDeletes(user, st, attempt+1)
		return
	}
	st.mu.Lock()
	mids := st.delQ
	st.delQ, st.delBusy = nil, false
	st.mu.Unlock()
	c.forgetAcked(st, mids)
	c.cfg.Logger.Error("offline delete given up; the messages may be delivered again",
		"user", user, "messages", len(mids))
}

// flushDeletes runs on a worker: it deletes the session's queued MIDs in
// batches until none are left.
func (c *LocalCenter) flushDeletes(user uint64, st *sessState, attempt int) {
	for {
		st.mu.Lock()
		n := min(len(st.delQ), deleteBatch)
		if n == 0 {
			st.delBusy = false
			st.mu.Unlock()
			return
		}
		mids := append([]uint64(nil), st.delQ[:n]...)
		st.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.cfg.Store.DeleteOffline(ctx, user, mids)
		cancel()
		if err != nil {
			if ok, n := c.storeWarn.Allow(); ok {
				c.cfg.Logger.Warn("offline delete failed; retrying", "user", user, "attempt", attempt,
					"err", err, "suppressed", n)
			}
			c.retryDeletes(user, st, attempt)
			return
		}
		attempt = 0
		st.mu.Lock()
		st.delQ = st.delQ[:copy(st.delQ, st.delQ[n:])]
		st.mu.Unlock()
		c.OfflineDeleted.Add(uint64(len(mids)))
		c.forgetAcked(st, mids)
	}
}

// deleteOnce deletes a stored message acked by a session that is gone.
func (c *LocalCenter) deleteOnce(user, mid uint64) {
	if !c.submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.cfg.Store.DeleteOffline(ctx, user, []uint64{mid}); err != nil {
			if ok, n := c.storeWarn.Allow(); ok {
				c.cfg.Logger.Warn("offline delete failed", "user", user, "err", err, "suppressed", n)
			}
			return
		}
		c.OfflineDeleted.Add(1)
	}) {
		if ok, n := c.storeWarn.Allow(); ok {
			c.cfg.Logger.Warn("offline delete dropped: queue full", "user", user, "suppressed", n)
		}
	}
}

// forgetAcked drops committed deletes from st.acked, or parks them in
// st.limbo while a read that may have seen them is running.
func (c *LocalCenter) forgetAcked(st *sessState, mids []uint64) {
	st.mu.Lock()
	if st.reads > 0 {
		st.limbo = append(st.limbo, mids...)
	} else {
		for _, m := range mids {
			delete(st.acked, m)
		}
	}
	st.mu.Unlock()
}

// beginRead marks a store read of the session's messages as running, and
// returns the func that ends it: that lets the committed deletes in limbo
// go once no read is running. st.mu must not be held.
func (st *sessState) beginRead() (end func()) {
	st.mu.Lock()
	st.reads++
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		if st.reads--; st.reads == 0 && len(st.limbo) > 0 {
			for _, m := range st.limbo {
				delete(st.acked, m)
			}
			st.limbo = st.limbo[:0]
		}
		st.mu.Unlock()
	}
}
