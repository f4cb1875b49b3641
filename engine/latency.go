package engine

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of LatencyHistogram's buckets: from
// 100 µs (a local store read, a loop that keeps up) to 10 s (the center's
// receipt timeout), roughly 1-2.5-5 per decade, so that a p99 read from the
// buckets is within a factor of 2.5 of the truth.
var latencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// latencyBuckets is the number of buckets: one per bound, then +Inf.
const latencyBuckets = len(latencyBounds) + 1

// LatencyHistogram counts durations in fixed buckets. Observe is a bucket
// search and two atomic adds: no lock, no allocation, so it may sit on the
// hot path. Safe for concurrent use; the zero value is ready.
type LatencyHistogram struct {
	counts [latencyBuckets]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

// Observe records one duration; negative ones count as 0.
func (h *LatencyHistogram) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// LatencySnapshot is a LatencyHistogram's counts at one moment; two
// snapshots subtract to the observations between them.
type LatencySnapshot struct {
	Counts [latencyBuckets]uint64
	Sum    time.Duration
}

// Snapshot reads the counts. Concurrent observations may land on either
// side of it.
func (h *LatencyHistogram) Snapshot() LatencySnapshot {
	var s LatencySnapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Count returns how many durations the snapshot holds.
func (s LatencySnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Sub returns the observations of s that o does not hold (o is earlier).
func (s LatencySnapshot) Sub(o LatencySnapshot) LatencySnapshot {
	for i := range s.Counts {
		s.Counts[i] -= o.Counts[i]
	}
	s.Sum -= o.Sum
	return s
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1),
// or -1 with no observations. Past the last bound it returns the last
// bound: "at least 10 s".
func (s LatencySnapshot) Quantile(q float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return -1
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range s.Counts {
		seen += c
		if seen >= rank {
			return latencyBounds[min(i, len(latencyBounds)-1)]
		}
	}
	return latencyBounds[len(latencyBounds)-1]
}

// Interpolated returns quantile q (0..1) interpolated linearly within the
// bucket that holds it, as Prometheus's histogram_quantile does, or -1
// with no observations: 92 ms measured reads about 92 ms rather than the
// bucket's 100 ms, provided the observations spread evenly in the bucket.
// Past the last bound it returns the last bound.
func (s LatencySnapshot) Interpolated(q float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return -1
	}
	rank := q * float64(n)
	var seen float64
	for i, c := range s.Counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			if i >= len(latencyBounds) {
				break
			}
			lo := time.Duration(0)
			if i > 0 {
				lo = latencyBounds[i-1]
			}
			frac := (rank - seen) / float64(c)
			return lo + time.Duration(frac*float64(latencyBounds[i]-lo))
		}
		seen += float64(c)
	}
	return latencyBounds[len(latencyBounds)-1]
}

// LatencyBounds returns the upper bounds of the histogram's buckets in
// ascending order; LatencySnapshot.Counts holds one count per bound and a
// last one for durations above every bound. The slice is a copy.
func LatencyBounds() []time.Duration { return append([]time.Duration(nil), latencyBounds[:]...) }
