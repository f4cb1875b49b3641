package bolt

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/myim/myim/storage/storagetest"
)

// Data written before groups had roles and an open flag, or with offline
// keys in sender time order, must read right once this binary opens it.

func TestMigratesGroups(t *testing.T) {
	dir := t.TempDir()
	s := stores.Open(t, Config{Dir: dir})
	g := must(s.CreateGroup(t.Context(), 10, "old")).of(t)
	must(s.JoinGroup(t.Context(), g, 11)).of(t)
	stores.Close(t, s)

	// Rewrite the file as schema version 1 wrote it: group records end
	// with the name, member records with JoinedAt.
	db, err := bbolt.Open(filepath.Join(dir, embeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
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

	s = stores.Open(t, Config{Dir: dir})
	storagetest.CheckMigratedGroup(t, s, g)
	stores.Close(t, s)
	db, err = bbolt.Open(filepath.Join(dir, embeddedFile), 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bktMeta).Get(keySchemaVersion)
		equal(t, "schema version", string(v), string(be64(embeddedSchemaVersion)))
		return nil
	})
}

// TestMigratesOfflineOrder opens a file in the version 1 layout
// (offline keys to|time|mid) and finds the messages in MID order, their
// times kept, and deletable.
func TestMigratesOfflineOrder(t *testing.T) {
	dir := t.TempDir()
	db, err := bbolt.Open(filepath.Join(dir, embeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for i := range storagetest.SkewedMailbox {
			m := &storagetest.SkewedMailbox[i]
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

	s := stores.Open(t, Config{Dir: dir})
	storagetest.CheckMigratedMailbox(t, s)
	s = stores.Reopen(t, s) // the version is recorded: nothing to do twice
	equal(t, "after reopen", len(must(s.FetchOffline(t.Context(), 1, 0, 10)).of(t)), 3)
}
