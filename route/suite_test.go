package route

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
)

// This file is the one conformance suite every Table backend runs, plus the
// helpers that build backends for it. Backend-specific behaviour (Redis key
// layout, outages, Memory's Sweep) is tested in the backend's own test file.

// newTable builds a fresh, empty, isolated Table for one test and arranges
// for its cleanup.
type newTable func(t testing.TB) Table

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	runSuite(t, func(t testing.TB) Table {
		m := NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}

func TestRedisConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"cache=on", Options{}},
		{"cache=off", Options{DisableCache: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runSuite(t, func(t testing.TB) Table { return startRedis(t, tc.opt) })
		})
	}
}

// TestRedisClusterConformance runs the same suite against a Redis Cluster
// of three primaries of the test's own: route keys live in a slot each and
// the server registry's keys share one ({servers}), so every command and
// script touches one slot.
func TestRedisClusterConformance(t *testing.T) {
	nodes := testenv.StartRedisCluster(t, 3)
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"cache=on", Options{}},
		{"cache=off", Options{DisableCache: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			runSuite(t, func(t testing.TB) Table {
				opt := tc.opt
				opt.Addr = nodes[n.Add(1)%int64(len(nodes))].Addr() // any node seeds the cluster client
				opt.Prefix = fmt.Sprintf("t%d:", time.Now().UnixNano())
				r, err := NewRedis(opt)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
				return r
			})
		})
	}
}

// startRedis connects a Redis table to the test Redis, under a key prefix
// of the test's own (whose keys are deleted when the test ends) unless
// opt.Prefix is set; opt.Addr, when set, is the address to dial instead
// (a proxy). When Redis is unreachable the test is skipped, except in CI
// (CI=true), where it fails.
func startRedis(t testing.TB, opt Options) *Redis {
	t.Helper()
	addr := testenv.RedisAddr(t)
	if opt.Addr == "" {
		opt.Addr = addr
	}
	if opt.Prefix == "" {
		opt.Prefix = testenv.RedisPrefix(t, addr)
	}
	r, err := NewRedis(opt)
	if err != nil {
		t.Fatalf("redis at %s: %v", opt.Addr, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// eventually calls fn until it returns nil or timeout passes, then fails
// the test with fn's last error.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testCtx returns a context that ends with the test or after 10 seconds.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sortedAddrs returns a sorted copy, for order-insensitive comparison.
func sortedAddrs(as []Addr) []Addr {
	as = slices.Clone(as)
	slices.SortFunc(as, func(a, b Addr) int {
		if c := cmp.Compare(a.Endpoint, b.Endpoint); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Center, b.Center); c != 0 {
			return c
		}
		return cmp.Compare(a.Session, b.Session)
	})
	return as
}

// sameAddrs reports an error unless got and want hold the same addresses.
func sameAddrs(got, want []Addr) error {
	if !slices.Equal(sortedAddrs(got), sortedAddrs(want)) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

// mustGet is Get that fails the test on error.
func mustGet(t testing.TB, tb Table, user uint64) []Addr {
	t.Helper()
	as, err := tb.Get(testCtx(t), user)
	if err != nil {
		t.Fatalf("Get(%d): %v", user, err)
	}
	return as
}

// ttlLong outlives any test; ttlShort expires within one.
const (
	ttlLong  = time.Minute
	ttlShort = 400 * time.Millisecond // long enough for a loaded machine to refresh within it
)

// runSuite runs the conformance cases against tables made by mk.
func runSuite(t *testing.T, mk newTable) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, tb Table)
	}{
		{"SetGetDel", testSetGetDel},
		{"MultipleSessions", testMultipleSessions},
		{"TTLExpiry", testTTLExpiry},
		{"Refresh", testRefresh},
		{"InvalidTTL", testInvalidTTL},
		{"GetMulti", testGetMulti},
		{"Status", testStatus},
		{"StatusExpiry", testStatusExpiry},
		{"ServerOrdering", testServerOrdering},
		{"ServerReRegistration", testServerReRegistration},
		{"ServerExpiry", testServerExpiry},
		{"InvalidServer", testInvalidServer},
		{"ReadsSeeWrites", testReadsSeeWrites},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, mk(t))
		})
	}
}

