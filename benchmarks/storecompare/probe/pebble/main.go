// Command pebble stores and reads one key with cockroachdb/pebble, for the
// binary size and cgo comparison.
package main

import (
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

func main() {
	dir, err := os.MkdirTemp("", "probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer db.Close()
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	v, c, err := db.Get([]byte("k"))
	if err == nil {
		fmt.Println("ok", string(v))
		c.Close()
	}
}
