package storage

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Data written before groups had roles and an open flag must read as
// closed groups whose owner is the owner and whose other members are plain
// members, and take roles and the flag once migrated.

// checkMigratedGroup checks group g of owner 10 with member 11, as left by
// a schema without roles, after the store was opened by this binary.
func checkMigratedGroup(t *testing.T, s Store, g uint64) {
	ctx := t.Context()
	info := must(s.GroupInfo(ctx, g)).of(t)
	equal(t, "old group is closed", info.Open, false)
	equal(t, "name", info.Name, "old")
	roles := map[uint64]uint8{}
	for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
		roles[m.User] = m.Role
	}
	equal(t, "old roles", roles, map[uint64]uint8{10: RoleOwner, 11: RoleMember})
	ok(t, s.SetGroupRole(ctx, g, 11, RoleAdmin))
	ok(t, s.SetGroupOpen(ctx, g, true))
	equal(t, "opened", must(s.GroupInfo(ctx, g)).of(t).Open, true)
	must(s.JoinGroup(ctx, g, 12)).of(t)
	roles = map[uint64]uint8{}
	for _, m := range must(s.GroupMembers(ctx, g)).of(t) {
		roles[m.User] = m.Role
	}
	equal(t, "new roles", roles, map[uint64]uint8{10: RoleOwner, 11: RoleAdmin, 12: RoleMember})
}

