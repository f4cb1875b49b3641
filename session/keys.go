package session

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/myim/myim/frame"
)

// Transport errors.
var (
	// ErrDecrypt: a frame failed to open: tampered, replayed, reordered,
	// dropped before it, truncated, or not a whole frame. The receive side
	// stays failed afterwards; the connection must close.
	ErrDecrypt = errors.New("session: frame authentication failed")
	// ErrNonceExhausted: the direction reached Config.NonceLimit frames; a
	// new handshake is needed.
	ErrNonceExhausted = errors.New("session: nonce space exhausted, handshake again")
	// ErrRekeyOverdue: Config.MaxFramesPerKey frames went under one key
	// without a rekey.
	ErrRekeyOverdue = errors.New("session: key used past its limit without rekey")
	// ErrRekeyFrame: RecvRekey got a frame that is not an empty REKEY.
	ErrRekeyFrame = errors.New("session: not an empty REKEY frame")
	// ErrWiped: the Keys were wiped.
	ErrWiped = errors.New("session: keys wiped")
	// ErrBufferOverlap: the output would be written over the input (Seal's
	// plaintext, or Open's frame, lies in dst's spare capacity). crypto/cipher
	// panics on that; Seal and Open refuse it first.
	ErrBufferOverlap = errors.New("session: output buffer overlaps input")
)

// TagSize is what sealing adds to a body: the AES-GCM tag.
const TagSize = 16

// Keys is a connection's transport state after the handshake: one
// AES-256-GCM key and one 64-bit frame counter per direction. The counter is
// the nonce (4 zero bytes then the counter big-endian, as Noise's AESGCM)
// and is never sent: TCP delivers in order, so a replayed, reordered,
// dropped or forged frame fails to open.
//
// Seal and Open work on whole frames: the additional data is the frame's
// Length + Cmd + QoS, so a header cannot be altered either.
//
// Key custody. The handshake's Split yields two noise.CipherStates; Keys
// copies their keys (UnsafeKey) into arrays it owns and builds its own
// cipher.AEAD from them, one per direction, when that direction carries its
// first frame, cached until the next rekey. Owning the bytes is what lets
// Wipe zero them (the CipherStates are dropped at once, along with the
// handshake state), and the cached AEAD with a nonce buffer beside it is
// what makes Seal and Open allocation-free
// (noise's Cipher allocates a nonce slice per call). What cannot be zeroed
// from here: the AES key schedule inside crypto/aes, and the copies left in
// the dropped noise objects, which become garbage.
//
// Rekey follows Noise §4.2: k = the first 32 bytes of ENCRYPT(k, 2^64-1,
// empty, 32 zero bytes), the counter carrying on; a test checks it against
// noise.CipherState.Rekey.
//
// Concurrency: the send half (Seal, SendRekey, NeedRekey) and the receive
// half (Open, RecvRekey) touch disjoint state, so one goroutine may send
// while another receives; each half must be serialised by its caller (in
// the server, both run on the connection's event loop). Wipe must not run
// concurrently with anything.
type Keys struct {
	send, recv dir
	// sendKeyedAt is when the send direction last took a key: the rekey
	// timer runs on the send side only.
	sendKeyedAt time.Time

	lim *keyLimits
}

// keyLimits are Config's rekey and nonce limits as Keys uses them. They
// never change once made, so every Keys made from equal limits shares one
// copy (8 bytes where the four values took 32, on every session).
type keyLimits struct {
	rekeyFrames   uint64
	rekeyInterval time.Duration
	maxPerKey     uint64
	nonceLimit    uint64
}

// lastLimits is the copy the last newKeys used: a server makes all its
// Keys from one Config, so the lookup almost always hits.
var lastLimits atomic.Pointer[keyLimits]

// limitsOf returns a shared copy of c's limits. Safe for concurrent use.
func limitsOf(c *Config) *keyLimits {
	l := keyLimits{rekeyFrames: c.RekeyFrames, rekeyInterval: c.RekeyInterval,
		maxPerKey: c.MaxFramesPerKey, nonceLimit: c.NonceLimit}
	if p := lastLimits.Load(); p != nil && *p == l {
		return p
	}
	p := new(keyLimits) // only on a miss: l itself stays on the stack
	*p = l
	lastLimits.Store(p)
	return p
}

