package center

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// The private file server (FILE_SERVER frames, and the HTTP routes in
// httpapi_files.go). Every request runs on one of a fixed set of workers,
// never on an event loop: the one its file or upload id maps to, so that
// one upload's writes, and one file's reads, run in order. Chunk data stays
// in the frame's pooled buffer until its worker has written it; the bytes
// queued for the workers are bounded by FilesConfig.QueueBytes.

// FileJSON describes a file in answers.
type FileJSON struct {
	ID      uint64 `json:"id"`
	Owner   uint64 `json:"owner"`
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Created int64  `json:"created"`
}

func fileJSON(f storage.File) FileJSON {
	return FileJSON{ID: f.ID, Owner: f.Owner, Name: f.Name, Size: f.Size,
		SHA256: hex.EncodeToString(f.SHA256[:]), Created: f.Created}
}

// fsErr is a refusal: an ERROR code and its text.
type fsErr struct {
	code uint16
	text string
}

func (e *fsErr) Error() string { return e.text }

func refuse(code uint16, format string, args ...any) *fsErr {
	return &fsErr{code, fmt.Sprintf(format, args...)}
}

// storeRefusal classifies a Store or BlobStore error through the one
// mapping of refusal.go; what names the record a NOT_FOUND is about.
func storeRefusal(what string, err error) *fsErr {
	code, _, text := refusalOf(err)
	switch code {
	case frame.ErrCodeNotFound:
		text = "no such " + what
	case frame.ErrCodeInternal:
		text = "file server failure"
	case frame.ErrCodeForbidden:
		text = fmt.Sprintf("over quota: %v", err)
	}
	return refuse(code, "%s", text)
}

// upState is what a worker keeps about an upload it serves: the record,
// the partial's size, and the SHA-256 of its first hashed bytes (all of
// them unless the worker picked the upload up part way, after a restart).
type upState struct {
	u      storage.Upload
	size   int64
	h      hash.Hash
	hashed int64
}

type fsJob struct {
	user uint64
	s    im.SessionRef
	req  uint32
	op   byte
	file uint64
	off  uint64
	buf  *bytebufferpool.ByteBuffer // holds data; nil for jobs without
	data []byte
	fn   func(w *fsWorker) // for HTTP and sweeper jobs: run instead
}

type fsWorker struct {
	jobs chan fsJob
	ups  map[uint64]*upState // owned by the worker's goroutine
}

// fileService is the file server. Safe for concurrent use.
type fileService struct {
	c      *LocalCenter
	cfg    *FilesConfig
	blobs  storage.BlobStore
	w      []*fsWorker
	queued atomic.Int64
	// locks serialize, per content hash, publishing a blob with counting
	// its reference, and dropping the last reference with deleting it.
	locks [64]sync.Mutex
}

// fsJobsPerWorker bounds each worker's queue in requests; QueueBytes bounds
// the data they hold.
const fsJobsPerWorker = 1024

func newFileService(c *LocalCenter) (*fileService, error) {
	cfg := &c.cfg.Files
	blobs := cfg.Blobs
	if blobs == nil {
		if cfg.Dir == "" {
			return nil, nil
		}
		lb, err := storage.NewLocalBlobs(cfg.Dir)
		if err != nil {
			return nil, err
		}
		blobs = lb
	}
	fs := &fileService{c: c, cfg: cfg, blobs: blobs}
	for i := 0; i < cfg.Workers; i++ {
		w := &fsWorker{jobs: make(chan fsJob, fsJobsPerWorker), ups: make(map[uint64]*upState)}
		fs.w = append(fs.w, w)
		c.wg.Add(1)
		go fs.run(w)
	}
	c.wg.Add(1)
	go fs.sweep()
	return fs, nil
}

func (fs *fileService) run(w *fsWorker) {
	defer fs.c.wg.Done()
	for {
		select {
		case j := <-w.jobs:
			fs.do(w, j)
		case <-fs.c.stop:
			for {
				select {
				case j := <-w.jobs:
					fs.do(w, j)
				default:
					return
				}
			}
		}
	}
}

