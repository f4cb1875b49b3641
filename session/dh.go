package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"hash"
	"io"

	"github.com/flynn/noise"
)

// suiteName is what noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM,
// noise.HashSHA256) calls itself; it goes into the protocol name that both
// sides hash first, so it must not change.
var suiteName = []byte("25519_AESGCM_SHA256")

// x25519DH is one handshake's Noise DH function, on crypto/ecdh, holding
// the handshake's two private keys already parsed: the static key as the
// caller passed it, the ephemeral key from GenerateKeypair.
//
// Why: noise.DH25519 calls curve25519.X25519, which parses the private key
// with ecdh's NewPrivateKey, and that computes the public key, so every DH
// cost two scalar multiplications and a key generation two as well. Here a
// DH on a known key is one multiplication and the static key is never
// parsed again: the endpoint's *ecdh.PrivateKey, parsed once per process,
// serves every handshake. The results are the same bytes (same function,
// RFC 7748 X25519), so the wire does not change.
//
// Noise passes private keys as the byte slices it was given; x25519DH
// recognises its own by identity (noise never copies or writes them) and
// parses any other (none is expected) the slow way. Owned by one Handshake; not safe for
// concurrent use.
type x25519DH struct {
	rand        io.Reader
	static      *ecdh.PrivateKey
	staticBytes []byte // the slice noise holds as its static private key
	eph         *ecdh.PrivateKey
	ephBytes    []byte // the slice noise holds as its ephemeral private key
	parsed      int    // DH calls that had to parse their private key (tests expect 0)
}

var errLowOrder = errors.New("session: X25519 peer key of low order")

// GenerateKeypair reads 32 bytes from rand, as noise.DH25519 does (so a
// fixed Rand reproduces the protocol's test vectors), and keeps the parsed
// key: one base-point multiplication. rand is not the argument: the
// handshake's Config.Rand, which noise also passes, is the same reader.
func (d *x25519DH) GenerateKeypair(rand io.Reader) (noise.DHKey, error) {
	if rand == nil {
		rand = d.rand
	}
	priv := make([]byte, 32)
	if _, err := io.ReadFull(rand, priv); err != nil {
		return noise.DHKey{}, err
	}
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return noise.DHKey{}, err
	}
	d.eph, d.ephBytes = k, priv
	return noise.DHKey{Private: priv, Public: k.PublicKey().Bytes()}, nil
}

// DH returns X25519(priv, pub). It fails on a peer key of low order (an
// all-zero result), as curve25519.X25519 does.
func (d *x25519DH) DH(priv, pub []byte) ([]byte, error) {
	k := d.key(priv)
	if k == nil {
		d.parsed++
		var err error
		if k, err = ecdh.X25519().NewPrivateKey(priv); err != nil {
			return nil, err
		}
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	out, err := k.ECDH(p)
	if err != nil {
		return nil, errLowOrder
	}
	return out, nil
}

// key returns the parsed key whose bytes noise passed, or nil.
func (d *x25519DH) key(priv []byte) *ecdh.PrivateKey {
	switch {
	case same(priv, d.staticBytes):
		return d.static
	case same(priv, d.ephBytes):
		return d.eph
	}
	return nil
}

// same reports whether a and b are the same 32-byte slice.
func same(a, b []byte) bool {
	return len(a) == 32 && len(b) == 32 && &a[0] == &b[0]
}

// DHLen returns 32.
func (d *x25519DH) DHLen() int { return 32 }

// DHName returns "25519".
func (d *x25519DH) DHName() string { return "25519" }

// wipe forgets the parsed keys and zeroes the ephemeral bytes. The
// *ecdh.PrivateKey copies cannot be zeroed from here (ecdh has no API for
// it); they become garbage.
func (d *x25519DH) wipe() {
	clear(d.ephBytes)
	d.eph, d.ephBytes = nil, nil
	d.static, d.staticBytes = nil, nil
}

// handshakeSuite is the cipher suite Noise_*_25519_AESGCM_SHA256 with
// the handshake's own DH function and a lazily keyed AESGCM. A one-pointer struct, so making it a
// noise.CipherSuite does not allocate.
type handshakeSuite struct{ dh *x25519DH }

func (s handshakeSuite) GenerateKeypair(r io.Reader) (noise.DHKey, error) {
	return s.dh.GenerateKeypair(r)
}
func (s handshakeSuite) DH(priv, pub []byte) ([]byte, error) { return s.dh.DH(priv, pub) }
func (s handshakeSuite) DHLen() int                          { return s.dh.DHLen() }
func (s handshakeSuite) DHName() string                      { return s.dh.DHName() }
func (s handshakeSuite) Cipher(k [32]byte) noise.Cipher      { return &lazyAESGCM{key: k} }
func (s handshakeSuite) CipherName() string                  { return noise.CipherAESGCM.CipherName() }
func (s handshakeSuite) Hash() hash.Hash                     { return noise.HashSHA256.Hash() }
func (s handshakeSuite) HashName() string                    { return noise.HashSHA256.HashName() }
func (s handshakeSuite) Name() []byte                        { return suiteName }

// lazyAESGCM is Noise's AESGCM cipher (RFC 5116 AES-256-GCM, nonce 4 zero
// bytes then the counter big-endian, as noise.CipherAESGCM) that builds
// its key schedule on first use. Noise makes a cipher at every MixKey and
// two at Split, but an IK responder uses three of its six (the ee key is
// replaced by se before it encrypts anything, and Keys builds its own
// ciphers from Split's keys), and XX likewise; the nonce lives on the stack
// instead of in a slice per call.
type lazyAESGCM struct {
	key  [32]byte // zeroed once aead is built
	aead cipher.AEAD
}

func (c *lazyAESGCM) get() cipher.AEAD {
	if c.aead == nil {
		block, err := aes.NewCipher(c.key[:])
		if err != nil {
			panic(err) // only for a key that is not 16, 24 or 32 bytes
		}
		if c.aead, err = cipher.NewGCM(block); err != nil {
			panic(err) // only for a block size other than 16
		}
		clear(c.key[:])
	}
	return c.aead
}

func (c *lazyAESGCM) Encrypt(out []byte, n uint64, ad, plaintext []byte) []byte {
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[4:], n)
	return c.get().Seal(out, nonce[:], plaintext, ad)
}

func (c *lazyAESGCM) Decrypt(out []byte, n uint64, ad, ciphertext []byte) ([]byte, error) {
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[4:], n)
	return c.get().Open(out, nonce[:], ciphertext, ad)
}
