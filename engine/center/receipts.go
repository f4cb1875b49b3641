package center

import (
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// The pending receipts: every QoS 1 message pushed live and not yet
// receipted, by recipient and MID, with the sessions it was pushed to. A
// receipt takes the entry (the sender is acked DELIVERED); the sweeper
// takes it at its deadline (the message is stored and the sender acked
// STORED); a session going away leaves it, and the last one out stores
// it.

type pendKey struct{ to, mid uint64 }

type pending struct {
	buf  *bytebufferpool.ByteBuffer // the message as pushed
	from uint64
	cid  uint64
	qos  frame.QoS
	// origin is the center that forwarded the message, which acks its
	// sender; 0 when the sender is here.
	origin   uint32
	deadline time.Time
	sessions []*sessState
	one      [1]*sessState // backs sessions for the common single device
}

const pendingShards = 64

type pendingShard = deadlineShard[pendKey, *pending]

func (p *pending) due() time.Time { return p.deadline }

// pendingPool recycles the pending entries of QoS 1 pushes: one per
// message, so that the push path allocates nothing.
var pendingPool = sync.Pool{New: func() any { return new(pending) }}

// getPending returns a zeroed entry whose sessions slice is backed by one.
func getPending() *pending {
	p := pendingPool.Get().(*pending)
	p.sessions = p.one[:0]
	return p
}

// putPending recycles p. Whoever takes p out of the table recycles it,
// once done with its fields; a push that entered p before its Deliver
// calls (pushLive) may still compare the table's entry with p after a
// receipt took and recycled it (takeIf), never read its fields.
func putPending(p *pending) {
	*p = pending{}
	pendingPool.Put(p)
}

// receiptTable holds the pending entries, sharded by MID. Safe for
// concurrent use once init ran; a shard's lock is a leaf, held over the
// map update alone.
type receiptTable struct {
	shards [pendingShards]pendingShard
}

func (t *receiptTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[pendKey]*pending)
	}
}

func (t *receiptTable) shard(k pendKey) *pendingShard { return &t.shards[k.mid%pendingShards] }

// put enters p under k.
func (t *receiptTable) put(k pendKey, p *pending) {
	sh := t.shard(k)
	sh.mu.Lock()
	sh.m[k] = p
	sh.mu.Unlock()
}

// take removes and returns the entry of k, nil if there is none.
func (t *receiptTable) take(k pendKey) *pending {
	sh := t.shard(k)
	sh.mu.Lock()
	p := sh.m[k]
	if p != nil {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
	return p
}

// takeIf removes the entry of k if it is p, and reports whether it did.
func (t *receiptTable) takeIf(k pendKey, p *pending) bool {
	sh := t.shard(k)
	sh.mu.Lock()
	mine := sh.m[k] == p
	if mine {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
	return mine
}

// leave removes st from the sessions of k's entry; when none is left it
// removes the entry and returns it (the caller stores the message).
func (t *receiptTable) leave(k pendKey, st *sessState) *pending {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := sh.m[k]
	if p == nil {
		return nil
	}
	for i, s := range p.sessions {
		if s == st {
			p.sessions = append(p.sessions[:i], p.sessions[i+1:]...)
			break
		}
	}
	if len(p.sessions) > 0 {
		return nil
	}
	delete(sh.m, k)
	return p
}

// count returns how many entries the table holds, taking each shard's
// lock in turn (a scrape, not the hot path).
func (t *receiptTable) count() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
