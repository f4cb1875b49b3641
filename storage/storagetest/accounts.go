package storagetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/myim/myim/storage"
)

func testUsers(t *testing.T, s storage.Store) {
	ctx := t.Context()
	id1 := must(s.CreateUser(ctx, storage.User{Name: "alice", PassHash: "ph1", Signature: "hi", Profile: []byte(`{"a":1}`), CreatedAt: 1234})).of(t)
	equal(t, "first ID", id1, uint64(1))
	_, err := s.CreateUser(ctx, storage.User{Name: "alice", PassHash: "x"})
	wantErr(t, err, storage.ErrExists)
	id2 := must(s.CreateUser(ctx, storage.User{Name: "Alice", PassHash: "ph2"})).of(t) // names are case-sensitive
	if id2 <= id1 {
		t.Fatalf("second ID %d not above first %d", id2, id1)
	}
	id3 := must(s.CreateUser(ctx, storage.User{Name: "名字😀", PassHash: "ph3"})).of(t)

	u := must(s.UserByName(ctx, "alice")).of(t)
	want := storage.User{ID: id1, Name: "alice", PassHash: "ph1", Signature: "hi", Profile: []byte(`{"a":1}`), CreatedAt: 1234}
	equal(t, "by name", u, want)
	equal(t, "by id", must(s.UserByID(ctx, id1)).of(t), want)
	equal(t, "unicode", must(s.UserByID(ctx, id3)).of(t).Name, "名字😀")
	if u := must(s.UserByID(ctx, id2)).of(t); u.CreatedAt == 0 || u.Profile != nil {
		t.Fatalf("defaults: %+v", u)
	}
	_, err = s.UserByName(ctx, "nobody")
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.UserByID(ctx, 999)
	wantErr(t, err, storage.ErrNotFound)

	ok(t, s.UpdateProfile(ctx, id1, "busy", []byte(`{"b":2}`)))
	ok(t, s.UpdateProfile(ctx, id1, "busy", []byte(`{"b":2}`))) // unchanged values are not "not found"
	u = must(s.UserByID(ctx, id1)).of(t)
	equal(t, "signature", u.Signature, "busy")
	equal(t, "profile", string(u.Profile), `{"b":2}`)
	wantErr(t, s.UpdateProfile(ctx, 999, "x", nil), storage.ErrNotFound)

	for _, bad := range []storage.User{{Name: ""}, {Name: string(bytes.Repeat([]byte("n"), storage.MaxNameLen+1))}, {Name: "bad\xff"}} {
		_, err := s.CreateUser(ctx, bad)
		wantErr(t, err, storage.ErrInvalid)
	}
	wantErr(t, s.UpdateProfile(ctx, id1, "x", make([]byte, storage.MaxProfileLen+1)), storage.ErrInvalid)
}

func testDevices(t *testing.T, s storage.Store) {
	ctx := t.Context()
	k1, k2 := [32]byte{2}, [32]byte{1}
	isNew := must(s.TouchDevice(ctx, storage.Device{User: 1, KeyHash: k1, Fingerprint: "fp", LastSeen: 100, Addr: "1.2.3.4:5"})).of(t)
	equal(t, "first touch is new", isNew, true)
	isNew = must(s.TouchDevice(ctx, storage.Device{User: 1, KeyHash: k1, Fingerprint: "fp2", LastSeen: 200, Addr: "6.7.8.9:1"})).of(t)
	equal(t, "second touch is new", isNew, false)
	isNew = must(s.TouchDevice(ctx, storage.Device{User: 1, KeyHash: k1, Fingerprint: "fp2", LastSeen: 200, Addr: "6.7.8.9:1"})).of(t)
	equal(t, "unchanged touch is new", isNew, false)
	equal(t, "other key is new", must(s.TouchDevice(ctx, storage.Device{User: 1, KeyHash: k2, LastSeen: 300})).of(t), true)
	equal(t, "same key other user is new", must(s.TouchDevice(ctx, storage.Device{User: 2, KeyHash: k1})).of(t), true)

	got := must(s.Devices(ctx, 1)).of(t)
	equal(t, "devices", got, []storage.Device{
		{User: 1, KeyHash: k2, FirstSeen: 300, LastSeen: 300},
		{User: 1, KeyHash: k1, Fingerprint: "fp2", FirstSeen: 100, LastSeen: 200, Addr: "6.7.8.9:1"},
	})
	if d := must(s.Devices(ctx, 2)).of(t); len(d) != 1 || d[0].LastSeen == 0 || d[0].FirstSeen != d[0].LastSeen {
		t.Fatalf("LastSeen 0 means now: %+v", d)
	}
	equal(t, "no devices", len(must(s.Devices(ctx, 3)).of(t)), 0)
}

