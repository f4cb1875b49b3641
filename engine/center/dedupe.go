package center

import "sync"

// The idempotence table: the MID (or group seq) the center gave each
// recent (sender, client id) pair, so that a resend with a CID already seen
// is acked DUPLICATE with the first id and neither pushed nor stored again.

const (
	dedupeShards = 64
	// dedupePerShard bounds the table: 64 x 8,192 recent (sender, cid)
	// pairs. A resend is normally seconds after the original.
	dedupePerShard = 8192
)

type dedupeKey struct{ from, cid uint64 }

// dedupeTable is sharded by (sender ^ cid); each shard forgets its oldest
// pair for each new one once it holds dedupePerShard. Safe for concurrent
// use once init ran; each shard's lock is a leaf.
type dedupeTable struct {
	shards [dedupeShards]dedupeShard
}

type dedupeShard struct {
	mu   sync.Mutex
	m    map[dedupeKey]uint64
	ring []dedupeKey // grows to dedupePerShard, then wraps at next
	next int
}

func (t *dedupeTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[dedupeKey]uint64)
	}
}

func (t *dedupeTable) shard(from, cid uint64) *dedupeShard {
	return &t.shards[(from^cid)%dedupeShards]
}

// seen returns the id given to (from, cid), if the table still holds it.
func (t *dedupeTable) seen(from, cid uint64) (uint64, bool) {
	sh := t.shard(from, cid)
	sh.mu.Lock()
	mid, ok := sh.m[dedupeKey{from, cid}]
	sh.mu.Unlock()
	return mid, ok
}

// remember records the id given to (from, cid).
func (t *dedupeTable) remember(from, cid, mid uint64) {
	k := dedupeKey{from, cid}
	sh := t.shard(from, cid)
	sh.mu.Lock()
	// The ring grows to its bound as messages come (a quiet center keeps
	// it small), then the oldest entry makes room for each new one.
	if len(sh.ring) < dedupePerShard {
		sh.ring = append(sh.ring, k)
	} else {
		delete(sh.m, sh.ring[sh.next])
		sh.ring[sh.next] = k
		sh.next = (sh.next + 1) % dedupePerShard
	}
	sh.m[k] = mid
	sh.mu.Unlock()
}

// forget drops (from, cid) so that a refused message may be resent; cid 0
// (no deduplication) is a no-op.
func (t *dedupeTable) forget(from, cid uint64) {
	if cid == 0 {
		return
	}
	sh := t.shard(from, cid)
	sh.mu.Lock()
	delete(sh.m, dedupeKey{from, cid})
	sh.mu.Unlock()
}
