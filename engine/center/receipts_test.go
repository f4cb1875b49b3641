package center

import "testing"

// The receipt table on its own: a receipt takes an entry once; a session
// leaving takes it only when it was the last; takeIf takes only the entry
// it was given.
func TestReceiptTable(t *testing.T) {
	var rt receiptTable
	rt.init()
	a, b := &sessState{}, &sessState{}
	k := pendKey{to: 20, mid: 1 << 20}

	p := getPending()
	p.sessions = append(p.sessions, a, b)
	rt.put(k, p)
	if got := rt.leave(k, a); got != nil {
		t.Fatal("the first of two sessions leaving took the entry")
	}
	if got := rt.leave(k, b); got != p {
		t.Fatalf("the last session leaving took %p, want the entry %p", got, p)
	}
	if rt.count() != 0 || rt.take(k) != nil {
		t.Fatal("the entry is still there after its last session left")
	}

	q := getPending()
	rt.put(k, q)
	if rt.takeIf(k, p) {
		t.Fatal("takeIf took an entry it was not given")
	}
	if got := rt.take(k); got != q {
		t.Fatalf("take returned %p, want %p", got, q)
	}
	if rt.take(k) != nil {
		t.Fatal("an entry was taken twice")
	}
	rt.put(k, q)
	if !rt.takeIf(k, q) || rt.count() != 0 {
		t.Fatal("takeIf did not take its own entry")
	}
}
