package storagetest

import (
	"slices"
	"sync"
	"testing"

	"github.com/myim/myim/storage"
)

// testGroupBatchAppend checks AppendGroupMsgs: a batch over two groups
// numbers each group's messages in slice order after what single appends
// left, and a batch with one refused message stores none of them.
func testGroupBatchAppend(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g1 := must(s.CreateGroup(ctx, 10, "one")).of(t)
	g2 := must(s.CreateGroup(ctx, 10, "two")).of(t)
	must(s.JoinGroup(ctx, g1, 11)).of(t)
	ok(t, s.AppendGroupMsgs(ctx, nil))
	appendN(t, s, g1, 10, 1, 0)

	batch := []storage.GroupMessage{
		{Group: g1, From: 10, Time: 1, CID: 1, MID: 101, Content: []byte("a")},
		{Group: g2, From: 10, Time: 2, CID: 2, MID: 102, Content: []byte("b"), ExpiresAt: 1 << 50},
		{Group: g1, From: 11, Time: 3, CID: 3, MID: 103, Content: []byte("c")},
	}
	ok(t, s.AppendGroupMsgs(ctx, batch))
	equal(t, "seqs", seqs(batch), []uint64{2, 1, 3})
	equal(t, "member counts", []uint32{batch[0].MemberCount, batch[1].MemberCount, batch[2].MemberCount}, []uint32{2, 1, 2})
	equal(t, "highest one", must(s.GroupInfo(ctx, g1)).of(t).HighestSeq, uint64(3))
	equal(t, "highest two", must(s.GroupInfo(ctx, g2)).of(t).HighestSeq, uint64(1))
	got := must(s.FetchGroup(ctx, g1, 11, 1, 10)).of(t)
	equal(t, "fetched one", got, []storage.GroupMessage{
		{Group: g1, Seq: 2, From: 10, Time: 1, CID: 1, MID: 101, MemberCount: 2, Content: []byte("a")},
		{Group: g1, Seq: 3, From: 11, Time: 3, CID: 3, MID: 103, MemberCount: 2, Content: []byte("c")}})
	got = must(s.FetchGroup(ctx, g2, 10, 0, 10)).of(t)
	equal(t, "fetched two", got, []storage.GroupMessage{
		{Group: g2, Seq: 1, From: 10, Time: 2, CID: 2, MID: 102, MemberCount: 1, ExpiresAt: 1 << 50, Content: []byte("b")}})
	equal(t, "single after batch", appendN(t, s, g2, 10, 1, 0), []uint64{2})

	// All or nothing.
	const unknown = 999
	wantErr(t, s.AppendGroupMsgs(ctx, []storage.GroupMessage{{Group: g1, From: 10}, {Group: unknown, From: 10}}), storage.ErrNotFound)
	wantErr(t, s.AppendGroupMsgs(ctx, []storage.GroupMessage{{Group: g1, From: 10}, {Group: g2, ExpiresAt: -1}}), storage.ErrInvalid)
	equal(t, "highest after refusals", must(s.GroupInfo(ctx, g1)).of(t).HighestSeq, uint64(3))
	equal(t, "stored after refusals", must(s.CountGroupMsgs(ctx, g1)).of(t), 3)
	equal(t, "next seq", appendN(t, s, g1, 10, 1, 0), []uint64{4})
}

// testGroupConcurrentBatches runs batches over the same two groups side
// by side with single appends: each group's seqs stay unique and
// consecutive.
func testGroupConcurrentBatches(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g1 := must(s.CreateGroup(ctx, 1, "one")).of(t)
	g2 := must(s.CreateGroup(ctx, 1, "two")).of(t)
	const workers, each = 6, 10
	var (
		mu  sync.Mutex
		got = map[uint64][]uint64{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for range each {
				batch := []storage.GroupMessage{{Group: g2, From: 1}, {Group: g1, From: 1}, {Group: g2, From: 1}}
				if w%2 == 1 {
					batch = batch[1:2]
				}
				if err := s.AppendGroupMsgs(ctx, batch); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, m := range batch {
					got[m.Group] = append(got[m.Group], m.Seq)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, g := range []uint64{g1, g2} {
		slices.Sort(got[g])
		for i, seq := range got[g] {
			if seq != uint64(i+1) {
				t.Fatalf("group %d: seqs not unique and consecutive: %v", g, got[g])
			}
		}
		equal(t, "stored", must(s.CountGroupMsgs(ctx, g)).of(t), len(got[g]))
	}
}

// testGroupBatchAck checks AckGroups: each member's floor moves as with
// AckGroup, a message counts every ack of the batch that covers it, and an
// ack of an unknown group or of a non-member is skipped.
func testGroupBatchAck(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 10, "g")).of(t)
	must(s.JoinGroup(ctx, g, 11)).of(t)
	must(s.JoinGroup(ctx, g, 12)).of(t)
	appendN(t, s, g, 10, 4, 0)
	ok(t, s.AckGroups(ctx, nil))
	ok(t, s.AckGroups(ctx, []storage.GroupAck{{Group: g, User: 11, Seq: 2}, {Group: g, User: 12, Seq: 4},
		{Group: g, User: 11, Seq: 3}, {Group: 999, User: 11, Seq: 1}, {Group: g, User: 99, Seq: 1}, {Group: g, User: 12, Seq: 1}}))
	acked := func() []uint64 {
		var out []uint64
		for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
			out = append(out, m.AckedSeq)
		}
		return out
	}
	equal(t, "acked", acked(), []uint64{0, 3, 4})
	got := must(s.FetchGroup(ctx, g, 10, 0, 10)).of(t)
	sent := make([]uint32, len(got))
	for i, m := range got {
		sent[i] = m.SentCount
	}
	equal(t, "sent counts", sent, []uint32{2, 2, 2, 1})
	ok(t, s.AckGroups(ctx, []storage.GroupAck{{Group: g, User: 10, Seq: 4}}))
	equal(t, "left once all acked", seqs(must(s.FetchGroup(ctx, g, 11, 0, 10)).of(t)), []uint64{4})
	equal(t, "stored", must(s.CountGroupMsgs(ctx, g)).of(t), 1)
}
