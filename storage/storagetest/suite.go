// Package storagetest is the conformance suite every storage.Store backend
// runs (storage/bolt, storage/mysql): the same checks of every method's
// documented contract, so that callers cannot tell the backends apart. It
// is imported by tests only.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/storage"
)

// Run runs every conformance check, each in a parallel subtest, against
// fresh stores from newStore. newStore opens an empty store of the test's
// own and closes it when the test ends (Close twice is allowed, so the
// Closed check may close it first); reopen closes a store and opens the
// same data again. A backend whose service is missing fails or skips in
// newStore (see internal/testenv).
func Run(t *testing.T, newStore func(t *testing.T) storage.Store, reopen func(t *testing.T, s storage.Store) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Users", testUsers},
		{"Devices", testDevices},
		{"Friends", testFriends},
		{"OfflineOrder", testOfflineOrder},
		{"OfflinePaging", testOfflinePaging},
		{"OfflineSkewedClocks", testOfflineSkewedClocks},
		{"OfflineIdempotent", testOfflineIdempotent},
		{"OfflineAllOrNothing", testOfflineAllOrNothing},
		{"OfflineDelete", testOfflineDelete},
		{"OfflineLargeBatch", testOfflineLargeBatch},
		{"GroupBasics", testGroupBasics},
		{"GroupJoinCutoff", testGroupJoinCutoff},
		{"GroupRoles", testGroupRoles},
		{"GroupAck", testGroupAck},
		{"GroupLeave", testGroupLeave},
		{"GroupExpiry", testGroupExpiry},
		{"GroupConcurrentAppend", testGroupConcurrentAppend},
		{"GroupConcurrentAck", testGroupConcurrentAck},
		{"GroupBatchAppend", testGroupBatchAppend},
		{"GroupConcurrentBatches", testGroupConcurrentBatches},
		{"GroupBatchAck", testGroupBatchAck},
		{"RevokedTokens", testRevokedTokens},
		{"Invites", testInvites},
		{"Context", testContext},
		{"Closed", testClosed},
	}
	tests = append(tests, fileSuite...) // files.go
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	t.Run("Reopen", func(t *testing.T) {
		t.Parallel()
		testReopen(t, newStore(t), reopen)
	})
}

// must(f()).of(t) returns f's value, failing t if f returned an error.
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) of(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func mids(ms []storage.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.MID
	}
	return out
}

func seqs(ms []storage.GroupMessage) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func newUser(t *testing.T, s storage.Store, name string) uint64 {
	t.Helper()
	return must(s.CreateUser(t.Context(), storage.User{Name: name, PassHash: "h"})).of(t)
}

// ---- lifecycle

func testContext(t *testing.T, s storage.Store) {
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]error{
		"Ping":  s.Ping(cctx),
		"Store": s.StoreOffline(cctx, []storage.Message{{MID: 1, To: 1}}),
		"Ack":   s.AckGroup(cctx, 1, 1, 1),
	}
	_, calls["CreateUser"] = s.CreateUser(cctx, storage.User{Name: "x"})
	_, calls["Fetch"] = s.FetchOffline(cctx, 1, 0, 10)
	_, calls["Append"] = s.AppendGroupMsg(cctx, storage.GroupMessage{Group: 1})
	calls["AppendMany"] = s.AppendGroupMsgs(cctx, []storage.GroupMessage{{Group: 1}})
	_, calls["Count"] = s.CountOffline(cctx, 1)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", name, err)
		}
		if errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: cancellation is not unavailability: %v", name, err)
		}
	}

	dctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := s.FetchOffline(dctx, 1, 0, 10)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("passed deadline: %v, want DeadlineExceeded and ErrUnavailable", err)
	}
	// Nothing from the cancelled calls happened.
	equal(t, "count", must(s.CountOffline(t.Context(), 1)).of(t), 0)
}

func testClosed(t *testing.T, s storage.Store) {
	ok(t, s.Ping(t.Context()))
	ok(t, s.Close())
	ok(t, s.Close()) // twice is fine
	wantErr(t, s.Ping(t.Context()), storage.ErrClosed)
	wantErr(t, s.Ping(t.Context()), storage.ErrUnavailable)
	_, err := s.FetchOffline(t.Context(), 1, 0, 1)
	wantErr(t, err, storage.ErrClosed)
	wantErr(t, s.StoreOffline(t.Context(), []storage.Message{{MID: 1, To: 1}}), storage.ErrClosed)
	wantErr(t, s.AppendGroupMsgs(t.Context(), []storage.GroupMessage{{Group: 1}}), storage.ErrClosed)
	wantErr(t, s.AckGroups(t.Context(), []storage.GroupAck{{Group: 1, User: 1, Seq: 1}}), storage.ErrClosed)
}

func testReopen(t *testing.T, s storage.Store, reopen func(*testing.T, storage.Store) storage.Store) {
	ctx := t.Context()
	uid := newUser(t, s, "alice")
	must(s.TouchDevice(ctx, storage.Device{User: uid, KeyHash: [32]byte{9}})).of(t)
	ok(t, s.StoreOffline(ctx, []storage.Message{{MID: 1, From: 2, To: uid, Time: 5, CID: 3, Content: []byte("kept")}}))
	g := must(s.CreateGroup(ctx, uid, "g")).of(t)
	appendN(t, s, g, uid, 2, 0)
	ok(t, s.CreateInvite(ctx, storage.Invite{Hash: [32]byte{7}, Issuer: uid, ExpiresAt: 5000}, 1))

	s = reopen(t, s)
	equal(t, "invite kept", must(s.UseInvite(ctx, [32]byte{7}, 10)).of(t).Issuer, uid)
	wantErr(t, s.CreateInvite(ctx, storage.Invite{Hash: [32]byte{8}, Issuer: uid, ExpiresAt: 5000}, 1), storage.ErrQuota)
	equal(t, "user", must(s.UserByName(ctx, "alice")).of(t).ID, uid)
	equal(t, "device known", must(s.TouchDevice(ctx, storage.Device{User: uid, KeyHash: [32]byte{9}})).of(t), false)
	got := must(s.FetchOffline(ctx, uid, 0, 10)).of(t)
	if len(got) != 1 || string(got[0].Content) != "kept" {
		t.Fatalf("offline after reopen: %+v", got)
	}
	ok(t, s.StoreOffline(ctx, []storage.Message{{MID: 9, From: 2, To: uid, Time: 6, CID: 3}}))
	equal(t, "dedup survives reopen", must(s.CountOffline(ctx, uid)).of(t), 1)
	equal(t, "group", must(s.GroupInfo(ctx, g)).of(t).HighestSeq, uint64(2))
	equal(t, "next seq", appendN(t, s, g, uid, 1, 0), []uint64{3})
	if id := newUser(t, s, "bob"); id <= uid {
		t.Fatalf("ID %d reused after reopen", id)
	}
}
