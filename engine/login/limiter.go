package login

import (
	"errors"
	"net"
	"sync"
	"time"
)

// LimiterConfig tunes login throttling. Zero values mean the defaults.
//
// Failures are counted on three keys. The (account, address) pair is the
// lock: a guesser is stopped on the accounts it guesses from the addresses
// it guesses from, and nowhere else. The address counts failures across
// accounts (one password sprayed over many names). The account counts
// failures from every address and grows slowly, so that guesses spread
// over many addresses are still bounded; it is not applied to a device the
// account has logged in from before, so that other people's failures never
// lock its owner out of a known device.
type LimiterConfig struct {
	// FreeFailures is how many failures an (account, address) pair may have
	// before backoff starts. Default 5.
	FreeFailures int
	// Base is the first backoff; each further failure doubles it up to Max.
	// Defaults 1 s and 15 min. NIST SP 800-63B asks for growing delays over
	// hard lockout, and at most 100 consecutive failures: at the defaults
	// an attacker gets about 100 guesses a day per pair.
	Base, Max time.Duration
	// AddressFreeFailures is how many failures an address may have, over
	// every account, before it backs off (doubling like a pair). Default 20:
	// a NAT may hide a few users who mistype.
	AddressFreeFailures int
	// AccountFreeFailures is how many failures an account may have, from
	// every address, before logins from devices it does not know back off.
	// Default 20.
	AccountFreeFailures int
	// AccountStep is how many further failures double the account's
	// backoff: it grows slowly, since many addresses share it. Default 4.
	AccountStep int
	// MaxInFlightAccount caps the attempts on one account being checked at
	// once (reserved and not finished). Default 1.
	MaxInFlightAccount int
	// MaxInFlightAddress caps the attempts from one address being checked
	// at once. Default 4.
	MaxInFlightAddress int
	// MaxKeys bounds the table; idle entries go first. Default 100,000.
	MaxKeys int
}

// Errors a reservation can fail with; RetryError carries the wait.
var (
	// ErrLoginBackoff: the pair, the address or the account is backing
	// off after failures.
	ErrLoginBackoff = errors.New("login: too many failed logins")
	// ErrLoginBusy: the account or the address already has as many
	// attempts in flight as it may.
	ErrLoginBusy = errors.New("login: login attempt already in progress")
)

// Limiter throttles logins per (account, address) pair, per address and per
// account. An attempt is reserved before its password is hashed: the
// reservation counts it as a failure and holds an in-flight slot, so that
// concurrent guesses cannot all be evaluated before the first failure is
// recorded; a success or a cancelled attempt gives the count back. Safe for
// concurrent use.
type Limiter struct {
	cfg  LimiterConfig
	mu   sync.Mutex
	keys map[string]*limitEntry
	now  func() time.Time
}

