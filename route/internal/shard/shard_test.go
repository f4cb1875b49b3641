package shard

import "testing"

func TestSpread(t *testing.T) {
	// Sequential ids and ids sharing their low bits both spread evenly.
	for _, stride := range []uint64{1, 64, 1 << 20} {
		var counts [Count]int
		for i := range uint64(64 * Count) {
			counts[Of(i*stride)]++
		}
		for s, n := range counts {
			if n < 32 || n > 96 {
				t.Fatalf("stride %d: shard %d got %d of %d ids", stride, s, n, 64*Count)
			}
		}
	}
}