func testFriends(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a, b, c, d := newUser(t, s, "a"), newUser(t, s, "b"), newUser(t, s, "c"), newUser(t, s, "d")

	ok(t, s.RequestFriend(ctx, a, b))
	ok(t, s.RequestFriend(ctx, a, b)) // repeat: no-op
	ok(t, s.RequestFriend(ctx, c, b))
	equal(t, "pending b", must(s.PendingFriendRequests(ctx, b)).of(t), []uint64{a, c})
	equal(t, "pending a", len(must(s.PendingFriendRequests(ctx, a)).of(t)), 0)
	equal(t, "no friends yet", len(must(s.Friends(ctx, b)).of(t)), 0)
	wantErr(t, s.RequestFriend(ctx, a, 999), storage.ErrNotFound)
	wantErr(t, s.RequestFriend(ctx, a, a), storage.ErrInvalid)

	wantErr(t, s.AcceptFriend(ctx, a, b), storage.ErrNotFound) // wrong direction
	ok(t, s.AcceptFriend(ctx, b, a))
	wantErr(t, s.AcceptFriend(ctx, b, a), storage.ErrNotFound) // already accepted
	ok(t, s.AcceptFriend(ctx, b, c))
	equal(t, "friends b", must(s.Friends(ctx, b)).of(t), []uint64{a, c})
	equal(t, "friends a", must(s.Friends(ctx, a)).of(t), []uint64{b})
	equal(t, "pending b after accept", len(must(s.PendingFriendRequests(ctx, b)).of(t)), 0)
	wantErr(t, s.RequestFriend(ctx, a, b), storage.ErrExists)
	wantErr(t, s.RequestFriend(ctx, b, a), storage.ErrExists)

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

// testInvites: an invite is used once, not after it expires, and a
// user's allowance counts every code issued.
func testInvites(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a, b, c := storage.Invite{Hash: [32]byte{1}, ExpiresAt: 2000}, storage.Invite{Hash: [32]byte{2}, Issuer: 7, ExpiresAt: 2000},
		storage.Invite{Hash: [32]byte{3}, Issuer: 7, ExpiresAt: 1000}
	must(0, s.CreateInvite(ctx, a, 0)).of(t)
	wantErr(t, s.CreateInvite(ctx, a, 0), storage.ErrExists)
	must(0, s.CreateInvite(ctx, b, 2)).of(t)
	must(0, s.CreateInvite(ctx, c, 2)).of(t)
	wantErr(t, s.CreateInvite(ctx, storage.Invite{Hash: [32]byte{4}, Issuer: 7, ExpiresAt: 2000}, 2), storage.ErrQuota)
	must(0, s.CreateInvite(ctx, storage.Invite{Hash: [32]byte{4}, Issuer: 8, ExpiresAt: 2000}, 2)).of(t) // another user's own
	equal(t, "used invite", must(s.UseInvite(ctx, b.Hash, 1500)).of(t), b)
	_, err := s.UseInvite(ctx, b.Hash, 1500)
	wantErr(t, err, storage.ErrNotFound) // single use
	_, err = s.UseInvite(ctx, c.Hash, 1000)
	wantErr(t, err, storage.ErrNotFound) // expired
	_, err = s.UseInvite(ctx, [32]byte{9}, 0)
	wantErr(t, err, storage.ErrNotFound)
	// A used code does not give the allowance back.
	wantErr(t, s.CreateInvite(ctx, storage.Invite{Hash: [32]byte{5}, Issuer: 7, ExpiresAt: 2000}, 2), storage.ErrQuota)

	// Of concurrent users of one code, exactly one gets it.
	must(0, s.CreateInvite(ctx, storage.Invite{Hash: [32]byte{6}, ExpiresAt: 2000}, 0)).of(t)
	var wg sync.WaitGroup
	var got atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UseInvite(ctx, [32]byte{6}, 1000); err == nil {
				got.Add(1)
			} else if !errors.Is(err, storage.ErrNotFound) {
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
func testRevokedTokens(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if err := s.RevokeToken(ctx, "", 5); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("empty sid: %v", err)
	}
	if err := s.RevokeToken(ctx, strings.Repeat("x", storage.MaxSIDLen+1), 5); !errors.Is(err, storage.ErrInvalid) {
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
