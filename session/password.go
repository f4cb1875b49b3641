package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Password errors.
var (
	// ErrPasswordMismatch: wrong password, or unknown user (VerifyUnknown):
	// the two are deliberately indistinguishable.
	ErrPasswordMismatch = errors.New("session: wrong user name or password")
	// ErrHashMalformed: a stored hash is not an argon2id PHC string within
	// sane parameter bounds.
	ErrHashMalformed = errors.New("session: malformed password hash")
	// ErrHasherBusy: the context ended while waiting for a hashing slot.
	// It wraps the context's error.
	ErrHasherBusy = errors.New("session: password hasher busy")
)

// Argon2Params are argon2id's cost parameters and sizes.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultArgon2 is the OWASP Password Storage Cheat Sheet baseline for
// argon2id: 19 MiB, 2 passes, 1 lane, with a 16-byte salt and a 32-byte key.
var DefaultArgon2 = Argon2Params{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read from a stored hash. A corrupted or hostile row
// must not make one login allocate gigabytes or spin for minutes.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
	minSaltLen     = 8
	maxSaltLen     = 64
	minKeyLen      = 16
	maxKeyLen      = 128
)

func (p Argon2Params) valid() bool {
	return p.Threads >= 1 && p.Time >= 1 && p.Time <= maxArgonTime &&
		p.Memory >= 8*uint32(p.Threads) && p.Memory <= maxArgonMemory &&
		p.SaltLen >= minSaltLen && p.SaltLen <= maxSaltLen &&
		p.KeyLen >= minKeyLen && p.KeyLen <= maxKeyLen
}

// HashPassword returns password's argon2id hash in PHC string format,
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded standard base64),
// under a fresh random salt. It runs on the calling goroutine with no
// concurrency cap: servers use a Hasher. Safe for concurrent use.
func HashPassword(password []byte, p Argon2Params) (string, error) {
	if !p.valid() {
		return "", fmt.Errorf("%w: parameters out of bounds", ErrHashMalformed)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	defer clear(key)
	return encodePHC(p, salt, key), nil
}

// VerifyPassword checks password against a PHC string written by
// HashPassword, comparing in constant time. It returns nil,
// ErrPasswordMismatch or ErrHashMalformed. Like HashPassword it is uncapped.
func VerifyPassword(password []byte, encoded string) error {
	p, salt, want, err := decodePHC(encoded)
	if err != nil {
		return err
	}
	return verifyKey(password, p, salt, want)
}

func verifyKey(password []byte, p Argon2Params, salt, want []byte) error {
	got := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	defer clear(got)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrPasswordMismatch
	}
	return nil
}

var b64 = base64.RawStdEncoding

func encodePHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decodePHC parses and bounds-checks an argon2id PHC string.
func decodePHC(s string) (p Argon2Params, salt, key []byte, err error) {
	bad := func(why string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: %s", ErrHashMalformed, why)
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	var seen int
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad("bad parameter")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return bad("bad parameter value")
		}
		switch k {
		case "m":
			p.Memory, seen = uint32(n), seen|1
		case "t":
			p.Time, seen = uint32(n), seen|2
		case "p":
			if n > 255 {
				return bad("too many lanes")
			}
			p.Threads, seen = uint8(n), seen|4
		default:
			return bad("unknown parameter")
		}
	}
	if seen != 7 {
		return bad("missing parameter")
	}
	if salt, err = b64.DecodeString(f[4]); err != nil {
		return bad("bad salt")
	}
	if key, err = b64.DecodeString(f[5]); err != nil {
		return bad("bad hash")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if !p.valid() {
		return bad("parameters out of bounds")
	}
	return p, salt, key, nil
}

