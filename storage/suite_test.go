package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
)

// This file holds the one conformance suite every backend runs, and the
// helpers that open a fresh store of each kind.

func TestEmbedded(t *testing.T) {
	runSuite(t, func(t *testing.T) Store { return newEmbeddedStore(t, false) }, reopenStore)
}

func TestMySQL(t *testing.T) {
	runSuite(t, func(t *testing.T) Store { return newMySQLStore(t) }, reopenStore)
}

// opened remembers the Config each test store was opened with, so that
// reopenStore can open the same data again.
var opened sync.Map // Store -> Config

// newEmbeddedStore opens an embedded store in a fresh temporary directory.
func newEmbeddedStore(tb testing.TB, noSync bool) Store {
	tb.Helper()
	return openTestStore(tb, Config{DataDir: tb.TempDir(), NoSync: noSync})
}

// newMySQLStore opens a store on a database of the test's own on the test
// MySQL server, dropped when the test ends.
func newMySQLStore(tb testing.TB) Store {
	tb.Helper()
	return openTestStore(tb, Config{MySQLDSN: testenv.MySQLDatabase(tb)})
}

func openTestStore(tb testing.TB, cfg Config) Store {
	tb.Helper()
	s, err := Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	opened.Store(s, cfg)
	tb.Cleanup(func() { closeStore(tb, s) })
	return s
}

func closeStore(tb testing.TB, s Store) {
	if _, ok := opened.LoadAndDelete(s); ok {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	}
}

// reopenStore closes s and opens the same data again.
func reopenStore(t *testing.T, s Store) Store {
	t.Helper()
	v, ok := opened.Load(s)
	if !ok {
		t.Fatal("reopen: unknown store")
	}
	closeStore(t, s)
	return openTestStore(t, v.(Config))
}

// runSuite runs every conformance check against fresh stores from newStore.
// reopen closes a store and opens the same data again.
func runSuite(t *testing.T, newStore func(t *testing.T) Store, reopen func(t *testing.T, s Store) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
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
		{"RevokedTokens", testRevokedTokens},
		{"Invites", testInvites},
		{"Context", testContext},
		{"Closed", testClosed},
	}
	tests = append(tests, fileSuite...) // files_suite_test.go
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

// testInvites: an invite is used once, not after it expires, and a
// user's allowance counts every code issued.
func testInvites(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := Invite{Hash: [32]byte{1}, ExpiresAt: 2000}, Invite{Hash: [32]byte{2}, Issuer: 7, ExpiresAt: 2000},
		Invite{Hash: [32]byte{3}, Issuer: 7, ExpiresAt: 1000}
	must(0, s.CreateInvite(ctx, a, 0)).of(t)
	wantErr(t, s.CreateInvite(ctx, a, 0), ErrExists)
	must(0, s.CreateInvite(ctx, b, 2)).of(t)
	must(0, s.CreateInvite(ctx, c, 2)).of(t)
	wantErr(t, s.CreateInvite(ctx, Invite{Hash: [32]byte{4}, Issuer: 7, ExpiresAt: 2000}, 2), ErrQuota)
	must(0, s.CreateInvite(ctx, Invite{Hash: [32]byte{4}, Issuer: 8, ExpiresAt: 2000}, 2)).of(t) // another user's own
	equal(t, "used invite", must(s.UseInvite(ctx, b.Hash, 1500)).of(t), b)
	_, err := s.UseInvite(ctx, b.Hash, 1500)
	wantErr(t, err, ErrNotFound) // single use
	_, err = s.UseInvite(ctx, c.Hash, 1000)
	wantErr(t, err, ErrNotFound) // expired
	_, err = s.UseInvite(ctx, [32]byte{9}, 0)
	wantErr(t, err, ErrNotFound)
	// A used code does not give the allowance back.
	wantErr(t, s.CreateInvite(ctx, Invite{Hash: [32]byte{5}, Issuer: 7, ExpiresAt: 2000}, 2), ErrQuota)

	// Of concurrent users of one code, exactly one gets it.
	must(0, s.CreateInvite(ctx, Invite{Hash: [32]byte{6}, ExpiresAt: 2000}, 0)).of(t)
	var wg sync.WaitGroup
	var got atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UseInvite(ctx, [32]byte{6}, 1000); err == nil {
				got.Add(1)
			} else if !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	equal(t, "winners", got.Load(), int32(1))
	equal(t, "admin invite", must(s.UseInvite(ctx, a.Hash, 1999)).of(t), a)
}

