package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

const uploadCols = "id, owner, name, size, sha256, created_at"

type rowScanner interface{ Scan(dest ...any) error }

func scanUpload(r rowScanner) (storage.Upload, error) {
	var u storage.Upload
	var sha []byte
	err := r.Scan(&u.ID, &u.Owner, &u.Name, &u.Size, &sha, &u.Created)
	copy(u.SHA256[:], sha)
	return u, err
}

func scanFile(r rowScanner) (storage.File, error) {
	u, err := scanUpload(r)
	return storage.File(u), err
}

func (s *store) CreateUpload(ctx context.Context, u storage.Upload, quota int64) (uint64, error) {
	if err := backend.CheckUpload(&u); err != nil {
		return 0, err
	}
	if u.Created == 0 {
		u.Created = backend.NowMilli()
	}
	// The usage row exists before the transaction, which then locks just
	// that row with a conditional UPDATE: no gap locks, so concurrent
	// reservations queue instead of deadlocking.
	if _, err := s.db.ExecContext(ctx, "INSERT IGNORE INTO file_usage (owner, used) VALUES (?, 0)", u.Owner); err != nil {
		return 0, s.fail("create upload", err)
	}
	var id uint64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		if u.Size > 0 { // (an UPDATE that changes nothing affects no row)
			res, err := tx.ExecContext(ctx, "UPDATE file_usage SET used = used + ? WHERE owner = ? AND (? <= 0 OR used + ? <= ?)",
				u.Size, u.Owner, quota, u.Size, quota)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				var used int64
				_ = tx.QueryRowContext(ctx, "SELECT used FROM file_usage WHERE owner = ?", u.Owner).Scan(&used)
				return fmt.Errorf("%w: %d of %d bytes used, upload needs %d", storage.ErrQuota, used, quota, u.Size)
			}
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO file_uploads (owner, name, size, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
			u.Owner, u.Name, u.Size, u.SHA256[:], u.Created)
		if err != nil {
			return err
		}
		n, err := res.LastInsertId()
		id = uint64(n)
		return err
	})
	if err != nil {
		return 0, s.fail("create upload", err)
	}
	return id, nil
}

func (s *store) UploadByID(ctx context.Context, id uint64) (storage.Upload, error) {
	u, err := scanUpload(s.db.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM file_uploads WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Upload{}, fmt.Errorf("%w: upload %d", storage.ErrNotFound, id)
	}
	return u, s.fail("upload", err)
}

// lockUpload reads an upload FOR UPDATE and deletes it.
func lockUpload(ctx context.Context, tx *sql.Tx, id uint64) (storage.Upload, error) {
	u, err := scanUpload(tx.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM file_uploads WHERE id = ? FOR UPDATE", id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("%w: upload %d", storage.ErrNotFound, id)
	}
	if err != nil {
		return u, err
	}
	_, err = tx.ExecContext(ctx, "DELETE FROM file_uploads WHERE id = ?", id)
	return u, err
}

func (s *store) DeleteUpload(ctx context.Context, id uint64) error {
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		u, err := lockUpload(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE file_usage SET used = GREATEST(used - ?, 0) WHERE owner = ?", u.Size, u.Owner)
		return err
	})
	return s.fail("delete upload", err)
}

func (s *store) StaleUploads(ctx context.Context, before int64, limit int) ([]storage.Upload, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+uploadCols+" FROM file_uploads WHERE created_at < ? ORDER BY created_at, id LIMIT ?",
		before, backend.ClampLimit(limit))
	if err != nil {
		return nil, s.fail("stale uploads", err)
	}
	defer rows.Close()
	var out []storage.Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, s.fail("stale uploads", err)
		}
		out = append(out, u)
	}
	return out, s.fail("stale uploads", rows.Err())
}

func (s *store) CommitUpload(ctx context.Context, upload uint64, now int64) (storage.File, error) {
	var f storage.File
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		u, err := lockUpload(ctx, tx, upload)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO files (owner, name, size, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
			u.Owner, u.Name, u.Size, u.SHA256[:], now)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		f = storage.File{ID: uint64(id), Owner: u.Owner, Name: u.Name, Size: u.Size, SHA256: u.SHA256, Created: now}
		_, err = tx.ExecContext(ctx, "INSERT INTO blob_refs (sha256, refs) VALUES (?, 1) ON DUPLICATE KEY UPDATE refs = refs + 1",
			u.SHA256[:])
		return err
	})
	return f, s.fail("commit upload", err)
}

