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

// encodeFileRec encodes an Upload or a File record: owner, size, created,
// sha256, name.
func encodeFileRec(owner uint64, size, created int64, sha [32]byte, name string) []byte {
	b := make([]byte, 0, 56+len(name)+2)
	b = binary.BigEndian.AppendUint64(b, owner)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	b = binary.BigEndian.AppendUint64(b, uint64(created))
	b = append(b, sha[:]...)
	return appendStr(b, name)
}

func decodeFileRec(bucket string, v []byte) (owner uint64, size, created int64, sha [32]byte, name string, err error) {
	r := reader{b: v}
	owner = r.u64()
	size = int64(r.u64())
	created = int64(r.u64())
	if len(r.b) >= 32 {
		copy(sha[:], r.b)
		r.b = r.b[32:]
	} else {
		r.bad = true
	}
	name = r.str()
	return owner, size, created, sha, name, r.err(bucket)
}

func getUpload(tx *bbolt.Tx, id uint64) (storage.Upload, error) {
	v := tx.Bucket(bktUploads).Get(be64(id))
	if v == nil {
		return storage.Upload{}, fmt.Errorf("%w: upload %d", storage.ErrNotFound, id)
	}
	u := storage.Upload{ID: id}
	var err error
	u.Owner, u.Size, u.Created, u.SHA256, u.Name, err = decodeFileRec("uploads", v)
	return u, err
}

func getFile(tx *bbolt.Tx, id uint64) (storage.File, error) {
	v := tx.Bucket(bktFiles).Get(be64(id))
	if v == nil {
		return storage.File{}, fmt.Errorf("%w: file %d", storage.ErrNotFound, id)
	}
	f := storage.File{ID: id}
	var err error
	f.Owner, f.Size, f.Created, f.SHA256, f.Name, err = decodeFileRec("files", v)
	return f, err
}

func getCounter(b *bbolt.Bucket, k []byte) int64 {
	if v := b.Get(k); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// addCounter adds d to the counter at k, deleting it at zero, and returns
// the new value.
func addCounter(b *bbolt.Bucket, k []byte, d int64) (int64, error) {
	n := max(getCounter(b, k)+d, 0)
	if n == 0 {
		return 0, b.Delete(k)
	}
	return n, b.Put(k, be64(uint64(n)))
}

func upStaleKey(created int64, id uint64) []byte {
	return binary.BigEndian.AppendUint64(putTime(make([]byte, 0, 16), created), id)
}

func (s *store) CreateUpload(ctx context.Context, u storage.Upload, quota int64) (uint64, error) {
	if err := backend.CheckUpload(&u); err != nil {
		return 0, err
	}
	if u.Created == 0 {
		u.Created = backend.NowMilli()
	}
	var id uint64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		usage := tx.Bucket(bktFUsage)
		if used := getCounter(usage, be64(u.Owner)); quota > 0 && used+u.Size > quota {
			return fmt.Errorf("%w: %d of %d bytes used, upload needs %d", storage.ErrQuota, used, quota, u.Size)
		}
		ups := tx.Bucket(bktUploads)
		var err error
		if id, err = ups.NextSequence(); err != nil {
			return err
		}
		if err := ups.Put(be64(id), encodeFileRec(u.Owner, u.Size, u.Created, u.SHA256, u.Name)); err != nil {
			return err
		}
		if err := tx.Bucket(bktUpStale).Put(upStaleKey(u.Created, id), nil); err != nil {
			return err
		}
		_, err = addCounter(usage, be64(u.Owner), u.Size)
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func (s *store) UploadByID(ctx context.Context, id uint64) (storage.Upload, error) {
	var u storage.Upload
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		u, err = getUpload(tx, id)
		return err
	})
	return u, err
}

// dropUpload deletes an upload's records; release says whether its quota
// reservation goes too (not when it becomes a file).
func dropUpload(tx *bbolt.Tx, u storage.Upload, release bool) error {
	if err := tx.Bucket(bktUploads).Delete(be64(u.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bktUpStale).Delete(upStaleKey(u.Created, u.ID)); err != nil {
		return err
	}
	if !release {
		return nil
	}
	_, err := addCounter(tx.Bucket(bktFUsage), be64(u.Owner), -u.Size)
	return err
}

func (s *store) DeleteUpload(ctx context.Context, id uint64) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		u, err := getUpload(tx, id)
		if err != nil {
			return err
		}
		return dropUpload(tx, u, true)
	})
}

