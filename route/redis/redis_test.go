package redis

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/routetest"
)

// Redis-specific tests: key layout, client-side cache behaviour across
// processes, and outages. The behaviour every Table shares is in
// routetest.

func TestAddrEncoding(t *testing.T) {
	for _, a := range []route.Addr{
		{},
		{Endpoint: 1, Center: 2, Session: 3},
		{Endpoint: ^uint32(0), Center: 0x01020304, Session: ^uint64(0)},
	} {
		s := encodeAddr(a)
		if len(s) != addrLen {
			t.Fatalf("encodeAddr(%v) has %d bytes", a, len(s))
		}
		got, ok := decodeAddr(s)
		if !ok || got != a {
			t.Fatalf("decodeAddr(encodeAddr(%v)) = %v, %v", a, got, ok)
		}
	}
	if _, ok := decodeAddr("short"); ok {
		t.Fatal("decodeAddr accepted a short member")
	}
}

func TestRedisPrefixWithBraces(t *testing.T) {
	if _, err := New(Options{Addr: "127.0.0.1:1", Prefix: "a{b}:"}); err == nil || errors.Is(err, route.ErrUnavailable) {
		t.Fatalf("New with braces in prefix = %v, want a validation error", err)
	}
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r, err := New(Options{Addr: "127.0.0.1:1", DialTimeout: 500 * time.Millisecond})
	if err == nil {
		r.Close()
		t.Fatal("New to a closed port succeeded")
	}
	if !errors.Is(err, route.ErrUnavailable) {
		t.Fatalf("New to a closed port = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("New took %v to fail", d)
	}
}

func TestRedisOutage(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t, addr)
	p := testenv.StartProxy(t, addr)
	r := startRedis(t, Options{Addr: p.Addr(), Prefix: prefix, DialTimeout: 300 * time.Millisecond, IOTimeout: 500 * time.Millisecond})
	ctx := routetest.Context(t)
	a := route.Addr{Endpoint: 1, Center: 1, Session: 1}
	if err := r.Set(ctx, 1, a, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, 1); err != nil {
		t.Fatal(err)
	}
	p.Cut()

	// Every call must fail fast with ErrUnavailable; the first one or two
	// may still be in flight on the dying connection, so poll.
	calls := map[string]func() error{
		"Get":      func() error { _, err := r.Get(ctx, 1); return err },
		"GetMulti": func() error { _, err := r.GetMulti(ctx, []uint64{1, 2}); return err },
		"Set":      func() error { return r.Set(ctx, 1, a, routetest.TTLLong) },
		"Del":      func() error { return r.Del(ctx, 1, a) },
		"Refresh":  func() error { return r.Refresh(ctx, 1, a, routetest.TTLLong) },
		"Servers":  func() error { _, err := r.Servers(ctx, "endpoint"); return err },
		"Register": func() error { return r.RegisterServer(ctx, route.Server{ID: 1, Role: "endpoint"}, routetest.TTLLong) },
	}
	for name, call := range calls {
		routetest.Eventually(t, 3*time.Second, func() error {
			start := time.Now()
			err := call()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("%s took %v during the outage", name, d)
			}
			if !errors.Is(err, route.ErrUnavailable) {
				return errors.New(name + " did not report ErrUnavailable")
			}
			return nil
		})
	}
}