func (s *store) FileByID(ctx context.Context, id uint64) (storage.File, error) {
	f, err := scanFile(s.db.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM files WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.File{}, fmt.Errorf("%w: file %d", storage.ErrNotFound, id)
	}
	return f, s.fail("file", err)
}

func (s *store) Files(ctx context.Context, owner uint64) ([]storage.File, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+uploadCols+" FROM files WHERE owner = ? ORDER BY id", owner)
	if err != nil {
		return nil, s.fail("files", err)
	}
	defer rows.Close()
	var out []storage.File
	for rows.Next() {
		f, err := scanFile(rows)
		if err != nil {
			return nil, s.fail("files", err)
		}
		out = append(out, f)
	}
	return out, s.fail("files", rows.Err())
}

func (s *store) DeleteFile(ctx context.Context, owner, id uint64) (storage.File, int64, error) {
	var f storage.File
	var left int64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		var err error
		f, err = scanFile(tx.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM files WHERE id = ? FOR UPDATE", id))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && f.Owner != owner) {
			return fmt.Errorf("%w: file %d of user %d", storage.ErrNotFound, id, owner)
		}
		if err != nil {
			return err
		}
		for _, stmt := range []struct {
			q    string
			args []any
		}{
			{"DELETE FROM files WHERE id = ?", []any{id}},
			{"DELETE FROM file_shares WHERE file_id = ?", []any{id}},
			{"UPDATE file_usage SET used = GREATEST(used - ?, 0) WHERE owner = ?", []any{f.Size, owner}},
			{"UPDATE blob_refs SET refs = refs - 1 WHERE sha256 = ?", []any{f.SHA256[:]}},
		} {
			if _, err := tx.ExecContext(ctx, stmt.q, stmt.args...); err != nil {
				return err
			}
		}
		err = tx.QueryRowContext(ctx, "SELECT refs FROM blob_refs WHERE sha256 = ?", f.SHA256[:]).Scan(&left)
		if errors.Is(err, sql.ErrNoRows) {
			left, err = 0, nil
		}
		if err != nil || left > 0 {
			return err
		}
		left = 0
		_, err = tx.ExecContext(ctx, "DELETE FROM blob_refs WHERE sha256 = ?", f.SHA256[:])
		return err
	})
	return f, left, s.fail("delete file", err)
}

func shareKind(sh *storage.Share) (uint8, uint64) {
	if sh.User != 0 {
		return 0, sh.User
	}
	return 1, sh.Group
}

func (s *store) ShareFile(ctx context.Context, sh storage.Share) error {
	if err := backend.CheckShare(&sh); err != nil {
		return err
	}
	kind, target := shareKind(&sh)
	res, err := s.db.ExecContext(ctx, "INSERT IGNORE INTO file_shares (file_id, kind, target) SELECT id, ?, ? FROM files WHERE id = ?",
		kind, target, sh.File)
	if err != nil {
		return s.fail("share file", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.FileByID(ctx, sh.File); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) UnshareFile(ctx context.Context, sh storage.Share) error {
	if err := backend.CheckShare(&sh); err != nil {
		return err
	}
	kind, target := shareKind(&sh)
	_, err := s.db.ExecContext(ctx, "DELETE FROM file_shares WHERE file_id = ? AND kind = ? AND target = ?", sh.File, kind, target)
	return s.fail("unshare file", err)
}

func (s *store) FileShares(ctx context.Context, file uint64) ([]storage.Share, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT kind, target FROM file_shares WHERE file_id = ? ORDER BY kind, target", file)
	if err != nil {
		return nil, s.fail("file shares", err)
	}
	defer rows.Close()
	var out []storage.Share
	for rows.Next() {
		var kind uint8
		var target uint64
		if err := rows.Scan(&kind, &target); err != nil {
			return nil, s.fail("file shares", err)
		}
		if kind == 0 {
			out = append(out, storage.Share{File: file, User: target})
		} else {
			out = append(out, storage.Share{File: file, Group: target})
		}
	}
	return out, s.fail("file shares", rows.Err())
}

func (s *store) UsedBytes(ctx context.Context, owner uint64) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT used FROM file_usage WHERE owner = ?", owner).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, s.fail("used bytes", err)
}
