package node

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// Finding a user by name. The privacy rule (docs/protocol.md, "Finding a
// user"): the name must be given exactly (byte for byte: no prefix,
// pattern or case folding, so a lookup confirms a name the caller already
// knows and lists nothing); only an authenticated user asks; the answer is
// the public card (id, name, signature), never the profile; and each user
// has a budget of name lookups, and a larger one of SIGNATURE lookups by id
// of strangers (neither oneself nor a friend), so that trying names or
// walking the sequential ids is slow. A miss costs the budget as a hit
// does.

const (
	// nameLookups is a user's budget of lookups by name per lookupWindow,
	// per center: adding a few contacts takes a handful, trying a
	// dictionary of names would take weeks.
	nameLookups = 30
	// strangerLookups is the budget of SIGNATURE lookups by id of
	// strangers: enough to show the names of a large group's members,
	// while walking a million ids takes one account more than a day.
	strangerLookups = 600
	lookupWindow    = time.Minute
	// maxLookupUsers bounds the counting table between windows.
	maxLookupUsers = 100_000
)

// errLookupLimit refuses a lookup over the budget.
var errLookupLimit = errors.New("too many lookups; retry in a minute")

// lookupBudget counts stranger lookups per user in fixed windows. Safe for
// concurrent use.
type lookupBudget struct {
	limit int
	mu    sync.Mutex
	start time.Time
	n     map[uint64]int
	now   func() time.Time
}

func newLookupBudget(limit int) *lookupBudget {
	return &lookupBudget{limit: limit, n: make(map[uint64]int), now: time.Now}
}

// take spends one lookup of user; false when the window's budget is gone.
func (b *lookupBudget) take(user uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Sub(b.start) >= lookupWindow || len(b.n) >= maxLookupUsers {
		clear(b.n)
		b.start = now
	}
	if b.n[user] >= b.limit {
		return false
	}
	b.n[user]++
	return true
}

// UserCard is what a lookup by name answers over HTTP: the public part of
// an account.
type UserCard struct {
	User      uint64 `json:"user"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
}

// findUser looks up the exact name for user, spending its budget. It
// blocks on the store.
func findUser(ctx context.Context, st storage.Users, b *lookupBudget, user uint64, name string) (storage.User, error) {
	if name == "" || len(name) > storage.MaxNameLen {
		return storage.User{}, storage.ErrNotFound
	}
	if !b.take(user) {
		return storage.User{}, errLookupLimit
	}
	return st.UserByName(ctx, name)
}

// findUserHTTP serves GET /v1/users?name=N.
func (a *API) findUserHTTP(w http.ResponseWriter, r *http.Request, user uint64) {
	b := a.lookups
	if a.Center != nil {
		b = a.Center.nameLookups // one budget for frames and HTTP
	}
	u, err := findUser(r.Context(), a.Store, b, user, r.URL.Query().Get("name"))
	switch {
	case errors.Is(err, errLookupLimit):
		w.Header().Set("Retry-After", "60")
		writeErr(w, http.StatusTooManyRequests, "too many lookups; retry later")
	case errors.Is(err, storage.ErrNotFound):
		writeErr(w, http.StatusNotFound, "no such user")
	case err != nil:
		a.storeErr(w, err)
	default:
		writeJSON(w, http.StatusOK, UserCard{User: u.ID, Name: u.Name, Signature: u.Signature})
	}
}

// lookupName resolves a SIGNATURE request's {"name": N} to the user's id,
// or answers the request with an ERROR and returns false.
func (c *LocalCenter) lookupName(ctx context.Context, user uint64, s im.SessionRef, req uint32, target uint64, js []byte) (uint64, bool) {
	var in struct {
		Name string `json:"name"`
	}
	if target != 0 || sonic.Unmarshal(js, &in) != nil {
		c.errorTo(s, frame.ErrCodeBadRequest, uint64(req), `a lookup by name has Target 0 and JSON {"name": ...}`)
		return 0, false
	}
	u, err := findUser(ctx, c.cfg.Store, c.nameLookups, user, in.Name)
	switch {
	case errors.Is(err, errLookupLimit):
		c.errorTo(s, frame.ErrCodeRetry, uint64(req), errLookupLimit.Error())
	case errors.Is(err, storage.ErrNotFound):
		c.errorTo(s, frame.ErrCodeNotFound, uint64(req), "no such user")
	case err != nil:
		c.storeError(s, req, err)
	default:
		return u.ID, true
	}
	return 0, false
}
