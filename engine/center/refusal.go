package center

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/internal/httpjson"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// One mapping from the errors of the store and of the engine to what a
// client is told: an ERROR code over frames and an HTTP status over the
// API. A request that can never succeed as sent is refused for good
// (BAD_REQUEST 400, NOT_FOUND 404, CONFLICT 409, FORBIDDEN 403); only a
// store or queue that is really unavailable for now answers RETRY (503),
// so that a client obeying RETRY never loops on a request that cannot
// work. docs/protocol.md ("Errors from the store") has the same table.

// Engine errors classified by refusalOf.
var (
	// errBusy: a bounded queue of the center is full.
	errBusy = errors.New("center: server busy")
	// errNotFriend: the request needs a friendship the users lack.
	errNotFriend = errors.New("center: not a friend")
)

// refusalRow is one row of the mapping.
type refusalRow struct {
	err    error  // matched with errors.Is
	code   uint16 // ERROR code
	status int    // HTTP status
	text   string // the text both answers carry; "" means the error's own
	retry  bool   // documented as retryable
}

// refusals is the mapping, first match wins. Anything else is INTERNAL
// (500): a failure the client cannot fix by resending or by changing the
// request.
var refusals = []refusalRow{
	{storage.ErrInvalid, frame.ErrCodeBadRequest, http.StatusBadRequest, "", false},
	{storage.ErrNotFound, frame.ErrCodeNotFound, http.StatusNotFound, "not found", false},
	{storage.ErrExists, frame.ErrCodeConflict, http.StatusConflict, "already exists", false},
	{storage.ErrQuota, frame.ErrCodeForbidden, http.StatusForbidden, "over quota", false},
	{errNotFriend, frame.ErrCodeForbidden, http.StatusForbidden, "not a friend", false},
	{storage.ErrUnavailable, frame.ErrCodeRetry, http.StatusServiceUnavailable, "store unavailable; retry", true},
	{context.DeadlineExceeded, frame.ErrCodeRetry, http.StatusServiceUnavailable, "timed out; retry", true},
	{errBusy, frame.ErrCodeRetry, http.StatusServiceUnavailable, "server busy; retry", true},
}

// refusalOf returns the ERROR code, HTTP status and text for err: those of
// a *GroupError (a refusal by the group rules, groups.go, which names its
// own), else of the first row of refusals that err matches. Safe for
// concurrent use.
func refusalOf(err error) (code uint16, status int, text string) {
	var ge *GroupError
	if errors.As(err, &ge) {
		return ge.Code, ge.Status, ge.Msg
	}
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			text = r.text
			if text == "" {
				// A storage error names the limit it broke; drop the
				// package prefix, which means nothing to a client.
				text = strings.TrimPrefix(err.Error(), "storage: ")
			}
			return r.code, r.status, text
		}
	}
	return frame.ErrCodeInternal, http.StatusInternalServerError, "internal error"
}

// refuseErr answers a frame request that failed with err (see refusalOf).
func (c *LocalCenter) refuseErr(s im.SessionRef, ref uint64, err error) {
	code, _, text := refusalOf(err)
	if code == frame.ErrCodeInternal {
		c.cfg.Logger.Warn("request failed", "err", err)
	}
	c.errorTo(s, code, ref, text)
}

// WriteRefusal answers an HTTP request that failed with err.
func WriteRefusal(w http.ResponseWriter, err error) {
	_, status, text := refusalOf(err)
	httpjson.Error(w, status, text)
}
