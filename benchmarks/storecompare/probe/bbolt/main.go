// Command bbolt stores and reads one key with go.etcd.io/bbolt, for the
// binary size and cgo comparison.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

func main() {
	dir, err := os.MkdirTemp("", "probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "x.db"), 0o600, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("q"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	var v []byte
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			v = append(v, tx.Bucket([]byte("q")).Get([]byte("k"))...)
			return nil
		})
	}
	fmt.Println("ok", string(v), err)
}
