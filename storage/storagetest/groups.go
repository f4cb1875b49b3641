package storagetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/storage"
)

func appendN(t *testing.T, s storage.Store, g, from uint64, n int, expiresAt int64) []uint64 {
	t.Helper()
	var out []uint64
	for range n {
		out = append(out, must(s.AppendGroupMsg(t.Context(), storage.GroupMessage{Group: g, From: from, Time: time.Now().UnixMilli(),
			ExpiresAt: expiresAt, Content: []byte("m")})).of(t))
	}
	return out
}

func testGroupBasics(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 10, "team")).of(t)
	equal(t, "first group ID", g, uint64(1))
	g2 := must(s.CreateGroup(ctx, 11, "other")).of(t)
	equal(t, "info", must(s.GroupInfo(ctx, g)).of(t), storage.Group{ID: g, Name: "team", Owner: 10, HighestSeq: 0, Members: 1})
	members := must(s.GroupMembers(ctx, g)).of(t)
	if len(members) != 1 || members[0].User != 10 || members[0].JoinSeq != 0 || members[0].JoinedAt == 0 {
		t.Fatalf("owner membership: %+v", members)
	}

	equal(t, "join", must(s.JoinGroup(ctx, g, 12)).of(t), uint64(0))
	equal(t, "join again", must(s.JoinGroup(ctx, g, 12)).of(t), uint64(0))
	ok(t, s.LeaveGroup(ctx, g, 99)) // not a member: no-op
	equal(t, "join other", must(s.JoinGroup(ctx, g2, 12)).of(t), uint64(0))
	equal(t, "members", len(must(s.GroupMembers(ctx, g)).of(t)), 2)
	equal(t, "member count", must(s.GroupInfo(ctx, g)).of(t).Members, 2)
	equal(t, "user groups", must(s.UserGroups(ctx, 12)).of(t), []uint64{g, g2})
	equal(t, "owner groups", must(s.UserGroups(ctx, 10)).of(t), []uint64{g})
	equal(t, "no groups", len(must(s.UserGroups(ctx, 13)).of(t)), 0)

	seq := must(s.AppendGroupMsg(ctx, storage.GroupMessage{Group: g, From: 10, Time: 5, CID: 6, MID: 7, Content: []byte("hi")})).of(t)
	equal(t, "first seq", seq, uint64(1))
	got := must(s.FetchGroup(ctx, g, 12, 0, 10)).of(t)
	equal(t, "fetched", got, []storage.GroupMessage{{Group: g, Seq: 1, From: 10, Time: 5, CID: 6, MID: 7, MemberCount: 2, Content: []byte("hi")}})
	equal(t, "highest", must(s.GroupInfo(ctx, g)).of(t).HighestSeq, uint64(1))
	equal(t, "count", must(s.CountGroupMsgs(ctx, g)).of(t), 1)
	equal(t, "count other", must(s.CountGroupMsgs(ctx, g2)).of(t), 0)

	const unknown = 999
	_, err := s.GroupInfo(ctx, unknown)
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GroupMembers(ctx, unknown)
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.JoinGroup(ctx, unknown, 1)
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.LeaveGroup(ctx, unknown, 1), storage.ErrNotFound)
	_, err = s.AppendGroupMsg(ctx, storage.GroupMessage{Group: unknown})
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.FetchGroup(ctx, unknown, 10, 0, 10)
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.AckGroup(ctx, unknown, 10, 1), storage.ErrNotFound)
	_, err = s.FetchGroup(ctx, g, 13, 0, 10) // not a member
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.AckGroup(ctx, g, 13, 1), storage.ErrNotFound)
	_, err = s.CreateGroup(ctx, 10, "")
	wantErr(t, err, storage.ErrInvalid)
}