func testSetGetDel(t *testing.T, tb Table) {
	ctx := testCtx(t)
	a := Addr{Endpoint: 1, Center: 2, Session: 3}
	if got := mustGet(t, tb, 42); len(got) != 0 {
		t.Fatalf("Get of unknown user = %v, want empty", got)
	}
	if err := tb.Set(ctx, 42, a, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, 42), []Addr{a}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, tb, 43); len(got) != 0 {
		t.Fatalf("Get of another user = %v, want empty", got)
	}
	if err := tb.Del(ctx, 42, a); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, tb, 42); len(got) != 0 {
		t.Fatalf("Get after Del = %v, want empty", got)
	}
	if err := tb.Del(ctx, 42, a); err != nil {
		t.Fatalf("Del of missing address: %v", err)
	}
	// Extreme ids round-trip.
	max := Addr{Endpoint: ^uint32(0), Center: ^uint32(0), Session: ^uint64(0)}
	if err := tb.Set(ctx, ^uint64(0), max, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, ^uint64(0)), []Addr{max}); err != nil {
		t.Fatal(err)
	}
}

func testMultipleSessions(t *testing.T, tb Table) {
	ctx := testCtx(t)
	phone := Addr{Endpoint: 1, Center: 7, Session: 100}
	laptop := Addr{Endpoint: 2, Center: 7, Session: 200}
	web := Addr{Endpoint: 1, Center: 8, Session: 101}
	for _, a := range []Addr{phone, laptop, web, phone} { // phone twice: no duplicate
		if err := tb.Set(ctx, 9, a, ttlLong); err != nil {
			t.Fatal(err)
		}
	}
	if err := sameAddrs(mustGet(t, tb, 9), []Addr{phone, laptop, web}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Del(ctx, 9, laptop); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, 9), []Addr{phone, web}); err != nil {
		t.Fatal(err)
	}
	// Same session id on another endpoint is another address.
	if err := tb.Del(ctx, 9, Addr{Endpoint: 3, Center: 7, Session: 100}); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, 9), []Addr{phone, web}); err != nil {
		t.Fatal(err)
	}
}

func testTTLExpiry(t *testing.T, tb Table) {
	ctx := testCtx(t)
	dying := Addr{Endpoint: 1, Center: 1, Session: 1}
	living := Addr{Endpoint: 2, Center: 1, Session: 2}
	if err := tb.Set(ctx, 5, dying, ttlShort); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(ctx, 5, living, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(ctx, 6, dying, ttlShort); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, 5), []Addr{dying, living}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() error {
		return sameAddrs(mustGet(t, tb, 5), []Addr{living})
	})
	eventually(t, 3*time.Second, func() error {
		return sameAddrs(mustGet(t, tb, 6), nil)
	})
	m, err := tb.GetMulti(ctx, []uint64{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m[6]; ok || len(m) != 1 {
		t.Fatalf("GetMulti after expiry = %v, want only user 5", m)
	}
	// An expired address can be set again.
	if err := tb.Set(ctx, 6, dying, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, 6), []Addr{dying}); err != nil {
		t.Fatal(err)
	}
}

func testRefresh(t *testing.T, tb Table) {
	ctx := testCtx(t)
	a := Addr{Endpoint: 4, Center: 5, Session: 6}
	if err := tb.Refresh(ctx, 11, a, ttlLong); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh of missing = %v, want ErrNotFound", err)
	}
	if err := tb.Set(ctx, 11, a, ttlShort); err != nil {
		t.Fatal(err)
	}
	// Keep refreshing for several TTLs: the entry must survive.
	end := time.Now().Add(3 * ttlShort)
	for time.Now().Before(end) {
		if err := tb.Refresh(ctx, 11, a, ttlShort); err != nil {
			t.Fatalf("Refresh of live entry: %v", err)
		}
		if err := sameAddrs(mustGet(t, tb, 11), []Addr{a}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttlShort / 5)
	}
	if err := tb.Refresh(ctx, 11, Addr{Endpoint: 4, Center: 5, Session: 7}, ttlLong); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh of another session = %v, want ErrNotFound", err)
	}
	// Once expired, Refresh reports ErrNotFound rather than reviving it.
	eventually(t, 3*time.Second, func() error { return sameAddrs(mustGet(t, tb, 11), nil) })
	if err := tb.Refresh(ctx, 11, a, ttlLong); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh of expired entry = %v, want ErrNotFound", err)
	}
	if got := mustGet(t, tb, 11); len(got) != 0 {
		t.Fatalf("Get after Refresh of expired entry = %v, want empty", got)
	}
}

