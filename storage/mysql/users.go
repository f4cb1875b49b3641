package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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
	res, err := s.db.ExecContext(ctx,
		"INSERT INTO users (name, pass_hash, signature, profile, created_at) VALUES (?, ?, ?, ?, ?)",
		u.Name, u.PassHash, u.Signature, nilIfEmpty(u.Profile), u.CreatedAt)
	if isMySQLError(err, erDupEntry) {
		return 0, fmt.Errorf("%w: user %q", storage.ErrExists, u.Name)
	}
	if err != nil {
		return 0, s.fail("create user", err)
	}
	id, err := res.LastInsertId()
	return uint64(id), s.fail("create user", err)
}

const userColumns = "id, name, pass_hash, signature, profile, created_at"

func (s *store) UserByName(ctx context.Context, name string) (storage.User, error) {
	return s.user(ctx, "SELECT "+userColumns+" FROM users WHERE name = ?", name)
}

func (s *store) UserByID(ctx context.Context, id uint64) (storage.User, error) {
	return s.user(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id)
}

func (s *store) user(ctx context.Context, query string, arg any) (storage.User, error) {
	var u storage.User
	err := s.db.QueryRowContext(ctx, query, arg).Scan(&u.ID, &u.Name, &u.PassHash, &u.Signature, &u.Profile, &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.User{}, fmt.Errorf("%w: user %v", storage.ErrNotFound, arg)
	}
	if err != nil {
		return storage.User{}, s.fail("get user", err)
	}
	u.Profile = nilIfEmpty(u.Profile)
	return u, nil
}

func (s *store) UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error {
	if err := backend.CheckProfile(signature, profile); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, "UPDATE users SET signature = ?, profile = ? WHERE id = ?",
		signature, nilIfEmpty(profile), id)
	if err != nil {
		return s.fail("update profile", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return s.fail("update profile", err)
	}
	// 0 rows: no such user, or the values did not change.
	return s.exists(ctx, "SELECT 1 FROM users WHERE id = ?", id, "user")
}

// exists returns nil if query finds a row, else ErrNotFound naming what.
func (s *store) exists(ctx context.Context, query string, id uint64, what string) error {
	var one int
	err := s.db.QueryRowContext(ctx, query, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s %d", storage.ErrNotFound, what, id)
	}
	return s.fail("lookup "+what, err)
}

// ---- devices

func (s *store) TouchDevice(ctx context.Context, d storage.Device) (bool, error) {
	if err := backend.CheckDevice(&d); err != nil {
		return false, err
	}
	if d.LastSeen == 0 {
		d.LastSeen = backend.NowMilli()
	}
	// Affected rows: 1 inserted, 2 updated, 0 unchanged (ClientFoundRows
	// is off).
	res, err := s.db.ExecContext(ctx, `INSERT INTO devices (user_id, key_hash, fingerprint, first_seen, last_seen, addr)
		VALUES (?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE fingerprint = VALUES(fingerprint), last_seen = VALUES(last_seen), addr = VALUES(addr)`,
		d.User, d.KeyHash[:], d.Fingerprint, d.LastSeen, d.LastSeen, d.Addr)
	if err != nil {
		return false, s.fail("touch device", err)
	}
	n, err := res.RowsAffected()
	return n == 1, s.fail("touch device", err)
}

func (s *store) Devices(ctx context.Context, user uint64) ([]storage.Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key_hash, fingerprint, first_seen, last_seen, addr
		FROM devices WHERE user_id = ? ORDER BY key_hash`, user)
	if err != nil {
		return nil, s.fail("devices", err)
	}
	defer rows.Close()
	var out []storage.Device
	var key sql.RawBytes
	for rows.Next() {
		d := storage.Device{User: user}
		if err := rows.Scan(&key, &d.Fingerprint, &d.FirstSeen, &d.LastSeen, &d.Addr); err != nil {
			return nil, s.fail("devices", err)
		}
		copy(d.KeyHash[:], key)
		out = append(out, d)
	}
	return out, s.fail("devices", rows.Err())
}

// ---- friends

func (s *store) RequestFriend(ctx context.Context, from, to uint64) error {
	if err := backend.CheckFriends(from, to); err != nil {
		return err
	}
	var userExists, friends bool
	err := s.db.QueryRowContext(ctx, `SELECT
		EXISTS(SELECT 1 FROM users WHERE id = ?),
		EXISTS(SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?)`, to, from, to).Scan(&userExists, &friends)
	if err != nil {
		return s.fail("request friend", err)
	}
	if !userExists {
		return fmt.Errorf("%w: user %d", storage.ErrNotFound, to)
	}
	if friends {
		return fmt.Errorf("%w: %d and %d are friends", storage.ErrExists, from, to)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO friend_requests (to_user, from_user, created_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE to_user = to_user`, to, from, backend.NowMilli())
	return s.fail("request friend", err)
}

func (s *store) AcceptFriend(ctx context.Context, user, requester uint64) error {
	if err := backend.CheckFriends(user, requester); err != nil {
		return err
	}
	since := backend.NowMilli()
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM friend_requests WHERE to_user = ? AND from_user = ?", user, requester)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: friend request from %d to %d", storage.ErrNotFound, requester, user)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM friend_requests WHERE to_user = ? AND from_user = ?", requester, user); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO friends (user_id, friend_id, since) VALUES (?, ?, ?), (?, ?, ?)
			ON DUPLICATE KEY UPDATE since = since`, user, requester, since, requester, user, since)
		return err
	})
	return s.fail("accept friend", err)
}

func (s *store) RemoveFriend(ctx context.Context, a, b uint64) error {
	if err := backend.CheckFriends(a, b); err != nil {
		return err
	}
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM friends
			WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)`, a, b, b, a); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM friend_requests
			WHERE (to_user = ? AND from_user = ?) OR (to_user = ? AND from_user = ?)`, a, b, b, a)
		return err
	})
	return s.fail("remove friend", err)
}

func (s *store) Friends(ctx context.Context, user uint64) ([]uint64, error) {
	return s.ids(ctx, "friends", "SELECT friend_id FROM friends WHERE user_id = ? ORDER BY friend_id", user)
}

func (s *store) PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error) {
	return s.ids(ctx, "friend requests", "SELECT from_user FROM friend_requests WHERE to_user = ? ORDER BY from_user", user)
}

func (s *store) UserGroups(ctx context.Context, user uint64) ([]uint64, error) {
	return s.ids(ctx, "user groups", "SELECT group_id FROM group_members WHERE user_id = ? ORDER BY group_id", user)
}

func (s *store) ids(ctx context.Context, op, query string, arg uint64) ([]uint64, error) {
	rows, err := s.db.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, id)
	}
	return out, s.fail(op, rows.Err())
}