func TestRedisInvalidationAcrossClients(t *testing.T) {
	t.Parallel()
	prefix := testenv.RedisPrefix(t, testenv.RedisAddr(t))
	writer := startRedis(t, Options{Prefix: prefix})
	reader := startRedis(t, Options{Prefix: prefix})
	ctx := routetest.Context(t)
	const user = 5
	a := route.Addr{Endpoint: 1, Center: 2, Session: 3}
	b := route.Addr{Endpoint: 4, Center: 2, Session: 5}
	if err := writer.Set(ctx, user, a, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	routetest.Eventually(t, 2*time.Second, func() error { return routetest.SameAddrs(routetest.MustGet(t, reader, user), []route.Addr{a}) })
	// The reader has not written user, so its reads are served from its
	// cache from now on.
	key := reader.routeKey(user)
	if !reader.client.DoCache(ctx, reader.rangeCmd(key), time.Minute).IsCacheHit() {
		t.Fatal("second read of an unchanged route was not a cache hit")
	}
	step := func(name string, write func() error, want []route.Addr) {
		t.Helper()
		if err := write(); err != nil {
			t.Fatal(err)
		}
		routetest.Eventually(t, 2*time.Second, func() error {
			if err := routetest.SameAddrs(routetest.MustGet(t, reader, user), want); err != nil {
				return errors.New(name + ": Get: " + err.Error())
			}
			m, err := reader.GetMulti(ctx, []uint64{user})
			if err != nil {
				return err
			}
			return routetest.SameAddrs(m[user], want)
		})
	}
	step("Set", func() error { return writer.Set(ctx, user, b, routetest.TTLLong) }, []route.Addr{a, b})
	step("Del", func() error { return writer.Del(ctx, user, a) }, []route.Addr{b})
	step("Del last", func() error { return writer.Del(ctx, user, b) }, nil)
}

func TestRedisKeyLayout(t *testing.T) {
	t.Parallel()
	r := startRedis(t, Options{})
	ctx := routetest.Context(t)
	c := r.client
	key := r.routeKey(8)
	if !strings.HasSuffix(key, "route:{8}") {
		t.Fatalf("route key %q", key)
	}
	pttl := func() int64 {
		t.Helper()
		n, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	card := func() int64 {
		t.Helper()
		n, err := c.Do(ctx, c.B().Zcard().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := route.Addr{Endpoint: 1, Session: 1}
	b := route.Addr{Endpoint: 2, Session: 2}
	if err := r.Set(ctx, 8, a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := pttl(); n <= 0 || n > 10_000 {
		t.Fatalf("key PTTL after Set(10s) = %d", n)
	}
	if err := r.Set(ctx, 8, b, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := pttl(); n <= 10_000 || n > 20_000 {
		t.Fatalf("key PTTL follows the latest member: %d, want (10s, 20s]", n)
	}
	if err := r.Refresh(ctx, 8, a, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := pttl(); n <= 20_000 || n > 30_000 {
		t.Fatalf("key PTTL after Refresh(30s) = %d, want (20s, 30s]", n)
	}
	if err := r.Refresh(ctx, 8, a, 20*time.Second); err != nil { // shorten again
		t.Fatal(err)
	}
	if n := pttl(); n <= 10_000 || n > 20_000 {
		t.Fatalf("key PTTL after shortening Refresh = %d, want (10s, 20s]", n)
	}
	// An expired member is cleaned up by the next read that sees it.
	if err := r.Set(ctx, 8, a, routetest.TTLShort); err != nil {
		t.Fatal(err)
	}
	routetest.Eventually(t, 3*time.Second, func() error { return routetest.SameAddrs(routetest.MustGet(t, r, 8), []route.Addr{b}) })
	if n := card(); n != 1 {
		t.Fatalf("ZCARD after a read past an expired member = %d, want 1", n)
	}
	if err := r.Del(ctx, 8, b); err != nil {
		t.Fatal(err)
	}
	if n := pttl(); n != -2 {
		t.Fatalf("PTTL after deleting the last member = %d, want -2 (no key)", n)
	}
}

func TestRedisServerPruning(t *testing.T) {
	t.Parallel()
	r := startRedis(t, Options{})
	ctx := routetest.Context(t)
	c := r.client
	if err := r.RegisterServer(ctx, route.Server{ID: 1, Role: "center"}, routetest.TTLShort); err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterServer(ctx, route.Server{ID: 2, Role: "center"}, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	hlen := func(key string) int64 {
		t.Helper()
		n, err := c.Do(ctx, c.B().Hlen().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	routetest.Eventually(t, 3*time.Second, func() error { return routetest.WantServers(t, r, "center", 2) })
	if n, m := hlen(r.roleKey("center")), hlen(r.indexKey()); n != 1 || m != 1 {
		t.Fatalf("after Servers saw a dead server: role hash %d, index %d entries; want 1, 1", n, m)
	}
	// Registration also prunes the dead of its role.
	if err := r.RegisterServer(ctx, route.Server{ID: 3, Role: "center"}, routetest.TTLShort); err != nil {
		t.Fatal(err)
	}
	routetest.Eventually(t, 3*time.Second, func() error {
		if err := r.RegisterServer(ctx, route.Server{ID: 4, Role: "center"}, routetest.TTLLong); err != nil {
			return err
		}
		if n, m := hlen(r.roleKey("center")), hlen(r.indexKey()); n != 2 || m != 2 {
			return errors.New("dead server 3 still stored")
		}
		return nil
	})
}

func TestRecentWrites(t *testing.T) {
	var w recentWrites
	w.epoch = time.Now()
	if w.has(1) {
		t.Fatal("has before any add")
	}
	w.add(1)
	if !w.has(1) || w.has(2) {
		t.Fatal("has after add(1) is wrong")
	}
	w.epoch = w.epoch.Add(-2 * recentWindow) // jump past the window
	if w.has(1) {
		t.Fatal("has still true after the window")
	}
	// Stale entries of users never read again are swept by later adds.
	for u := range uint64(10_000) {
		w.add(u)
	}
	w.epoch = w.epoch.Add(-2 * recentWindow)
	for u := range uint64(10_000) {
		w.add(u + 1<<40)
	}
	total := 0
	for i := range w.shards {
		total += len(w.shards[i].users)
	}
	if total > 10_000+10_000/2 {
		t.Fatalf("%d entries kept for 10000 live writes", total)
	}
}

func TestScoreEncoding(t *testing.T) {
	// Today, and the last millisecond before 2^45 where the sum is still
	// exact.
	for _, exp := range []int64{1, time.Now().UnixMilli(), 1<<45 - 1} {
		for st := range 256 {
			s := encodeScore(exp, byte(st))
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			if gotExp, gotSt := decodeScore(f); gotExp != exp || gotSt != byte(st) {
				t.Fatalf("decodeScore(encodeScore(%d, %d) = %s) = %d, %d", exp, st, s, gotExp, gotSt)
			}
		}
	}
	if exp, st := decodeScore(1750000000123); exp != 1750000000123 || st != 0 {
		t.Fatalf("a whole score (an entry without status) decodes as %d, %d", exp, st)
	}
}

// TestRedisStatusLayout checks where the status is kept: in the score's
// fraction, with the member unchanged, so that a status change rewrites one
// member and entries written without a status stay readable.
func TestRedisStatusLayout(t *testing.T) {
	t.Parallel()
	r := startRedis(t, Options{})
	ctx := routetest.Context(t)
	c := r.client
	const user = 12
	key := r.routeKey(user)
	a := route.Addr{Endpoint: 1, Center: 2, Session: 3, Status: 3}
	if err := r.Set(ctx, user, a, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	a.Status = 4
	if err := r.Set(ctx, user, a, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	members, err := c.Do(ctx, c.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].Member != encodeAddr(a) {
		t.Fatalf("members after a status change: %v, want the one address", members)
	}
	if _, st := decodeScore(members[0].Score); st != 4 {
		t.Fatalf("score %f carries status %d, want 4", members[0].Score, st)
	}

	// An entry as written before the status was carried: a whole score.
	old := route.Addr{Endpoint: 9, Center: 9, Session: 9}
	exp := float64(time.Now().Add(routetest.TTLLong).UnixMilli())
	if err := c.Do(ctx, c.B().Zadd().Key(key).ScoreMember().ScoreMember(exp, encodeAddr(old)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	r.markWritten(user) // the raw write above bypassed the read-your-writes bookkeeping
	if err := routetest.SameAddrs(routetest.MustGet(t, r, user), []route.Addr{a, old}); err != nil {
		t.Fatalf("entry without status: %v", err)
	}
	// Rewriting it with a status replaces it, and Del removes it.
	old.Status = 2
	if err := r.Set(ctx, user, old, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := routetest.SameAddrs(routetest.MustGet(t, r, user), []route.Addr{a, old}); err != nil {
		t.Fatal(err)
	}
	if err := r.Del(ctx, user, route.Addr{Endpoint: 9, Center: 9, Session: 9}); err != nil {
		t.Fatal(err)
	}
	if err := routetest.SameAddrs(routetest.MustGet(t, r, user), []route.Addr{a}); err != nil {
		t.Fatal(err)
	}
}

// TestRedisStatusInvalidation checks that another client's cached read
// learns a status change.
func TestRedisStatusInvalidation(t *testing.T) {
	t.Parallel()
	prefix := testenv.RedisPrefix(t, testenv.RedisAddr(t))
	writer := startRedis(t, Options{Prefix: prefix})
	reader := startRedis(t, Options{Prefix: prefix})
	ctx := routetest.Context(t)
	const user = 6
	a := route.Addr{Endpoint: 1, Center: 2, Session: 3, Status: 1}
	if err := writer.Set(ctx, user, a, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	routetest.Eventually(t, 2*time.Second, func() error { return routetest.SameAddrs(routetest.MustGet(t, reader, user), []route.Addr{a}) })
	if !reader.client.DoCache(ctx, reader.rangeCmd(reader.routeKey(user)), time.Minute).IsCacheHit() {
		t.Fatal("second read of an unchanged route was not a cache hit")
	}
	a.Status = 3
	if err := writer.Set(ctx, user, a, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	routetest.Eventually(t, 2*time.Second, func() error {
		m, err := reader.GetMulti(ctx, []uint64{user})
		if err != nil {
			return err
		}
		return routetest.SameAddrs(m[user], []route.Addr{a})
	})
}