func testInvalidTTL(t *testing.T, tb Table) {
	ctx := testCtx(t)
	a := Addr{Endpoint: 1}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := tb.Set(ctx, 1, a, ttl); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("Set ttl=%v: %v, want ErrInvalidTTL", ttl, err)
		}
		if err := tb.Refresh(ctx, 1, a, ttl); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("Refresh ttl=%v: %v, want ErrInvalidTTL", ttl, err)
		}
		if err := tb.RegisterServer(ctx, Server{ID: 1, Role: "x"}, ttl); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("RegisterServer ttl=%v: %v, want ErrInvalidTTL", ttl, err)
		}
	}
}

func testGetMulti(t *testing.T, tb Table) {
	ctx := testCtx(t)
	const n = 300
	want := make(map[uint64][]Addr)
	var users []uint64
	for u := uint64(1000); u < 1000+n; u++ {
		users = append(users, u)
		switch u % 3 {
		case 0: // offline
		case 1:
			want[u] = []Addr{{Endpoint: uint32(u), Center: 1, Session: u}}
		case 2:
			want[u] = []Addr{{Endpoint: 1, Center: 2, Session: u}, {Endpoint: 2, Center: 2, Session: u + 1}}
		}
		for _, a := range want[u] {
			if err := tb.Set(ctx, u, a, ttlLong); err != nil {
				t.Fatal(err)
			}
		}
	}
	users = append(users, 1001, 1002, 999999) // duplicates and a stranger
	got, err := tb.GetMulti(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("GetMulti returned %d users, want %d", len(got), len(want))
	}
	for u, as := range want {
		if err := sameAddrs(got[u], as); err != nil {
			t.Fatalf("user %d: %v", u, err)
		}
	}
	// A second round (served from cache where there is one) agrees.
	again, err := tb.GetMulti(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(want) {
		t.Fatalf("second GetMulti returned %d users, want %d", len(again), len(want))
	}
	for _, in := range [][]uint64{nil, {}, {424242}} {
		m, err := tb.GetMulti(ctx, in)
		if err != nil || len(m) != 0 {
			t.Fatalf("GetMulti(%v) = %v, %v; want empty", in, m, err)
		}
	}
}

// testStatus checks that an address carries its session's Status: written
// with Set and Refresh, replaced rather than duplicated when it changes,
// ignored by Del, and read back by Get and GetMulti.
func testStatus(t *testing.T, tb Table) {
	ctx := testCtx(t)
	const user = 31
	phone := Addr{Endpoint: 1, Center: 7, Session: 100, Status: 3}
	laptop := Addr{Endpoint: 2, Center: 8, Session: 200, Status: 4}
	for _, a := range []Addr{phone, laptop} {
		if err := tb.Set(ctx, user, a, ttlLong); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want ...Addr) {
		t.Helper()
		checkReads(t, tb, user, step, want)
	}
	check("set", phone, laptop)

	// A new status for a present address replaces the old one.
	phone.Status = 2
	if err := tb.Set(ctx, user, phone, ttlLong); err != nil {
		t.Fatal(err)
	}
	check("status changed by Set", phone, laptop)
	laptop.Status = 1
	if err := tb.Refresh(ctx, user, laptop, ttlLong); err != nil {
		t.Fatal(err)
	}
	check("status changed by Refresh", phone, laptop)

	// Del finds the address whatever the Status it is given.
	if err := tb.Del(ctx, user, Addr{Endpoint: 1, Center: 7, Session: 100}); err != nil {
		t.Fatal(err)
	}
	check("del", laptop)

	// Every byte value round-trips, zero ("not reported") included, on
	// both ends of the id range.
	const other = 32
	for _, st := range []byte{0, 1, 127, 128, 255} {
		a := Addr{Endpoint: ^uint32(0), Center: ^uint32(0), Session: ^uint64(0), Status: st}
		if err := tb.Set(ctx, other, a, ttlLong); err != nil {
			t.Fatal(err)
		}
		if err := sameAddrs(mustGet(t, tb, other), []Addr{a}); err != nil {
			t.Fatalf("status %d: %v", st, err)
		}
	}
}

// testStatusExpiry checks that the Status does not stretch a route's life:
// a route with a status expires with its TTL like any other, and setting it
// again after expiry records the new status.
func testStatusExpiry(t *testing.T, tb Table) {
	ctx := testCtx(t)
	const user = 33
	dying := Addr{Endpoint: 1, Center: 1, Session: 1, Status: 255}
	living := Addr{Endpoint: 2, Center: 1, Session: 2, Status: 3}
	if err := tb.Set(ctx, user, dying, ttlShort); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(ctx, user, living, ttlLong); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() error {
		return sameAddrs(mustGet(t, tb, user), []Addr{living})
	})
	if err := tb.Refresh(ctx, user, dying, ttlLong); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh of an expired address with a status = %v, want ErrNotFound", err)
	}
	dying.Status = 1
	if err := tb.Set(ctx, user, dying, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(mustGet(t, tb, user), []Addr{dying, living}); err != nil {
		t.Fatal(err)
	}
}

