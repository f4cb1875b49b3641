package clusterca

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/myim/myim/storage"
)

// RevocationSyncInterval is how often a node reads the cluster's revoked
// tokens: a token revoked on one node is refused, and its sessions closed,
// on every other within about this.
const RevocationSyncInterval = 2 * time.Second

// RevocationBackend holds a cluster's revoked tokens where every node reads
// them, and where they outlive a restart: Redis (route/redis) when the
// cluster has one, the store otherwise (StoreRevocations).
type RevocationBackend interface {
	// RevokeToken refuses tokens with session id sid until until.
	RevokeToken(ctx context.Context, sid string, until time.Time) error
	// RevokedTokens returns the revocations in force, sid -> until.
	RevokedTokens(ctx context.Context) (map[string]time.Time, error)
}

// StoreRevocations keeps revocations in a store.
func StoreRevocations(s storage.Revocations) RevocationBackend { return storeRevocations{s} }

type storeRevocations struct{ s storage.Revocations }

func (r storeRevocations) RevokeToken(ctx context.Context, sid string, until time.Time) error {
	return r.s.RevokeToken(ctx, sid, until.UnixMilli())
}

func (r storeRevocations) RevokedTokens(ctx context.Context) (map[string]time.Time, error) {
	m, err := r.s.RevokedTokens(ctx, time.Now().UnixMilli())
	out := make(map[string]time.Time, len(m))
	for sid, until := range m {
		out[sid] = time.UnixMilli(until)
	}
	return out, err
}

// RevocationList is a node's copy of the revoked tokens: checked in memory
// (no lookup on an event loop or per HTTP request), written through to the
// backend, and read back from it every RevocationSyncInterval (Run), when
// the sessions of tokens revoked elsewhere are closed (Subscribe). Without
// a backend it is this node's alone. Safe for concurrent use.
type RevocationList struct {
	backend RevocationBackend
	log     *slog.Logger
	mu      sync.Mutex
	m       map[string]time.Time
	subs    []func(sid string)
}

// NewRevocationList returns a list over backend (nil: local only).
func NewRevocationList(backend RevocationBackend, logger *slog.Logger) *RevocationList {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &RevocationList{backend: backend, log: logger, m: make(map[string]time.Time)}
}

// Revoke refuses tokens with session id sid until until, here at once and,
// once the backend has it, on every node.
func (r *RevocationList) Revoke(ctx context.Context, sid string, until time.Time) error {
	r.Add(sid, until)
	if r.backend == nil {
		return nil
	}
	return r.backend.RevokeToken(ctx, sid, until)
}

// Add refuses tokens with session id sid until until here only, without
// the backend (Revoke does both), and reports whether sid is new.
func (r *RevocationList) Add(sid string, until time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.m[sid]
	if !ok || until.After(old) {
		r.m[sid] = until
	}
	return !ok
}

// Has reports whether tokens with session id sid are refused.
func (r *RevocationList) Has(sid string) bool {
	r.mu.Lock()
	t, ok := r.m[sid]
	r.mu.Unlock()
	return ok && time.Now().Before(t)
}

// Subscribe has fn called, on the syncing goroutine, with each session id
// that a sync finds newly revoked elsewhere.
func (r *RevocationList) Subscribe(fn func(sid string)) {
	r.mu.Lock()
	r.subs = append(r.subs, fn)
	r.mu.Unlock()
}

// Sync reads the backend's revocations, drops the expired ones here, and
// tells the subscribers about the new ones.
func (r *RevocationList) Sync(ctx context.Context) error {
	if r.backend == nil {
		return nil
	}
	all, err := r.backend.RevokedTokens(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	var fresh []string
	r.mu.Lock()
	for sid, t := range r.m {
		if !now.Before(t) {
			delete(r.m, sid)
		}
	}
	for sid, until := range all {
		if old, ok := r.m[sid]; !ok {
			r.m[sid] = until
			fresh = append(fresh, sid)
		} else if until.After(old) {
			r.m[sid] = until
		}
	}
	subs := r.subs
	r.mu.Unlock()
	for _, sid := range fresh {
		for _, fn := range subs {
			fn(sid)
		}
	}
	return nil
}

// Run syncs every interval until ctx ends; failures are logged and the
// last list read stays in force.
func (r *RevocationList) Run(ctx context.Context, interval time.Duration) {
	if r.backend == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, interval+5*time.Second)
		if err := r.Sync(sctx); err != nil && ctx.Err() == nil {
			r.log.Warn("revoked tokens: sync", "err", err)
		}
		cancel()
	}
}