// worker returns the worker that serves id.
func (fs *fileService) worker(id uint64) *fsWorker { return fs.w[id%uint64(len(fs.w))] }

// submit queues j for the worker of key; false when the queue is full.
func (fs *fileService) submit(key uint64, j fsJob) bool {
	n := int64(len(j.data))
	if fs.queued.Add(n) > fs.cfg.QueueBytes && n > 0 {
		fs.queued.Add(-n)
		return false
	}
	select {
	case fs.worker(key).jobs <- j:
		return true
	default:
		fs.queued.Add(-n)
		return false
	}
}

// call runs fn on the worker of key and waits for it (HTTP handlers).
func (fs *fileService) call(ctx context.Context, key uint64, fn func(w *fsWorker)) error {
	done := make(chan struct{})
	if !fs.submit(key, fsJob{fn: func(w *fsWorker) { defer close(done); fn(w) }}) {
		return refuse(frame.ErrCodeRetry, "file server busy; retry")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		<-done // fn may use the caller's buffers
		return ctx.Err()
	}
}

// fileServer queues a FILE_SERVER frame, taken on an event loop, for its
// worker; ownership of buf passes to the file service.
func (c *LocalCenter) fileServer(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	b := frame.FileServer(frame.Frame(buf.B).Body())
	req := b.Req()
	fs := c.files
	if fs == nil {
		bytebufferpool.Put(buf)
		c.errorTo(s, frame.ErrCodeNotFound, uint64(req), "file server disabled")
		return
	}
	j := fsJob{user: user, s: s, req: req, op: b.Op(), file: b.FileID(), off: b.Offset(), buf: buf, data: b.Data()}
	key := j.file
	if key == 0 {
		key = user
	}
	if !fs.submit(key, j) {
		bytebufferpool.Put(buf)
		c.errorTo(s, frame.ErrCodeRetry, uint64(req), "file server busy; retry")
	}
}

func (fs *fileService) do(w *fsWorker, j fsJob) {
	fs.queued.Add(-int64(len(j.data)))
	if j.fn != nil {
		j.fn(w)
		return
	}
	defer bytebufferpool.Put(j.buf)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err *fsErr
	switch j.op {
	case frame.FileServerUpload:
		var id uint64
		var off int64
		if j.file == 0 {
			id, err = fs.startUpload(ctx, w, j.user, j.data)
		} else {
			id = j.file
			off, err = fs.resumeUpload(ctx, w, j.user, id)
		}
		if err == nil {
			fs.answer(j, frame.FileServerUpload, id, uint64(off), nil)
		}
	case frame.FileServerWrite:
		var size int64
		var f *storage.File
		size, f, err = fs.write(ctx, w, j.user, j.file, int64(j.off), j.data)
		if err == nil {
			if f != nil {
				js, _ := sonic.Marshal(fileJSON(*f))
				fs.answer(j, frame.FileServerDone, f.ID, uint64(f.Size), js)
			} else {
				fs.answer(j, frame.FileServerWrite, j.file, uint64(size), nil)
			}
		}
	case frame.FileServerRead:
		err = fs.readFrame(ctx, j)
	case frame.FileServerStat:
		var f storage.File
		if f, err = fs.readable(ctx, j.user, j.file); err == nil {
			js, _ := sonic.Marshal(fileJSON(f))
			fs.answer(j, frame.FileServerStat, f.ID, 0, js)
		}
	case frame.FileServerDelete:
		if err = fs.remove(ctx, j.user, j.file); err == nil {
			fs.answer(j, frame.FileServerDelete, j.file, 0, nil)
		}
	case frame.FileServerList:
		var js []byte
		if js, err = fs.list(ctx, j.user); err == nil {
			fs.answer(j, frame.FileServerList, 0, 0, js)
		}
	case frame.FileServerShare, frame.FileServerUnshare:
		if err = fs.share(ctx, j.user, j.file, j.data, j.op == frame.FileServerUnshare); err == nil {
			fs.answer(j, j.op, j.file, 0, nil)
		}
	case frame.FileServerAbort:
		if err = fs.abort(ctx, w, j.user, j.file); err == nil {
			fs.answer(j, frame.FileServerAbort, j.file, 0, nil)
		}
	default:
		err = refuse(frame.ErrCodeBadRequest, "unknown file server operation %d", j.op)
	}
	if err != nil {
		fs.c.errorTo(j.s, err.code, uint64(j.req), err.text)
	}
}

