package lograte

import (
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	l := &Limit{interval: time.Hour, burst: 3}
	passed := 0
	for i := 0; i < 100; i++ {
		if ok, _ := l.Allow(); ok {
			passed++
		}
	}
	if passed != 3 {
		t.Fatalf("%d of 100 passed in one interval, want 3", passed)
	}
	l.start = time.Now().Add(-2 * time.Hour) // the next interval
	ok, suppressed := l.Allow()
	if !ok || suppressed != 97 {
		t.Fatalf("next interval: ok %v, suppressed %d, want true and 97", ok, suppressed)
	}
}
