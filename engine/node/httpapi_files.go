package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bytedance/sonic"

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

// RegisterFiles adds the file server's routes; a no-op when the center has
// no file server.
func (a *API) RegisterFiles(n *Node) {
	if a.Center == nil || a.Center.files == nil {
		return
	}
	n.HandleHTTP("PUT /v1/files", a.authed(a.putFile))
	n.HandleHTTP("PUT /v1/uploads/{id}", a.authed(a.putUpload))
	n.HandleHTTP("GET /v1/uploads/{id}", a.authed(a.getUpload))
	n.HandleHTTP("GET /v1/files", a.authed(a.listFiles))
	n.HandleHTTP("GET /v1/files/{id}", a.authed(a.getFile))
	n.HandleHTTP("DELETE /v1/files/{id}", a.authed(a.deleteFile))
	n.HandleHTTP("POST /v1/files/{id}/share", a.authed(a.shareFile))
	n.HandleHTTP("POST /v1/files/{id}/unshare", a.authed(a.shareFile))
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
	writeJSON(w, code, out)
}

func (a *API) putFile(w http.ResponseWriter, r *http.Request, user uint64) {
	fs := a.Center.files
	if r.ContentLength < 0 {
		writeErr(w, http.StatusLengthRequired, "Content-Length required")
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
	a.writeUpload(w, r, user, id, 0)
}

func (a *API) putUpload(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	off, ok := a.uploadOffset(w, r, user, id)
	if !ok {
		return
	}
	if v := r.Header.Get("Upload-Offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n != off {
			writeJSON(w, http.StatusConflict, map[string]any{"error": "wrong Upload-Offset", "upload": id, "offset": off})
			return
		}
	}
	a.writeUpload(w, r, user, id, off)
}

func (a *API) getUpload(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if off, ok := a.uploadOffset(w, r, user, id); ok {
		writeJSON(w, http.StatusOK, map[string]any{"upload": id, "offset": off})
	}
}

func (a *API) uploadOffset(w http.ResponseWriter, r *http.Request, user, id uint64) (int64, bool) {
	fs := a.Center.files
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
func (a *API) writeUpload(w http.ResponseWriter, r *http.Request, user, id uint64, off int64) {
	fs := a.Center.files
	buf := make([]byte, MaxFileChunk)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(r.Body, buf)
		if n == 0 && !first {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				writeJSON(w, http.StatusOK, map[string]any{"upload": id, "offset": off})
			} else {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body ended early", "upload": id, "offset": off})
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
			writeJSON(w, http.StatusCreated, fileJSON(*f))
			return
		}
		if rerr != nil && n < len(buf) {
			writeJSON(w, http.StatusOK, map[string]any{"upload": id, "offset": off})
			return
		}
	}
}

func (a *API) listFiles(w http.ResponseWriter, r *http.Request, user uint64) {
	js, ferr := a.Center.files.list(r.Context(), user)
	if ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(js)
}

func (a *API) getFile(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	fs := a.Center.files
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

func (a *API) deleteFile(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if ferr := a.Center.files.remove(r.Context(), user, id); ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) shareFile(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "body must be a JSON object")
		return
	}
	unshare := strings.HasSuffix(r.URL.Path, "/unshare")
	if ferr := a.Center.files.share(r.Context(), user, id, body, unshare); ferr != nil {
		writeFSErr(w, ferr, nil)
		return
	}
	var in ShareJSON
	_ = sonic.Unmarshal(body, &in)
	writeJSON(w, http.StatusOK, map[string]any{"file": id, "user": in.User, "group": in.Group, "shared": !unshare})
}