// answer sends a FILE_SERVER answer to j's session.
func (fs *fileService) answer(j fsJob, op byte, file, off uint64, data []byte) {
	out := bytebufferpool.Get()
	out.B, _ = frame.AppendFileServer(out.B, frame.QoS0, j.req, op, file, off, data)
	fs.deliver(j, out)
}

// deliver sends an answer; when the session's queue cannot take it, the
// client gets a short retryable refusal instead, so that it does not wait
// for an answer that will not come.
func (fs *fileService) deliver(j fsJob, out *bytebufferpool.ByteBuffer) {
	ep := fs.c.endpoint(j.s.Endpoint)
	if ep == nil {
		bytebufferpool.Put(out)
		return
	}
	if err := ep.Deliver(j.s, out); err != nil {
		bytebufferpool.Put(out)
		if errors.Is(err, im.ErrSlowReader) {
			fs.c.errorTo(j.s, frame.ErrCodeRetry, uint64(j.req), "answer dropped: client reads too slowly; retry")
		}
	}
}

// UploadJSON is the data of a new upload.
type UploadJSON struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (fs *fileService) startUpload(ctx context.Context, w *fsWorker, user uint64, js []byte) (uint64, *fsErr) {
	var in UploadJSON
	if err := sonic.Unmarshal(js, &in); err != nil {
		return 0, refuse(frame.ErrCodeBadRequest, "upload data must be JSON {name,size,sha256}")
	}
	return fs.createUpload(ctx, w, user, in)
}

func (fs *fileService) createUpload(ctx context.Context, w *fsWorker, user uint64, in UploadJSON) (uint64, *fsErr) {
	sum, err := hex.DecodeString(in.SHA256)
	switch {
	case err != nil || len(sum) != 32:
		return 0, refuse(frame.ErrCodeBadRequest, "sha256 must be 64 hex digits")
	case badFileName(in.Name) != "":
		return 0, refuse(frame.ErrCodeBadRequest, "%s", badFileName(in.Name))
	case in.Size < 0:
		return 0, refuse(frame.ErrCodeBadRequest, "negative file size")
	case in.Size > fs.cfg.MaxFileSize:
		return 0, refuse(frame.ErrCodeBadRequest, "file too large: %d bytes, at most %d", in.Size, fs.cfg.MaxFileSize)
	}
	id, err := fs.c.cfg.Store.CreateUpload(ctx, storage.Upload{Owner: user, Name: in.Name, Size: in.Size,
		SHA256: [32]byte(sum)}, max(fs.cfg.Quota, 0))
	if err != nil {
		return 0, storeRefusal("upload", err)
	}
	return id, nil
}

// upload returns the worker's state of user's upload id, loading it.
func (fs *fileService) upload(ctx context.Context, w *fsWorker, user, id uint64) (*upState, *fsErr) {
	if st := w.ups[id]; st != nil {
		if st.u.Owner != user {
			return nil, refuse(frame.ErrCodeNotFound, "no such upload")
		}
		return st, nil
	}
	u, err := fs.c.cfg.Store.UploadByID(ctx, id)
	if err != nil {
		return nil, storeRefusal("upload", err)
	}
	if u.Owner != user {
		return nil, refuse(frame.ErrCodeNotFound, "no such upload")
	}
	size, _, err := fs.blobs.PartialSize(id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, storeRefusal("upload", err)
	}
	st := &upState{u: u, size: size, h: sha256.New(), hashed: -1}
	if size == 0 {
		st.hashed = 0
	}
	w.ups[id] = st
	return st, nil
}

