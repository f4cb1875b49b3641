package center

import (
	"sync"
	"time"
)

// expiring is a value a deadlineShard holds until its deadline passes.
type expiring interface{ due() time.Time }

// deadlineShard is one shard of a map whose entries wait for an answer
// until a deadline: the pushes waiting for their receipt (pending) and the
// forwarded messages waiting for their RESULT (fwdEntry). mu guards m.
type deadlineShard[K comparable, V expiring] struct {
	mu sync.Mutex
	m  map[K]V
}

// takeExpired removes the entries due before now and appends them to ks
// and vs. It holds sh.mu over the map updates only.
func (sh *deadlineShard[K, V]) takeExpired(now time.Time, ks []K, vs []V) ([]K, []V) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for k, v := range sh.m {
		if now.After(v.due()) {
			ks, vs = append(ks, k), append(vs, v)
			delete(sh.m, k)
		}
	}
	return ks, vs
}

// sweepExpired is the loop of a sweeper: every interval it takes the
// expired entries out of each shard and hands each to expire, outside the
// shard's lock, until stop closes.
func sweepExpired[K comparable, V expiring](stop <-chan struct{}, every time.Duration,
	shards []deadlineShard[K, V], expire func(K, V)) {
	t := time.NewTicker(every)
	defer t.Stop()
	var ks []K
	var vs []V
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			for i := range shards {
				ks, vs = shards[i].takeExpired(now, ks[:0], vs[:0])
				for j, v := range vs {
					expire(ks[j], v)
				}
				clear(vs) // the scratch keeps no entry alive
			}
		}
	}
}
