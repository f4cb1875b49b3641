package routetest

import (
	"errors"
	"testing"
	"time"

	"github.com/myim/myim/route"
)

func testSetGetDel(t *testing.T, tb route.Table) {
	ctx := Context(t)
	a := route.Addr{Endpoint: 1, Center: 2, Session: 3}
	if got := MustGet(t, tb, 42); len(got) != 0 {
		t.Fatalf("Get of unknown user = %v, want empty", got)
	}
	if err := tb.Set(ctx, 42, a, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, 42), []route.Addr{a}); err != nil {
		t.Fatal(err)
	}
	if got := MustGet(t, tb, 43); len(got) != 0 {
		t.Fatalf("Get of another user = %v, want empty", got)
	}
	if err := tb.Del(ctx, 42, a); err != nil {
		t.Fatal(err)
	}
	if got := MustGet(t, tb, 42); len(got) != 0 {
		t.Fatalf("Get after Del = %v, want empty", got)
	}
	if err := tb.Del(ctx, 42, a); err != nil {
		t.Fatalf("Del of missing address: %v", err)
	}
	// Extreme ids round-trip.
	max := route.Addr{Endpoint: ^uint32(0), Center: ^uint32(0), Session: ^uint64(0)}
	if err := tb.Set(ctx, ^uint64(0), max, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, ^uint64(0)), []route.Addr{max}); err != nil {
		t.Fatal(err)
	}
}

func testMultipleSessions(t *testing.T, tb route.Table) {
	ctx := Context(t)
	phone := route.Addr{Endpoint: 1, Center: 7, Session: 100}
	laptop := route.Addr{Endpoint: 2, Center: 7, Session: 200}
	web := route.Addr{Endpoint: 1, Center: 8, Session: 101}
	for _, a := range []route.Addr{phone, laptop, web, phone} { // phone twice: no duplicate
		if err := tb.Set(ctx, 9, a, TTLLong); err != nil {
			t.Fatal(err)
		}
	}
	if err := SameAddrs(MustGet(t, tb, 9), []route.Addr{phone, laptop, web}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Del(ctx, 9, laptop); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, 9), []route.Addr{phone, web}); err != nil {
		t.Fatal(err)
	}
	// Same session id on another endpoint is another address.
	if err := tb.Del(ctx, 9, route.Addr{Endpoint: 3, Center: 7, Session: 100}); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, 9), []route.Addr{phone, web}); err != nil {
		t.Fatal(err)
	}
}

func testTTLExpiry(t *testing.T, tb route.Table) {
	ctx := Context(t)
	dying := route.Addr{Endpoint: 1, Center: 1, Session: 1}
	living := route.Addr{Endpoint: 2, Center: 1, Session: 2}
	if err := tb.Set(ctx, 5, dying, TTLShort); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(ctx, 5, living, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(ctx, 6, dying, TTLShort); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, 5), []route.Addr{dying, living}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Second, func() error {
		return SameAddrs(MustGet(t, tb, 5), []route.Addr{living})
	})
	Eventually(t, 3*time.Second, func() error {
		return SameAddrs(MustGet(t, tb, 6), nil)
	})
	m, err := tb.GetMulti(ctx, []uint64{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m[6]; ok || len(m) != 1 {
		t.Fatalf("GetMulti after expiry = %v, want only user 5", m)
	}
	// An expired address can be set again.
	if err := tb.Set(ctx, 6, dying, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, 6), []route.Addr{dying}); err != nil {
		t.Fatal(err)
	}
}

func testRefresh(t *testing.T, tb route.Table) {
	ctx := Context(t)
	a := route.Addr{Endpoint: 4, Center: 5, Session: 6}
	if err := tb.Refresh(ctx, 11, a, TTLLong); !errors.Is(err, route.ErrNotFound) {
		t.Fatalf("Refresh of missing = %v, want ErrNotFound", err)
	}
	if err := tb.Set(ctx, 11, a, TTLShort); err != nil {
		t.Fatal(err)
	}
	// Keep refreshing for several TTLs: the entry must survive.
	end := time.Now().Add(3 * TTLShort)
	for time.Now().Before(end) {
		if err := tb.Refresh(ctx, 11, a, TTLShort); err != nil {
			t.Fatalf("Refresh of live entry: %v", err)
		}
		if err := SameAddrs(MustGet(t, tb, 11), []route.Addr{a}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(TTLShort / 5)
	}
	if err := tb.Refresh(ctx, 11, route.Addr{Endpoint: 4, Center: 5, Session: 7}, TTLLong); !errors.Is(err, route.ErrNotFound) {
		t.Fatalf("Refresh of another session = %v, want ErrNotFound", err)
	}
	// Once expired, Refresh reports ErrNotFound rather than reviving it.
	Eventually(t, 3*time.Second, func() error { return SameAddrs(MustGet(t, tb, 11), nil) })
	if err := tb.Refresh(ctx, 11, a, TTLLong); !errors.Is(err, route.ErrNotFound) {
		t.Fatalf("Refresh of expired entry = %v, want ErrNotFound", err)
	}
	if got := MustGet(t, tb, 11); len(got) != 0 {
		t.Fatalf("Get after Refresh of expired entry = %v, want empty", got)
	}
}

func testInvalidTTL(t *testing.T, tb route.Table) {
	ctx := Context(t)
	a := route.Addr{Endpoint: 1}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := tb.Set(ctx, 1, a, ttl); !errors.Is(err, route.ErrInvalidTTL) {
			t.Errorf("Set ttl=%v: %v, want ErrInvalidTTL", ttl, err)
		}
		if err := tb.Refresh(ctx, 1, a, ttl); !errors.Is(err, route.ErrInvalidTTL) {
			t.Errorf("Refresh ttl=%v: %v, want ErrInvalidTTL", ttl, err)
		}
		if err := tb.RegisterServer(ctx, route.Server{ID: 1, Role: "x"}, ttl); !errors.Is(err, route.ErrInvalidTTL) {
			t.Errorf("RegisterServer ttl=%v: %v, want ErrInvalidTTL", ttl, err)
		}
	}
}

