//go:build !race

package route

import "testing"

// Allocation budgets for the lookup path (STYLE point 16). The race
// detector allocates on its own, hence the build tag.

func TestLocalLookupAllocs(t *testing.T) {
	l := NewLocal()
	for u := range uint64(1000) {
		l.Put(u, Addr{Endpoint: 1, Center: 2, Session: u}, &u)
		l.Put(u, Addr{Endpoint: 1, Center: 2, Session: u + 1<<32}, &u)
	}
	var found int
	user := uint64(0)
	if n := testing.AllocsPerRun(1000, func() {
		user = (user + 1) % 1000
		l.Lookup(user, func(a Addr, v any) {
			if v != nil {
				found++
			}
		})
	}); n != 0 {
		t.Fatalf("Local.Lookup: %v allocs/op, want 0", n)
	}
	if found == 0 {
		t.Fatal("Lookup found nothing")
	}
	dst := make([]Addr, 0, 8)
	if n := testing.AllocsPerRun(1000, func() {
		user = (user + 1) % 1000
		dst = l.Addrs(dst[:0], user)
	}); n != 0 {
		t.Fatalf("Local.Addrs into a large enough slice: %v allocs/op, want 0", n)
	}
}
