package center

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/engine/internal/httpjson"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// The file server over HTTP, with the same bearer token as the rest of the
// API and the same rules as FILE_SERVER frames (docs/files.md):
//
//	PUT    /v1/files?name=N&sha256=H   body: the file (Content-Length set)
//	PUT    /v1/uploads/{id}            body: the rest, from Upload-Offset
//	GET    /v1/uploads/{id}            {"upload", "offset"}
//	GET    /v1/files                   own files, usage and quota
//	GET    /v1/files/{id}              content; Range and If-Range supported
//	DELETE /v1/files/{id}
//	POST   /v1/files/{id}/share        {"user": id} or {"group": id}
//	POST   /v1/files/{id}/unshare
//
// A PUT whose body ends early leaves the upload open: the error answer
// names it and its offset, and PUT /v1/uploads/{id} goes on from there.

// RegisterFiles adds the file server's routes through handle, each behind
// authed (the API's bearer-token check, which passes the token's user on);
// a no-op when the center has no file server.
func (c *LocalCenter) RegisterFiles(handle func(pattern string, h http.Handler),
	authed func(func(w http.ResponseWriter, r *http.Request, user uint64)) http.Handler) {
	fs := c.files
	if fs == nil {
		return
	}
	handle("PUT /v1/files", authed(fs.putFile))
	handle("PUT /v1/uploads/{id}", authed(fs.putUpload))
	handle("GET /v1/uploads/{id}", authed(fs.getUpload))
	handle("GET /v1/files", authed(fs.listFiles))
	handle("GET /v1/files/{id}", authed(fs.getFile))
	handle("DELETE /v1/files/{id}", authed(fs.deleteFile))
	handle("POST /v1/files/{id}/share", authed(fs.shareFile))
	handle("POST /v1/files/{id}/unshare", authed(fs.shareFile))
}

var httpStatus = map[uint16]int{
	frame.ErrCodeNotFound:   http.StatusNotFound,
	frame.ErrCodeForbidden:  http.StatusForbidden,
	frame.ErrCodeBadRequest: http.StatusBadRequest,
	frame.ErrCodeRetry:      http.StatusServiceUnavailable,
	frame.ErrCodeConflict:   http.StatusConflict,
}

func writeFSErr(w http.ResponseWriter, err error, extra map[string]any) {
	code, msg := http.StatusInternalServerError, "file server failure"
	var fe *fsErr
	switch {
	case errors.As(err, &fe):
		msg = fe.text
		if c, ok := httpStatus[fe.code]; ok {
			code = c
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code, msg = http.StatusServiceUnavailable, "timed out; retry"
	}
	out := map[string]any{"error": msg}
	for k, v := range extra {
		out[k] = v
	}
	httpjson.Write(w, code, out)
}

func (fs *fileService) putFile(w http.ResponseWriter, r *http.Request, user uint64) {
	if r.ContentLength < 0 {
		httpjson.Error(w, http.StatusLengthRequired, "Content-Length required")
		return
	}
	in := UploadJSON{Name: r.URL.Query().Get("name"), Size: r.ContentLength, SHA256: r.URL.Query().Get("sha256")}
	var id uint64
	var ferr *fsErr
	if err := fs.call(r.Context(), user, func(wk *fsWorker) {
		id, ferr = fs.createUpload(r.Context(), wk, user, in)
	}); err != nil {
		writeFSErr(w, err, nil)
		return
	}
	if ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	fs.writeUpload(w, r, user, id, 0)
}

func (fs *fileService) putUpload(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	off, ok := fs.uploadOffset(w, r, user, id)
	if !ok {
		return
	}
	if v := r.Header.Get("Upload-Offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n != off {
			httpjson.Write(w, http.StatusConflict, map[string]any{"error": "wrong Upload-Offset", "upload": id, "offset": off})
			return
		}
	}
	fs.writeUpload(w, r, user, id, off)
}

func (fs *fileService) getUpload(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	if off, ok := fs.uploadOffset(w, r, user, id); ok {
		httpjson.Write(w, http.StatusOK, map[string]any{"upload": id, "offset": off})
	}
}

func (fs *fileService) uploadOffset(w http.ResponseWriter, r *http.Request, user, id uint64) (int64, bool) {
	var off int64
	var ferr *fsErr
	if err := fs.call(r.Context(), id, func(wk *fsWorker) { off, ferr = fs.resumeUpload(r.Context(), wk, user, id) }); err != nil {
		writeFSErr(w, err, nil)
		return 0, false
	}
	if ferr != nil {
		writeFSErr(w, ferr, nil)
		return 0, false
	}
	return off, true
}

// writeUpload streams the request body into upload id from off.
func (fs *fileService) writeUpload(w http.ResponseWriter, r *http.Request, user, id uint64, off int64) {
	buf := make([]byte, MaxFileChunk)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(r.Body, buf)
		if n == 0 && !first {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				httpjson.Write(w, http.StatusOK, map[string]any{"upload": id, "offset": off})
			} else {
				httpjson.Write(w, http.StatusBadRequest, map[string]any{"error": "body ended early", "upload": id, "offset": off})
			}
			return
		}
		var size int64
		var f *storage.File
		var ferr *fsErr
		err := fs.call(r.Context(), id, func(wk *fsWorker) {
			size, f, ferr = fs.write(r.Context(), wk, user, id, off, buf[:n])
		})
		if err == nil && ferr != nil {
			err = ferr
		}
		if err != nil {
			writeFSErr(w, err, map[string]any{"upload": id, "offset": off})
			return
		}
		off = size
		if f != nil {
			httpjson.Write(w, http.StatusCreated, fileJSON(*f))
			return
		}
		if rerr != nil && n < len(buf) {
			httpjson.Write(w, http.StatusOK, map[string]any{"upload": id, "offset": off})
			return
		}
	}
}

func (fs *fileService) listFiles(w http.ResponseWriter, r *http.Request, user uint64) {
	js, ferr := fs.list(r.Context(), user)
	if ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(js)
}

func (fs *fileService) getFile(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	f, ferr := fs.readable(r.Context(), user, id)
	if ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	blob, _, err := fs.blobs.Open(f.SHA256)
	if err != nil {
		writeFSErr(w, storeRefusal("file", err), nil)
		return
	}
	defer blob.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+fileJSON(f).SHA256+`"`)
	http.ServeContent(w, r, f.Name, time.UnixMilli(f.Created), blob)
}

func (fs *fileService) deleteFile(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	if ferr := fs.remove(r.Context(), user, id); ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (fs *fileService) shareFile(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "body must be a JSON object")
		return
	}
	unshare := strings.HasSuffix(r.URL.Path, "/unshare")
	if ferr := fs.share(r.Context(), user, id, body, unshare); ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	var in ShareJSON
	_ = sonic.Unmarshal(body, &in)
	httpjson.Write(w, http.StatusOK, map[string]any{"file": id, "user": in.User, "group": in.Group, "shared": !unshare})
}