func testGroupRoles(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 10, "team")).of(t)
	equal(t, "created closed", must(s.GroupInfo(ctx, g)).of(t).Open, false)
	ok(t, s.SetGroupOpen(ctx, g, true))
	ok(t, s.SetGroupOpen(ctx, g, true)) // unchanged: still fine
	equal(t, "opened", must(s.GroupInfo(ctx, g)).of(t).Open, true)
	ok(t, s.SetGroupOpen(ctx, g, false))
	equal(t, "closed again", must(s.GroupInfo(ctx, g)).of(t).Open, false)

	must(s.JoinGroup(ctx, g, 11)).of(t)
	must(s.JoinGroup(ctx, g, 12)).of(t)
	roles := func() map[uint64]uint8 {
		out := map[uint64]uint8{}
		for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
			out[m.User] = m.Role
		}
		return out
	}
	equal(t, "roles at start", roles(), map[uint64]uint8{10: storage.RoleOwner, 11: storage.RoleMember, 12: storage.RoleMember})
	ok(t, s.SetGroupRole(ctx, g, 11, storage.RoleAdmin))
	ok(t, s.SetGroupRole(ctx, g, 11, storage.RoleAdmin))
	equal(t, "admin", roles(), map[uint64]uint8{10: storage.RoleOwner, 11: storage.RoleAdmin, 12: storage.RoleMember})
	// A role survives the member's acks, and a rejoin after leaving starts
	// over as a plain member.
	seq := must(s.AppendGroupMsg(ctx, storage.GroupMessage{Group: g, From: 10, Content: []byte("m")})).of(t)
	ok(t, s.AckGroup(ctx, g, 11, seq))
	equal(t, "admin after ack", roles()[11], storage.RoleAdmin)
	ok(t, s.LeaveGroup(ctx, g, 11))
	must(s.JoinGroup(ctx, g, 11)).of(t)
	equal(t, "rejoined", roles()[11], storage.RoleMember)
	ok(t, s.SetGroupRole(ctx, g, 12, storage.RoleAdmin))
	ok(t, s.SetGroupRole(ctx, g, 12, storage.RoleMember))
	equal(t, "demoted", roles()[12], storage.RoleMember)

	wantErr(t, s.SetGroupRole(ctx, g, 10, storage.RoleMember), storage.ErrInvalid) // the owner
	wantErr(t, s.SetGroupRole(ctx, g, 12, storage.RoleOwner), storage.ErrInvalid)
	wantErr(t, s.SetGroupRole(ctx, g, 12, 7), storage.ErrInvalid)
	wantErr(t, s.SetGroupRole(ctx, g, 99, storage.RoleAdmin), storage.ErrNotFound) // not a member
	wantErr(t, s.SetGroupRole(ctx, 999, 12, storage.RoleAdmin), storage.ErrNotFound)
	wantErr(t, s.SetGroupOpen(ctx, 999, true), storage.ErrNotFound)
}

func testGroupJoinCutoff(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const a, b = 1, 2
	g := must(s.CreateGroup(ctx, a, "g")).of(t)
	appendN(t, s, g, a, 3, 0)
	equal(t, "join seq", must(s.JoinGroup(ctx, g, b)).of(t), uint64(3))
	appendN(t, s, g, a, 2, 0)

	gotB := must(s.FetchGroup(ctx, g, b, 0, 100)).of(t)
	equal(t, "late joiner sees only later messages", seqs(gotB), []uint64{4, 5})
	equal(t, "member count after join", gotB[0].MemberCount, uint32(2))
	gotA := must(s.FetchGroup(ctx, g, a, 0, 100)).of(t)
	equal(t, "owner sees all", seqs(gotA), []uint64{1, 2, 3, 4, 5})
	equal(t, "member count before join", gotA[0].MemberCount, uint32(1))
	equal(t, "afterSeq below the join cutoff", seqs(must(s.FetchGroup(ctx, g, b, 2, 100)).of(t)), []uint64{4, 5})
	equal(t, "afterSeq above it", seqs(must(s.FetchGroup(ctx, g, b, 4, 100)).of(t)), []uint64{5})
	equal(t, "limit", seqs(must(s.FetchGroup(ctx, g, a, 0, 2)).of(t)), []uint64{1, 2})

	// Acking history does not count the late joiner as a recipient of it.
	ok(t, s.AckGroup(ctx, g, b, 5))
	equal(t, "history untouched", must(s.CountGroupMsgs(ctx, g)).of(t), 5)
	ok(t, s.AckGroup(ctx, g, a, 5))
	equal(t, "all delivered", must(s.CountGroupMsgs(ctx, g)).of(t), 0)
}