// dir is one direction's state: 64 bytes while the direction is idle, so
// that a server's millions of idle sessions hold little more than their
// keys.
type dir struct {
	key      [32]byte
	hot      *dirHot // built on first use: an idle session holds only its keys
	n        uint64  // frames so far in this direction, the next nonce
	sinceKey uint64  // frames under the current key
	live     bool    // a key is set and not wiped
	failed   bool    // receive side: an Open failed; stays failed
}

// dirHot is what a direction needs once it carries frames: the AES-GCM
// state (key schedule and GHASH tables, about 700 bytes) and the nonce
// scratch that keeps Seal and Open from allocating one per call.
type dirHot struct {
	aead  cipher.AEAD
	nonce [12]byte // scratch: the nonce for counter n
}

// newKeys builds Keys from the two keys of a handshake's Split. It takes
// copies; the caller zeroes its own.
func newKeys(c *Config, sendKey, recvKey *[32]byte) (*Keys, error) {
	now := c.Now()
	k := &Keys{lim: limitsOf(c)}
	k.sendKeyedAt = now
	if err := k.send.setKey(sendKey); err != nil {
		return nil, err
	}
	if err := k.recv.setKey(recvKey); err != nil {
		k.Wipe()
		return nil, err
	}
	return k, nil
}

func (d *dir) setKey(key *[32]byte) error {
	d.key = *key
	// The AES-GCM state is built when the direction first carries a frame
	// under this key: most sessions of a large server sit idle, sending
	// only plaintext PINGs. The dirHot itself is kept for the next key.
	if d.hot != nil {
		d.hot.aead = nil
	}
	d.live = true
	d.sinceKey = 0
	return nil
}

// cipher returns d's state for sealing or opening, building the AEAD on
// first use.
func (d *dir) cipher() (*dirHot, error) {
	if d.hot != nil && d.hot.aead != nil {
		return d.hot, nil
	}
	block, err := aes.NewCipher(d.key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if d.hot == nil {
		d.hot = new(dirHot)
	}
	d.hot.aead = aead
	return d.hot, nil
}

// rekey replaces d's key with Noise's REKEY(k).
func (d *dir) rekey() error {
	h, err := d.cipher()
	if err != nil {
		return err
	}
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[4:], ^uint64(0))
	var zeros [32]byte
	var out [32 + TagSize]byte
	ct := h.aead.Seal(out[:0], nonce[:], zeros[:], nil)
	var next [32]byte
	copy(next[:], ct)
	clear(out[:])
	err = d.setKey(&next)
	clear(next[:])
	return err
}

// check reports whether d may take one more frame.
func (k *Keys) check(d *dir) error {
	switch {
	case !d.live:
		return ErrWiped
	case d.n >= k.lim.nonceLimit:
		return ErrNonceExhausted
	case d.sinceKey >= k.lim.maxPerKey:
		return ErrRekeyOverdue
	}
	return nil
}

// Seal appends to dst a whole sealed frame: Length + Cmd + QoS for a body of
// len(plaintext)+TagSize bytes, then the ciphertext and tag, with the header
// as additional data. plaintext must not lie in dst's spare capacity
// (ErrBufferOverlap). It allocates only when dst must grow. On error dst is returned unchanged and
// no counter moves.
func (k *Keys) Seal(dst []byte, c frame.Cmd, q frame.QoS, plaintext []byte) ([]byte, error) {
	d := &k.send
	if err := k.check(d); err != nil {
		return dst, err
	}
	if !c.Known() {
		return dst, frame.ErrUnknownCmd
	}
	if q > frame.QoS1 {
		return dst, frame.ErrBadQoS
	}
	if overlap(dst[len(dst):cap(dst)], plaintext) {
		return dst, ErrBufferOverlap
	}
	start := len(dst)
	out, err := frame.AppendHeader(dst, c, q, len(plaintext)+TagSize)
	if err != nil {
		return dst, err
	}
	h, err := d.cipher()
	if err != nil {
		return dst, err
	}
	binary.BigEndian.PutUint64(h.nonce[4:], d.n)
	out = h.aead.Seal(out, h.nonce[:], plaintext, out[start:])
	d.n++
	d.sinceKey++
	return out, nil
}

