package center

import (
	"context"
	"errors"
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
	// NameLookups is a user's budget of lookups by name per lookupWindow,
	// per center: adding a few contacts takes a handful, trying a
	// dictionary of names would take weeks.
	NameLookups = 30
	// strangerLookups is the budget of SIGNATURE lookups by id of
	// strangers: enough to show the names of a large group's members,
	// while walking a million ids takes one account more than a day.
	strangerLookups = 600
	lookupWindow    = time.Minute
	// maxLookupUsers bounds the counting table between windows.
	maxLookupUsers = 100_000
)

// ErrLookupLimit refuses a lookup over the budget.
var ErrLookupLimit = errors.New("too many lookups; retry in a minute")

// LookupBudget counts stranger lookups per user in fixed windows. Safe for
// concurrent use.
type LookupBudget struct {
	limit int
	mu    sync.Mutex
	start time.Time
	n     map[uint64]int
	now   func() time.Time
}

func NewLookupBudget(limit int) *LookupBudget {
	return &LookupBudget{limit: limit, n: make(map[uint64]int), now: time.Now}
}

// take spends one lookup of user; false when the window's budget is gone.
func (b *LookupBudget) take(user uint64) bool {
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

// FindUser looks up the exact name for user, spending its budget. It
// blocks on the store.
func FindUser(ctx context.Context, st storage.Users, b *LookupBudget, user uint64, name string) (storage.User, error) {
	if name == "" || len(name) > storage.MaxNameLen {
		return storage.User{}, storage.ErrNotFound
	}
	if !b.take(user) {
		return storage.User{}, ErrLookupLimit
	}
	return st.UserByName(ctx, name)
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
	u, err := FindUser(ctx, c.cfg.Store, c.nameLookups, user, in.Name)
	switch {
	case errors.Is(err, ErrLookupLimit):
		c.errorTo(s, frame.ErrCodeRetry, uint64(req), ErrLookupLimit.Error())
	case errors.Is(err, storage.ErrNotFound):
		c.errorTo(s, frame.ErrCodeNotFound, uint64(req), "no such user")
	case err != nil:
		c.storeError(s, req, err)
	default:
		return u.ID, true
	}
	return 0, false
}

// NameLookupBudget returns the budget of lookups by name that the center's
// users draw on, for the HTTP API to draw on the same one.
func (c *LocalCenter) NameLookupBudget() *LookupBudget { return c.nameLookups }