func testGroupAck(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const a, b, c = 1, 2, 3
	g := must(s.CreateGroup(ctx, a, "g")).of(t)
	must(s.JoinGroup(ctx, g, b)).of(t)
	must(s.JoinGroup(ctx, g, c)).of(t)
	appendN(t, s, g, a, 2, 0)

	sent := func() []uint32 {
		t.Helper()
		var out []uint32
		for _, m := range must(s.FetchGroup(ctx, g, a, 0, 100)).of(t) {
			out = append(out, m.SentCount)
		}
		return out
	}
	ok(t, s.AckGroup(ctx, g, a, 2))
	// a acked: its own fetch is empty now; look through c.
	got := must(s.FetchGroup(ctx, g, c, 0, 100)).of(t)
	equal(t, "sent after a", []uint32{got[0].SentCount, got[1].SentCount}, []uint32{1, 1})
	ok(t, s.AckGroup(ctx, g, b, 1))
	ok(t, s.AckGroup(ctx, g, b, 1)) // same seq again: no change
	ok(t, s.AckGroup(ctx, g, b, 0)) // lower seq: no change
	got = must(s.FetchGroup(ctx, g, c, 0, 100)).of(t)
	equal(t, "sent after b", []uint32{got[0].SentCount, got[1].SentCount}, []uint32{2, 1})
	equal(t, "b's fetch starts after its ack", seqs(must(s.FetchGroup(ctx, g, b, 0, 100)).of(t)), []uint64{2})
	equal(t, "a's fetch empty", len(sent()), 0)

	ok(t, s.AckGroup(ctx, g, c, 2))
	equal(t, "message 1 reached every member", must(s.CountGroupMsgs(ctx, g)).of(t), 1)
	ok(t, s.AckGroup(ctx, g, b, 2))
	equal(t, "message 2 reached every member", must(s.CountGroupMsgs(ctx, g)).of(t), 0)

	// An ack beyond the highest seq is capped: later messages still arrive.
	ok(t, s.AckGroup(ctx, g, a, 100))
	appendN(t, s, g, b, 1, 0)
	equal(t, "after over-ack", seqs(must(s.FetchGroup(ctx, g, a, 0, 100)).of(t)), []uint64{3})
	for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
		equal(t, fmt.Sprintf("acked seq of %d", m.User), m.AckedSeq, uint64(2))
	}
}

func testGroupLeave(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const a, b = 1, 2
	g := must(s.CreateGroup(ctx, a, "g")).of(t)
	must(s.JoinGroup(ctx, g, b)).of(t)
	appendN(t, s, g, a, 2, 0)
	ok(t, s.AckGroup(ctx, g, b, 1))

	ok(t, s.LeaveGroup(ctx, g, b))
	ok(t, s.LeaveGroup(ctx, g, b)) // again: no-op
	equal(t, "members", must(s.GroupInfo(ctx, g)).of(t).Members, 1)
	equal(t, "b's groups", len(must(s.UserGroups(ctx, b)).of(t)), 0)
	_, err := s.FetchGroup(ctx, g, b, 0, 10)
	wantErr(t, err, storage.ErrNotFound)
	got := must(s.FetchGroup(ctx, g, a, 0, 10)).of(t)
	equal(t, "leaver counted as delivered", []uint32{got[0].SentCount, got[1].SentCount}, []uint32{1, 1})

	ok(t, s.AckGroup(ctx, g, a, 2))
	equal(t, "all delivered", must(s.CountGroupMsgs(ctx, g)).of(t), 0)

	appendN(t, s, g, a, 1, 0)
	equal(t, "member count after leave", must(s.FetchGroup(ctx, g, a, 0, 10)).of(t)[0].MemberCount, uint32(1))
	equal(t, "rejoin takes the current seq", must(s.JoinGroup(ctx, g, b)).of(t), uint64(3))
	equal(t, "rejoined fetch", len(must(s.FetchGroup(ctx, g, b, 0, 10)).of(t)), 0)

	// The last member leaving deletes what waited for it.
	ok(t, s.LeaveGroup(ctx, g, a))
	ok(t, s.LeaveGroup(ctx, g, b))
	equal(t, "empty group", must(s.GroupInfo(ctx, g)).of(t).Members, 0)
	equal(t, "nothing left", must(s.CountGroupMsgs(ctx, g)).of(t), 0)
}

