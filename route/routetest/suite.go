// Package routetest is the conformance suite every route.Table backend runs
// (route.Memory, route/redis): the same checks of the Table contract, so
// that callers cannot tell the backends apart. Backend-specific behaviour
// (Redis key layout, outages, Memory's Sweep) is tested in the backend's
// own tests. It is imported by tests only.
package routetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/route"
)

// Eventually calls fn until it returns nil or timeout passes, then fails
// the test with fn's last error.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
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

// Context returns a context that ends with the test or after 10 seconds.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sortedAddrs returns a sorted copy, for order-insensitive comparison.
func sortedAddrs(as []route.Addr) []route.Addr {
	as = slices.Clone(as)
	slices.SortFunc(as, func(a, b route.Addr) int {
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

// SameAddrs reports an error unless got and want hold the same addresses.
func SameAddrs(got, want []route.Addr) error {
	if !slices.Equal(sortedAddrs(got), sortedAddrs(want)) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

// MustGet is Get that fails the test on error.
func MustGet(t testing.TB, tb route.Table, user uint64) []route.Addr {
	t.Helper()
	as, err := tb.Get(Context(t), user)
	if err != nil {
		t.Fatalf("Get(%d): %v", user, err)
	}
	return as
}

// TTLLong outlives any test; TTLShort expires within one.
const (
	TTLLong  = time.Minute
	TTLShort = 400 * time.Millisecond // long enough for a loaded machine to refresh within it
)

// Run runs the conformance cases, each in a parallel subtest, against
// tables made by mk: each call returns a fresh, empty table of the test's
// own and arranges for its cleanup.
func Run(t *testing.T, mk func(t testing.TB) route.Table) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, tb route.Table)
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

func testReadsSeeWrites(t *testing.T, tb route.Table) {
	ctx := Context(t)
	const user = 77
	var want []route.Addr
	check := func(round int) {
		t.Helper()
		checkReads(t, tb, user, fmt.Sprintf("round %d", round), want)
	}
	for i := range 10 {
		for range 3 { // warm any cache with the current state
			check(i)
		}
		a := route.Addr{Endpoint: uint32(i), Center: 1, Session: uint64(i)}
		if i%3 == 2 { // every third round deletes instead
			a, want = want[0], want[1:]
			if err := tb.Del(ctx, user, a); err != nil {
				t.Fatal(err)
			}
		} else {
			want = append(want, a)
			if err := tb.Set(ctx, user, a, TTLLong); err != nil {
				t.Fatal(err)
			}
		}
		check(i)
	}
}

func testConcurrent(t *testing.T, tb route.Table) {
	ctx := Context(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				user := uint64(i % 5)
				a := route.Addr{Endpoint: uint32(w), Session: uint64(i)}
				if err := tb.Set(ctx, user, a, TTLLong); err != nil {
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

func testClosed(t *testing.T, tb route.Table) {
	ctx := Context(t)
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a := route.Addr{Endpoint: 1}
	checks := map[string]error{
		"Set":              tb.Set(ctx, 1, a, TTLLong),
		"Del":              tb.Del(ctx, 1, a),
		"Refresh":          tb.Refresh(ctx, 1, a, TTLLong),
		"RegisterServer":   tb.RegisterServer(ctx, route.Server{ID: 1, Role: "x"}, TTLLong),
		"UnregisterServer": tb.UnregisterServer(ctx, 1),
	}
	_, checks["Get"] = tb.Get(ctx, 1)
	_, checks["GetMulti"] = tb.GetMulti(ctx, []uint64{1})
	_, checks["Servers"] = tb.Servers(ctx, "x")
	for name, err := range checks {
		if !errors.Is(err, route.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// checkReads fails the test unless both Get and GetMulti (with a user
// beside it) return want for user; step names the point of the test.
func checkReads(t *testing.T, tb route.Table, user uint64, step string, want []route.Addr) {
	t.Helper()
	if err := SameAddrs(MustGet(t, tb, user), want); err != nil {
		t.Fatalf("%s: Get: %v", step, err)
	}
	m, err := tb.GetMulti(Context(t), []uint64{user, user + 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := SameAddrs(m[user], want); err != nil {
		t.Fatalf("%s: GetMulti: %v", step, err)
	}
}
