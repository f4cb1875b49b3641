package redis

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/routetest"
)

// Get benchmarks: Memory, the all-in-one cluster table, is the baseline;
// Redis runs with and without client-side caching so the cache's effect is
// visible side by side. They skip when no Redis is reachable.

// fillTable sets one address for each of n users.
func fillTable(b *testing.B, tb route.Table, n int) {
	b.Helper()
	ctx := context.Background()
	for u := range uint64(n) {
		if err := tb.Set(ctx, u, route.Addr{Endpoint: 1, Center: 2, Session: u}, routetest.TTLLong); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTable is one Table configuration compared by the Get benchmarks.
// Routes are written through writer and read through tb. For Redis they
// are separate clients, as in production where endpoints write and centers
// read; reading through the writer would measure the recent-write bypass
// (see Table) instead of the cache.
type benchTable struct {
	name       string
	tb, writer route.Table
}

// benchTables returns the configurations: Memory as the baseline, Redis
// with and without client-side caching.
func benchTables(b *testing.B) []benchTable {
	b.Helper()
	m := route.NewMemory()
	b.Cleanup(func() { m.Close() })
	prefix := testenv.RedisPrefix(b, testenv.RedisAddr(b))
	writer := startRedis(b, Options{Prefix: prefix, DisableCache: true})
	return []benchTable{
		{"memory", m, m},
		{"redis-cached", startRedis(b, Options{Prefix: prefix}), writer},
		{"redis-uncached", startRedis(b, Options{Prefix: prefix, DisableCache: true}), writer},
	}
}

func BenchmarkRedisGet(b *testing.B) {
	const users = 1000
	for _, c := range benchTables(b) {
		fillTable(b, c.writer, users)
		ctx := context.Background()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			user := uint64(0)
			for b.Loop() {
				user = (user + 1) % users
				if _, err := c.tb.Get(ctx, user); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				user := seed.Add(101)
				for pb.Next() {
					user = (user + 1) % users
					if _, err := c.tb.Get(ctx, user); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkRedisGetMulti(b *testing.B) {
	const group = 100
	const users = 10 * group
	for _, c := range benchTables(b) {
		fillTable(b, c.writer, users/2) // half the group members are offline
		ctx := context.Background()
		b.Run(fmt.Sprintf("%s/users=%d", c.name, group), func(b *testing.B) {
			b.ReportAllocs()
			ids := make([]uint64, group)
			start := uint64(0)
			for b.Loop() {
				for i := range ids {
					ids[i] = (start + uint64(i)*10) % users
				}
				start++
				if _, err := c.tb.GetMulti(ctx, ids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*group), "ns/user")
		})
	}
}