func testGroupExpiry(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 1, "g")).of(t)
	now := time.Now().UnixMilli()
	appendN(t, s, g, 1, 2, now-1000)  // seqs 1, 2: expired
	appendN(t, s, g, 1, 1, 0)         // seq 3: never expires
	appendN(t, s, g, 1, 1, now+3.6e6) // seq 4: expires in an hour
	appendN(t, s, g, 1, 1, now-500)   // seq 5: expired
	g2 := must(s.CreateGroup(ctx, 1, "g2")).of(t)
	appendN(t, s, g2, 1, 1, now-1000)

	equal(t, "expired hidden", seqs(must(s.FetchGroup(ctx, g, 1, 0, 10)).of(t)), []uint64{3, 4})
	equal(t, "stored before purge", must(s.CountGroupMsgs(ctx, g)).of(t), 5)
	equal(t, "purged nothing in the past", must(s.PurgeExpiredGroupMsgs(ctx, now-2000)).of(t), 0)
	equal(t, "purged", must(s.PurgeExpiredGroupMsgs(ctx, now)).of(t), 4)
	equal(t, "stored after purge", must(s.CountGroupMsgs(ctx, g)).of(t), 2)
	equal(t, "purge again", must(s.PurgeExpiredGroupMsgs(ctx, now)).of(t), 0)
	equal(t, "fetch after purge", seqs(must(s.FetchGroup(ctx, g, 1, 0, 10)).of(t)), []uint64{3, 4})

	// A message deleted by acks is no longer purged (embedded keeps an
	// expiry index that must follow).
	s4 := appendN(t, s, g, 1, 1, now+1000)[0]
	ok(t, s.AckGroup(ctx, g, 1, s4))
	equal(t, "acked away", must(s.CountGroupMsgs(ctx, g)).of(t), 0)
	equal(t, "purge after ack", must(s.PurgeExpiredGroupMsgs(ctx, now+5e6)).of(t), 0)

	_, err := s.AppendGroupMsg(ctx, storage.GroupMessage{Group: g, ExpiresAt: -1})
	wantErr(t, err, storage.ErrInvalid)
}

func testGroupConcurrentAppend(t *testing.T, s storage.Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 1, "g")).of(t)
	const workers, each = 8, 25
	var (
		mu  sync.Mutex
		got []uint64
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq, err := s.AppendGroupMsg(ctx, storage.GroupMessage{Group: g, From: uint64(w), MID: uint64(i)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got = append(got, seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(got)
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("seqs not unique and consecutive: %v", got)
		}
	}
	equal(t, "highest", must(s.GroupInfo(ctx, g)).of(t).HighestSeq, uint64(workers*each))
	equal(t, "stored", must(s.CountGroupMsgs(ctx, g)).of(t), workers*each)
}

// testGroupConcurrentAck runs appends, fetches, acks and a leave of one
// group at once: no deadlock surfaces as an error, no message is lost to a
// member, and once everyone acked everything nothing is left.
func testGroupConcurrentAck(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const members, senders, each = 5, 3, 20
	g := must(s.CreateGroup(ctx, 1, "g")).of(t)
	for u := uint64(2); u <= members; u++ {
		must(s.JoinGroup(ctx, g, u)).of(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, members+senders+1)
	for w := range senders {
		wg.Go(func() {
			for range each {
				if _, err := s.AppendGroupMsg(ctx, storage.GroupMessage{Group: g, From: uint64(w + 1)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	received := make([][]uint64, members+1)
	for u := uint64(1); u <= members; u++ {
		wg.Go(func() {
			var last uint64
			for last < senders*each {
				got, err := s.FetchGroup(ctx, g, u, last, 7)
				if err == nil && len(got) > 0 {
					received[u] = append(received[u], seqs(got)...)
					last = got[len(got)-1].Seq
					err = s.AckGroup(ctx, g, u, last)
				}
				if err != nil {
					errs <- fmt.Errorf("member %d: %w", u, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for u := 1; u <= members; u++ {
		if len(received[u]) != senders*each || !slices.IsSorted(received[u]) {
			t.Fatalf("member %d received %v", u, received[u])
		}
	}
	equal(t, "all delivered", must(s.CountGroupMsgs(ctx, g)).of(t), 0)
}
