package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ErrBlobOffset: a partial write did not start where the partial content
// ends.
var ErrBlobOffset = errors.New("storage: write offset is not the end of the partial content")

// BlobStore keeps the bytes of the private file server: finished contents,
// addressed by their SHA-256 (the same content is kept once, whoever
// uploads it), and the partial content of each upload in progress. Which
// files reference a content is the Store's business (CommitUpload,
// DeleteFile); callers delete a blob only when the Store says no file
// references it any more.
//
// Implementations are safe for concurrent use, but calls about the same
// upload must not overlap. Every method may block on disk or network I/O and
// must never be called on an event loop. LocalBlobs is the local disk one;
// an S3-compatible store can implement the same interface.
type BlobStore interface {
	// WritePartial writes p at off in upload's partial content, creating
	// it when it does not exist. off must equal the partial's current size
	// (ErrBlobOffset otherwise). A failed write leaves the partial as it
	// was before the call, never half a chunk longer.
	WritePartial(upload uint64, off int64, p []byte) error
	// PartialSize returns the partial's size and the time of its last
	// write; ErrNotFound when the upload has no partial content.
	PartialSize(upload uint64) (size int64, modified time.Time, err error)
	// HashPartial returns the SHA-256 of the partial content.
	HashPartial(upload uint64) ([32]byte, error)
	// Publish makes upload's partial content, durably, the blob sum. If
	// that blob exists already it is left as it is and created is false.
	// The partial stays until DeletePartial.
	Publish(upload uint64, sum [32]byte) (created bool, err error)
	// DeletePartial removes the partial content; a missing one is fine.
	DeletePartial(upload uint64) error
	// Open returns the blob for reading, and its size. ErrNotFound when
	// it does not exist. The caller closes it.
	Open(sum [32]byte) (BlobReader, int64, error)
	// Delete removes the blob; a missing one is fine.
	Delete(sum [32]byte) error
}

// BlobReader reads one blob. Not safe for concurrent use, except ReadAt.
type BlobReader interface {
	io.ReaderAt
	io.ReadSeeker
	io.Closer
}

// LocalBlobs is a BlobStore on local disk:
//
//	<dir>/blobs/<first 2 hex digits>/<sha256 hex>   finished contents
//	<dir>/partial/<upload id>                      uploads in progress
//
// Publish hard-links the partial into blobs/ after an fsync, so a published
// blob is complete or absent, never half written. Files are mode 0600.
type LocalBlobs struct {
	dir string
}

// NewLocalBlobs opens (creating if needed) a local blob store in dir.
func NewLocalBlobs(dir string) (*LocalBlobs, error) {
	for _, sub := range []string{"blobs", "partial"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("storage: blob dir: %w", err)
		}
	}
	return &LocalBlobs{dir: dir}, nil
}

func (b *LocalBlobs) partialPath(upload uint64) string {
	return filepath.Join(b.dir, "partial", strconv.FormatUint(upload, 10))
}

func (b *LocalBlobs) blobPath(sum [32]byte) string {
	h := hex.EncodeToString(sum[:])
	return filepath.Join(b.dir, "blobs", h[:2], h)
}

func notFound(err error, what string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return err
}

// WritePartial implements BlobStore.
func (b *LocalBlobs) WritePartial(upload uint64, off int64, p []byte) error {
	f, err := os.OpenFile(b.partialPath(upload), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != off {
		return fmt.Errorf("%w: partial has %d bytes, write at %d", ErrBlobOffset, st.Size(), off)
	}
	if len(p) == 0 {
		return nil
	}
	if _, err := f.WriteAt(p, off); err != nil {
		_ = f.Truncate(off)
		return err
	}
	return nil
}

// PartialSize implements BlobStore.
func (b *LocalBlobs) PartialSize(upload uint64) (int64, time.Time, error) {
	st, err := os.Stat(b.partialPath(upload))
	if err != nil {
		return 0, time.Time{}, notFound(err, "partial upload")
	}
	return st.Size(), st.ModTime(), nil
}

// HashPartial implements BlobStore.
func (b *LocalBlobs) HashPartial(upload uint64) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(b.partialPath(upload))
	if err != nil {
		return sum, notFound(err, "partial upload")
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}

// Publish implements BlobStore.
func (b *LocalBlobs) Publish(upload uint64, sum [32]byte) (bool, error) {
	src := b.partialPath(upload)
	f, err := os.Open(src)
	if err != nil {
		return false, notFound(err, "partial upload")
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return false, err
	}
	dst := b.blobPath(sum)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	if err := os.Link(src, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// DeletePartial implements BlobStore.
func (b *LocalBlobs) DeletePartial(upload uint64) error {
	if err := os.Remove(b.partialPath(upload)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Open implements BlobStore.
func (b *LocalBlobs) Open(sum [32]byte) (BlobReader, int64, error) {
	f, err := os.Open(b.blobPath(sum))
	if err != nil {
		return nil, 0, notFound(err, "blob")
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Delete implements BlobStore.
func (b *LocalBlobs) Delete(sum [32]byte) error {
	if err := os.Remove(b.blobPath(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

var _ BlobStore = (*LocalBlobs)(nil)
