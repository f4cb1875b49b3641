package route

import (
	"sync"
	"unsafe"

	"github.com/myim/myim/route/internal/shard"
)

// Local is the table of sessions online on this process: user id → the
// user's sessions here, each an Addr plus an opaque handle the caller stores
// (the center keeps its per-session delivery state there). It is the first
// thing the center asks on delivery, so Lookup neither allocates nor takes a
// global lock.
//
// Users are spread over shard.Count shards by a hash of the id, each shard a
// map under its own RWMutex; no operation holds more than one shard lock, so
// there is no lock ordering to respect.
//
// The zero value is ready to use. Local is safe for concurrent use and must
// not be copied after first use.
type Local struct {
	shards [shard.Count]localShard
}

// localShard is one lock and the users it guards. Shards sit side by side in
// an array and RLock writes to the mutex, so each shard is padded to 128
// bytes (two cache lines, the unit the adjacent-line prefetcher pulls in) to
// keep readers of neighbouring shards from bouncing the same line.
type localShard struct {
	mu    sync.RWMutex
	users map[uint64][]localSession // guarded by mu
	_     [128 - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[uint64][]localSession(nil))]byte
}

// localSession is one session of a user on this process.
type localSession struct {
	addr Addr
	v    any
}

// NewLocal returns an empty Local. It is equivalent to new(Local).
func NewLocal() *Local { return new(Local) }

// Put records the session a.Session of user with address a and handle v. If
// the user already has a session with that id, its address and handle are
// replaced and the previous handle is returned with replaced set. Safe for
// concurrent use.
func (l *Local) Put(user uint64, a Addr, v any) (prev any, replaced bool) {
	sh := &l.shards[shard.Of(user)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sessions := sh.users[user]
	for i := range sessions {
		if sessions[i].addr.Session == a.Session {
			prev = sessions[i].v
			sessions[i] = localSession{addr: a, v: v}
			return prev, true
		}
	}
	if sh.users == nil {
		sh.users = make(map[uint64][]localSession)
	}
	sh.users[user] = append(sessions, localSession{addr: a, v: v})
	return nil, false
}

// Remove deletes session sess of user and returns its handle; ok is false
// when there was no such session. The user disappears from the table with
// the last session. Safe for concurrent use.
func (l *Local) Remove(user, sess uint64) (v any, ok bool) {
	sh := &l.shards[shard.Of(user)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sessions := sh.users[user]
	for i := range sessions {
		if sessions[i].addr.Session != sess {
			continue
		}
		v = sessions[i].v
		last := len(sessions) - 1
		sessions[i] = sessions[last]
		sessions[last] = localSession{} // drop the handle for the GC
		if last == 0 {
			delete(sh.users, user)
		} else {
			sh.users[user] = sessions[:last]
		}
		return v, true
	}
	return nil, false
}

// Lookup calls fn for every session of user on this process and returns how
// many there were. It does not allocate.
//
// fn runs with the shard's read lock held: it must be quick and must not
// call any method of l (a pending writer would deadlock it). Copy what you
// need out of fn rather than block in it. Safe for concurrent use.
func (l *Local) Lookup(user uint64, fn func(a Addr, v any)) int {
	sh := &l.shards[shard.Of(user)]
	sh.mu.RLock()
	sessions := sh.users[user]
	for i := range sessions {
		fn(sessions[i].addr, sessions[i].v)
	}
	sh.mu.RUnlock()
	return len(sessions)
}

// Addrs appends the addresses of user's sessions on this process to dst and
// returns the extended slice; it allocates only if dst lacks capacity. Safe
// for concurrent use.
func (l *Local) Addrs(dst []Addr, user uint64) []Addr {
	sh := &l.shards[shard.Of(user)]
	sh.mu.RLock()
	for _, s := range sh.users[user] {
		dst = append(dst, s.addr)
	}
	sh.mu.RUnlock()
	return dst
}

// Len returns the number of users with at least one session on this
// process. Shards are counted one after another, so under concurrent
// changes the result is approximate. Safe for concurrent use.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.RLock()
		n += len(sh.users)
		sh.mu.RUnlock()
	}
	return n
}

// Range calls fn for every session on this process until fn returns false.
// Sessions added or removed during Range may or may not be visited.
//
// fn runs with one shard's read lock held, under the same rules as in
// Lookup: it must not call any method of l. Safe for concurrent use.
func (l *Local) Range(fn func(user uint64, a Addr, v any) bool) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.RLock()
		for user, sessions := range sh.users {
			for _, s := range sessions {
				if !fn(user, s.addr, s.v) {
					sh.mu.RUnlock()
					return
				}
			}
		}
		sh.mu.RUnlock()
	}
}
