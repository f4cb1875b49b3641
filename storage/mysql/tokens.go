package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/myim/myim/storage"
)

func (s *store) RevokeToken(ctx context.Context, sid string, until int64) error {
	if sid == "" || len(sid) > storage.MaxSIDLen {
		return fmt.Errorf("%w: token session id of %d bytes", storage.ErrInvalid, len(sid))
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO revoked_tokens (sid, until_ms) VALUES (?, ?)
		ON DUPLICATE KEY UPDATE until_ms = GREATEST(until_ms, VALUES(until_ms))`, sid, until)
	return s.fail("revoke token", err)
}

func (s *store) RevokedTokens(ctx context.Context, now int64) (map[string]int64, error) {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM revoked_tokens WHERE until_ms <= ?", now); err != nil {
		return nil, s.fail("revoked tokens", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT sid, until_ms FROM revoked_tokens WHERE until_ms > ?", now)
	if err != nil {
		return nil, s.fail("revoked tokens", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var sid string
		var until int64
		if err := rows.Scan(&sid, &until); err != nil {
			return nil, s.fail("revoked tokens", err)
		}
		out[sid] = until
	}
	return out, s.fail("revoked tokens", rows.Err())
}

func (s *store) CreateInvite(ctx context.Context, inv storage.Invite, limit int) error {
	return s.fail("create invite", s.withTx(ctx, nil, func(tx *sql.Tx) error {
		if limit > 0 {
			// The row lock taken by the upsert serializes one issuer's calls.
			if _, err := tx.ExecContext(ctx, `INSERT INTO invite_counts (user_id, issued) VALUES (?, 0)
				ON DUPLICATE KEY UPDATE issued = issued`, inv.Issuer); err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, "UPDATE invite_counts SET issued = issued + 1 WHERE user_id = ? AND issued < ?",
				inv.Issuer, limit)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("%w: user %d has issued %d invites", storage.ErrQuota, inv.Issuer, limit)
			}
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO invites (hash, issuer, expires_at) VALUES (?, ?, ?)",
			inv.Hash[:], inv.Issuer, inv.ExpiresAt)
		if isMySQLError(err, erDupEntry) {
			return fmt.Errorf("%w: invite", storage.ErrExists)
		}
		return err
	}))
}

func (s *store) UseInvite(ctx context.Context, hash [32]byte, now int64) (storage.Invite, error) {
	var inv storage.Invite
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		inv = storage.Invite{Hash: hash}
		err := tx.QueryRowContext(ctx, "SELECT issuer, expires_at FROM invites WHERE hash = ? FOR UPDATE",
			hash[:]).Scan(&inv.Issuer, &inv.ExpiresAt)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: invite", storage.ErrNotFound)
		} else if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM invites WHERE hash = ?", hash[:])
		return err
	})
	if err == nil && inv.ExpiresAt <= now {
		err = fmt.Errorf("%w: invite expired", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Invite{}, s.fail("use invite", err)
	}
	return inv, nil
}
