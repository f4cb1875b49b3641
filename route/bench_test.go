package route

import (
	"sync/atomic"
	"testing"
)

// Route lookup benchmarks. Local is the in-process hot path; Memory is the
// all-in-one cluster table and the baseline for Redis; Redis runs with and
// without client-side caching so the cache's effect is visible side by
// side. Redis benchmarks skip when no Redis is reachable.

const benchUsers = 10_000

// fillLocal puts two sessions for each of n users.
func fillLocal(n int) *Local {
	l := NewLocal()
	for u := range uint64(n) {
		l.Put(u, Addr{Endpoint: 1, Center: 2, Session: u}, &u)
		l.Put(u, Addr{Endpoint: 1, Center: 3, Session: u + 1<<32}, &u)
	}
	return l
}

func BenchmarkLocalLookup(b *testing.B) {
	l := fillLocal(benchUsers)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		var found int
		user := uint64(0)
		for b.Loop() {
			user = (user + 1) % benchUsers
			found += l.Lookup(user, func(Addr, any) {})
		}
		if found == 0 {
			b.Fatal("nothing found")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			user := seed.Add(7919)
			for pb.Next() {
				user = (user + 1) % benchUsers
				l.Lookup(user, func(Addr, any) {})
			}
		})
	})
	b.Run("parallel-with-writes", func(b *testing.B) {
		// One in 64 operations is a connect or disconnect, a busy node's mix.
		b.ReportAllocs()
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			user := seed.Add(7919)
			i := 0
			for pb.Next() {
				user = (user + 1) % benchUsers
				if i++; i%64 == 0 {
					l.Put(user, Addr{Session: 1 << 40}, nil)
					l.Remove(user, 1<<40)
					continue
				}
				l.Lookup(user, func(Addr, any) {})
			}
		})
	})
}
