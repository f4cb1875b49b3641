package redis

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/myim/myim/route/internal/shard"
)

// recentWindow is how long after writing a user this process reads the
// user's routes past the client-side cache. The invalidation it waits for
// is queued by Redis right behind the write and normally lands within a
// round trip; a second covers a connection that is deep in a pipeline or
// briefly stalled, and costs little: a user is written at login, logout and
// each refresh (tens of seconds apart), so at most a few percent of the
// user's reads go uncached.
const recentWindow = time.Second

// recentWrites remembers which users this process wrote in the last
// recentWindow. It is sharded like Local; no method holds two shard locks.
type recentWrites struct {
	epoch  time.Time    // monotonic origin of the deadlines
	until  atomic.Int64 // latest deadline of any entry: nothing is recent after it
	shards [shard.Count]recentShard
}

// recentShard maps user → deadline (nanoseconds since epoch).
type recentShard struct {
	mu      sync.Mutex
	users   map[uint64]int64 // guarded by mu
	sweepAt int              // guarded by mu; len(users) that triggers a sweep
	_       [128 - unsafe.Sizeof(sync.Mutex{}) - unsafe.Sizeof(map[uint64]int64(nil)) - unsafe.Sizeof(0)]byte
}

// markWritten records that user was just written. It is called whether or
// not the write succeeded: a failed write may still have been applied.
// Safe for concurrent use.
func (r *Table) markWritten(user uint64) {
	if r.cached {
		r.recent.add(user)
	}
}

// add records a write of user now.
func (w *recentWrites) add(user uint64) {
	deadline := int64(time.Since(w.epoch) + recentWindow)
	for {
		cur := w.until.Load()
		if cur >= deadline || w.until.CompareAndSwap(cur, deadline) {
			break
		}
	}
	sh := &w.shards[shard.Of(user)]
	sh.mu.Lock()
	if sh.users == nil {
		sh.users = make(map[uint64]int64)
	}
	sh.users[user] = deadline
	// Users written once and never read again would otherwise stay; sweep
	// when the map has doubled since the last sweep, which keeps the cost
	// amortised constant per add.
	if len(sh.users) >= sh.sweepAt {
		now := deadline - int64(recentWindow)
		maps.DeleteFunc(sh.users, func(_ uint64, d int64) bool { return d <= now })
		sh.sweepAt = max(64, 2*len(sh.users))
	}
	sh.mu.Unlock()
}

// has reports whether user was written within recentWindow. When nothing
// was written lately it costs one atomic load.
func (w *recentWrites) has(user uint64) bool {
	now := int64(time.Since(w.epoch))
	if w.until.Load() <= now {
		return false
	}
	sh := &w.shards[shard.Of(user)]
	sh.mu.Lock()
	d, ok := sh.users[user]
	if ok && d <= now {
		delete(sh.users, user)
		ok = false
	}
	sh.mu.Unlock()
	return ok
}
