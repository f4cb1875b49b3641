package main

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// After a burst of allocation (a ramp or a reconnect storm: each endpoint
// handshake leaves about 20 KB of garbage) the heap keeps its size, and
// the process its RSS, until the next collection, which idle sessions
// never cause: they allocate nothing, so the next one is the runtime's
// forced collection two minutes later, and the scavenger then returns the
// freed pages over minutes more. The reclaimer sees the burst end and
// collects, returning what is free to the kernel at once, and collects
// once more when the sessions' cooling has freed their idle state.
const (
	// reclaimBurst is how much the process must have allocated since the
	// last reclaim for one to be worth a collection: about 1,600
	// handshakes.
	reclaimBurst = 32 << 20
	// reclaimQuiet is the most one interval may allocate and still count
	// as quiet: idle sessions' keepalives allocate nothing, traffic
	// allocates far more.
	reclaimQuiet = 1 << 20
)

// reclaimFollow is when a second collection follows the first, if the
// process stayed quiet: the endpoint drops a quiet session's AES-GCM state
// (about 750 bytes) within two of its 10 s cooling rounds
// (engine/endpoint/endpoint_cool.go), which frees without allocating.
const reclaimFollow = 22 * time.Second

// reclaimer decides when to collect: at the end of the first quiet
// interval after a burst, and once more after `again` quiet intervals.
// burst, quiet and again are set before the first step; step is called
// once an interval, from one goroutine.
type reclaimer struct {
	burst, quiet uint64
	again        int
	last, mark   uint64 // bytes allocated at the last step and at the last reclaim
	left         int    // quiet intervals until the follow-up; 0: none due
	started      bool
}

// step takes the bytes the process has allocated since it started and
// reports whether to collect now.
func (r *reclaimer) step(allocs uint64) bool {
	if !r.started {
		r.started, r.last, r.mark = true, allocs, allocs
		return false
	}
	interval := allocs - r.last
	r.last = allocs
	switch {
	case interval > r.quiet:
		r.left = 0 // busy again: a burst's end will collect
		return false
	case allocs-r.mark >= r.burst:
		r.mark, r.left = allocs, r.again
		return true
	case r.left > 0:
		r.left--
		if r.left == 0 {
			r.mark = allocs
			return true
		}
	}
	return false
}

// reclaimOnce keeps one reclaimer per process however often run is called
// (tests call it many times).
var reclaimOnce sync.Once

// reclaimWhenQuiet starts the reclaimer's goroutine, which looks every
// interval (0: never) and collects with debug.FreeOSMemory, off the event
// loops. It runs for the life of the process; the first call with a
// positive interval starts it, later calls do nothing.
func reclaimWhenQuiet(every time.Duration) {
	if every <= 0 {
		return
	}
	reclaimOnce.Do(func() {
		r := &reclaimer{burst: reclaimBurst, quiet: reclaimQuiet, again: int((reclaimFollow + every - 1) / every)}
		sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for range t.C {
				metrics.Read(sample)
				if r.step(sample[0].Value.Uint64()) {
					debug.FreeOSMemory()
				}
			}
		}()
	})
}
