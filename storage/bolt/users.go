package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

func (s *store) CreateUser(ctx context.Context, u storage.User) (uint64, error) {
	if err := backend.CheckUser(&u); err != nil {
		return 0, err
	}
	if u.CreatedAt == 0 {
		u.CreatedAt = backend.NowMilli()
	}
	var id uint64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		names := tx.Bucket(bktUserNames)
		if names.Get([]byte(u.Name)) != nil {
			return fmt.Errorf("%w: user %q", storage.ErrExists, u.Name)
		}
		users := tx.Bucket(bktUsers)
		var err error
		if id, err = users.NextSequence(); err != nil {
			return err
		}
		u.ID = id
		if err := names.Put([]byte(u.Name), be64(id)); err != nil {
			return err
		}
		return users.Put(be64(id), encodeUser(&u))
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func (s *store) UserByName(ctx context.Context, name string) (storage.User, error) {
	var u storage.User
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		id := tx.Bucket(bktUserNames).Get([]byte(name))
		if id == nil {
			return fmt.Errorf("%w: user %q", storage.ErrNotFound, name)
		}
		return getUser(tx, binary.BigEndian.Uint64(id), &u)
	})
	return u, err
}

func (s *store) UserByID(ctx context.Context, id uint64) (storage.User, error) {
	var u storage.User
	err := s.view(ctx, func(tx *bbolt.Tx) error { return getUser(tx, id, &u) })
	return u, err
}

func getUser(tx *bbolt.Tx, id uint64, u *storage.User) error {
	v := tx.Bucket(bktUsers).Get(be64(id))
	if v == nil {
		return fmt.Errorf("%w: user %d", storage.ErrNotFound, id)
	}
	return decodeUser(id, v, u)
}

func (s *store) UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error {
	if err := backend.CheckProfile(signature, profile); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		var u storage.User
		if err := getUser(tx, id, &u); err != nil {
			return err
		}
		u.Signature, u.Profile = signature, profile
		return tx.Bucket(bktUsers).Put(be64(id), encodeUser(&u))
	})
}

// ---- devices

func (s *store) TouchDevice(ctx context.Context, d storage.Device) (bool, error) {
	if err := backend.CheckDevice(&d); err != nil {
		return false, err
	}
	if d.LastSeen == 0 {
		d.LastSeen = backend.NowMilli()
	}
	key := append(be64(d.User), d.KeyHash[:]...)
	var isNew bool
	err := s.batch(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bktDevices)
		isNew = false
		if v := b.Get(key); v != nil {
			var old storage.Device
			if err := decodeDevice(key, v, &old); err != nil {
				return err
			}
			d.FirstSeen = old.FirstSeen
		} else {
			isNew = true
			d.FirstSeen = d.LastSeen
		}
		return b.Put(key, encodeDevice(&d))
	})
	return isNew, err
}

func (s *store) Devices(ctx context.Context, user uint64) ([]storage.Device, error) {
	var out []storage.Device
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		prefix := be64(user)
		c := tx.Bucket(bktDevices).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d storage.Device
			if err := decodeDevice(k, v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// ---- friends

func (s *store) RequestFriend(ctx context.Context, from, to uint64) error {
	if err := backend.CheckFriends(from, to); err != nil {
		return err
	}
	now := backend.NowMilli()
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bktUsers).Get(be64(to)) == nil {
			return fmt.Errorf("%w: user %d", storage.ErrNotFound, to)
		}
		if tx.Bucket(bktFriends).Get(pair(from, to)) != nil {
			return fmt.Errorf("%w: %d and %d are friends", storage.ErrExists, from, to)
		}
		reqs := tx.Bucket(bktFriendReqs)
		if reqs.Get(pair(to, from)) != nil {
			return nil
		}
		return reqs.Put(pair(to, from), be64(uint64(now)))
	})
}

func (s *store) AcceptFriend(ctx context.Context, user, requester uint64) error {
	if err := backend.CheckFriends(user, requester); err != nil {
		return err
	}
	since := be64(uint64(backend.NowMilli()))
	return s.update(ctx, func(tx *bbolt.Tx) error {
		reqs := tx.Bucket(bktFriendReqs)
		if reqs.Get(pair(user, requester)) == nil {
			return fmt.Errorf("%w: friend request from %d to %d", storage.ErrNotFound, requester, user)
		}
		if err := reqs.Delete(pair(user, requester)); err != nil {
			return err
		}
		if err := reqs.Delete(pair(requester, user)); err != nil {
			return err
		}
		friends := tx.Bucket(bktFriends)
		if err := friends.Put(pair(user, requester), since); err != nil {
			return err
		}
		return friends.Put(pair(requester, user), since)
	})
}

func (s *store) RemoveFriend(ctx context.Context, a, b uint64) error {
	if err := backend.CheckFriends(a, b); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bktFriends, bktFriendReqs} {
			bk := tx.Bucket(name)
			if err := bk.Delete(pair(a, b)); err != nil {
				return err
			}
			if err := bk.Delete(pair(b, a)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) Friends(ctx context.Context, user uint64) ([]uint64, error) {
	return s.secondIDs(ctx, bktFriends, user)
}

func (s *store) PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error) {
	return s.secondIDs(ctx, bktFriendReqs, user)
}

func (s *store) UserGroups(ctx context.Context, user uint64) ([]uint64, error) {
	return s.secondIDs(ctx, bktUGroups, user)
}

// secondIDs lists the second halves of the a|b keys of bucket whose first
// half is a, ascending.
func (s *store) secondIDs(ctx context.Context, bucket []byte, a uint64) ([]uint64, error) {
	var out []uint64
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		prefix := be64(a)
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, binary.BigEndian.Uint64(k[8:]))
		}
		return nil
	})
	return out, err
}
