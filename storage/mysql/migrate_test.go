package mysql

import (
	"fmt"
	"strings"
	"testing"

	"github.com/myim/myim/storage/storagetest"
)

func TestMigratesGroups(t *testing.T) {
	s := newStore(t)
	cfg := stores.Config(t, s)
	ctx := t.Context()
	g := must(s.CreateGroup(ctx, 10, "old")).of(t)
	must(s.JoinGroup(ctx, g, 11)).of(t)
	// Back to the schema before roles, as a database made then is; the
	// role column is left in place, as a migration that stopped half way
	// would leave it, so that the step must also skip what is done.
	db := s.(*store).db
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
	stores.Close(t, s)
	s = stores.Open(t, cfg)
	storagetest.CheckMigratedGroup(t, s, g)
}

// TestMigratesOfflineOrder puts a database back to the schema version before
// (clustered by to_user, time, mid) with messages in it, and opens it.
func TestMigratesOfflineOrder(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	db := s.(*store).db
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
	ok(t, s.StoreOffline(ctx, storagetest.SkewedMailbox))
	s = stores.Reopen(t, s)
	var cols string
	err := s.(*store).db.QueryRowContext(ctx, "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) "+
		"FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'offline_msgs' "+
		"AND index_name = 'PRIMARY'").Scan(&cols)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "primary key", cols, "to_user,mid")
	storagetest.CheckMigratedMailbox(t, s)
}