// Open appends f's plaintext body to dst. f must be one whole frame, and
// must not lie in dst's spare capacity (ErrBufferOverlap): f aliases the
// network buffer and is never written. It allocates only when dst must grow. A frame that does not authenticate under the next counter gives
// ErrDecrypt, and every later Open fails too. Open does not act on REKEY
// frames: the caller routes them to RecvRekey.
func (k *Keys) Open(dst []byte, f frame.Frame) ([]byte, error) {
	d := &k.recv
	if err := k.check(d); err != nil {
		return dst, err
	}
	if d.failed {
		return dst, ErrDecrypt
	}
	if overlap(dst[len(dst):cap(dst)], f) {
		return dst, ErrBufferOverlap
	}
	body, hdr, ok := split(f)
	if !ok {
		d.failed = true
		return dst, ErrDecrypt
	}
	h, err := d.cipher()
	if err != nil {
		return dst, err
	}
	binary.BigEndian.PutUint64(h.nonce[4:], d.n)
	out, err := h.aead.Open(dst, h.nonce[:], body, hdr)
	if err != nil {
		d.failed = true
		return dst, ErrDecrypt
	}
	d.n++
	d.sinceKey++
	return out, nil
}

// overlap reports whether a and b share memory (crypto/internal/alias's
// AnyOverlap, which is not importable).
func overlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0 := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a0 < b0+uintptr(len(b)) && b0 < a0+uintptr(len(a))
}

// split checks that f is exactly one well-formed frame with room for a tag
// and returns its body and header.
func split(f frame.Frame) (body, hdr []byte, ok bool) {
	size, err := frame.Split(f, frame.MaxEncodable)
	if err != nil || size == 0 || size != len(f) {
		return nil, nil, false
	}
	body = f.Body()
	if len(body) < TagSize {
		return nil, nil, false
	}
	return body, f.Header(), true
}

// SendRekey appends a sealed, empty REKEY frame to dst and then moves the
// send direction to the next key: every frame sealed afterwards needs the
// peer to have passed this one to RecvRekey. now restarts the rekey timer.
func (k *Keys) SendRekey(dst []byte, now time.Time) ([]byte, error) {
	out, err := k.Seal(dst, frame.CmdRekey, frame.QoS0, nil)
	if err != nil {
		return dst, err
	}
	if err := k.send.rekey(); err != nil {
		return dst, err
	}
	k.sendKeyedAt = now
	return out, nil
}

// RecvRekey opens a REKEY frame (empty body) and then moves the receive
// direction to the next key. A frame of another command is refused with
// ErrRekeyFrame before it is opened; one that fails to open gives ErrDecrypt.
func (k *Keys) RecvRekey(f frame.Frame) error {
	if !k.recv.live {
		return ErrWiped
	}
	if _, _, ok := split(f); !ok {
		return k.failRecv()
	}
	if f.Cmd() != frame.CmdRekey {
		return ErrRekeyFrame
	}
	var scratch [0]byte
	pt, err := k.Open(scratch[:], f)
	if err != nil {
		return err
	}
	if len(pt) != 0 {
		k.recv.failed = true
		return ErrRekeyFrame
	}
	return k.recv.rekey()
}

func (k *Keys) failRecv() error {
	k.recv.failed = true
	return ErrDecrypt
}

// NeedRekey reports whether the send direction is due a rekey: Config's
// RekeyFrames frames sealed or RekeyInterval elapsed since the last one (or
// since the handshake). Part of the send half.
func (k *Keys) NeedRekey(now time.Time) bool {
	d := &k.send
	return d.sinceKey >= k.lim.rekeyFrames || now.Sub(k.sendKeyedAt) >= k.lim.rekeyInterval
}

// Cool releases both directions' AES-GCM state (key schedule and GHASH
// tables, about 750 bytes a session), which the next Seal or Open builds
// again from the key (a key expansion, a microsecond or two): for a session
// that carried frames and then went quiet, so that it holds only its keys
// again. Not safe for concurrent use, like Seal and Open.
func (k *Keys) Cool() {
	k.send.hot = nil
	k.recv.hot = nil
}

// Wipe zeroes both keys and drops the ciphers; every later call fails with
// ErrWiped. Call it when the connection closes. See Keys for what lies
// beyond its reach.
func (k *Keys) Wipe() {
	for _, d := range []*dir{&k.send, &k.recv} {
		clear(d.key[:])
		d.hot = nil
		d.live = false
		d.failed = true
	}
}
