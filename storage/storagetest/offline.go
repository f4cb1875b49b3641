package storagetest

import (
	"bytes"
	"math"
	"testing"

	"github.com/myim/myim/storage"
)

func testOfflineOrder(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const big = 1<<63 + 5 // high bit set: unsigned columns and keys
	in := []storage.Message{
		{MID: 30, From: 2, To: 1, Time: 1000, Content: []byte("c")},
		{MID: big, From: 2, To: 1, Time: 1000, CID: big, Srv: math.MaxUint32, QoS: 1, Content: []byte("d")},
		{MID: 10, From: 3, To: 1, Time: 1000, Content: []byte("a")},
		{MID: 5, From: 2, To: 1, Time: 2000},
		{MID: 99, From: 2, To: 1, Time: 500, Content: []byte{0, 1, 2, 0xff}},
		{MID: 20, From: 3, To: 1, Time: -1000, Content: []byte("b")},
		{MID: 1, From: 2, To: 7, Time: 1}, // another recipient
	}
	ok(t, s.StoreOffline(ctx, in))
	got := must(s.FetchOffline(ctx, 1, 0, 0)).of(t)
	equal(t, "order by mid, whatever the time", mids(got), []uint64{5, 10, 20, 30, 99, big})
	equal(t, "full record", got[5], in[1])
	equal(t, "negative time kept", got[2].Time, int64(-1000))
	equal(t, "binary content", got[4].Content, []byte{0, 1, 2, 0xff})
	if got[0].Content != nil {
		t.Fatalf("empty content: %q", got[0].Content)
	}
	equal(t, "count", must(s.CountOffline(ctx, 1)).of(t), 6)
	equal(t, "other recipient", mids(must(s.FetchOffline(ctx, 7, 0, 10)).of(t)), []uint64{1})
	equal(t, "nobody", len(must(s.FetchOffline(ctx, 8, 0, 10)).of(t)), 0)

	// Strictly after the cursor.
	equal(t, "after 20", mids(must(s.FetchOffline(ctx, 1, 20, 10)).of(t)), []uint64{30, 99, big})
	equal(t, "after 99", mids(must(s.FetchOffline(ctx, 1, 99, 10)).of(t)), []uint64{big})
	equal(t, "after big", len(must(s.FetchOffline(ctx, 1, big, 10)).of(t)), 0)
	equal(t, "after max", len(must(s.FetchOffline(ctx, 1, math.MaxUint64, 10)).of(t)), 0)
}

// testOfflineSkewedClocks stores the messages of two senders, one of whose
// clocks is a minute ahead and the other's a minute behind, in the order
// the center numbered them: the fetch order is the numbering, and paging
// from a cursor finds every message, however the senders' times compare.
func testOfflineSkewedClocks(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const now = 1767225600000
	var in []storage.Message
	for i := range 40 {
		skew := int64(60_000)
		if i%2 == 1 {
			skew = -60_000
		}
		in = append(in, storage.Message{MID: uint64(100 + i), From: uint64(2 + i%2), To: 1, Time: now + skew + int64(i)})
	}
	// Stored in two batches, the later numbers first: the cursor of a
	// reader that saw the first batch must not pass over the second.
	ok(t, s.StoreOffline(ctx, in[20:]))
	first := must(s.FetchOffline(ctx, 1, 0, 100)).of(t)
	ok(t, s.StoreOffline(ctx, in[:20]))
	equal(t, "first batch", mids(first), mids(in[20:]))
	var all []storage.Message
	var after uint64
	for {
		got := must(s.FetchOffline(ctx, 1, after, 7)).of(t)
		if len(got) == 0 {
			break
		}
		all = append(all, got...)
		after = got[len(got)-1].MID
	}
	equal(t, "every message in MID order", mids(all), mids(in))
	for i := range all {
		equal(t, "time is data", all[i].Time, in[i].Time)
	}
}

func testOfflinePaging(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var in []storage.Message
	for i := range 25 {
		// Five messages per millisecond, times not in MID order.
		in = append(in, storage.Message{MID: uint64(1000 - i), From: 2, To: 1, Time: int64(100 + i/5)})
	}
	ok(t, s.StoreOffline(ctx, in))
	var all []storage.Message
	var mid uint64
	for page := 0; ; page++ {
		got := must(s.FetchOffline(ctx, 1, mid, 10)).of(t)
		if len(got) == 0 {
			break
		}
		if page > 3 || len(got) > 10 {
			t.Fatalf("page %d: %d messages", page, len(got))
		}
		all = append(all, got...)
		mid = got[len(got)-1].MID
	}
	if len(all) != 25 {
		t.Fatalf("paged %d messages, want 25", len(all))
	}
	for i := 1; i < len(all); i++ {
		if p, c := all[i-1], all[i]; c.MID <= p.MID {
			t.Fatalf("out of order at %d: %d after %d", i, c.MID, p.MID)
		}
	}

	// limit <= 0 is the default; large limits are capped.
	many := make([]storage.Message, storage.MaxFetchLimit+10)
	for i := range many {
		many[i] = storage.Message{MID: uint64(i + 1), To: 2, Time: 1}
	}
	ok(t, s.StoreOffline(ctx, many))
	equal(t, "default limit", len(must(s.FetchOffline(ctx, 2, 0, 0)).of(t)), storage.DefaultFetchLimit)
	equal(t, "max limit", len(must(s.FetchOffline(ctx, 2, 0, storage.MaxFetchLimit*2)).of(t)), storage.MaxFetchLimit)
}