// serverIDs lists the ids of ss in order.
func serverIDs(ss []Server) []uint32 {
	ids := make([]uint32, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// wantServers reports an error unless tb lists exactly ids, in order, for
// role.
func wantServers(t testing.TB, tb Table, role string, ids ...uint32) error {
	t.Helper()
	ss, err := tb.Servers(testCtx(t), role)
	if err != nil {
		t.Fatalf("Servers(%q): %v", role, err)
	}
	if got := serverIDs(ss); !slices.Equal(got, ids) {
		return fmt.Errorf("Servers(%q) = %v, want %v", role, got, ids)
	}
	return nil
}

func testServerOrdering(t *testing.T, tb Table) {
	ctx := testCtx(t)
	before := time.Now().UnixMilli()
	for _, s := range []Server{
		{ID: 1, Role: "endpoint", Addr: "10.0.0.1:7000", Priority: 2, Load: 0},
		{ID: 2, Role: "endpoint", Addr: "10.0.0.2:7000", Priority: 1, Load: 50},
		{ID: 3, Role: "endpoint", Addr: "10.0.0.3:7000", Priority: 1, Load: 10, StaticKey: []byte{0, 1, 2, 255}},
		{ID: 4, Role: "endpoint", Addr: "10.0.0.4:7000", Priority: 1, Load: 10},
		{ID: 5, Role: "center", Addr: "10.0.1.1:7100", Priority: 0, Load: 0},
	} {
		if err := tb.RegisterServer(ctx, s, ttlLong); err != nil {
			t.Fatal(err)
		}
	}
	if err := wantServers(t, tb, "endpoint", 3, 4, 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "center", 5); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "login"); err != nil {
		t.Fatal(err)
	}
	ss, err := tb.Servers(ctx, "endpoint")
	if err != nil {
		t.Fatal(err)
	}
	got := ss[0]
	if got.Role != "endpoint" || got.Addr != "10.0.0.3:7000" || got.Priority != 1 || got.Load != 10 ||
		string(got.StaticKey) != "\x00\x01\x02\xff" || got.Updated < before {
		t.Fatalf("server 3 read back as %+v", got)
	}
}

func testServerReRegistration(t *testing.T, tb Table) {
	ctx := testCtx(t)
	reg := func(s Server) {
		t.Helper()
		if err := tb.RegisterServer(ctx, s, ttlLong); err != nil {
			t.Fatal(err)
		}
	}
	reg(Server{ID: 1, Role: "center", Load: 10})
	reg(Server{ID: 2, Role: "center", Load: 20})
	if err := wantServers(t, tb, "center", 1, 2); err != nil {
		t.Fatal(err)
	}
	reg(Server{ID: 1, Role: "center", Load: 30}) // load report
	if err := wantServers(t, tb, "center", 2, 1); err != nil {
		t.Fatal(err)
	}
	ss, _ := tb.Servers(ctx, "center")
	if ss[1].Load != 30 {
		t.Fatalf("load after re-registration = %d, want 30", ss[1].Load)
	}
	reg(Server{ID: 2, Role: "endpoint", Addr: "moved"}) // role change
	if err := wantServers(t, tb, "center", 1); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "endpoint", 2); err != nil {
		t.Fatal(err)
	}
	if err := tb.UnregisterServer(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "endpoint"); err != nil {
		t.Fatal(err)
	}
	if err := tb.UnregisterServer(ctx, 2); err != nil {
		t.Fatalf("Unregister of missing server: %v", err)
	}
	if err := tb.UnregisterServer(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "center"); err != nil {
		t.Fatal(err)
	}
	reg(Server{ID: 1, Role: "center"}) // back after unregistering
	if err := wantServers(t, tb, "center", 1); err != nil {
		t.Fatal(err)
	}
}