// Hasher runs argon2id for a server: at most Config.HashConcurrency
// computations at once (each holds Config.Argon2.Memory KiB, so a login
// flood queues instead of exhausting memory), callers waiting for a slot
// until their context ends. Hashing takes tens of milliseconds: never call a
// Hasher on an event loop. Safe for concurrent use.
type Hasher struct {
	params Argon2Params
	sem    chan struct{}
	// dummySalt and dummyKey stand in for an unknown user's hash, so that
	// VerifyUnknown costs what Verify costs.
	dummySalt, dummyKey []byte
	// inSlot, when set by tests, runs while a slot is held.
	inSlot func()
	// avg is a moving average of one computation's duration in ns, and
	// runs the computations started; see AvgDuration and Runs.
	avg, runs atomic.Int64
}

// Concurrency returns how many computations the Hasher runs at once.
func (h *Hasher) Concurrency() int { return cap(h.sem) }

// AvgDuration returns a moving average of one computation's duration (the
// time in a slot, not the wait for one), 0 before the first. Callers
// estimate a queue's wait from it. Safe for concurrent use.
func (h *Hasher) AvgDuration() time.Duration { return time.Duration(h.avg.Load()) }

// Runs returns how many computations the Hasher has started: the passwords
// that reached it. Safe for concurrent use.
func (h *Hasher) Runs() int64 { return h.runs.Load() }

// observe folds one computation's duration into the moving average
// (weight 1/8: it follows a change of load within a few dozen logins).
func (h *Hasher) observe(start time.Time) {
	d := int64(time.Since(start))
	for {
		old := h.avg.Load()
		next := d
		if old != 0 {
			next = old + (d-old)/8
		}
		if h.avg.CompareAndSwap(old, next) {
			return
		}
	}
}

// NewHasher returns a Hasher with cfg's Argon2 parameters and concurrency.
// Invalid parameters are an error.
func NewHasher(cfg *Config) (*Hasher, error) {
	c := cfg.withDefaults()
	if !c.Argon2.valid() {
		return nil, fmt.Errorf("%w: parameters out of bounds", ErrHashMalformed)
	}
	h := &Hasher{
		params:    c.Argon2,
		sem:       make(chan struct{}, c.HashConcurrency),
		dummySalt: make([]byte, c.Argon2.SaltLen),
		dummyKey:  make([]byte, c.Argon2.KeyLen),
	}
	if _, err := rand.Read(h.dummySalt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(h.dummyKey); err != nil {
		return nil, err
	}
	return h, nil
}

// acquire takes a hashing slot or fails when ctx ends first.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrHasherBusy, err)
	}
	select {
	case h.sem <- struct{}{}:
		if h.inSlot != nil {
			h.inSlot()
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrHasherBusy, ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

// start counts a computation and returns its start time for observe.
func (h *Hasher) start() time.Time {
	h.runs.Add(1)
	return time.Now()
}

// Hash returns password's PHC-format hash under the Hasher's parameters.
func (h *Hasher) Hash(ctx context.Context, password []byte) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	defer h.observe(h.start())
	return HashPassword(password, h.params)
}

// Verify checks password against a stored hash: nil, ErrPasswordMismatch,
// ErrHashMalformed, or ErrHasherBusy when ctx ends while queued.
func (h *Hasher) Verify(ctx context.Context, password []byte, encoded string) error {
	p, salt, want, err := decodePHC(encoded)
	if err != nil {
		return err
	}
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	defer h.observe(h.start())
	return verifyKey(password, p, salt, want)
}

// VerifyUnknown is Verify for a user name that does not exist: it does the
// same work under the Hasher's parameters and returns ErrPasswordMismatch
// (or ErrHasherBusy), so neither the answer nor its timing tells an attacker
// which accounts exist.
func (h *Hasher) VerifyUnknown(ctx context.Context, password []byte) error {
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	defer h.observe(h.start())
	_ = verifyKey(password, h.params, h.dummySalt, h.dummyKey) // the result is not a user's
	return ErrPasswordMismatch
}

// NeedsRehash reports whether a stored hash uses parameters other than the
// Hasher's, so that a successful login can store a fresh hash.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, _, _, err := decodePHC(encoded)
	return err != nil || p != h.params
}