// testRevokedTokens: a revocation holds until its time, revoking again
// keeps the later time, and expired ones are forgotten.
func testRevokedTokens(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.RevokeToken(ctx, "", 5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty sid: %v", err)
	}
	if err := s.RevokeToken(ctx, strings.Repeat("x", MaxSIDLen+1), 5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("long sid: %v", err)
	}
	must(0, s.RevokeToken(ctx, "a", 2000)).of(t)
	must(0, s.RevokeToken(ctx, "a", 1000)).of(t) // the later time stays
	must(0, s.RevokeToken(ctx, "b", 1500)).of(t)
	if got := must(s.RevokedTokens(ctx, 1200)).of(t); len(got) != 2 || got["a"] != 2000 || got["b"] != 1500 {
		t.Fatalf("at 1200: %v", got)
	}
	if got := must(s.RevokedTokens(ctx, 1500)).of(t); len(got) != 1 || got["a"] != 2000 {
		t.Fatalf("at 1500: %v", got)
	}
	// b was forgotten: revoking it again for a short time is all there is.
	must(0, s.RevokeToken(ctx, "b", 1600)).of(t)
	if got := must(s.RevokedTokens(ctx, 1550)).of(t); got["b"] != 1600 {
		t.Fatalf("b again: %v", got)
	}
}

// ---- helpers

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

func mids(ms []Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.MID
	}
	return out
}

func seqs(ms []GroupMessage) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func newUser(t *testing.T, s Store, name string) uint64 {
	t.Helper()
	return must(s.CreateUser(t.Context(), User{Name: name, PassHash: "h"})).of(t)
}

// ---- users, devices, friends

func testUsers(t *testing.T, s Store) {
	ctx := t.Context()
	id1 := must(s.CreateUser(ctx, User{Name: "alice", PassHash: "ph1", Signature: "hi", Profile: []byte(`{"a":1}`), CreatedAt: 1234})).of(t)
	equal(t, "first ID", id1, uint64(1))
	_, err := s.CreateUser(ctx, User{Name: "alice", PassHash: "x"})
	wantErr(t, err, ErrExists)
	id2 := must(s.CreateUser(ctx, User{Name: "Alice", PassHash: "ph2"})).of(t) // names are case-sensitive
	if id2 <= id1 {
		t.Fatalf("second ID %d not above first %d", id2, id1)
	}
	id3 := must(s.CreateUser(ctx, User{Name: "名字😀", PassHash: "ph3"})).of(t)

	u := must(s.UserByName(ctx, "alice")).of(t)
	want := User{ID: id1, Name: "alice", PassHash: "ph1", Signature: "hi", Profile: []byte(`{"a":1}`), CreatedAt: 1234}
	equal(t, "by name", u, want)
	equal(t, "by id", must(s.UserByID(ctx, id1)).of(t), want)
	equal(t, "unicode", must(s.UserByID(ctx, id3)).of(t).Name, "名字😀")
	if u := must(s.UserByID(ctx, id2)).of(t); u.CreatedAt == 0 || u.Profile != nil {
		t.Fatalf("defaults: %+v", u)
	}
	_, err = s.UserByName(ctx, "nobody")
	wantErr(t, err, ErrNotFound)
	_, err = s.UserByID(ctx, 999)
	wantErr(t, err, ErrNotFound)

	ok(t, s.UpdateProfile(ctx, id1, "busy", []byte(`{"b":2}`)))
	ok(t, s.UpdateProfile(ctx, id1, "busy", []byte(`{"b":2}`))) // unchanged values are not "not found"
	u = must(s.UserByID(ctx, id1)).of(t)
	equal(t, "signature", u.Signature, "busy")
	equal(t, "profile", string(u.Profile), `{"b":2}`)
	wantErr(t, s.UpdateProfile(ctx, 999, "x", nil), ErrNotFound)

	for _, bad := range []User{{Name: ""}, {Name: string(bytes.Repeat([]byte("n"), MaxNameLen+1))}, {Name: "bad\xff"}} {
		_, err := s.CreateUser(ctx, bad)
		wantErr(t, err, ErrInvalid)
	}
	wantErr(t, s.UpdateProfile(ctx, id1, "x", make([]byte, MaxProfileLen+1)), ErrInvalid)
}