func (s *store) StaleUploads(ctx context.Context, before int64, limit int) ([]storage.Upload, error) {
	limit = backend.ClampLimit(limit)
	var out []storage.Upload
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		c := tx.Bucket(bktUpStale).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if getTime(k) >= before {
				break
			}
			u, err := getUpload(tx, binary.BigEndian.Uint64(k[8:]))
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

func (s *store) CommitUpload(ctx context.Context, upload uint64, now int64) (storage.File, error) {
	var f storage.File
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		u, err := getUpload(tx, upload)
		if err != nil {
			return err
		}
		if err := dropUpload(tx, u, false); err != nil {
			return err
		}
		files := tx.Bucket(bktFiles)
		id, err := files.NextSequence()
		if err != nil {
			return err
		}
		f = storage.File{ID: id, Owner: u.Owner, Name: u.Name, Size: u.Size, SHA256: u.SHA256, Created: now}
		if err := files.Put(be64(id), encodeFileRec(f.Owner, f.Size, f.Created, f.SHA256, f.Name)); err != nil {
			return err
		}
		if err := tx.Bucket(bktOwnFiles).Put(pair(f.Owner, id), nil); err != nil {
			return err
		}
		_, err = addCounter(tx.Bucket(bktBlobRefs), f.SHA256[:], 1)
		return err
	})
	return f, err
}

func (s *store) FileByID(ctx context.Context, id uint64) (storage.File, error) {
	var f storage.File
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		f, err = getFile(tx, id)
		return err
	})
	return f, err
}

func (s *store) Files(ctx context.Context, owner uint64) ([]storage.File, error) {
	var out []storage.File
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		prefix := be64(owner)
		c := tx.Bucket(bktOwnFiles).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			f, err := getFile(tx, binary.BigEndian.Uint64(k[8:]))
			if err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	return out, err
}

func (s *store) DeleteFile(ctx context.Context, owner, id uint64) (storage.File, int64, error) {
	var f storage.File
	var left int64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		var err error
		if f, err = getFile(tx, id); err != nil {
			return err
		}
		if f.Owner != owner {
			return fmt.Errorf("%w: file %d of user %d", storage.ErrNotFound, id, owner)
		}
		if err := tx.Bucket(bktFiles).Delete(be64(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bktOwnFiles).Delete(pair(owner, id)); err != nil {
			return err
		}
		shares := tx.Bucket(bktFShares)
		prefix := be64(id)
		var keys [][]byte
		c := shares.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := shares.Delete(k); err != nil {
				return err
			}
		}
		if _, err := addCounter(tx.Bucket(bktFUsage), be64(owner), -f.Size); err != nil {
			return err
		}
		left, err = addCounter(tx.Bucket(bktBlobRefs), f.SHA256[:], -1)
		return err
	})
	return f, left, err
}

func shareKey(sh *storage.Share) []byte {
	k := make([]byte, 0, 17)
	k = binary.BigEndian.AppendUint64(k, sh.File)
	if sh.User != 0 {
		return binary.BigEndian.AppendUint64(append(k, 0), sh.User)
	}
	return binary.BigEndian.AppendUint64(append(k, 1), sh.Group)
}

func (s *store) ShareFile(ctx context.Context, sh storage.Share) error {
	if err := backend.CheckShare(&sh); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if _, err := getFile(tx, sh.File); err != nil {
			return err
		}
		return tx.Bucket(bktFShares).Put(shareKey(&sh), nil)
	})
}

func (s *store) UnshareFile(ctx context.Context, sh storage.Share) error {
	if err := backend.CheckShare(&sh); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bktFShares).Delete(shareKey(&sh))
	})
}

func (s *store) FileShares(ctx context.Context, file uint64) ([]storage.Share, error) {
	var out []storage.Share
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		prefix := be64(file)
		c := tx.Bucket(bktFShares).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != 17 {
				return errCorrupt("fshares")
			}
			target := binary.BigEndian.Uint64(k[9:])
			if k[8] == 0 {
				out = append(out, storage.Share{File: file, User: target})
			} else {
				out = append(out, storage.Share{File: file, Group: target})
			}
		}
		return nil
	})
	return out, err
}

func (s *store) UsedBytes(ctx context.Context, owner uint64) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		n = getCounter(tx.Bucket(bktFUsage), be64(owner))
		return nil
	})
	return n, err
}