func (fs *fileService) resumeUpload(ctx context.Context, w *fsWorker, user, id uint64) (int64, *fsErr) {
	st, err := fs.upload(ctx, w, user, id)
	if err != nil {
		return 0, err
	}
	return st.size, nil
}

// write appends data at off to an upload; when that completes it, the
// content is checked and committed, and the new file returned.
func (fs *fileService) write(ctx context.Context, w *fsWorker, user, id uint64, off int64, data []byte) (int64, *storage.File, *fsErr) {
	st, ferr := fs.upload(ctx, w, user, id)
	if ferr != nil {
		return 0, nil, ferr
	}
	switch {
	case off != st.size:
		return 0, nil, refuse(frame.ErrCodeBadRequest, "wrong offset %d: upload %d has %d bytes", off, id, st.size)
	case int64(len(data)) > st.u.Size-off:
		return 0, nil, refuse(frame.ErrCodeBadRequest, "write past the announced size %d", st.u.Size)
	case len(data) > MaxFileChunk:
		return 0, nil, refuse(frame.ErrCodeBadRequest, "write over %d bytes", MaxFileChunk)
	}
	if len(data) > 0 || st.size == 0 {
		if err := fs.blobs.WritePartial(id, off, data); err != nil {
			delete(w.ups, id) // reload the partial's size next time
			fs.c.cfg.Logger.Warn("file server write failed", "upload", id, "err", err)
			return 0, nil, refuse(frame.ErrCodeInternal, "write failed")
		}
	}
	if st.hashed == off {
		st.h.Write(data)
		st.hashed += int64(len(data))
	}
	st.size += int64(len(data))
	if st.size < st.u.Size {
		return st.size, nil, nil
	}
	f, err := fs.commit(ctx, w, st)
	if err != nil {
		return 0, nil, err
	}
	return st.size, &f, nil
}

// commit checks a complete upload's content and turns it into a file. A
// content that does not match is discarded with the upload.
func (fs *fileService) commit(ctx context.Context, w *fsWorker, st *upState) (storage.File, *fsErr) {
	id := st.u.ID
	var sum [32]byte
	if st.hashed == st.size {
		st.h.Sum(sum[:0])
	} else {
		var err error
		if sum, err = fs.blobs.HashPartial(id); err != nil {
			return storage.File{}, storeRefusal("upload", err)
		}
	}
	if sum != st.u.SHA256 {
		fs.discard(ctx, w, id)
		return storage.File{}, refuse(frame.ErrCodeBadRequest, "hash mismatch: upload %d discarded (content %x, announced %x)",
			id, sum, st.u.SHA256)
	}
	mu := &fs.locks[sum[0]%byte(len(fs.locks))]
	mu.Lock()
	created, err := fs.blobs.Publish(id, sum)
	if err != nil {
		mu.Unlock()
		fs.c.cfg.Logger.Warn("file server publish failed", "upload", id, "err", err)
		return storage.File{}, refuse(frame.ErrCodeInternal, "store file failed")
	}
	f, err := fs.c.cfg.Store.CommitUpload(ctx, id, time.Now().UnixMilli())
	if err != nil {
		if created {
			_ = fs.blobs.Delete(sum)
		}
		mu.Unlock()
		// The partial stays: a WRITE of no bytes at the end retries.
		return storage.File{}, storeRefusal("upload", err)
	}
	mu.Unlock()
	delete(w.ups, id)
	if err := fs.blobs.DeletePartial(id); err != nil {
		fs.c.cfg.Logger.Warn("file server: partial left behind", "upload", id, "err", err)
	}
	return f, nil
}