func testDevices(t *testing.T, s Store) {
	ctx := t.Context()
	k1, k2 := [32]byte{2}, [32]byte{1}
	isNew := must(s.TouchDevice(ctx, Device{User: 1, KeyHash: k1, Fingerprint: "fp", LastSeen: 100, Addr: "1.2.3.4:5"})).of(t)
	equal(t, "first touch is new", isNew, true)
	isNew = must(s.TouchDevice(ctx, Device{User: 1, KeyHash: k1, Fingerprint: "fp2", LastSeen: 200, Addr: "6.7.8.9:1"})).of(t)
	equal(t, "second touch is new", isNew, false)
	isNew = must(s.TouchDevice(ctx, Device{User: 1, KeyHash: k1, Fingerprint: "fp2", LastSeen: 200, Addr: "6.7.8.9:1"})).of(t)
	equal(t, "unchanged touch is new", isNew, false)
	equal(t, "other key is new", must(s.TouchDevice(ctx, Device{User: 1, KeyHash: k2, LastSeen: 300})).of(t), true)
	equal(t, "same key other user is new", must(s.TouchDevice(ctx, Device{User: 2, KeyHash: k1})).of(t), true)

	got := must(s.Devices(ctx, 1)).of(t)
	equal(t, "devices", got, []Device{
		{User: 1, KeyHash: k2, FirstSeen: 300, LastSeen: 300},
		{User: 1, KeyHash: k1, Fingerprint: "fp2", FirstSeen: 100, LastSeen: 200, Addr: "6.7.8.9:1"},
	})
	if d := must(s.Devices(ctx, 2)).of(t); len(d) != 1 || d[0].LastSeen == 0 || d[0].FirstSeen != d[0].LastSeen {
		t.Fatalf("LastSeen 0 means now: %+v", d)
	}
	equal(t, "no devices", len(must(s.Devices(ctx, 3)).of(t)), 0)
}

func testFriends(t *testing.T, s Store) {
	ctx := t.Context()
	a, b, c, d := newUser(t, s, "a"), newUser(t, s, "b"), newUser(t, s, "c"), newUser(t, s, "d")

	ok(t, s.RequestFriend(ctx, a, b))
	ok(t, s.RequestFriend(ctx, a, b)) // repeat: no-op
	ok(t, s.RequestFriend(ctx, c, b))
	equal(t, "pending b", must(s.PendingFriendRequests(ctx, b)).of(t), []uint64{a, c})
	equal(t, "pending a", len(must(s.PendingFriendRequests(ctx, a)).of(t)), 0)
	equal(t, "no friends yet", len(must(s.Friends(ctx, b)).of(t)), 0)
	wantErr(t, s.RequestFriend(ctx, a, 999), ErrNotFound)
	wantErr(t, s.RequestFriend(ctx, a, a), ErrInvalid)

	wantErr(t, s.AcceptFriend(ctx, a, b), ErrNotFound) // wrong direction
	ok(t, s.AcceptFriend(ctx, b, a))
	wantErr(t, s.AcceptFriend(ctx, b, a), ErrNotFound) // already accepted
	ok(t, s.AcceptFriend(ctx, b, c))
	equal(t, "friends b", must(s.Friends(ctx, b)).of(t), []uint64{a, c})
	equal(t, "friends a", must(s.Friends(ctx, a)).of(t), []uint64{b})
	equal(t, "pending b after accept", len(must(s.PendingFriendRequests(ctx, b)).of(t)), 0)
	wantErr(t, s.RequestFriend(ctx, a, b), ErrExists)
	wantErr(t, s.RequestFriend(ctx, b, a), ErrExists)

	// Crossed requests: accepting one drops the other.
	ok(t, s.RequestFriend(ctx, a, d))
	ok(t, s.RequestFriend(ctx, d, a))
	ok(t, s.AcceptFriend(ctx, a, d))
	equal(t, "pending a", len(must(s.PendingFriendRequests(ctx, a)).of(t)), 0)
	equal(t, "pending d", len(must(s.PendingFriendRequests(ctx, d)).of(t)), 0)
	equal(t, "friends a", must(s.Friends(ctx, a)).of(t), []uint64{b, d})

	ok(t, s.RemoveFriend(ctx, b, a))
	equal(t, "friends a after remove", must(s.Friends(ctx, a)).of(t), []uint64{d})
	equal(t, "friends b after remove", must(s.Friends(ctx, b)).of(t), []uint64{c})
	ok(t, s.RemoveFriend(ctx, b, a)) // no-op

	// RemoveFriend also declines a pending request.
	ok(t, s.RequestFriend(ctx, c, d))
	ok(t, s.RemoveFriend(ctx, d, c))
	equal(t, "declined", len(must(s.PendingFriendRequests(ctx, d)).of(t)), 0)
}

