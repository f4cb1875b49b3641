package center

import "testing"

// The idempotence table starts empty, grows to its bound and then forgets
// the oldest (sender, cid) for each new one, per shard.
func TestDedupeRingBounded(t *testing.T) {
	var d dedupeTable
	d.init()
	for i := range d.shards {
		if n := cap(d.shards[i].ring); n != 0 {
			t.Fatalf("shard %d holds %d ring slots before any message", i, n)
		}
	}
	const from, extra = 7, 100
	// cid = from ^ (k*dedupeShards) puts every pair in shard 0.
	cid := func(k int) uint64 { return from ^ uint64(k*dedupeShards) }
	for k := 1; k <= dedupePerShard+extra; k++ {
		d.remember(from, cid(k), uint64(k))
	}
	sh := &d.shards[0]
	if len(sh.ring) != dedupePerShard || len(sh.m) != dedupePerShard {
		t.Fatalf("ring %d, map %d entries; want both %d", len(sh.ring), len(sh.m), dedupePerShard)
	}
	for k := 1; k <= extra; k++ {
		if _, ok := d.seen(from, cid(k)); ok {
			t.Fatalf("pair %d still remembered after %d newer ones", k, dedupePerShard)
		}
	}
	for _, k := range []int{extra + 1, dedupePerShard, dedupePerShard + extra} {
		if mid, ok := d.seen(from, cid(k)); !ok || mid != uint64(k) {
			t.Fatalf("pair %d: seen = %d, %v; want %d, true", k, mid, ok, k)
		}
	}
	if n := len(d.shards[1].ring); n != 0 {
		t.Fatalf("shard 1 grew to %d with no message of its own", n)
	}
}

// A forgotten pair may be sent again; cid 0 is never remembered by forget.
func TestDedupeForget(t *testing.T) {
	var d dedupeTable
	d.init()
	d.remember(1, 5, 500)
	d.forget(1, 5)
	if _, ok := d.seen(1, 5); ok {
		t.Fatal("a forgotten pair is still seen")
	}
	d.remember(1, 6, 600)
	d.forget(1, 0)
	if mid, ok := d.seen(1, 6); !ok || mid != 600 {
		t.Fatalf("forget of cid 0 touched another pair: %d, %v", mid, ok)
	}
}
