package route

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
)

// Key layout.
//
// Routes: one sorted set per user, <prefix>route:{<user>}, member = the
// 16-byte big-endian Addr (Endpoint, Center, Session), score = expiry in
// Unix milliseconds plus Status/256 (see encodeScore). The key itself gets a
// PEXPIRE equal to its latest member's remaining life, so a user whose
// endpoints all died leaves nothing behind. A sorted set rather than a hash
// with expiry values because:
//   - our Redis (7.0) has no per-field expiry (HEXPIRE is 7.4+), so expiry
//     must live in the data either way, and a score is that data;
//   - expired members are removed with one ZREMRANGEBYSCORE -inf <now>,
//     which cannot hit a member that was refreshed in the meantime (its
//     score is then in the future), so lazy cleanup needs no script;
//   - ZRANGE … WITHSCORES comes back as an array the reader walks in place,
//     where HGETALL's RESP3 map must first be copied into a Go map.
//
// The Status rides in the score's fraction rather than in the member, so
// the member stays the address's identity: a status change is a ZADD that
// moves the score (one write, invalidating cached reads like any other),
// Del stays a plain ZREM, and no member ever needs finding by prefix.
// Entries written before the status was carried have whole scores and read
// back as Status 0; readers that predate it truncate the score to whole
// milliseconds and see the same expiry as before.
//
// The hash tag {<user>} keeps every key in its own slot, so in a cluster
// each command goes to one node and GetMulti is one command per key (never a
// cross-slot multi-key command). For the same reason Prefix must not
// contain braces.
//
// Servers: <prefix>{servers}:<role> is a hash id → JSON record (including
// its expiry), and <prefix>{servers}:index maps id → role so that
// UnregisterServer, which only has the id, finds the role key. The shared
// {servers} tag puts the whole registry in one slot, so the scripts that
// update a role hash and the index together stay atomic in a cluster.
//
// Expiry stamps are wall-clock Unix milliseconds from the writing process,
// compared against the reading process's clock: nodes must keep their
// clocks in sync (NTP) to well within the TTLs used, which are seconds.

// Options configures NewRedis. The zero value connects to a local Redis.
type Options struct {
	// Addr is the Redis address (host:port), or one seed node of a
	// cluster. Default "127.0.0.1:6379".
	Addr string
	// Username and Password authenticate, if set.
	Username string
	Password string
	// DB selects the database (standalone Redis only). Default 0.
	DB int
	// Prefix starts every key, so deployments (and test runs) sharing a
	// Redis stay apart. It must not contain '{' or '}'. Default "myim:".
	Prefix string
	// DisableCache turns off client-side caching; set it for Redis
	// providers without RESP3 CLIENT TRACKING. Reads then always go to
	// Redis.
	DisableCache bool
	// CacheTTL bounds how long a cached route read is kept. Correctness
	// does not depend on it: Redis invalidates a cached key when it
	// changes, and expired members are filtered on every read. It only
	// limits how long entries of users nobody writes to occupy the cache.
	// Default 5s.
	CacheTTL time.Duration
	// DialTimeout bounds connecting. Default 1s.
	DialTimeout time.Duration
	// IOTimeout bounds the wait for any reply on an established connection
	// (rueidis ConnWriteTimeout); a Redis that stops answering is declared
	// dead after it and every pending command fails with ErrUnavailable.
	// Default 2s.
	IOTimeout time.Duration
	// KeepAlive is the TCP keep-alive period. Default 1s.
	KeepAlive time.Duration
}

// setDefaults fills the zero fields of o. It is the only place defaults are
// decided.
func (o *Options) setDefaults() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:6379"
	}
	if o.Prefix == "" {
		o.Prefix = "myim:"
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 5 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = time.Second
	}
	if o.IOTimeout <= 0 {
		// Two seconds is far above a healthy round trip (sub-millisecond
		// on a LAN, even under load) yet short enough that message
		// delivery falls back to the offline path before a client's
		// own 5-10 s send timeout fires.
		o.IOTimeout = 2 * time.Second
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = time.Second
	}
}