func testOfflineIdempotent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	batch := []storage.Message{
		{MID: 1, From: 2, To: 1, Time: 10, CID: 77, Content: []byte("x")},
		{MID: 2, From: 2, To: 1, Time: 11, CID: 78},
		{MID: 3, From: 2, To: 1, Time: 12},          // CID 0: no CID dedup
		{MID: 4, From: 2, To: 1, Time: 12},          // CID 0 again, other MID: stored
		{MID: 5, From: 2, To: 1, Time: 13, CID: 77}, // same (To, From, CID) inside the batch
		{MID: 1, From: 9, To: 1, Time: 99, CID: 1},  // same (To, MID) inside the batch
		{MID: 6, From: 3, To: 1, Time: 14, CID: 77}, // same CID, other sender: stored
		{MID: 7, From: 2, To: 5, Time: 15, CID: 77}, // same CID, other recipient: stored
	}
	ok(t, s.StoreOffline(ctx, batch))
	ok(t, s.StoreOffline(ctx, batch)) // a retried batch changes nothing
	ok(t, s.StoreOffline(ctx, []storage.Message{{MID: 8, From: 2, To: 1, Time: 1, CID: 78}}))
	got := must(s.FetchOffline(ctx, 1, 0, 100)).of(t)
	equal(t, "stored", mids(got), []uint64{1, 2, 3, 4, 6})
	equal(t, "first copy wins", string(got[0].Content), "x")
	equal(t, "count", must(s.CountOffline(ctx, 1)).of(t), 5)
	equal(t, "other recipient", must(s.CountOffline(ctx, 5)).of(t), 1)
}

func testOfflineAllOrNothing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	batch := []storage.Message{{MID: 1, To: 1, Time: 1}, {MID: 2, To: 1, Time: 2}, {MID: 0, To: 1, Time: 3}}
	wantErr(t, s.StoreOffline(ctx, batch), storage.ErrInvalid)
	equal(t, "nothing stored", must(s.CountOffline(ctx, 1)).of(t), 0)
	wantErr(t, s.StoreOffline(ctx, []storage.Message{{MID: 1, To: 0}}), storage.ErrInvalid)
	ok(t, s.StoreOffline(ctx, nil))
	equal(t, "still nothing", must(s.CountOffline(ctx, 1)).of(t), 0)
}

func testOfflineDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var in []storage.Message
	for i := uint64(1); i <= 10; i++ {
		in = append(in, storage.Message{MID: i, From: 2, To: 1, Time: int64(i), CID: 100 + i})
	}
	in = append(in, storage.Message{MID: 3, From: 2, To: 4, Time: 3}) // same MID, other recipient
	ok(t, s.StoreOffline(ctx, in))
	ok(t, s.DeleteOffline(ctx, 1, []uint64{2, 4, 6, 999, 4}))
	equal(t, "after delete", mids(must(s.FetchOffline(ctx, 1, 0, 100)).of(t)), []uint64{1, 3, 5, 7, 8, 9, 10})
	equal(t, "count", must(s.CountOffline(ctx, 1)).of(t), 7)
	ok(t, s.DeleteOffline(ctx, 1, nil))
	ok(t, s.DeleteOffline(ctx, 5, []uint64{3})) // not this recipient's
	equal(t, "other recipient kept", must(s.CountOffline(ctx, 4)).of(t), 1)

	// Deduplication covers stored messages only: once delivered and
	// deleted, the same CID may be stored again.
	ok(t, s.StoreOffline(ctx, []storage.Message{{MID: 22, From: 2, To: 1, Time: 22, CID: 102}}))
	equal(t, "CID reusable", must(s.CountOffline(ctx, 1)).of(t), 8)
	ok(t, s.StoreOffline(ctx, []storage.Message{{MID: 23, From: 2, To: 1, Time: 23, CID: 101}}))
	equal(t, "stored CID still deduplicated", must(s.CountOffline(ctx, 1)).of(t), 8)

	// Fetch, delete, fetch again until empty: the delivery loop.
	for {
		got := must(s.FetchOffline(ctx, 1, 0, 3)).of(t)
		if len(got) == 0 {
			break
		}
		ok(t, s.DeleteOffline(ctx, 1, mids(got)))
	}
	equal(t, "drained", must(s.CountOffline(ctx, 1)).of(t), 0)
}

// The MySQL backend splits a StoreOffline into INSERTs of at most 1000
// rows and 4 MiB of content (storage/mysql's insertRowsPerStmt and
// insertBytesPerStmt); the large batch check must cross both limits.
const (
	insertRowsPerStmt  = 1000
	insertBytesPerStmt = 4 << 20
)

func testOfflineLargeBatch(t *testing.T, s storage.Store) {
	ctx := t.Context()
	// More rows than one INSERT holds, and more content bytes than one
	// INSERT carries.
	const n = insertRowsPerStmt*2 + 7
	in := make([]storage.Message, n)
	for i := range in {
		in[i] = storage.Message{MID: uint64(i + 1), From: 2, To: 1, Time: int64(i), CID: uint64(i + 1)}
	}
	blob := bytes.Repeat([]byte{0xab}, insertBytesPerStmt/2+1)
	in[0].Content, in[1].Content, in[2].Content = blob, blob, blob
	ok(t, s.StoreOffline(ctx, in))
	equal(t, "count", must(s.CountOffline(ctx, 1)).of(t), n)
	got := must(s.FetchOffline(ctx, 1, 0, 3)).of(t)
	if !bytes.Equal(got[2].Content, blob) {
		t.Fatal("large content changed")
	}
	all := make([]uint64, n)
	for i := range all {
		all[i] = uint64(i + 1)
	}
	ok(t, s.DeleteOffline(ctx, 1, all))
	equal(t, "count after delete", must(s.CountOffline(ctx, 1)).of(t), 0)
}
