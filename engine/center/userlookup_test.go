package center

import (
	"testing"
	"time"
)

func TestLookupBudget(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewLookupBudget(3)
	b.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if !b.take(1) {
			t.Fatalf("lookup %d refused within the budget", i+1)
		}
	}
	if b.take(1) {
		t.Fatal("a lookup over the budget was allowed")
	}
	if !b.take(2) {
		t.Fatal("another user's budget was spent by the first")
	}
	now = now.Add(lookupWindow - time.Millisecond)
	if b.take(1) {
		t.Fatal("the budget came back before the window ended")
	}
	now = now.Add(time.Millisecond)
	if !b.take(1) {
		t.Fatal("the budget did not come back with the next window")
	}
}
