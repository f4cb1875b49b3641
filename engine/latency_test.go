package engine_test

import (
	"testing"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
)

func TestLatencyHistogramQuantile(t *testing.T) {
	var h engine.LatencyHistogram
	if q := h.Snapshot().Quantile(0.99); q != -1 {
		t.Fatalf("empty histogram p99 %v, want -1", q)
	}
	for i := 0; i < 98; i++ {
		h.Observe(300 * time.Microsecond) // bucket <= 500 µs
	}
	h.Observe(40 * time.Millisecond) // bucket <= 50 ms
	h.Observe(time.Minute)           // past the last bound
	s := h.Snapshot()
	if s.Count() != 100 {
		t.Fatalf("count %d", s.Count())
	}
	for q, want := range map[float64]time.Duration{
		0.5: 500 * time.Microsecond, 0.98: 500 * time.Microsecond, 0.99: 50 * time.Millisecond, 1: 10 * time.Second,
	} {
		if got := s.Quantile(q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	before := s
	h.Observe(2 * time.Millisecond)
	if d := h.Snapshot().Sub(before); d.Count() != 1 || d.Quantile(0.5) != 2500*time.Microsecond || d.Sum != 2*time.Millisecond {
		t.Fatalf("difference %+v", d)
	}
}

func TestServerCountsBytesOutAndLoopLag(t *testing.T) {
	s := startServer(t, echo{}, engine.WithConfig(engine.Config{Addr: "tcp://127.0.0.1:0", Loops: 1,
		TickInterval: 20 * time.Millisecond}))
	c := dial(t, s)
	_, _ = c.Write(frame.Ping)
	readN(t, c, 3)
	st := s.Stats()
	eventually(t, 5*time.Second, func() bool { return st.BytesOut.Load() == 3 && st.Writes.Load() == 1 })
	// Sweeps run every tick on the loop that holds the connection.
	eventually(t, 5*time.Second, func() bool { return st.LoopLag.Snapshot().Count() >= 3 })
	if q := st.LoopLag.Snapshot().Quantile(0.5); q > time.Second {
		t.Fatalf("median loop lag %v on an idle loop", q)
	}
}

// TestInterpolatedQuantile wants percentiles read within the bucket: 100
// deliveries spread over 50..100 ms give a p99 near 99.5 ms and a p50
// near 75 ms, not the bucket's 100 ms.
func TestInterpolatedQuantile(t *testing.T) {
	var h engine.LatencyHistogram
	if q := h.Snapshot().Interpolated(0.99); q != -1 {
		t.Fatalf("empty: %v", q)
	}
	for i := 0; i < 100; i++ {
		h.Observe(50*time.Millisecond + time.Duration(i)*500*time.Microsecond + time.Microsecond)
	}
	s := h.Snapshot()
	if b := s.Quantile(0.99); b != 100*time.Millisecond {
		t.Fatalf("bucket edge %v", b)
	}
	p99, p50 := s.Interpolated(0.99), s.Interpolated(0.5)
	if p99 < 95*time.Millisecond || p99 >= 100*time.Millisecond {
		t.Errorf("interpolated p99 %v, want in [95ms, 100ms)", p99)
	}
	if p50 < 70*time.Millisecond || p50 > 80*time.Millisecond {
		t.Errorf("interpolated p50 %v, want about 75ms", p50)
	}
}
