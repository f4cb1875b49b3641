// Command sqlite stores and reads one row with modernc.org/sqlite, for the
// binary size and cgo comparison.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"
)

func main() {
	dir, err := os.MkdirTemp("", "probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "x.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer db.Close()
	var v string
	_, err = db.Exec(`CREATE TABLE q (k TEXT PRIMARY KEY, v TEXT); INSERT INTO q VALUES ('k', 'v')`)
	if err == nil {
		err = db.QueryRow(`SELECT v FROM q WHERE k = 'k'`).Scan(&v)
	}
	fmt.Println("ok", v, err)
}