func testServerExpiry(t *testing.T, tb Table) {
	ctx := testCtx(t)
	if err := tb.RegisterServer(ctx, Server{ID: 1, Role: "endpoint"}, ttlShort); err != nil {
		t.Fatal(err)
	}
	if err := tb.RegisterServer(ctx, Server{ID: 2, Role: "endpoint", Priority: 9}, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "endpoint", 1, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() error { return wantServers(t, tb, "endpoint", 2) })
	// A dead server that comes back is listed again.
	if err := tb.RegisterServer(ctx, Server{ID: 1, Role: "endpoint"}, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := wantServers(t, tb, "endpoint", 1, 2); err != nil {
		t.Fatal(err)
	}
}

func testInvalidServer(t *testing.T, tb Table) {
	ctx := testCtx(t)
	for _, s := range []Server{{Role: "endpoint"}, {ID: 1}} {
		if err := tb.RegisterServer(ctx, s, ttlLong); !errors.Is(err, ErrInvalidServer) {
			t.Errorf("RegisterServer(%+v) = %v, want ErrInvalidServer", s, err)
		}
	}
}

// testReadsSeeWrites checks read-your-writes: a read through the same Table
// right after a write sees it, even when the earlier reads were cached.
// (Backends with a client-side cache test invalidation across Tables in
// their own test file.)
func testReadsSeeWrites(t *testing.T, tb Table) {
	ctx := testCtx(t)
	const user = 77
	var want []Addr
	check := func(round int) {
		t.Helper()
		checkReads(t, tb, user, fmt.Sprintf("round %d", round), want)
	}
	for i := range 10 {
		for range 3 { // warm any cache with the current state
			check(i)
		}
		a := Addr{Endpoint: uint32(i), Center: 1, Session: uint64(i)}
		if i%3 == 2 { // every third round deletes instead
			a, want = want[0], want[1:]
			if err := tb.Del(ctx, user, a); err != nil {
				t.Fatal(err)
			}
		} else {
			want = append(want, a)
			if err := tb.Set(ctx, user, a, ttlLong); err != nil {
				t.Fatal(err)
			}
		}
		check(i)
	}
}

func testConcurrent(t *testing.T, tb Table) {
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				user := uint64(i % 5)
				a := Addr{Endpoint: uint32(w), Session: uint64(i)}
				if err := tb.Set(ctx, user, a, ttlLong); err != nil {
					errs <- err
					return
				}
				if _, err := tb.Get(ctx, user); err != nil {
					errs <- err
					return
				}
				if _, err := tb.GetMulti(ctx, []uint64{0, 1, 2, 3, 4}); err != nil {
					errs <- err
					return
				}
				if err := tb.Del(ctx, user, a); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m, err := tb.GetMulti(ctx, []uint64{0, 1, 2, 3, 4})
	if err != nil || len(m) != 0 {
		t.Fatalf("after concurrent set+del: %v, %v; want empty", m, err)
	}
}

func testClosed(t *testing.T, tb Table) {
	ctx := testCtx(t)
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a := Addr{Endpoint: 1}
	checks := map[string]error{
		"Set":              tb.Set(ctx, 1, a, ttlLong),
		"Del":              tb.Del(ctx, 1, a),
		"Refresh":          tb.Refresh(ctx, 1, a, ttlLong),
		"RegisterServer":   tb.RegisterServer(ctx, Server{ID: 1, Role: "x"}, ttlLong),
		"UnregisterServer": tb.UnregisterServer(ctx, 1),
	}
	_, checks["Get"] = tb.Get(ctx, 1)
	_, checks["GetMulti"] = tb.GetMulti(ctx, []uint64{1})
	_, checks["Servers"] = tb.Servers(ctx, "x")
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// checkReads fails the test unless both Get and GetMulti (with a user
// beside it) return want for user; step names the point of the test.
func checkReads(t *testing.T, tb Table, user uint64, step string, want []Addr) {
	t.Helper()
	if err := sameAddrs(mustGet(t, tb, user), want); err != nil {
		t.Fatalf("%s: Get: %v", step, err)
	}
	m, err := tb.GetMulti(testCtx(t), []uint64{user, user + 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := sameAddrs(m[user], want); err != nil {
		t.Fatalf("%s: GetMulti: %v", step, err)
	}
}