// ---- point-to-point offline messages

func testOfflineOrder(t *testing.T, s Store) {
	ctx := t.Context()
	const big = 1<<63 + 5 // high bit set: unsigned columns and keys
	in := []Message{
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
func testOfflineSkewedClocks(t *testing.T, s Store) {
	ctx := t.Context()
	const now = 1767225600000
	var in []Message
	for i := range 40 {
		skew := int64(60_000)
		if i%2 == 1 {
			skew = -60_000
		}
		in = append(in, Message{MID: uint64(100 + i), From: uint64(2 + i%2), To: 1, Time: now + skew + int64(i)})
	}
	// Stored in two batches, the later numbers first: the cursor of a
	// reader that saw the first batch must not pass over the second.
	ok(t, s.StoreOffline(ctx, in[20:]))
	first := must(s.FetchOffline(ctx, 1, 0, 100)).of(t)
	ok(t, s.StoreOffline(ctx, in[:20]))
	equal(t, "first batch", mids(first), mids(in[20:]))
	var all []Message
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

func testOfflinePaging(t *testing.T, s Store) {
	ctx := t.Context()
	var in []Message
	for i := range 25 {
		// Five messages per millisecond, times not in MID order.
		in = append(in, Message{MID: uint64(1000 - i), From: 2, To: 1, Time: int64(100 + i/5)})
	}
	ok(t, s.StoreOffline(ctx, in))
	var all []Message
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
	many := make([]Message, MaxFetchLimit+10)
	for i := range many {
		many[i] = Message{MID: uint64(i + 1), To: 2, Time: 1}
	}
	ok(t, s.StoreOffline(ctx, many))
	equal(t, "default limit", len(must(s.FetchOffline(ctx, 2, 0, 0)).of(t)), DefaultFetchLimit)
	equal(t, "max limit", len(must(s.FetchOffline(ctx, 2, 0, MaxFetchLimit*2)).of(t)), MaxFetchLimit)
}

func testOfflineIdempotent(t *testing.T, s Store) {
	ctx := t.Context()
	batch := []Message{
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
	ok(t, s.StoreOffline(ctx, []Message{{MID: 8, From: 2, To: 1, Time: 1, CID: 78}}))
	got := must(s.FetchOffline(ctx, 1, 0, 100)).of(t)
	equal(t, "stored", mids(got), []uint64{1, 2, 3, 4, 6})
	equal(t, "first copy wins", string(got[0].Content), "x")
	equal(t, "count", must(s.CountOffline(ctx, 1)).of(t), 5)
	equal(t, "other recipient", must(s.CountOffline(ctx, 5)).of(t), 1)
}

func testOfflineAllOrNothing(t *testing.T, s Store) {
	ctx := t.Context()
	batch := []Message{{MID: 1, To: 1, Time: 1}, {MID: 2, To: 1, Time: 2}, {MID: 0, To: 1, Time: 3}}
	wantErr(t, s.StoreOffline(ctx, batch), ErrInvalid)
	equal(t, "nothing stored", must(s.CountOffline(ctx, 1)).of(t), 0)
	wantErr(t, s.StoreOffline(ctx, []Message{{MID: 1, To: 0}}), ErrInvalid)
	ok(t, s.StoreOffline(ctx, nil))
	equal(t, "still nothing", must(s.CountOffline(ctx, 1)).of(t), 0)
}

func testOfflineDelete(t *testing.T, s Store) {
	ctx := t.Context()
	var in []Message
	for i := uint64(1); i <= 10; i++ {
		in = append(in, Message{MID: i, From: 2, To: 1, Time: int64(i), CID: 100 + i})
	}
	in = append(in, Message{MID: 3, From: 2, To: 4, Time: 3}) // same MID, other recipient
	ok(t, s.StoreOffline(ctx, in))
	ok(t, s.DeleteOffline(ctx, 1, []uint64{2, 4, 6, 999, 4}))
	equal(t, "after delete", mids(must(s.FetchOffline(ctx, 1, 0, 100)).of(t)), []uint64{1, 3, 5, 7, 8, 9, 10})
	equal(t, "count", must(s.CountOffline(ctx, 1)).of(t), 7)
	ok(t, s.DeleteOffline(ctx, 1, nil))
	ok(t, s.DeleteOffline(ctx, 5, []uint64{3})) // not this recipient's
	equal(t, "other recipient kept", must(s.CountOffline(ctx, 4)).of(t), 1)

	// Deduplication covers stored messages only: once delivered and
	// deleted, the same CID may be stored again.
	ok(t, s.StoreOffline(ctx, []Message{{MID: 22, From: 2, To: 1, Time: 22, CID: 102}}))
	equal(t, "CID reusable", must(s.CountOffline(ctx, 1)).of(t), 8)
	ok(t, s.StoreOffline(ctx, []Message{{MID: 23, From: 2, To: 1, Time: 23, CID: 101}}))
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

func testOfflineLargeBatch(t *testing.T, s Store) {
	ctx := t.Context()
	// More rows than one INSERT holds, and more content bytes than one
	// INSERT carries.
	const n = insertRowsPerStmt*2 + 7
	in := make([]Message, n)
	for i := range in {
		in[i] = Message{MID: uint64(i + 1), From: 2, To: 1, Time: int64(i), CID: uint64(i + 1)}
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

// ---- groups

func appendN(t *testing.T, s Store, g, from uint64, n int, expiresAt int64) []uint64 {
	t.Helper()
	var out []uint64
	for range n {
		out = append(out, must(s.AppendGroupMsg(t.Context(), GroupMessage{Group: g, From: from, Time: nowMilli(),
			ExpiresAt: expiresAt, Content: []byte("m")})).of(t))
	}
	return out
}

func testGroupBasics(t *testing.T, s Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 10, "team")).of(t)
	equal(t, "first group ID", g, uint64(1))
	g2 := must(s.CreateGroup(ctx, 11, "other")).of(t)
	equal(t, "info", must(s.GroupInfo(ctx, g)).of(t), Group{ID: g, Name: "team", Owner: 10, HighestSeq: 0, Members: 1})
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

	seq := must(s.AppendGroupMsg(ctx, GroupMessage{Group: g, From: 10, Time: 5, CID: 6, MID: 7, Content: []byte("hi")})).of(t)
	equal(t, "first seq", seq, uint64(1))
	got := must(s.FetchGroup(ctx, g, 12, 0, 10)).of(t)
	equal(t, "fetched", got, []GroupMessage{{Group: g, Seq: 1, From: 10, Time: 5, CID: 6, MID: 7, MemberCount: 2, Content: []byte("hi")}})
	equal(t, "highest", must(s.GroupInfo(ctx, g)).of(t).HighestSeq, uint64(1))
	equal(t, "count", must(s.CountGroupMsgs(ctx, g)).of(t), 1)
	equal(t, "count other", must(s.CountGroupMsgs(ctx, g2)).of(t), 0)

	const unknown = 999
	_, err := s.GroupInfo(ctx, unknown)
	wantErr(t, err, ErrNotFound)
	_, err = s.GroupMembers(ctx, unknown)
	wantErr(t, err, ErrNotFound)
	_, err = s.JoinGroup(ctx, unknown, 1)
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.LeaveGroup(ctx, unknown, 1), ErrNotFound)
	_, err = s.AppendGroupMsg(ctx, GroupMessage{Group: unknown})
	wantErr(t, err, ErrNotFound)
	_, err = s.FetchGroup(ctx, unknown, 10, 0, 10)
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.AckGroup(ctx, unknown, 10, 1), ErrNotFound)
	_, err = s.FetchGroup(ctx, g, 13, 0, 10) // not a member
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.AckGroup(ctx, g, 13, 1), ErrNotFound)
	_, err = s.CreateGroup(ctx, 10, "")
	wantErr(t, err, ErrInvalid)
}

func testGroupRoles(t *testing.T, s Store) {
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
	equal(t, "roles at start", roles(), map[uint64]uint8{10: RoleOwner, 11: RoleMember, 12: RoleMember})
	ok(t, s.SetGroupRole(ctx, g, 11, RoleAdmin))
	ok(t, s.SetGroupRole(ctx, g, 11, RoleAdmin))
	equal(t, "admin", roles(), map[uint64]uint8{10: RoleOwner, 11: RoleAdmin, 12: RoleMember})
	// A role survives the member's acks, and a rejoin after leaving starts
	// over as a plain member.
	seq := must(s.AppendGroupMsg(ctx, GroupMessage{Group: g, From: 10, Content: []byte("m")})).of(t)
	ok(t, s.AckGroup(ctx, g, 11, seq))
	equal(t, "admin after ack", roles()[11], RoleAdmin)
	ok(t, s.LeaveGroup(ctx, g, 11))
	must(s.JoinGroup(ctx, g, 11)).of(t)
	equal(t, "rejoined", roles()[11], RoleMember)
	ok(t, s.SetGroupRole(ctx, g, 12, RoleAdmin))
	ok(t, s.SetGroupRole(ctx, g, 12, RoleMember))
	equal(t, "demoted", roles()[12], RoleMember)

	wantErr(t, s.SetGroupRole(ctx, g, 10, RoleMember), ErrInvalid) // the owner
	wantErr(t, s.SetGroupRole(ctx, g, 12, RoleOwner), ErrInvalid)
	wantErr(t, s.SetGroupRole(ctx, g, 12, 7), ErrInvalid)
	wantErr(t, s.SetGroupRole(ctx, g, 99, RoleAdmin), ErrNotFound) // not a member
	wantErr(t, s.SetGroupRole(ctx, 999, 12, RoleAdmin), ErrNotFound)
	wantErr(t, s.SetGroupOpen(ctx, 999, true), ErrNotFound)
}

func testGroupJoinCutoff(t *testing.T, s Store) {
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

func testGroupAck(t *testing.T, s Store) {
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

func testGroupLeave(t *testing.T, s Store) {
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
	wantErr(t, err, ErrNotFound)
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

func testGroupExpiry(t *testing.T, s Store) {
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 1, "g")).of(t)
	now := nowMilli()
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

	_, err := s.AppendGroupMsg(ctx, GroupMessage{Group: g, ExpiresAt: -1})
	wantErr(t, err, ErrInvalid)
}

func testGroupConcurrentAppend(t *testing.T, s Store) {
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
				seq, err := s.AppendGroupMsg(ctx, GroupMessage{Group: g, From: uint64(w), MID: uint64(i)})
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
func testGroupConcurrentAck(t *testing.T, s Store) {
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
				if _, err := s.AppendGroupMsg(ctx, GroupMessage{Group: g, From: uint64(w + 1)}); err != nil {
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

// ---- lifecycle

func testContext(t *testing.T, s Store) {
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]error{
		"Ping":  s.Ping(cctx),
		"Store": s.StoreOffline(cctx, []Message{{MID: 1, To: 1}}),
		"Ack":   s.AckGroup(cctx, 1, 1, 1),
	}
	_, calls["CreateUser"] = s.CreateUser(cctx, User{Name: "x"})
	_, calls["Fetch"] = s.FetchOffline(cctx, 1, 0, 10)
	_, calls["Append"] = s.AppendGroupMsg(cctx, GroupMessage{Group: 1})
	_, calls["Count"] = s.CountOffline(cctx, 1)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", name, err)
		}
		if errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: cancellation is not unavailability: %v", name, err)
		}
	}

	dctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := s.FetchOffline(dctx, 1, 0, 10)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("passed deadline: %v, want DeadlineExceeded and ErrUnavailable", err)
	}
	// Nothing from the cancelled calls happened.
	equal(t, "count", must(s.CountOffline(t.Context(), 1)).of(t), 0)
}

func testClosed(t *testing.T, s Store) {
	ok(t, s.Ping(t.Context()))
	closeStore(t, s)
	ok(t, s.Close()) // twice is fine
	wantErr(t, s.Ping(t.Context()), ErrClosed)
	wantErr(t, s.Ping(t.Context()), ErrUnavailable)
	_, err := s.FetchOffline(t.Context(), 1, 0, 1)
	wantErr(t, err, ErrClosed)
	wantErr(t, s.StoreOffline(t.Context(), []Message{{MID: 1, To: 1}}), ErrClosed)
}

func testReopen(t *testing.T, s Store, reopen func(*testing.T, Store) Store) {
	ctx := t.Context()
	uid := newUser(t, s, "alice")
	must(s.TouchDevice(ctx, Device{User: uid, KeyHash: [32]byte{9}})).of(t)
	ok(t, s.StoreOffline(ctx, []Message{{MID: 1, From: 2, To: uid, Time: 5, CID: 3, Content: []byte("kept")}}))
	g := must(s.CreateGroup(ctx, uid, "g")).of(t)
	appendN(t, s, g, uid, 2, 0)
	ok(t, s.CreateInvite(ctx, Invite{Hash: [32]byte{7}, Issuer: uid, ExpiresAt: 5000}, 1))

	s = reopen(t, s)
	equal(t, "invite kept", must(s.UseInvite(ctx, [32]byte{7}, 10)).of(t).Issuer, uid)
	wantErr(t, s.CreateInvite(ctx, Invite{Hash: [32]byte{8}, Issuer: uid, ExpiresAt: 5000}, 1), ErrQuota)
	equal(t, "user", must(s.UserByName(ctx, "alice")).of(t).ID, uid)
	equal(t, "device known", must(s.TouchDevice(ctx, Device{User: uid, KeyHash: [32]byte{9}})).of(t), false)
	got := must(s.FetchOffline(ctx, uid, 0, 10)).of(t)
	if len(got) != 1 || string(got[0].Content) != "kept" {
		t.Fatalf("offline after reopen: %+v", got)
	}
	ok(t, s.StoreOffline(ctx, []Message{{MID: 9, From: 2, To: uid, Time: 6, CID: 3}}))
	equal(t, "dedup survives reopen", must(s.CountOffline(ctx, uid)).of(t), 1)
	equal(t, "group", must(s.GroupInfo(ctx, g)).of(t).HighestSeq, uint64(2))
	equal(t, "next seq", appendN(t, s, g, uid, 1, 0), []uint64{3})
	if id := newUser(t, s, "bob"); id <= uid {
		t.Fatalf("ID %d reused after reopen", id)
	}
}

// ---- backend-specific errors

func TestMySQLUnavailable(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"refused", "127.0.0.1:1"},
		{"unroutable", "10.255.255.1:3306"}, // TEST-NET-ish: the dial times out
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := Open(Config{MySQLDSN: "root@tcp(" + tc.addr + ")/myim", DialTimeout: 300 * time.Millisecond})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("error %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	t.Run("badDSN", func(t *testing.T) {
		_, err := Open(Config{MySQLDSN: "root:secret@tcp(127.0.0.1:3306"})
		if err == nil || errors.Is(err, ErrUnavailable) || bytes.Contains([]byte(err.Error()), []byte("secret")) {
			t.Fatalf("bad DSN: %v", err)
		}
	})
}

func TestEmbeddedLocked(t *testing.T) {
	dir := t.TempDir()
	openTestStore(t, Config{DataDir: dir})
	start := time.Now()
	_, err := Open(Config{DataDir: dir, DialTimeout: 100 * time.Millisecond})
	wantErr(t, err, ErrUnavailable)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}
