package redis

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/routetest"
)

func TestConformance(t *testing.T) {
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
			routetest.Run(t, func(t testing.TB) route.Table { return startRedis(t, tc.opt) })
		})
	}
}

// TestClusterConformance runs the same suite against a Redis Cluster
// of three primaries of the test's own: route keys live in a slot each and
// the server registry's keys share one ({servers}), so every command and
// script touches one slot.
func TestClusterConformance(t *testing.T) {
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
			routetest.Run(t, func(t testing.TB) route.Table {
				opt := tc.opt
				opt.Addr = nodes[n.Add(1)%int64(len(nodes))].Addr() // any node seeds the cluster client
				opt.Prefix = fmt.Sprintf("t%d:", time.Now().UnixNano())
				r, err := New(opt)
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
func startRedis(t testing.TB, opt Options) *Table {
	t.Helper()
	addr := testenv.RedisAddr(t)
	if opt.Addr == "" {
		opt.Addr = addr
	}
	if opt.Prefix == "" {
		opt.Prefix = testenv.RedisPrefix(t, addr)
	}
	r, err := New(opt)
	if err != nil {
		t.Fatalf("redis at %s: %v", opt.Addr, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}
