package main

import (
	"bytes"
	"encoding/binary"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// boltQueue is the offline queue on bare bbolt: one bucket, key
// to|time|mid, the same open options as the storage package, and the same
// group commit.
type boltQueue struct {
	db *bolt.DB
	gc groupCommit[*bolt.Tx]
}

var bktQueue = []byte("offline")

func openBolt(dir string, noSync bool) (Queue, error) {
	db, err := bolt.Open(filepath.Join(dir, "queue.db"), 0o600, &bolt.Options{
		NoSync:         noSync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bktQueue)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	q := &boltQueue{db: db}
	q.gc.commit = func(fns []func(*bolt.Tx) error) error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, fn := range fns {
				if err := fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return q, nil
}

func (q *boltQueue) Append(msgs []Msg) error {
	// Encode outside the transaction: the writer lock is the bottleneck.
	keys := make([][]byte, len(msgs))
	vals := make([][]byte, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		keys[i] = msgKey(make([]byte, 0, 24), m.To, m.Time, m.MID)
		vals[i] = msgVal(make([]byte, 0, 16+len(m.Content)), m)
	}
	return q.gc.do(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktQueue)
		for i := range keys {
			if err := b.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (q *boltQueue) Fetch(user uint64, limit int, buf []Msg) ([]Msg, error) {
	out := buf[:0]
	err := q.db.View(func(tx *bolt.Tx) error {
		prefix := binary.BigEndian.AppendUint64(make([]byte, 0, 8), user)
		c := tx.Bucket(bktQueue).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			var m *Msg
			out, m = grow(out)
			if err := decodeKV(k, v, m); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func (q *boltQueue) Ack(user uint64, keys []Key) error {
	kb := make([]byte, 0, 24*len(keys))
	for _, k := range keys {
		kb = msgKey(kb, user, k.Time, k.MID)
	}
	return q.gc.do(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktQueue)
		for i := 0; i < len(kb); i += 24 {
			if err := b.Delete(kb[i : i+24]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (q *boltQueue) Close() error { return q.db.Close() }
