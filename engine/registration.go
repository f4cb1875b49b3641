package engine

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Registration modes of the HTTP API's POST /v1/users.
const (
	RegistrationOpen   = "open"   // anyone may register (rate limited per address)
	RegistrationInvite = "invite" // a single-use code from the admin API is needed
	RegistrationClosed = "closed" // only the admin API creates users
)

// Invites holds single-use registration codes issued by the admin API, in
// this process's memory: a code is valid on the node that issued it until
// it is used, it expires, or the process restarts. Safe for concurrent use.
type Invites struct {
	mu    sync.Mutex
	codes map[string]time.Time // code -> expiry
	ttl   time.Duration
}

// maxInvites bounds the codes held; issuing past it fails until some
// expire or are used.
const maxInvites = 100_000

// NewInvites returns an empty set whose codes live ttl (0: 7 days).
func NewInvites(ttl time.Duration) *Invites {
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	return &Invites{codes: make(map[string]time.Time), ttl: ttl}
}

// Issue returns a new code and its expiry; ok is false when too many
// unused codes are held.
func (v *Invites) Issue() (code string, expires time.Time, ok bool) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	code = base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.codes) >= maxInvites {
		for c, exp := range v.codes {
			if now.After(exp) {
				delete(v.codes, c)
			}
		}
		if len(v.codes) >= maxInvites {
			return "", time.Time{}, false
		}
	}
	expires = now.Add(v.ttl)
	v.codes[code] = expires
	return code, expires, true
}

// take removes a valid code and returns its expiry, for give to put back
// if the registration fails.
func (v *Invites) take(code string) (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	exp, ok := v.codes[code]
	if !ok {
		return time.Time{}, false
	}
	delete(v.codes, code)
	return exp, time.Now().Before(exp)
}

func (v *Invites) give(code string, exp time.Time) {
	v.mu.Lock()
	v.codes[code] = exp
	v.mu.Unlock()
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
