package storage

import (
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
