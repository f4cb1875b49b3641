package route_test

import (
	"sync"
	"testing"

	"github.com/myim/myim/route"
	"github.com/myim/myim/route/routetest"
)

func TestLocalPutLookupRemove(t *testing.T) {
	var l route.Local // the zero value is ready to use
	phone := route.Addr{Endpoint: 1, Center: 2, Session: 10}
	laptop := route.Addr{Endpoint: 1, Center: 3, Session: 11}

	if n := l.Lookup(7, func(route.Addr, any) { t.Fatal("fn called for an unknown user") }); n != 0 {
		t.Fatalf("Lookup of unknown user = %d", n)
	}
	if _, replaced := l.Put(7, phone, "phone"); replaced {
		t.Fatal("first Put reported a replacement")
	}
	if _, replaced := l.Put(7, laptop, "laptop"); replaced {
		t.Fatal("Put of a second session reported a replacement")
	}
	l.Put(8, phone, "other user")

	got := map[route.Addr]any{}
	if n := l.Lookup(7, func(a route.Addr, v any) { got[a] = v }); n != 2 {
		t.Fatalf("Lookup = %d sessions, want 2", n)
	}
	if got[phone] != "phone" || got[laptop] != "laptop" || len(got) != 2 {
		t.Fatalf("Lookup saw %v", got)
	}
	if err := routetest.SameAddrs(l.Addrs(nil, 7), []route.Addr{phone, laptop}); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 2 {
		t.Fatalf("Len = %d, want 2", l.Len())
	}

	// Same session id again replaces address and handle.
	moved := route.Addr{Endpoint: 1, Center: 9, Session: 10}
	if prev, replaced := l.Put(7, moved, "phone2"); !replaced || prev != "phone" {
		t.Fatalf("replacing Put = %v, %v", prev, replaced)
	}
	if err := routetest.SameAddrs(l.Addrs(nil, 7), []route.Addr{moved, laptop}); err != nil {
		t.Fatal(err)
	}

	if v, ok := l.Remove(7, 10); !ok || v != "phone2" {
		t.Fatalf("Remove = %v, %v", v, ok)
	}
	if _, ok := l.Remove(7, 10); ok {
		t.Fatal("second Remove found the session")
	}
	if _, ok := l.Remove(99, 10); ok {
		t.Fatal("Remove found a session of an unknown user")
	}
	if v, ok := l.Remove(7, 11); !ok || v != "laptop" {
		t.Fatalf("Remove of last session = %v, %v", v, ok)
	}
	if l.Len() != 1 || l.Lookup(7, func(route.Addr, any) {}) != 0 {
		t.Fatal("user still present after its last session was removed")
	}
}

func TestLocalRange(t *testing.T) {
	l := route.NewLocal()
	for u := range uint64(100) {
		l.Put(u, route.Addr{Session: u}, nil)
		l.Put(u, route.Addr{Session: u + 1000}, nil)
	}
	seen := 0
	l.Range(func(user uint64, a route.Addr, _ any) bool {
		if a.Session != user && a.Session != user+1000 {
			t.Fatalf("user %d has session %d", user, a.Session)
		}
		seen++
		return true
	})
	if seen != 200 {
		t.Fatalf("Range visited %d sessions, want 200", seen)
	}
	seen = 0
	l.Range(func(uint64, route.Addr, any) bool { seen++; return seen < 5 })
	if seen != 5 {
		t.Fatalf("Range did not stop: %d calls", seen)
	}
}

func TestLocalConcurrent(t *testing.T) {
	l := route.NewLocal()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				user := uint64(i % 50)
				sess := uint64(w)<<32 | uint64(i)
				l.Put(user, route.Addr{Endpoint: 1, Session: sess}, w)
				l.Lookup(user, func(route.Addr, any) {})
				l.Addrs(nil, user)
				if _, ok := l.Remove(user, sess); !ok {
					t.Errorf("session %d of user %d vanished", sess, user)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			l.Len()
			l.Range(func(uint64, route.Addr, any) bool { return true })
		}
	})
	wg.Wait()
	if l.Len() != 0 {
		t.Fatalf("Len = %d after every session was removed", l.Len())
	}
}
