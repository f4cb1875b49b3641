package main

import (
	"testing"
)

func allEngines() []Engine { return append(engines[:len(engines):len(engines)], pebbleNaive) }

// TestEngines checks that every engine implements the queue: per-recipient
// (Time, MID) order, pages, acks, and durability across a reopen.
func TestEngines(t *testing.T) {
	for _, e := range allEngines() {
		t.Run(e.ID, func(t *testing.T) {
			dir := t.TempDir()
			q, err := e.Open(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := preload(q, 3, 120); err != nil {
				t.Fatal(err)
			}
			// A message for user 2 with an older time than everything
			// queued must come first.
			var old Msg
			makeMsg(&old, 2, 1_000_000)
			old.Time = baseTime - 5
			if err := q.Append([]Msg{old}); err != nil {
				t.Fatal(err)
			}
			page, err := q.Fetch(2, pageSize, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) != pageSize || page[0].MID != old.MID || page[1].MID != 2 {
				t.Fatalf("first page: %d messages, starting %d, %d", len(page), page[0].MID, page[1].MID)
			}
			if err := checkPage(page, 2); err != nil {
				t.Fatal(err)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if q, err = e.Open(dir, false); err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			r, err := drain(q, 3)
			if err != nil {
				t.Fatal(err)
			}
			if r.Msgs != 3*120+1 || r.Pages != 3*3 {
				t.Fatalf("drained %d messages in %d pages", r.Msgs, r.Pages)
			}
			for u := uint64(1); u <= 3; u++ {
				if page, err := q.Fetch(u, pageSize, nil); err != nil || len(page) != 0 {
					t.Fatalf("user %d after drain: %d messages, %v", u, len(page), err)
				}
			}
			// steady numbers its messages from 1: a fresh store.
			q2, err := e.Open(t.TempDir(), false)
			if err != nil {
				t.Fatal(err)
			}
			defer q2.Close()
			if _, err := steady(q2, 10, 4, 200); err != nil {
				t.Fatal(err)
			}
		})
	}
}
