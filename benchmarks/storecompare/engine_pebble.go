package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleQueue is the offline queue on pebble: key to|time|mid.
//
// The queue pattern leaves a tombstone for every delivered message at the
// head of its recipient's key range, and a scan from the start of the range
// has to step over all of them until compaction drops them. Two mitigations
// (both off in naive mode):
//   - scans start after the last key this process deleted for the recipient
//     (cursor, kept in memory), not at the start of the prefix;
//   - acks use SingleDelete, valid because a message key is Set exactly once,
//     so that the Set and its tombstone cancel out at the first compaction
//     (or flush) that sees both.
type pebbleQueue struct {
	db     *pebble.DB
	wo     *pebble.WriteOptions
	naive  bool
	mu     sync.Mutex
	cursor map[uint64][24]byte // last deleted key per recipient
}

// quietLogger drops pebble's informational messages.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Errorf(f string, a ...any) { log.Printf("pebble: "+f, a...) }
func (quietLogger) Fatalf(f string, a ...any) { log.Fatalf("pebble: "+f, a...) }

func openPebble(dir string, noSync bool) (Queue, error) { return openPebbleOpts(dir, noSync, false) }

func openPebbleOpts(dir string, noSync, naive bool) (Queue, error) {
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
	})
	if err != nil {
		return nil, err
	}
	wo := pebble.Sync
	if noSync {
		wo = pebble.NoSync
	}
	return &pebbleQueue{db: db, wo: wo, naive: naive, cursor: make(map[uint64][24]byte)}, nil
}

func (q *pebbleQueue) Append(msgs []Msg) error {
	b := q.db.NewBatch()
	defer b.Close()
	var k [24]byte
	v := make([]byte, 0, 16+256)
	for i := range msgs {
		m := &msgs[i]
		v = msgVal(v[:0], m)
		if err := b.Set(msgKey(k[:0], m.To, m.Time, m.MID), v, nil); err != nil {
			return err
		}
	}
	return b.Commit(q.wo)
}

func (q *pebbleQueue) Fetch(user uint64, limit int, buf []Msg) ([]Msg, error) {
	lower := binary.BigEndian.AppendUint64(make([]byte, 0, 25), user)
	if !q.naive {
		q.mu.Lock()
		c, ok := q.cursor[user]
		q.mu.Unlock()
		if ok {
			// The first key after the cursor.
			lower = append(append(lower[:0], c[:]...), 0)
		}
	}
	var upper []byte
	if user != ^uint64(0) {
		upper = binary.BigEndian.AppendUint64(make([]byte, 0, 8), user+1)
	}
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return buf[:0], err
	}
	out := buf[:0]
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return out, err
		}
		var m *Msg
		out, m = grow(out)
		if err := decodeKV(it.Key(), v, m); err != nil {
			it.Close()
			return out, err
		}
	}
	if err := it.Close(); err != nil {
		return out, err
	}
	return out, nil
}

func (q *pebbleQueue) Ack(user uint64, keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	b := q.db.NewBatch()
	defer b.Close()
	var k, last [24]byte
	for _, key := range keys {
		msgKey(k[:0], user, key.Time, key.MID)
		var err error
		if q.naive {
			err = b.Delete(k[:], nil)
		} else {
			err = b.SingleDelete(k[:], nil)
		}
		if err != nil {
			return err
		}
		if bytes.Compare(k[:], last[:]) > 0 {
			last = k
		}
	}
	if err := b.Commit(q.wo); err != nil {
		return err
	}
	if !q.naive {
		// Safe as long as a recipient's keys are appended in increasing
		// order and acked from the head, as this workload does; the server
		// would need a per-recipient sequence to guarantee it.
		q.mu.Lock()
		if c, ok := q.cursor[user]; !ok || bytes.Compare(last[:], c[:]) > 0 {
			q.cursor[user] = last
		}
		q.mu.Unlock()
	}
	return nil
}

func (q *pebbleQueue) Close() error {
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("pebble close: %w", err)
	}
	return nil
}