func TestEmbeddedMigratesGroups(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, Config{DataDir: dir})
	g := must(s.CreateGroup(t.Context(), 10, "old")).of(t)
	must(s.JoinGroup(t.Context(), g, 11)).of(t)
	closeStore(t, s)

	// Rewrite the file as schema version 1 wrote it: group records end
	// with the name, member records with JoinedAt.
	db, err := bolt.Open(filepath.Join(dir, embeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, bkt := range [][]byte{bktGroups, bktGMembers} {
			b := tx.Bucket(bkt)
			var keys, vals [][]byte
			_ = b.ForEach(func(k, v []byte) error {
				keys, vals = append(keys, append([]byte(nil), k...)), append(vals, append([]byte(nil), v[:len(v)-1]...))
				return nil
			})
			for i := range keys {
				if err := b.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bktMeta).Put(keySchemaVersion, be64(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	s = openTestStore(t, Config{DataDir: dir})
	checkMigratedGroup(t, s, g)
	closeStore(t, s)
	db, err = bolt.Open(filepath.Join(dir, embeddedFile), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktMeta).Get(keySchemaVersion)
		equal(t, "schema version", string(v), string(be64(embeddedSchemaVersion)))
		return nil
	})
}

func TestMySQLMigratesGroups(t *testing.T) {
	s := newMySQLStore(t)
	cfg, _ := opened.Load(s)
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 10, "old")).of(t)
	must(s.JoinGroup(ctx, g, 11)).of(t)
	// Back to the schema before roles, as a database made then is; the
	// role column is left in place, as a migration that stopped half way
	// would leave it, so that the step must also skip what is done.
	db := s.(*mysqlStore).db
	version := 0 // the migration that adds roles
	for i, step := range mysqlMigrations {
		for _, q := range step {
			if strings.Contains(q, "ADD COLUMN is_open") {
				version = i + 1
			}
		}
	}
	for _, q := range []string{
		"ALTER TABLE im_groups DROP COLUMN is_open",
		fmt.Sprintf("DELETE FROM schema_version WHERE version >= %d", version),
		"UPDATE group_members SET role = 0",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	closeStore(t, s)
	s = openTestStore(t, cfg.(Config))
	checkMigratedGroup(t, s, g)
}

// skewedMailbox is what a version 1 store held for user 1: two senders
// whose clocks are a minute apart, stored in time order, which is not the
// order the center numbered them in.
var skewedMailbox = []Message{
	{MID: 10, From: 2, To: 1, Time: 1767225660000, CID: 1, Srv: 3, QoS: 1, Content: []byte("ahead 1")},
	{MID: 11, From: 3, To: 1, Time: 1767225600001, CID: 1, Srv: 3, QoS: 1, Content: []byte("right 1")},
	{MID: 12, From: 2, To: 1, Time: 1767225660002, CID: 2, Srv: 3, QoS: 1, Content: []byte("ahead 2")},
	{MID: 13, From: 3, To: 1, Time: 1767225600003, CID: 2, Srv: 3, QoS: 1},
}

// TestEmbeddedMigratesOfflineOrder opens a file in the version 1 layout
// (offline keys to|time|mid) and finds the messages in MID order, their
// times kept, and deletable.
func TestEmbeddedMigratesOfflineOrder(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, embeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for i := range skewedMailbox {
			m := &skewedMailbox[i]
			k := binary.BigEndian.AppendUint64(nil, m.To)
			k = putTime(k, m.Time)
			k = binary.BigEndian.AppendUint64(k, m.MID)
			if err := tx.Bucket(bktOffline).Put(k, encodeMessage(m)); err != nil {
				return err
			}
			ref := putTime(nil, m.Time)
			ref = binary.BigEndian.AppendUint64(ref, m.From)
			ref = binary.BigEndian.AppendUint64(ref, m.CID)
			if err := tx.Bucket(bktOffMID).Put(pair(m.To, m.MID), ref); err != nil {
				return err
			}
			if err := tx.Bucket(bktOffCID).Put(triple(m.To, m.From, m.CID), be64(m.MID)); err != nil {
				return err
			}
		}
		return tx.Bucket(bktMeta).Put(keySchemaVersion, be64(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openTestStore(t, Config{DataDir: dir})
	checkMigratedMailbox(t, s)
	s = reopenStore(t, s) // the version is recorded: nothing to do twice
	equal(t, "after reopen", len(must(s.FetchOffline(t.Context(), 1, 0, 10)).of(t)), 3)
}

// TestMySQLMigratesOfflineOrder puts a database back to the schema version before
// (clustered by to_user, time, mid) with messages in it, and opens it.
func TestMySQLMigratesOfflineOrder(t *testing.T) {
	s := newMySQLStore(t)
	ctx := t.Context()
	db := s.(*mysqlStore).db
	version := 0 // the step that rekeys offline_msgs
	for i, step := range mysqlMigrations {
		for _, q := range step {
			if strings.Contains(q, "ADD PRIMARY KEY (to_user, mid)") {
				version = i + 1
			}
		}
	}
	for _, q := range []string{
		fmt.Sprintf("DELETE FROM schema_version WHERE version >= %d", version),
		"ALTER TABLE offline_msgs DROP PRIMARY KEY, ADD PRIMARY KEY (to_user, `time`, mid)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ok(t, s.StoreOffline(ctx, skewedMailbox))
	s = reopenStore(t, s)
	var cols string
	err := s.(*mysqlStore).db.QueryRowContext(ctx, "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) "+
		"FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'offline_msgs' "+
		"AND index_name = 'PRIMARY'").Scan(&cols)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "primary key", cols, "to_user,mid")
	checkMigratedMailbox(t, s)
}

func checkMigratedMailbox(t *testing.T, s Store) {
	t.Helper()
	ctx := t.Context()
	got := must(s.FetchOffline(ctx, 1, 0, 10)).of(t)
	equal(t, "migrated, in MID order", got, skewedMailbox)
	equal(t, "paging after a MID", mids(must(s.FetchOffline(ctx, 1, 11, 10)).of(t)), []uint64{12, 13})
	ok(t, s.DeleteOffline(ctx, 1, []uint64{11}))
	equal(t, "deleted", mids(must(s.FetchOffline(ctx, 1, 0, 10)).of(t)), []uint64{10, 12, 13})
	// The CID index survived: a resend of a stored message is still one.
	ok(t, s.StoreOffline(ctx, []Message{{MID: 20, From: 2, To: 1, Time: 1, CID: 2}}))
	equal(t, "CID dedup", must(s.CountOffline(ctx, 1)).of(t), 3)
}