func testGetMulti(t *testing.T, tb route.Table) {
	ctx := Context(t)
	const n = 300
	want := make(map[uint64][]route.Addr)
	var users []uint64
	for u := uint64(1000); u < 1000+n; u++ {
		users = append(users, u)
		switch u % 3 {
		case 0: // offline
		case 1:
			want[u] = []route.Addr{{Endpoint: uint32(u), Center: 1, Session: u}}
		case 2:
			want[u] = []route.Addr{{Endpoint: 1, Center: 2, Session: u}, {Endpoint: 2, Center: 2, Session: u + 1}}
		}
		for _, a := range want[u] {
			if err := tb.Set(ctx, u, a, TTLLong); err != nil {
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
		if err := SameAddrs(got[u], as); err != nil {
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
func testStatus(t *testing.T, tb route.Table) {
	ctx := Context(t)
	const user = 31
	phone := route.Addr{Endpoint: 1, Center: 7, Session: 100, Status: 3}
	laptop := route.Addr{Endpoint: 2, Center: 8, Session: 200, Status: 4}
	for _, a := range []route.Addr{phone, laptop} {
		if err := tb.Set(ctx, user, a, TTLLong); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want ...route.Addr) {
		t.Helper()
		checkReads(t, tb, user, step, want)
	}
	check("set", phone, laptop)

	// A new status for a present address replaces the old one.
	phone.Status = 2
	if err := tb.Set(ctx, user, phone, TTLLong); err != nil {
		t.Fatal(err)
	}
	check("status changed by Set", phone, laptop)
	laptop.Status = 1
	if err := tb.Refresh(ctx, user, laptop, TTLLong); err != nil {
		t.Fatal(err)
	}
	check("status changed by Refresh", phone, laptop)

	// Del finds the address whatever the Status it is given.
	if err := tb.Del(ctx, user, route.Addr{Endpoint: 1, Center: 7, Session: 100}); err != nil {
		t.Fatal(err)
	}
	check("del", laptop)

	// Every byte value round-trips, zero ("not reported") included, on
	// both ends of the id range.
	const other = 32
	for _, st := range []byte{0, 1, 127, 128, 255} {
		a := route.Addr{Endpoint: ^uint32(0), Center: ^uint32(0), Session: ^uint64(0), Status: st}
		if err := tb.Set(ctx, other, a, TTLLong); err != nil {
			t.Fatal(err)
		}
		if err := SameAddrs(MustGet(t, tb, other), []route.Addr{a}); err != nil {
			t.Fatalf("status %d: %v", st, err)
		}
	}
}

// testStatusExpiry checks that the Status does not stretch a route's life:
// a route with a status expires with its TTL like any other, and setting it
// again after expiry records the new status.
func testStatusExpiry(t *testing.T, tb route.Table) {
	ctx := Context(t)
	const user = 33
	dying := route.Addr{Endpoint: 1, Center: 1, Session: 1, Status: 255}
	living := route.Addr{Endpoint: 2, Center: 1, Session: 2, Status: 3}
	if err := tb.Set(ctx, user, dying, TTLShort); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(ctx, user, living, TTLLong); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Second, func() error {
		return SameAddrs(MustGet(t, tb, user), []route.Addr{living})
	})
	if err := tb.Refresh(ctx, user, dying, TTLLong); !errors.Is(err, route.ErrNotFound) {
		t.Fatalf("Refresh of an expired address with a status = %v, want ErrNotFound", err)
	}
	dying.Status = 1
	if err := tb.Set(ctx, user, dying, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(MustGet(t, tb, user), []route.Addr{dying, living}); err != nil {
		t.Fatal(err)
	}
}

// serverIDs lists the ids of ss in order.
