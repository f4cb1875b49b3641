//go:build !race

package engine_test

import (
	"testing"
	"time"

	"github.com/myim/myim/engine"
)

func TestLatencyHistogramObserveAllocs(t *testing.T) {
	var h engine.LatencyHistogram
	if n := testing.AllocsPerRun(1000, func() { h.Observe(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}