// Redis is a Table kept in Redis through rueidis, shared by every node of a
// cluster. Get and GetMulti read through rueidis's client-side cache (RESP3
// server-assisted invalidation), so a hot user's route is a local map hit
// until it changes.
//
// Redis delivers the invalidation for a write after the write's reply, on
// another connection (rueidis issue #534), so a read right after a write
// could be served the old cached value. To give this process
// read-your-writes, a user written through this Redis is read past the cache
// for recentWindow afterwards; other processes see the change as soon as
// their invalidation arrives, normally well under a millisecond.
//
// Failure policy: retries are disabled (rueidis DisableRetry). A route read
// is on the message path; when Redis is unreachable the caller should learn
// it at once and store the message for later, not wait while rueidis retries
// a read until the context runs out (with context.Background, forever). The
// worst case for a call is then DialTimeout to reconnect, or IOTimeout for a
// Redis that accepted the command and went silent, whatever the caller's
// context says; a shorter context deadline is honoured too.
//
// Redis is safe for concurrent use; concurrent calls share connections and
// are pipelined automatically.
type Redis struct {
	client   rueidis.Client
	prefix   string
	cacheTTL time.Duration
	cached   bool
	closed   atomic.Bool
	recent   recentWrites // users this process wrote lately; nil maps when !cached
}

var _ Table = (*Redis)(nil)

// NewRedis connects to Redis as opt describes. A Redis that cannot be
// reached gives an error wrapping ErrUnavailable.
func NewRedis(opt Options) (*Redis, error) {
	opt.setDefaults()
	if strings.ContainsAny(opt.Prefix, "{}") {
		return nil, fmt.Errorf("route: prefix %q must not contain braces", opt.Prefix)
	}
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      []string{opt.Addr},
		Username:         opt.Username,
		Password:         opt.Password,
		SelectDB:         opt.DB,
		DisableCache:     opt.DisableCache,
		DisableRetry:     true,
		ConnWriteTimeout: opt.IOTimeout,
		Dialer:           net.Dialer{Timeout: opt.DialTimeout, KeepAlive: opt.KeepAlive},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %w", ErrUnavailable, opt.Addr, err)
	}
	r := &Redis{client: client, prefix: opt.Prefix, cacheTTL: opt.CacheTTL, cached: !opt.DisableCache}
	r.recent.epoch = time.Now()
	return r, nil
}

// unavailable wraps a rueidis or Redis failure.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// routeKey returns <prefix>route:{<user>}.
func (r *Redis) routeKey(user uint64) string {
	var buf [64]byte
	b := append(buf[:0], r.prefix...)
	b = append(b, "route:{"...)
	b = strconv.AppendUint(b, user, 10)
	b = append(b, '}')
	return string(b)
}

// addrLen is the size of an encoded Addr.
const addrLen = 16

// encodeAddr returns the sorted-set member for a: its identity (Endpoint,
// Center, Session). The Status goes in the score (encodeScore).
func encodeAddr(a Addr) string {
	var b [addrLen]byte
	binary.BigEndian.PutUint32(b[0:], a.Endpoint)
	binary.BigEndian.PutUint32(b[4:], a.Center)
	binary.BigEndian.PutUint64(b[8:], a.Session)
	return string(b[:])
}

// decodeAddr parses a member written by encodeAddr; Status is left zero.
func decodeAddr(s string) (Addr, bool) {
	if len(s) != addrLen {
		return Addr{}, false
	}
	return Addr{
		Endpoint: uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]),
		Center:   uint32(s[4])<<24 | uint32(s[5])<<16 | uint32(s[6])<<8 | uint32(s[7]),
		Session: uint64(s[8])<<56 | uint64(s[9])<<48 | uint64(s[10])<<40 | uint64(s[11])<<32 |
			uint64(s[12])<<24 | uint64(s[13])<<16 | uint64(s[14])<<8 | uint64(s[15]),
	}, true
}

