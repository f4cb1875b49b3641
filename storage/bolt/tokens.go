package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/myim/myim/storage"
)

func (s *store) RevokeToken(ctx context.Context, sid string, until int64) error {
	if sid == "" || len(sid) > storage.MaxSIDLen {
		return fmt.Errorf("%w: token session id of %d bytes", storage.ErrInvalid, len(sid))
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bktRevoked)
		if v := b.Get([]byte(sid)); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= until {
			return nil
		}
		return b.Put([]byte(sid), be64(uint64(until)))
	})
}

func (s *store) CreateInvite(ctx context.Context, inv storage.Invite, limit int) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bktInvites)
		if b.Get(inv.Hash[:]) != nil {
			return fmt.Errorf("%w: invite", storage.ErrExists)
		}
		if limit > 0 {
			counts := tx.Bucket(bktInviteN)
			var n uint64
			if v := counts.Get(be64(inv.Issuer)); len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
			if n >= uint64(limit) {
				return fmt.Errorf("%w: user %d has issued %d invites", storage.ErrQuota, inv.Issuer, n)
			}
			if err := counts.Put(be64(inv.Issuer), be64(n+1)); err != nil {
				return err
			}
		}
		return b.Put(inv.Hash[:], append(be64(inv.Issuer), be64(uint64(inv.ExpiresAt))...))
	})
}

func (s *store) UseInvite(ctx context.Context, hash [32]byte, now int64) (storage.Invite, error) {
	inv := storage.Invite{Hash: hash}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bktInvites)
		v := b.Get(hash[:])
		if v == nil {
			return fmt.Errorf("%w: invite", storage.ErrNotFound)
		}
		if len(v) != 16 {
			return errCorrupt("invites")
		}
		inv.Issuer = binary.BigEndian.Uint64(v)
		inv.ExpiresAt = int64(binary.BigEndian.Uint64(v[8:]))
		return b.Delete(hash[:])
	})
	if err == nil && inv.ExpiresAt <= now {
		err = fmt.Errorf("%w: invite expired", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Invite{}, err
	}
	return inv, nil
}

func (s *store) RevokedTokens(ctx context.Context, now int64) (map[string]int64, error) {
	out := map[string]int64{}
	var stale [][]byte
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bktRevoked).ForEach(func(k, v []byte) error {
			until := int64(binary.BigEndian.Uint64(v))
			if until > now {
				out[string(k)] = until
			} else {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil || len(stale) == 0 {
		return out, err
	}
	return out, s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bktRevoked)
		for _, k := range stale {
			if v := b.Get(k); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
