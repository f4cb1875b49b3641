package main

import "testing"

func TestReclaimerCollectsAfterABurstAndOnceMore(t *testing.T) {
	const mib = 1 << 20
	r := &reclaimer{burst: 32 * mib, quiet: mib, again: 3}
	steps := []struct {
		allocs uint64 // bytes allocated since start, as read at the step
		want   bool
	}{
		{0, false},        // first look: the mark
		{mib / 2, false},  // quiet, but no burst
		{40 * mib, false}, // the burst, still going
		{80 * mib, false}, // still going
		{80 * mib, true},  // quiet after 80 MiB: collect
		{80 * mib, false}, // quiet: the follow-up in 2 more
		{80 * mib, false},
		{80 * mib, true},   // the follow-up
		{80 * mib, false},  // quiet, nothing more due
		{81 * mib, false},  // a little traffic
		{100 * mib, false}, // 20 MiB since the reclaim: under a burst
		{100 * mib, false},
		{120 * mib, false}, // 40 MiB since the reclaim, this interval busy
		{120*mib + mib/2, true},
		{120*mib + mib/2, false},
		{130 * mib, false}, // busy before the follow-up: it is off
		{130 * mib, false},
		{130 * mib, false},
		{130 * mib, false},
		{130 * mib, false},
	}
	for i, s := range steps {
		if got := r.step(s.allocs); got != s.want {
			t.Fatalf("step %d (%d MiB): reclaim %v, want %v", i, s.allocs/mib, got, s.want)
		}
	}
}

func TestIdleReclaimFlag(t *testing.T) {
	cfg, err := loadConfig([]string{"--idle-reclaim", "0"}, func(string) string { return "" }, nil)
	if err != nil || cfg.IdleReclaim != 0 {
		t.Fatalf("--idle-reclaim 0: %v, %v", cfg.IdleReclaim, err)
	}
	if _, err := loadConfig([]string{"--idle-reclaim", "-1s"}, func(string) string { return "" }, nil); err == nil {
		t.Fatal("a negative --idle-reclaim was taken")
	}
	if cfg, _ := loadConfig(nil, func(string) string { return "" }, nil); cfg.IdleReclaim <= 0 {
		t.Fatalf("default --idle-reclaim %v, want on", cfg.IdleReclaim)
	}
}