// statusScale is the score units per millisecond: a route's score is its
// expiry in whole Unix milliseconds plus Status/statusScale. 256 leaves room
// for every byte value, and the sum is exact in a float64 (which is what
// Redis keeps and prints back in full) while the expiry stays below 2^45 ms,
// which is past the year 3000: 45 integer bits plus 8 fraction bits fill
// the 53-bit mantissa.
const statusScale = 256

// encodeScore returns the sorted-set score for a route expiring at expMs
// with status.
func encodeScore(expMs int64, status byte) string {
	return strconv.FormatFloat(float64(expMs)+float64(status)/statusScale, 'f', -1, 64)
}

// decodeScore splits a score written by encodeScore. A whole score (an
// entry written before the status was carried) gives status 0.
func decodeScore(score float64) (expMs int64, status byte) {
	whole := math.Floor(score)
	return int64(whole), byte((score - whole) * statusScale)
}

// expiredUpTo is the ZREMRANGEBYSCORE bound that removes exactly the routes
// expired by now: every score below now+1, whatever its status fraction.
func expiredUpTo(now int64) string { return "(" + strconv.FormatInt(now+1, 10) }

// nowMs is the expiry clock: wall-clock Unix milliseconds.
func nowMs() int64 { return time.Now().UnixMilli() }

