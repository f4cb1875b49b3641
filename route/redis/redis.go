// Package redis is the cluster's route.Table: routes and the server
// registry kept in Redis (standalone or cluster) through rueidis, shared by
// every node, plus the cluster's revoked tokens (revoked.go). It passes the
// conformance suite of route/routetest, as route.Memory does.
package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/myim/myim/route"
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

// Options configures New. The zero value connects to a local Redis.
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
	// dead after it and every pending command fails with
	// route.ErrUnavailable.
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

// Table is a route.Table kept in Redis through rueidis, shared by every
// node of a cluster. Get and GetMulti read through rueidis's client-side cache (RESP3
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
// Table is safe for concurrent use; concurrent calls share connections and
// are pipelined automatically.
type Table struct {
	client   rueidis.Client
	prefix   string
	cacheTTL time.Duration
	cached   bool
	closed   atomic.Bool
	recent   recentWrites // users this process wrote lately; nil maps when !cached
}

var _ route.Table = (*Table)(nil)

// New connects to Redis as opt describes. A Redis that cannot be reached
// gives an error wrapping route.ErrUnavailable.
func New(opt Options) (*Table, error) {
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
		return nil, fmt.Errorf("%w: connect %s: %w", route.ErrUnavailable, opt.Addr, err)
	}
	r := &Table{client: client, prefix: opt.Prefix, cacheTTL: opt.CacheTTL, cached: !opt.DisableCache}
	r.recent.epoch = time.Now()
	return r, nil
}

// unavailable wraps a rueidis or Redis failure.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", route.ErrUnavailable, err)
}

// routeKey returns <prefix>route:{<user>}.
func (r *Table) routeKey(user uint64) string {
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
func encodeAddr(a route.Addr) string {
	var b [addrLen]byte
	binary.BigEndian.PutUint32(b[0:], a.Endpoint)
	binary.BigEndian.PutUint32(b[4:], a.Center)
	binary.BigEndian.PutUint64(b[8:], a.Session)
	return string(b[:])
}

// decodeAddr parses a member written by encodeAddr; Status is left zero.
func decodeAddr(s string) (route.Addr, bool) {
	if len(s) != addrLen {
		return route.Addr{}, false
	}
	return route.Addr{
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
func (r *Table) Set(ctx context.Context, user uint64, a route.Addr, ttl time.Duration) error {
	return r.set(ctx, user, a, ttl, "")
}

// Refresh implements Table. Safe for concurrent use.
func (r *Table) Refresh(ctx context.Context, user uint64, a route.Addr, ttl time.Duration) error {
	return r.set(ctx, user, a, ttl, "xx")
}

// set runs setScript for Set (mode "") and Refresh (mode "xx").
func (r *Table) set(ctx context.Context, user uint64, a route.Addr, ttl time.Duration, mode string) error {
	if r.closed.Load() {
		return route.ErrClosed
	}
	if ttl <= 0 {
		return route.ErrInvalidTTL
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
		return route.ErrNotFound
	}
	return nil
}

// Del implements Table. Safe for concurrent use.
func (r *Table) Del(ctx context.Context, user uint64, a route.Addr) error {
	if r.closed.Load() {
		return route.ErrClosed
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
func (r *Table) rangeCmd(key string) rueidis.Cacheable {
	return r.client.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Cache()
}

// rangeDirect is the same read sent past the client-side cache.
func (r *Table) rangeDirect(key string) rueidis.Completed {
	return r.client.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()
}

// Get implements Table. Safe for concurrent use.
func (r *Table) Get(ctx context.Context, user uint64) ([]route.Addr, error) {
	if r.closed.Load() {
		return nil, route.ErrClosed
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
func (r *Table) GetMulti(ctx context.Context, users []uint64) (map[uint64][]route.Addr, error) {
	if r.closed.Load() {
		return nil, route.ErrClosed
	}
	out := make(map[uint64][]route.Addr, len(users))
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
	// Users this process wrote lately are read past the cache (see Table),
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
func decodeRoutes(resp rueidis.RedisResult, now int64, dst []route.Addr) ([]route.Addr, bool, error) {
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
func (r *Table) prune(ctx context.Context, now int64, keys ...string) {
	upTo := expiredUpTo(now)
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = r.client.B().Zremrangebyscore().Key(k).Min("-inf").Max(upTo).Build()
	}
	_ = r.client.DoMulti(ctx, cmds...)
}

// Close implements Table: it closes the connections; pending calls fail.
// Safe for concurrent use.
func (r *Table) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.client.Close()
	return nil
}
