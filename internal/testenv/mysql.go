package testenv

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultMySQLDSN is the test MySQL (MariaDB) server when
// MYIM_TEST_MYSQL_DSN is not set.
const DefaultMySQLDSN = "root@tcp(127.0.0.1:3306)/"

// MySQLDatabase creates a database of the test's own, myim_test_<random>
// in utf8mb4, on the server MYIM_TEST_MYSQL_DSN (or DefaultMySQLDSN) names,
// drops it when the test ends, and returns the DSN of that database with
// the other parameters of MYIM_TEST_MYSQL_DSN. When the server cannot be
// reached the test is skipped, or fails under CI.
func MySQLDatabase(t testing.TB) string {
	t.Helper()
	mc, err := mysql.ParseDSN(envOr("MYIM_TEST_MYSQL_DSN", DefaultMySQLDSN))
	if err != nil {
		t.Fatalf("MYIM_TEST_MYSQL_DSN: %v", err)
	}
	mc.DBName = ""
	admin := mc.Clone()
	admin.Timeout = 2 * time.Second
	if err := execAdmin(admin, "SELECT 1"); err != nil {
		Unavailable(t, "MySQL unreachable at %s (set MYIM_TEST_MYSQL_DSN): %v", mc.Addr, err)
	}
	name := randomName(t, "myim_test_")
	if err := execAdmin(admin, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := execAdmin(admin, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	mc.DBName = name
	return mc.FormatDSN()
}

// execAdmin runs one statement on a connection of its own.
func execAdmin(mc *mysql.Config, stmt string) error {
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}