// ttlMs converts a positive ttl to whole milliseconds, rounding up so that a
// sub-millisecond TTL still lives for one.
func ttlMs(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

// setScript adds or refreshes one route member, drops the key's expired
// members, and sets the key's TTL to the remaining life of its latest
// member. With ARGV[4] == "xx" it only refreshes a member that exists and
// has not expired, and returns 0 otherwise. Scores carry the status in
// their fraction (encodeScore), so expiry compares their floor.
//
// KEYS[1] route key; ARGV[1] member; ARGV[2] score (expiry ms + status);
// ARGV[3] now ms; ARGV[4] "" or "xx"; ARGV[5] expiredUpTo(now).
var setScript = rueidis.NewLuaScript(`
local now = tonumber(ARGV[3])
if ARGV[4] == 'xx' then
	local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
	if not s or math.floor(tonumber(s)) <= now then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[5])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then
	local ttl = math.floor(tonumber(top[2])) - now
	if ttl < 1 then ttl = 1 end
	redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
end
return 1
`)

// Set implements Table. Safe for concurrent use.
func (r *Redis) Set(ctx context.Context, user uint64, a Addr, ttl time.Duration) error {
	return r.set(ctx, user, a, ttl, "")
}

// Refresh implements Table. Safe for concurrent use.
func (r *Redis) Refresh(ctx context.Context, user uint64, a Addr, ttl time.Duration) error {
	return r.set(ctx, user, a, ttl, "xx")
}

// set runs setScript for Set (mode "") and Refresh (mode "xx").
func (r *Redis) set(ctx context.Context, user uint64, a Addr, ttl time.Duration, mode string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	now := nowMs()
	n, err := setScript.Exec(ctx, r.client,
		[]string{r.routeKey(user)},
		[]string{encodeAddr(a), encodeScore(now+ttlMs(ttl), a.Status), strconv.FormatInt(now, 10), mode, expiredUpTo(now)},
	).AsInt64()
	r.markWritten(user)
	if err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Del implements Table. Safe for concurrent use.
func (r *Redis) Del(ctx context.Context, user uint64, a Addr) error {
	if r.closed.Load() {
		return ErrClosed
	}
	cmd := r.client.B().Zrem().Key(r.routeKey(user)).Member(encodeAddr(a)).Build()
	err := r.client.Do(ctx, cmd).Error()
	r.markWritten(user)
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// rangeCmd is the cacheable read of one route key.
func (r *Redis) rangeCmd(key string) rueidis.Cacheable {
	return r.client.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Cache()
}

// rangeDirect is the same read sent past the client-side cache.
func (r *Redis) rangeDirect(key string) rueidis.Completed {
	return r.client.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()
}

// Get implements Table. Safe for concurrent use.
func (r *Redis) Get(ctx context.Context, user uint64) ([]Addr, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	key := r.routeKey(user)
	var resp rueidis.RedisResult
	if r.cached && r.recent.has(user) {
		resp = r.client.Do(ctx, r.rangeDirect(key))
	} else {
		resp = r.client.DoCache(ctx, r.rangeCmd(key), r.cacheTTL)
	}
	now := nowMs()
	as, stale, err := decodeRoutes(resp, now, nil)
	if err != nil {
		return nil, unavailable(err)
	}
	if stale {
		r.prune(ctx, now, key)
	}
	return as, nil
}

// GetMulti implements Table. It sends one cacheable ZRANGE per distinct user
// in a single pipeline; users whose route is cached are answered locally.
// Safe for concurrent use.
func (r *Redis) GetMulti(ctx context.Context, users []uint64) (map[uint64][]Addr, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	out := make(map[uint64][]Addr, len(users))
	if len(users) == 0 {
		return out, nil
	}
	distinct := make([]uint64, 0, len(users))
	seen := make(map[uint64]struct{}, len(users))
	for _, u := range users {
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			distinct = append(distinct, u)
		}
	}
	// Users this process wrote lately are read past the cache (see Redis),
	// in a pipeline of their own.
	keys := make([]string, len(distinct))
	cmds := make([]rueidis.CacheableTTL, 0, len(distinct))
	var direct rueidis.Commands
	var directIdx []int
	for i, u := range distinct {
		keys[i] = r.routeKey(u)
		if r.cached && r.recent.has(u) {
			direct = append(direct, r.rangeDirect(keys[i]))
			directIdx = append(directIdx, i)
			continue
		}
		cmds = append(cmds, rueidis.CT(r.rangeCmd(keys[i]), r.cacheTTL))
	}
	resps := make([]rueidis.RedisResult, len(distinct))
	if len(direct) > 0 {
		for j, resp := range r.client.DoMulti(ctx, direct...) {
			resps[directIdx[j]] = resp
		}
	}
	if len(cmds) > 0 {
		cachedResps := r.client.DoMultiCache(ctx, cmds...)
		for i, j := 0, 0; i < len(resps); i++ {
			if j < len(directIdx) && directIdx[j] == i {
				j++
				continue
			}
			resps[i] = cachedResps[i-j]
		}
	}
	now := nowMs()
	var stale []string
	for i, resp := range resps {
		as, st, err := decodeRoutes(resp, now, nil)
		if err != nil {
			return nil, unavailable(err)
		}
		if len(as) > 0 {
			out[distinct[i]] = as
		}
		if st {
			stale = append(stale, keys[i])
		}
	}
	if len(stale) > 0 {
		r.prune(ctx, now, stale...)
	}
	return out, nil
}

// decodeRoutes appends the live addresses in a ZRANGE … WITHSCORES reply to
// dst, each with the Status its score carries, and reports whether it saw
// expired members. It reads the reply in place: with RESP3 the reply is an
// array of [member, score] pairs, with RESP2 a flat member, score, … array;
// both are accepted.
func decodeRoutes(resp rueidis.RedisResult, now int64, dst []Addr) ([]Addr, bool, error) {
	items, err := resp.ToArray()
	if err != nil {
		return nil, false, err
	}
	stale := false
	add := func(member, score *rueidis.RedisMessage) error {
		s, err := member.ToString()
		if err != nil {
			return err
		}
		f, err := score.AsFloat64()
		if err != nil {
			return err
		}
		exp, status := decodeScore(f)
		if exp <= now {
			stale = true
			return nil
		}
		if a, ok := decodeAddr(s); ok {
			a.Status = status
			dst = append(dst, a)
		}
		return nil
	}
	for i := 0; i < len(items); i++ {
		if items[i].IsArray() {
			pair, _ := items[i].ToArray()
			if len(pair) != 2 {
				return nil, false, errMalformed
			}
			err = add(&pair[0], &pair[1])
		} else if i+1 < len(items) {
			err = add(&items[i], &items[i+1])
			i++
		} else {
			err = errMalformed
		}
		if err != nil {
			return nil, false, err
		}
	}
	return dst, stale, nil
}

// errMalformed reports a reply whose shape is not what the command returns.
var errMalformed = errors.New("route: malformed redis reply")

// prune removes members that expired by now from keys. It is best effort:
// readers already skip expired members, so a failure only delays cleanup
// and is not reported.
func (r *Redis) prune(ctx context.Context, now int64, keys ...string) {
	upTo := expiredUpTo(now)
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = r.client.B().Zremrangebyscore().Key(k).Min("-inf").Max(upTo).Build()
	}
	_ = r.client.DoMulti(ctx, cmds...)
}

// serverRecord is a Server as stored in the registry.
type serverRecord struct {
	ID        uint32 `json:"id"`
	Role      string `json:"role"`
	Addr      string `json:"addr"`
	Priority  int    `json:"prio"`
	Load      int    `json:"load"`
	StaticKey []byte `json:"key,omitempty"`
	Cert      []byte `json:"cert,omitempty"`
	Updated   int64  `json:"upd"`
	Expires   int64  `json:"exp"` // Unix ms
	Info      []byte `json:"info,omitempty"`
}

// roleKey returns <prefix>{servers}:<role>.
func (r *Redis) roleKey(role string) string { return r.prefix + "{servers}:" + role }

// indexKey returns <prefix>{servers}:index, the id → role hash.
func (r *Redis) indexKey() string { return r.prefix + "{servers}:index" }

// casAttempts bounds the read-then-compare-and-set loops of the registry. A
// conflict means another process wrote the same server id between our read
// and our script, which only a misconfiguration (two servers sharing an id)
// does repeatedly.
const casAttempts = 4

// registerScript stores a server record under its role and in the index,
// removing it from its previous role, but only if the index still says the
// previous role is ARGV[4] (returns 0 otherwise, and the caller retries). It
// also drops expired records of the role it writes to, so that role hashes
// do not grow with servers that died without unregistering.
//
// KEYS[1] role key; KEYS[2] index key; KEYS[3] previous role key (any key
// of the registry when there is none). ARGV[1] id; ARGV[2] role; ARGV[3]
// record; ARGV[4] previous role or ""; ARGV[5] now ms.
var registerScript = rueidis.NewLuaScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if cur ~= ARGV[4] then return 0 end
if cur ~= '' and cur ~= ARGV[2] then redis.call('HDEL', KEYS[3], ARGV[1]) end
local now = tonumber(ARGV[5])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
	local ok, rec = pcall(cjson.decode, all[i+1])
	if ok and type(rec) == 'table' and tonumber(rec.exp) and tonumber(rec.exp) <= now then
		redis.call('HDEL', KEYS[1], all[i])
		if redis.call('HGET', KEYS[2], all[i]) == ARGV[2] then
			redis.call('HDEL', KEYS[2], all[i])
		end
	end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`)

// unregisterScript removes server ARGV[1] from role key KEYS[1] and the
// index KEYS[2] if the index still says its role is ARGV[2]; it returns 0
// when the index says otherwise (the caller retries) and 1 when done or
// already gone.
var unregisterScript = rueidis.NewLuaScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return 1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`)

