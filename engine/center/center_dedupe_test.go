package center

import (
	"testing"

	"github.com/myim/myim/storage/bolt"
)

// The idempotence table starts empty, grows to its bound and then forgets
// the oldest (sender, cid) for each new one, per shard.
func TestDedupeRingBounded(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := NewLocalCenter(Config{ID: 1, Store: st})
	defer c.Close()
	for i := range c.dedupe {
		if n := cap(c.dedupe[i].ring); n != 0 {
			t.Fatalf("shard %d holds %d ring slots before any message", i, n)
		}
	}
	const from, extra = 7, 100
	// cid = from ^ (k*dedupeShards) puts every pair in shard 0.
	cid := func(k int) uint64 { return from ^ uint64(k*dedupeShards) }
	for k := 1; k <= dedupePerShard+extra; k++ {
		c.remember(from, cid(k), uint64(k))
	}
	sh := &c.dedupe[0]
	if len(sh.ring) != dedupePerShard || len(sh.m) != dedupePerShard {
		t.Fatalf("ring %d, map %d entries; want both %d", len(sh.ring), len(sh.m), dedupePerShard)
	}
	for k := 1; k <= extra; k++ {
		if _, ok := c.seen(from, cid(k)); ok {
			t.Fatalf("pair %d still remembered after %d newer ones", k, dedupePerShard)
		}
	}
	for _, k := range []int{extra + 1, dedupePerShard, dedupePerShard + extra} {
		if mid, ok := c.seen(from, cid(k)); !ok || mid != uint64(k) {
			t.Fatalf("pair %d: seen = %d, %v; want %d, true", k, mid, ok, k)
		}
	}
	if n := len(c.dedupe[1].ring); n != 0 {
		t.Fatalf("shard 1 grew to %d with no message of its own", n)
	}
}
