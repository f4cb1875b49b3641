package session

import (
	"crypto/rand"
	"io"
	"math"
	"runtime"
	"time"
)

// Config holds the tunables of the package. The zero value (or a nil
// *Config) means every default; defaults are filled in one place,
// withDefaults. A Config is read, never modified, so one value may be shared
// by every connection and is safe for concurrent use.
type Config struct {
	// Now is the clock used for certificate and token validity and for the
	// rekey timer. Nil means time.Now. Tests move time by replacing it.
	Now func() time.Time

	// Rand is the source of the handshake's ephemeral keys. Nil means
	// crypto/rand.Reader, which is what every real connection must use: a
	// predictable ephemeral key gives away the session. Tests set a fixed
	// reader to make a handshake reproducible (the test vectors of
	// docs/protocol.md come from one). A Config shared by connections
	// shares its Rand, which must then be safe for concurrent use.
	Rand io.Reader

	// MaxHandshakeMessage caps one Noise handshake message (the body of a
	// CmdHandshake frame) in both directions. 0 means 2048 bytes: the largest
	// real message is a login request (under 1 KiB with a long password), so
	// anything bigger is an attack or a bug, and the cap bounds what a
	// connection can make the server buffer before it is authenticated.
	// Values above noise.MaxMsgLen (65535) are lowered to it.
	MaxHandshakeMessage int

	// RekeyFrames and RekeyInterval set when Keys.NeedRekey reports true:
	// after this many frames sent since the last rekey, or this much time.
	// 0 means 1<<20 frames and 1 hour. RFC 8446 §5.5 bounds AES-GCM at about
	// 2^24.5 full records per key; 2^20 stays far below it.
	RekeyFrames   uint64
	RekeyInterval time.Duration

	// MaxFramesPerKey is the hard limit of frames under one key in either
	// direction: past it Seal and Open fail with ErrRekeyOverdue instead of
	// wearing out the key. 0 means 1<<24, 16 times RekeyFrames' default and
	// still under the RFC 8446 bound.
	MaxFramesPerKey uint64

	// NonceLimit is the number of frames a direction may carry over the
	// connection's life, rekeys included (Noise keeps the counter across
	// Rekey). Past it Seal and Open fail with ErrNonceExhausted and the peer
	// must handshake again. 0 means 1<<62, far from the 2^64-1 Noise
	// reserves; tests lower it to reach the limit.
	NonceLimit uint64

	// Argon2 sets the password hash parameters. The zero value means
	// DefaultArgon2, the OWASP baseline.
	Argon2 Argon2Params

	// HashConcurrency caps how many argon2id computations a Hasher runs at
	// once; each one holds Argon2.Memory KiB. 0 means GOMAXPROCS at the time
	// NewHasher is called.
	HashConcurrency int
}

// Defaults used by withDefaults; see the Config fields for the reasoning.
const (
	defaultMaxHandshakeMessage = 2048
	defaultRekeyFrames         = 1 << 20
	defaultRekeyInterval       = time.Hour
	defaultMaxFramesPerKey     = 1 << 24
	defaultNonceLimit          = 1 << 62
	noiseMaxMsgLen             = 65535 // noise.MaxMsgLen
)

// withDefaults returns a copy of c (which may be nil) with every zero field
// replaced by its default.
func (c *Config) withDefaults() Config {
	var d Config
	if c != nil {
		d = *c
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.MaxHandshakeMessage <= 0 {
		d.MaxHandshakeMessage = defaultMaxHandshakeMessage
	}
	if d.MaxHandshakeMessage > noiseMaxMsgLen {
		d.MaxHandshakeMessage = noiseMaxMsgLen
	}
	if d.RekeyFrames == 0 {
		d.RekeyFrames = defaultRekeyFrames
	}
	if d.RekeyInterval <= 0 {
		d.RekeyInterval = defaultRekeyInterval
	}
	if d.MaxFramesPerKey == 0 {
		d.MaxFramesPerKey = defaultMaxFramesPerKey
	}
	if d.NonceLimit == 0 {
		d.NonceLimit = defaultNonceLimit
	}
	if d.NonceLimit > math.MaxUint64-1 {
		d.NonceLimit = math.MaxUint64 - 1 // 2^64-1 is Noise's rekey nonce
	}
	if d.Argon2 == (Argon2Params{}) {
		d.Argon2 = DefaultArgon2
	}
	if d.HashConcurrency <= 0 {
		d.HashConcurrency = runtime.GOMAXPROCS(0)
	}
	return d
}