// discard drops an upload, its partial content and its reservation.
func (fs *fileService) discard(ctx context.Context, w *fsWorker, id uint64) {
	delete(w.ups, id)
	if err := fs.blobs.DeletePartial(id); err != nil {
		fs.c.cfg.Logger.Warn("file server: partial left behind", "upload", id, "err", err)
	}
	if err := fs.c.cfg.Store.DeleteUpload(ctx, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		fs.c.cfg.Logger.Warn("file server: upload record left behind", "upload", id, "err", err)
	}
}

func (fs *fileService) abort(ctx context.Context, w *fsWorker, user, id uint64) *fsErr {
	if _, err := fs.upload(ctx, w, user, id); err != nil {
		return err
	}
	fs.discard(ctx, w, id)
	return nil
}

// readable returns file id if user may read it: the owner, a user it is
// shared with, or a member of a group it is shared with. Others learn only
// that there is no such file.
func (fs *fileService) readable(ctx context.Context, user, id uint64) (storage.File, *fsErr) {
	st := fs.c.cfg.Store
	f, err := st.FileByID(ctx, id)
	if err != nil {
		return f, storeRefusal("file", err)
	}
	if f.Owner == user {
		return f, nil
	}
	shares, err := st.FileShares(ctx, id)
	if err != nil {
		return f, storeRefusal("file", err)
	}
	var groups []uint64
	for _, s := range shares {
		if s.User == user {
			return f, nil
		}
		if s.Group != 0 {
			if groups == nil {
				if groups, err = st.UserGroups(ctx, user); err != nil {
					return f, storeRefusal("file", err)
				}
				groups = append(groups, 0) // non-nil: fetched
			}
			if slices.Contains(groups, s.Group) {
				return f, nil
			}
		}
	}
	return storage.File{}, refuse(frame.ErrCodeNotFound, "no such file")
}

// readFrame answers a READ with the bytes read straight into the answer.
func (fs *fileService) readFrame(ctx context.Context, j fsJob) *fsErr {
	f, ferr := fs.readable(ctx, j.user, j.file)
	if ferr != nil {
		return ferr
	}
	want := uint64(MaxFileChunk)
	if len(j.data) >= 4 {
		want = min(uint64(binary.BigEndian.Uint32(j.data)), MaxFileChunk)
	}
	if j.off > uint64(f.Size) {
		return refuse(frame.ErrCodeBadRequest, "offset %d past the end of file %d (%d bytes)", j.off, f.ID, f.Size)
	}
	n := min(want, uint64(f.Size)-j.off)
	out := bytebufferpool.Get()
	out.B, _ = frame.AppendHeader(out.B, frame.CmdFileServer, frame.QoS0, frame.FileServerLen+int(n))
	out.B = binary.BigEndian.AppendUint32(out.B, j.req)
	out.B = append(out.B, frame.FileServerRead)
	out.B = binary.BigEndian.AppendUint64(out.B, j.file)
	out.B = binary.BigEndian.AppendUint64(out.B, j.off)
	if n > 0 {
		r, _, err := fs.blobs.Open(f.SHA256)
		if err != nil {
			bytebufferpool.Put(out)
			return storeRefusal("file", err)
		}
		start := len(out.B)
		out.B = slices.Grow(out.B, int(n))[:start+int(n)]
		_, err = r.ReadAt(out.B[start:], int64(j.off))
		r.Close()
		if err != nil {
			bytebufferpool.Put(out)
			fs.c.cfg.Logger.Warn("file server read failed", "file", f.ID, "err", err)
			return refuse(frame.ErrCodeInternal, "read failed")
		}
	}
	fs.deliver(j, out)
	return nil
}

func (fs *fileService) remove(ctx context.Context, user, id uint64) *fsErr {
	f, ferr := fs.readable(ctx, user, id)
	if ferr != nil {
		return ferr
	}
	if f.Owner != user {
		return refuse(frame.ErrCodeForbidden, "only the owner may delete file %d", id)
	}
	mu := &fs.locks[f.SHA256[0]%byte(len(fs.locks))]
	mu.Lock()
	defer mu.Unlock()
	_, left, err := fs.c.cfg.Store.DeleteFile(ctx, user, id)
	if err != nil {
		return storeRefusal("file", err)
	}
	if left == 0 {
		if err := fs.blobs.Delete(f.SHA256); err != nil {
			fs.c.cfg.Logger.Warn("file server: blob left behind", "file", id, "err", err)
		}
	}
	return nil
}

