package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/myim/myim/client"
)

// cutReader serves data and calls cut once a read reaches cutAt; it
// records the lowest offset read after the cut.
type cutReader struct {
	data      []byte
	cutAt     int64
	cut       func()
	done      bool
	afterFrom int64 // lowest offset read after the cut; -1 before one
}

func (r *cutReader) ReadAt(p []byte, off int64) (int, error) {
	if r.done && (r.afterFrom < 0 || off < r.afterFrom) {
		r.afterFrom = off
	}
	if !r.done && off >= r.cutAt {
		r.done = true
		r.cut()
	}
	return copy(p, r.data[off:]), nil
}

// An upload cut off half way goes on, on a new connection, from what the
// server kept, and the file it makes is the one sent.
func TestUploadResumesAfterCut(t *testing.T) {
	r := startRig(t)
	r.addUser("uma")
	cfg := r.cfg()
	size := int64(12*client.MaxChunk + 1000)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	c1 := r.connect(cfg, "uma")
	id, err := c1.StartUpload(ctx, "blob.bin", size, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	// The first window goes out before any answer is read, so a cut at the
	// tenth chunk comes after the server acknowledged some.
	src := &cutReader{data: data, cutAt: int64(10 * client.MaxChunk), cut: r.cut, afterFrom: -1}
	if _, err := c1.UploadFrom(ctx, id, src, size, 0); err == nil {
		t.Fatal("the upload finished through a cut")
	}
	r.restore()
	src.done, src.afterFrom = true, -1
	c2 := r.connect(cfg, "uma")
	fi, err := c2.UploadFrom(ctx, id, src, size, 0)
	if err != nil {
		t.Fatalf("resumed upload: %v", err)
	}
	if src.afterFrom <= 0 {
		t.Fatalf("the resumed upload read from offset %d: it started over", src.afterFrom)
	}
	if fi.Size != size || fi.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("file %+v, want %d bytes with the sent sum", fi, size)
	}
	var got bytes.Buffer
	if n, err := c2.Download(ctx, fi.ID, &got, 0, -1, 0); err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("downloaded file differs from the upload")
	}
	t.Logf("resumed at %d of %d bytes", src.afterFrom, size)
}
