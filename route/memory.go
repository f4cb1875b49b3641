package route

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/myim/myim/route/internal/shard"
)

// Memory is a Table kept entirely in this process, for the all-in-one mode
// that runs without Redis.
//
// Expired entries are never returned: reads skip them, writes to a user drop
// that user's expired entries, and Sweep drops the rest. Nothing sweeps on
// its own; the owner calls Sweep from its housekeeping ticker, at roughly the
// shortest TTL it uses, to bound the memory held by routes of users who went
// away without a Del.
//
// Expiry runs on the monotonic clock, so wall-clock jumps neither revive nor
// kill entries. Route shards are locked independently as in Local; the
// server registry has one lock of its own and no method holds both.
//
// Memory is safe for concurrent use and must not be copied after first use.
type Memory struct {
	shards [shard.Count]memShard
	epoch  time.Time // monotonic origin of the expiry stamps
	closed atomic.Bool

	smu     sync.Mutex
	servers map[uint32]memServer // guarded by smu
}

// memShard is one route shard, padded like localShard.
type memShard struct {
	mu    sync.RWMutex
	users map[uint64][]memRoute // guarded by mu
	_     [128 - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[uint64][]memRoute(nil))]byte
}

// memRoute is one address with its expiry in nanoseconds since epoch.
type memRoute struct {
	addr Addr
	exp  int64
}

// memServer is one registry entry with its expiry in nanoseconds since epoch.
type memServer struct {
	s   Server
	exp int64
}

var _ Table = (*Memory)(nil)

// NewMemory returns an empty in-process Table.
func NewMemory() *Memory {
	return &Memory{epoch: time.Now(), servers: make(map[uint32]memServer)}
}

// now returns the monotonic time in nanoseconds since m.epoch.
func (m *Memory) now() int64 { return int64(time.Since(m.epoch)) }

// check returns the error every method reports for a closed table or a done
// context.
func (m *Memory) check(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// pruneRoutes removes expired routes in place and returns the shortened
// slice, clearing the tail so the backing array holds no stale values.
func pruneRoutes(rs []memRoute, now int64) []memRoute {
	live := rs[:0]
	for _, r := range rs {
		if r.exp > now {
			live = append(live, r)
		}
	}
	clear(rs[len(live):])
	return live
}

// store writes routes back for user, deleting the key when none are left.
// The shard lock must be held for writing.
func (sh *memShard) store(user uint64, rs []memRoute) {
	if len(rs) == 0 {
		delete(sh.users, user)
		return
	}
	sh.users[user] = rs
}

// Set implements Table. Safe for concurrent use.
func (m *Memory) Set(ctx context.Context, user uint64, a Addr, ttl time.Duration) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	now := m.now()
	sh := &m.shards[shard.Of(user)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rs := pruneRoutes(sh.users[user], now)
	found := false
	for i := range rs {
		if rs[i].addr.same(a) {
			rs[i] = memRoute{addr: a, exp: now + int64(ttl)}
			found = true
			break
		}
	}
	if !found {
		rs = append(rs, memRoute{addr: a, exp: now + int64(ttl)})
	}
	if sh.users == nil {
		sh.users = make(map[uint64][]memRoute)
	}
	sh.store(user, rs)
	return nil
}

// Del implements Table. Safe for concurrent use.
func (m *Memory) Del(ctx context.Context, user uint64, a Addr) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	now := m.now()
	sh := &m.shards[shard.Of(user)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rs, ok := sh.users[user]
	if !ok {
		return nil
	}
	live := rs[:0]
	for _, r := range rs {
		if r.exp > now && !r.addr.same(a) {
			live = append(live, r)
		}
	}
	clear(rs[len(live):])
	sh.store(user, live)
	return nil
}

// Refresh implements Table. Safe for concurrent use.
func (m *Memory) Refresh(ctx context.Context, user uint64, a Addr, ttl time.Duration) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	now := m.now()
	sh := &m.shards[shard.Of(user)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rs, ok := sh.users[user]
	if !ok {
		return ErrNotFound
	}
	rs = pruneRoutes(rs, now)
	sh.store(user, rs)
	for i := range rs {
		if rs[i].addr.same(a) {
			rs[i] = memRoute{addr: a, exp: now + int64(ttl)}
			return nil
		}
	}
	return ErrNotFound
}

// Get implements Table. Safe for concurrent use.
func (m *Memory) Get(ctx context.Context, user uint64) ([]Addr, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	return m.get(user, m.now(), nil), nil
}

// get appends user's live addresses to dst.
func (m *Memory) get(user uint64, now int64, dst []Addr) []Addr {
	sh := &m.shards[shard.Of(user)]
	sh.mu.RLock()
	for _, r := range sh.users[user] {
		if r.exp > now {
			dst = append(dst, r.addr)
		}
	}
	sh.mu.RUnlock()
	return dst
}

// GetMulti implements Table. Safe for concurrent use.
func (m *Memory) GetMulti(ctx context.Context, users []uint64) (map[uint64][]Addr, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	now := m.now()
	out := make(map[uint64][]Addr)
	for _, u := range users {
		if _, dup := out[u]; dup {
			continue
		}
		if as := m.get(u, now, nil); len(as) > 0 {
			out[u] = as
		}
	}
	return out, nil
}

// RegisterServer implements Table. Safe for concurrent use.
func (m *Memory) RegisterServer(ctx context.Context, s Server, ttl time.Duration) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	if !ValidServer(&s) {
		return ErrInvalidServer
	}
	s.StaticKey = append([]byte(nil), s.StaticKey...)
	s.Cert = append([]byte(nil), s.Cert...)
	s.Info = append([]byte(nil), s.Info...)
	s.Updated = time.Now().UnixMilli()
	m.smu.Lock()
	m.servers[s.ID] = memServer{s: s, exp: m.now() + int64(ttl)}
	m.smu.Unlock()
	return nil
}

// Servers implements Table. The returned Servers, StaticKey included, are
// the caller's. Safe for concurrent use.
func (m *Memory) Servers(ctx context.Context, role string) ([]Server, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	now := m.now()
	var out []Server
	m.smu.Lock()
	for _, e := range m.servers {
		if e.s.Role == role && e.exp > now {
			s := e.s
			s.StaticKey = append([]byte(nil), s.StaticKey...)
			s.Cert = append([]byte(nil), s.Cert...)
			s.Info = append([]byte(nil), s.Info...)
			out = append(out, s)
		}
	}
	m.smu.Unlock()
	SortServers(out)
	return out, nil
}

// UnregisterServer implements Table. Safe for concurrent use.
func (m *Memory) UnregisterServer(ctx context.Context, id uint32) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	m.smu.Lock()
	delete(m.servers, id)
	m.smu.Unlock()
	return nil
}

// Sweep deletes every expired route and server and returns how many entries
// it removed. It locks one shard at a time, so it can run alongside normal
// traffic. Safe for concurrent use.
func (m *Memory) Sweep() int {
	n := 0
	now := m.now()
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for user, rs := range sh.users {
			live := pruneRoutes(rs, now)
			n += len(rs) - len(live)
			sh.store(user, live)
		}
		sh.mu.Unlock()
	}
	m.smu.Lock()
	for id, e := range m.servers {
		if e.exp <= now {
			delete(m.servers, id)
			n++
		}
	}
	m.smu.Unlock()
	return n
}

// Close implements Table. It drops every entry; later calls return
// ErrClosed. Safe for concurrent use.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		sh.users = nil
		sh.mu.Unlock()
	}
	m.smu.Lock()
	clear(m.servers)
	m.smu.Unlock()
	return nil
}
