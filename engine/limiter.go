package engine

import (
	"net"
	"sync"
	"time"
)

// LimiterConfig tunes login throttling. Zero values mean the defaults.
type LimiterConfig struct {
	// FreeFailures is how many consecutive failures a key may have before
	// backoff starts. Default 5.
	FreeFailures int
	// Base is the first backoff; each further failure doubles it up to Max.
	// Defaults 1 s and 15 min. NIST SP 800-63B asks for growing delays over
	// hard lockout, and at most 100 consecutive failures: at the defaults
	// an attacker gets about 100 guesses a day per account.
	Base, Max time.Duration
	// MaxKeys bounds the table; the oldest entries go first. Default 100,000.
	MaxKeys int
}

// Limiter throttles failed logins per account and per client address with
// exponential backoff. Safe for concurrent use.
type Limiter struct {
	cfg  LimiterConfig
	mu   sync.Mutex
	keys map[string]*limitEntry
	now  func() time.Time
}

type limitEntry struct {
	failures int
	until    time.Time
	last     time.Time
}

// NewLimiter returns a limiter.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.FreeFailures <= 0 {
		cfg.FreeFailures = 5
	}
	if cfg.Base <= 0 {
		cfg.Base = time.Second
	}
	if cfg.Max <= 0 {
		cfg.Max = 15 * time.Minute
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	return &Limiter{cfg: cfg, keys: make(map[string]*limitEntry), now: time.Now}
}

// Blocked returns how long the account or the address must still wait; 0
// means a login may be tried.
func (l *Limiter) Blocked(account, addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range [2]string{"u:" + account, "a:" + addr} {
		if e := l.keys[k]; e != nil && e.until.After(now) {
			wait = max(wait, e.until.Sub(now))
		}
	}
	return wait
}

// Fail records a failed login.
func (l *Limiter) Fail(account, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range [2]string{"u:" + account, "a:" + addr} {
		e := l.keys[k]
		if e == nil {
			if len(l.keys) >= l.cfg.MaxKeys {
				l.evict(now)
			}
			e = &limitEntry{}
			l.keys[k] = e
		}
		e.failures++
		e.last = now
		if over := e.failures - l.cfg.FreeFailures; over > 0 {
			d := l.cfg.Base << min(over-1, 30)
			if d > l.cfg.Max || d <= 0 {
				d = l.cfg.Max
			}
			e.until = now.Add(d)
		}
	}
}

// Succeed clears the account's failures (not the address's: one good
// password must not reset a guessing address).
func (l *Limiter) Succeed(account, _ string) {
	l.mu.Lock()
	delete(l.keys, "u:"+account)
	l.mu.Unlock()
}

// evict drops entries idle for longer than Max, or else an arbitrary half.
func (l *Limiter) evict(now time.Time) {
	for k, e := range l.keys {
		if now.Sub(e.last) > l.cfg.Max {
			delete(l.keys, k)
		}
	}
	n := len(l.keys) / 2
	for k := range l.keys {
		if len(l.keys) <= n || len(l.keys) < l.cfg.MaxKeys {
			break
		}
		delete(l.keys, k)
	}
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
