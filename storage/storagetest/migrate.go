package storagetest

import (
	"testing"

	"github.com/myim/myim/storage"
)

// Data written before groups had roles and an open flag must read as
// closed groups whose owner is the owner and whose other members are plain
// members, and take roles and the flag once migrated.

// CheckMigratedGroup checks group g of owner 10 with member 11, as left by
// a schema without roles, after the store was opened by this binary.
func CheckMigratedGroup(t *testing.T, s storage.Store, g uint64) {
	ctx := t.Context()
	info := must(s.GroupInfo(ctx, g)).of(t)
	equal(t, "old group is closed", info.Open, false)
	equal(t, "name", info.Name, "old")
	roles := map[uint64]uint8{}
	for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
		roles[m.User] = m.Role
	}
	equal(t, "old roles", roles, map[uint64]uint8{10: storage.RoleOwner, 11: storage.RoleMember})
	ok(t, s.SetGroupRole(ctx, g, 11, storage.RoleAdmin))
	ok(t, s.SetGroupOpen(ctx, g, true))
	equal(t, "opened", must(s.GroupInfo(ctx, g)).of(t).Open, true)
	must(s.JoinGroup(ctx, g, 12)).of(t)
	roles = map[uint64]uint8{}
	for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
		roles[m.User] = m.Role
	}
	equal(t, "new roles", roles, map[uint64]uint8{10: storage.RoleOwner, 11: storage.RoleAdmin, 12: storage.RoleMember})
}

// SkewedMailbox is what a version 1 store held for user 1: two senders
// whose clocks are a minute apart, stored in time order, which is not the
// order the center numbered them in.
var SkewedMailbox = []storage.Message{
	{MID: 10, From: 2, To: 1, Time: 1767225660000, CID: 1, Srv: 3, QoS: 1, Content: []byte("ahead 1")},
	{MID: 11, From: 3, To: 1, Time: 1767225600001, CID: 1, Srv: 3, QoS: 1, Content: []byte("right 1")},
	{MID: 12, From: 2, To: 1, Time: 1767225660002, CID: 2, Srv: 3, QoS: 1, Content: []byte("ahead 2")},
	{MID: 13, From: 3, To: 1, Time: 1767225600003, CID: 2, Srv: 3, QoS: 1},
}

// CheckMigratedMailbox checks the mailbox of user 1 after SkewedMailbox
// was written in the version 1 order and the store opened by this binary.
func CheckMigratedMailbox(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := t.Context()
	got := must(s.FetchOffline(ctx, 1, 0, 10)).of(t)
	equal(t, "migrated, in MID order", got, SkewedMailbox)
	equal(t, "paging after a MID", mids(must(s.FetchOffline(ctx, 1, 11, 10)).of(t)), []uint64{12, 13})
	ok(t, s.DeleteOffline(ctx, 1, []uint64{11}))
	equal(t, "deleted", mids(must(s.FetchOffline(ctx, 1, 0, 10)).of(t)), []uint64{10, 12, 13})
	// The CID index survived: a resend of a stored message is still one.
	ok(t, s.StoreOffline(ctx, []storage.Message{{MID: 20, From: 2, To: 1, Time: 1, CID: 2}}))
	equal(t, "CID dedup", must(s.CountOffline(ctx, 1)).of(t), 3)
}