func (fs *fileService) list(ctx context.Context, user uint64) ([]byte, *fsErr) {
	files, err := fs.c.cfg.Store.Files(ctx, user)
	if err != nil {
		return nil, storeRefusal("file", err)
	}
	used, err := fs.c.cfg.Store.UsedBytes(ctx, user)
	if err != nil {
		return nil, storeRefusal("file", err)
	}
	out := struct {
		Files []FileJSON `json:"files"`
		Used  int64      `json:"used"`
		Quota int64      `json:"quota"`
	}{Files: make([]FileJSON, 0, len(files)), Used: used, Quota: fs.cfg.Quota}
	for _, f := range files {
		out.Files = append(out.Files, fileJSON(f))
	}
	js, _ := sonic.Marshal(out)
	return js, nil
}

// ShareJSON names who a file is shared with: one of the two.
type ShareJSON struct {
	User  uint64 `json:"user,omitempty"`
	Group uint64 `json:"group,omitempty"`
}

func (fs *fileService) share(ctx context.Context, user, id uint64, js []byte, unshare bool) *fsErr {
	var in ShareJSON
	if err := sonic.Unmarshal(js, &in); err != nil || (in.User == 0) == (in.Group == 0) {
		return refuse(frame.ErrCodeBadRequest, `share data must be JSON {"user":id} or {"group":id}`)
	}
	st := fs.c.cfg.Store
	f, err := st.FileByID(ctx, id)
	if err != nil || f.Owner != user {
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			if _, rerr := fs.readable(ctx, user, id); rerr == nil {
				return refuse(frame.ErrCodeForbidden, "only the owner may share file %d", id)
			}
			return refuse(frame.ErrCodeNotFound, "no such file")
		}
		return storeRefusal("file", err)
	}
	sh := storage.Share{File: id, User: in.User, Group: in.Group}
	if unshare {
		if err := st.UnshareFile(ctx, sh); err != nil {
			return storeRefusal("file", err)
		}
		return nil
	}
	if in.User != 0 && !fs.c.isFriend(ctx, user, in.User) {
		return refuse(frame.ErrCodeForbidden, "user %d is not a friend", in.User)
	}
	if in.Group != 0 {
		groups, err := st.UserGroups(ctx, user)
		if err != nil {
			return storeRefusal("group", err)
		}
		if !slices.Contains(groups, in.Group) {
			return refuse(frame.ErrCodeForbidden, "not a member of group %d", in.Group)
		}
	}
	if err := st.ShareFile(ctx, sh); err != nil {
		return storeRefusal("file", err)
	}
	return nil
}

// sweep discards uploads with no write for UploadTimeout.
func (fs *fileService) sweep() {
	defer fs.c.wg.Done()
	every := min(fs.cfg.UploadTimeout/4, time.Minute)
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-fs.c.stop:
			return
		case now := <-t.C:
			before := now.Add(-fs.cfg.UploadTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ups, err := fs.c.cfg.Store.StaleUploads(ctx, before.UnixMilli(), 100)
			cancel()
			if err != nil {
				continue
			}
			for _, u := range ups {
				// On the upload's worker, so that no write races the removal.
				fs.submit(u.ID, fsJob{fn: func(w *fsWorker) {
					if _, mod, err := fs.blobs.PartialSize(u.ID); err == nil && mod.After(before) {
						return // still being written
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					fs.discard(ctx, w, u.ID)
					fs.c.cfg.Logger.Info("file server: abandoned upload discarded", "upload", u.ID, "owner", u.Owner)
				}})
			}
		}
	}
}