// pruneServerScript removes server ARGV[1] from role key KEYS[1] if its
// record is still exactly ARGV[2] (the expired one a reader saw), and from
// the index KEYS[2] if the index still maps it to role ARGV[3].
var pruneServerScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
	redis.call('HDEL', KEYS[1], ARGV[1])
	if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[3] then
		redis.call('HDEL', KEYS[2], ARGV[1])
	end
end
return 1
`)

// indexRole returns the role the index holds for id, or "" if none.
func (r *Redis) indexRole(ctx context.Context, id string) (string, error) {
	role, err := r.client.Do(ctx, r.client.B().Hget().Key(r.indexKey()).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", nil
	}
	return role, err
}

// RegisterServer implements Table. Safe for concurrent use.
func (r *Redis) RegisterServer(ctx context.Context, s Server, ttl time.Duration) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	if !validServer(&s) {
		return ErrInvalidServer
	}
	now := nowMs()
	rec, err := json.Marshal(serverRecord{
		ID: s.ID, Role: s.Role, Addr: s.Addr, Priority: s.Priority, Load: s.Load,
		StaticKey: s.StaticKey, Cert: s.Cert, Updated: now, Expires: now + ttlMs(ttl), Info: s.Info,
	})
	if err != nil {
		return fmt.Errorf("route: encode server: %w", err)
	}
	id := strconv.FormatUint(uint64(s.ID), 10)
	for range casAttempts {
		prev, err := r.indexRole(ctx, id)
		if err != nil {
			return unavailable(err)
		}
		prevKey := r.roleKey(s.Role)
		if prev != "" {
			prevKey = r.roleKey(prev)
		}
		n, err := registerScript.Exec(ctx, r.client,
			[]string{r.roleKey(s.Role), r.indexKey(), prevKey},
			[]string{id, s.Role, string(rec), prev, strconv.FormatInt(now, 10)},
		).AsInt64()
		if err != nil {
			return unavailable(err)
		}
		if n == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: server %d is being registered concurrently", ErrUnavailable, s.ID)
}

// Servers implements Table. Expired records seen on the way are removed
// (best effort). Safe for concurrent use.
func (r *Redis) Servers(ctx context.Context, role string) ([]Server, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	key := r.roleKey(role)
	recs, err := r.client.Do(ctx, r.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, unavailable(err)
	}
	now := nowMs()
	out := make([]Server, 0, len(recs))
	var dead []rueidis.LuaExec
	for id, raw := range recs {
		var rec serverRecord
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			continue // not ours to interpret; left for an operator
		}
		if rec.Expires <= now {
			dead = append(dead, rueidis.LuaExec{
				Keys: []string{key, r.indexKey()},
				Args: []string{id, raw, role},
			})
			continue
		}
		out = append(out, Server{
			ID: rec.ID, Role: rec.Role, Addr: rec.Addr, Priority: rec.Priority, Load: rec.Load,
			StaticKey: rec.StaticKey, Cert: rec.Cert, Updated: rec.Updated, Info: rec.Info,
		})
	}
	if len(dead) > 0 {
		_ = pruneServerScript.ExecMulti(ctx, r.client, dead...)
	}
	sortServers(out)
	return out, nil
}

// UnregisterServer implements Table. Safe for concurrent use.
func (r *Redis) UnregisterServer(ctx context.Context, id uint32) error {
	if r.closed.Load() {
		return ErrClosed
	}
	sid := strconv.FormatUint(uint64(id), 10)
	for range casAttempts {
		role, err := r.indexRole(ctx, sid)
		if err != nil {
			return unavailable(err)
		}
		if role == "" {
			return nil
		}
		n, err := unregisterScript.Exec(ctx, r.client,
			[]string{r.roleKey(role), r.indexKey()},
			[]string{sid, role},
		).AsInt64()
		if err != nil {
			return unavailable(err)
		}
		if n == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: server %d is being re-registered concurrently", ErrUnavailable, id)
}

// Close implements Table: it closes the connections; pending calls fail.
// Safe for concurrent use.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.client.Close()
	return nil
}

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
	shards [shardCount]recentShard
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
func (r *Redis) markWritten(user uint64) {
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
	sh := &w.shards[shardOf(user)]
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
	sh := &w.shards[shardOf(user)]
	sh.mu.Lock()
	d, ok := sh.users[user]
	if ok && d <= now {
		delete(sh.users, user)
		ok = false
	}
	sh.mu.Unlock()
	return ok
}
