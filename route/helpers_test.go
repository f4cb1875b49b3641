package route

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// The helpers of routetest, for this package's own tests, which cannot
// import routetest (it imports route).

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
