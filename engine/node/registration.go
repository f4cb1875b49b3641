package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/myim/myim/storage"
)

// Registration modes of the HTTP API's POST /v1/users.
const (
	RegistrationOpen   = "open"   // anyone may register (rate limited per address)
	RegistrationInvite = "invite" // a single-use code from the admin API or a user is needed
	RegistrationClosed = "closed" // only the admin API creates users
)

// Invites issues and takes single-use registration codes, kept in the
// store as the SHA-256 of the code: a code works on every node of a
// cluster and survives restarts, until it is used or expires. Safe for
// concurrent use; its methods block on the store and must not run on an
// event loop.
type Invites struct {
	Store storage.Invites
	// TTL is how long a code lives (0: 7 days).
	TTL time.Duration
	// PerUser is how many codes each user may issue with POST /v1/invites
	// in all (0: none; only the admin API issues codes).
	PerUser int
}

// Errors of Invites.Issue for a user.
var (
	ErrNoInviteRight = errors.New("node: users may not issue invites")
	ErrInvitesUsedUp = errors.New("node: invite allowance used up")
)

// Issue returns a new code and its expiry. issuer 0 is the admin API, with
// no limit; a user needs PerUser > 0 and spends one of them.
func (v *Invites) Issue(ctx context.Context, issuer uint64) (code string, expires time.Time, err error) {
	limit := 0
	if issuer != 0 {
		if v.PerUser <= 0 {
			return "", time.Time{}, ErrNoInviteRight
		}
		limit = v.PerUser
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	code = base64.RawURLEncoding.EncodeToString(b[:])
	ttl := v.TTL
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	expires = time.Now().Add(ttl)
	err = v.Store.CreateInvite(ctx, storage.Invite{Hash: sha256.Sum256([]byte(code)), Issuer: issuer,
		ExpiresAt: expires.UnixMilli()}, limit)
	if errors.Is(err, storage.ErrQuota) {
		err = ErrInvitesUsedUp
	}
	return code, expires, err
}

// take uses up a valid code; storage.ErrNotFound if there is none. give
// puts it back if the registration then fails.
func (v *Invites) take(ctx context.Context, code string) (storage.Invite, error) {
	return v.Store.UseInvite(ctx, sha256.Sum256([]byte(code)), time.Now().UnixMilli())
}

func (v *Invites) give(inv storage.Invite) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = v.Store.CreateInvite(ctx, inv, 0) // not counted again
}

// AddrRate is a token bucket per client address: Burst at once, then one
// every Every. Safe for concurrent use.
type AddrRate struct {
	mu      sync.Mutex
	every   time.Duration
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxRateKeys bounds an AddrRate's table; full buckets go first.
const maxRateKeys = 100_000

// NewAddrRate allows burst at once per address, refilled one every every.
func NewAddrRate(every time.Duration, burst int) *AddrRate {
	return &AddrRate{every: every, burst: float64(max(burst, 1)), buckets: make(map[string]*bucket)}
}

// Allow takes a token for addr, or says how long until one is there.
func (r *AddrRate) Allow(addr string) (bool, time.Duration) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[addr]
	if b == nil {
		if len(r.buckets) >= maxRateKeys {
			for k, o := range r.buckets {
				if o.tokens+float64(now.Sub(o.at))/float64(r.every) >= r.burst {
					delete(r.buckets, k)
				}
			}
		}
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[addr] = b
	}
	b.tokens = min(r.burst, b.tokens+float64(now.Sub(b.at))/float64(r.every))
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(r.every))
	}
	b.tokens--
	return true, 0
}
