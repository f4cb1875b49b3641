package bolt

import (
	"bytes"
	"context"
	"encoding/binary"

	bbolt "go.etcd.io/bbolt"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

func (s *store) StoreOffline(ctx context.Context, msgs []storage.Message) error {
	if len(msgs) == 0 {
		return s.begin(ctx)
	}
	if err := backend.CheckMessages(msgs); err != nil {
		return err
	}
	// Encode outside the transaction: the writer lock is the bottleneck.
	keys := make([][]byte, len(msgs))
	vals := make([][]byte, len(msgs))
	for i := range msgs {
		keys[i] = offlineKey(msgs[i].To, msgs[i].MID)
		vals[i] = encodeMessage(&msgs[i])
	}
	return s.batch(ctx, func(tx *bbolt.Tx) error {
		off, byMID, byCID := tx.Bucket(bktOffline), tx.Bucket(bktOffMID), tx.Bucket(bktOffCID)
		for i := range msgs {
			m := &msgs[i]
			midKey := pair(m.To, m.MID)
			if byMID.Get(midKey) != nil {
				continue
			}
			if m.CID != 0 {
				cidKey := triple(m.To, m.From, m.CID)
				if byCID.Get(cidKey) != nil {
					continue
				}
				if err := byCID.Put(cidKey, be64(m.MID)); err != nil {
					return err
				}
			}
			ref := make([]byte, 0, 24)
			ref = putTime(ref, m.Time)
			ref = binary.BigEndian.AppendUint64(ref, m.From)
			ref = binary.BigEndian.AppendUint64(ref, m.CID)
			if err := byMID.Put(midKey, ref); err != nil {
				return err
			}
			if err := off.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]storage.Message, error) {
	limit = backend.ClampLimit(limit)
	var out []storage.Message
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		if afterMID == ^uint64(0) {
			return nil
		}
		prefix := be64(user)
		byMID := tx.Bucket(bktOffMID)
		c := tx.Bucket(bktOffline).Cursor()
		for k, v := c.Seek(offlineKey(user, afterMID+1)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			var m storage.Message
			if err := decodeMessage(k, v, byMID.Get(k), &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *store) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	if len(mids) == 0 {
		return s.begin(ctx)
	}
	return s.batch(ctx, func(tx *bbolt.Tx) error {
		off, byMID, byCID := tx.Bucket(bktOffline), tx.Bucket(bktOffMID), tx.Bucket(bktOffCID)
		for _, mid := range mids {
			midKey := pair(user, mid)
			ref := byMID.Get(midKey)
			if ref == nil {
				continue
			}
			if len(ref) != 24 {
				return errCorrupt("offmid")
			}
			from, cid := binary.BigEndian.Uint64(ref[8:]), binary.BigEndian.Uint64(ref[16:])
			// ref points into the page being changed: done with it
			// before the first Delete.
			if err := byMID.Delete(midKey); err != nil {
				return err
			}
			if cid != 0 {
				if err := byCID.Delete(triple(user, from, cid)); err != nil {
					return err
				}
			}
			if err := off.Delete(offlineKey(user, mid)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) CountOffline(ctx context.Context, user uint64) (int, error) {
	return s.countPrefix(ctx, bktOffMID, be64(user))
}

func (s *store) CountGroupMsgs(ctx context.Context, group uint64) (int, error) {
	return s.countPrefix(ctx, bktGMsgs, be64(group))
}

func (s *store) countPrefix(ctx context.Context, bucket, prefix []byte) (int, error) {
	n := 0
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}