type limitEntry struct {
	failures int       // failures, the reserved attempts included
	last     time.Time // the last failure (or reservation)
	inflight int       // attempts reserved and not finished
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
	if cfg.AddressFreeFailures <= 0 {
		cfg.AddressFreeFailures = 20
	}
	if cfg.AccountFreeFailures <= 0 {
		cfg.AccountFreeFailures = 20
	}
	if cfg.AccountStep <= 0 {
		cfg.AccountStep = 4
	}
	if cfg.MaxInFlightAccount <= 0 {
		cfg.MaxInFlightAccount = 1
	}
	if cfg.MaxInFlightAddress <= 0 {
		cfg.MaxInFlightAddress = 4
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	return &Limiter{cfg: cfg, keys: make(map[string]*limitEntry), now: time.Now}
}

// Config returns the limiter's effective configuration.
func (l *Limiter) Config() LimiterConfig { return l.cfg }

// wait returns how long e must still back off: nothing below free
// failures, then Base doubling every step failures, up to Max.
func (l *Limiter) wait(e *limitEntry, free, step int, now time.Time) time.Duration {
	if e == nil || e.failures < free {
		return 0
	}
	d := l.cfg.Base << min((e.failures-free)/step, 30)
	if d > l.cfg.Max || d <= 0 {
		d = l.cfg.Max
	}
	return max(e.last.Add(d).Sub(now), 0)
}

func (l *Limiter) entry(k string, now time.Time) *limitEntry {
	e := l.keys[k]
	if e != nil && e.inflight == 0 && now.Sub(e.last) > l.cfg.Max {
		e.failures = 0 // quiet for longer than the longest backoff
	}
	if e == nil {
		if len(l.keys) >= l.cfg.MaxKeys {
			l.evict(now)
		}
		e = &limitEntry{last: now}
		l.keys[k] = e
	}
	return e
}

// Attempt is one reserved login attempt. Exactly one of Failed, Succeeded
// or Cancel ends it. Safe for concurrent use with other attempts; one
// attempt is used by one goroutine.
type Attempt struct {
	l             *Limiter
	account, addr string
	pair, address *limitEntry
	acct          *limitEntry // nil until Account passes
	knownDevice   bool
	done          bool
}

// Reserve starts a login attempt on account from addr: it fails with
// ErrLoginBackoff (and how long to wait) while the pair or the address
// backs off, or ErrLoginBusy while the address has MaxInFlightAddress
// attempts in flight. On success the attempt is already counted as a
// failure of the pair and the address.
func (l *Limiter) Reserve(account, addr string) (*Attempt, time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	pk, ak := "p:"+account+"\x00"+addr, "a:"+addr
	pair, address := l.entry(pk, now), l.entry(ak, now)
	wait := max(l.wait(pair, l.cfg.FreeFailures, 1, now), l.wait(address, l.cfg.AddressFreeFailures, 1, now))
	if wait > 0 {
		return nil, wait, ErrLoginBackoff
	}
	if address.inflight >= l.cfg.MaxInFlightAddress {
		return nil, 0, ErrLoginBusy
	}
	for _, e := range [2]*limitEntry{pair, address} {
		e.failures++
		e.last = now
		e.inflight++
	}
	return &Attempt{l: l, account: account, addr: addr, pair: pair, address: address}, 0, nil
}

// Account applies the account's own limits: at most MaxInFlightAccount
// attempts at once and its slow backoff, both skipped when known reports
// that the device is one the account has logged in from (known is called
// only when a limit would refuse, so that most logins cost no lookup). On
// success the attempt is counted as a failure of the account too.
func (a *Attempt) Account(known func() bool) (time.Duration, error) {
	l := a.l
	l.mu.Lock()
	now := l.now()
	e := l.entry("u:"+a.account, now)
	wait := l.wait(e, l.cfg.AccountFreeFailures, l.cfg.AccountStep, now)
	busy := e.inflight >= l.cfg.MaxInFlightAccount
	l.mu.Unlock()
	if wait > 0 || busy {
		if known == nil || !known() {
			if wait > 0 {
				return wait, ErrLoginBackoff
			}
			return 0, ErrLoginBusy
		}
		a.knownDevice = true
	}
	l.mu.Lock()
	e = l.entry("u:"+a.account, l.now())
	e.failures++
	e.last = now
	e.inflight++
	a.acct = e
	l.mu.Unlock()
	return 0, nil
}

// KnownDevice reports whether Account let the attempt through because its
// device is known to the account.
func (a *Attempt) KnownDevice() bool { return a.knownDevice }

// Failed ends the attempt as a wrong password: the counts stay.
func (a *Attempt) Failed() { a.end(false, false) }

// Succeeded ends the attempt as a good password: the pair and the account
// are cleared, and the address gets its reserved failure back (one good
// password must not reset a guessing address).
func (a *Attempt) Succeeded() { a.end(true, false) }

// Cancel ends an attempt whose password was never checked (the client
// left, the store or the hasher failed): every reserved count is given
// back.
func (a *Attempt) Cancel() { a.end(false, true) }

func (a *Attempt) end(ok, cancel bool) {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	for _, e := range [3]*limitEntry{a.pair, a.address, a.acct} {
		if e == nil {
			continue
		}
		e.inflight--
		if cancel {
			e.failures = max(e.failures-1, 0)
		}
	}
	if ok {
		a.address.failures = max(a.address.failures-1, 0)
		a.pair.failures = 0
		if a.acct != nil && a.knownDevice {
			// A known device let past the account's backoff does not
			// end it: the guessing goes on elsewhere.
			a.acct.failures = max(a.acct.failures-1, 0)
		} else if a.acct != nil {
			a.acct.failures = 0
		}
	}
}

// evict drops entries idle for longer than Max with nothing in flight, or
// else an arbitrary half of those with nothing in flight. Attempts hold
// their entries, so an evicted entry only stops counting.
func (l *Limiter) evict(now time.Time) {
	for k, e := range l.keys {
		if e.inflight == 0 && now.Sub(e.last) > l.cfg.Max {
			delete(l.keys, k)
		}
	}
	n := len(l.keys) / 2
	for k, e := range l.keys {
		if len(l.keys) <= n || len(l.keys) < l.cfg.MaxKeys {
			break
		}
		if e.inflight == 0 {
			delete(l.keys, k)
		}
	}
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
