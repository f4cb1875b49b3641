package main

import (
	"context"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// storageQueue runs the workload through the real embedded store
// (storage/bolt): bbolt plus the embedded store's MID and
// CID indexes, validation and group commit.
type storageQueue struct {
	s   storage.Store
	ctx context.Context
}

func openStorageQueue(dir string, noSync bool) (Queue, error) {
	s, err := bolt.Open(bolt.Config{Dir: dir, NoSync: noSync})
	if err != nil {
		return nil, err
	}
	return &storageQueue{s: s, ctx: context.Background()}, nil
}

func (q *storageQueue) Append(msgs []Msg) error {
	sm := make([]storage.Message, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		sm[i] = storage.Message{MID: m.MID, From: m.From, To: m.To, Time: m.Time, CID: m.CID, QoS: 1, Content: m.Content}
	}
	return q.s.StoreOffline(q.ctx, sm)
}

func (q *storageQueue) Fetch(user uint64, limit int, buf []Msg) ([]Msg, error) {
	got, err := q.s.FetchOffline(q.ctx, user, 0, limit)
	if err != nil {
		return buf[:0], err
	}
	out := buf[:0]
	for i := range got {
		g := &got[i]
		out = append(out, Msg{To: g.To, Time: g.Time, MID: g.MID, From: g.From, CID: g.CID, Content: g.Content})
	}
	return out, nil
}

func (q *storageQueue) Ack(user uint64, keys []Key) error {
	mids := make([]uint64, len(keys))
	for i, k := range keys {
		mids[i] = k.MID
	}
	return q.s.DeleteOffline(q.ctx, user, mids)
}

func (q *storageQueue) Close() error { return q.s.Close() }
