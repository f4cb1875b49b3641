package session

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"

	"github.com/flynn/noise"

	"github.com/myim/myim/frame"
)

// Handshake errors. Errors caused by the peer (a bad message, certificate
// or token) fail the handshake for good: every later call returns an error
// matching ErrHandshakeFailed and the first cause. Errors caused by the
// local caller before anything reached Noise (out of turn, oversize
// payload) leave the state as it was.
var (
	// ErrHandshakeTurn: a write when a read is due, or the reverse.
	ErrHandshakeTurn = errors.New("session: handshake message out of turn")
	// ErrHandshakeDone: a message after the handshake completed.
	ErrHandshakeDone = errors.New("session: handshake already complete")
	// ErrHandshakeIncomplete: Keys asked for before the handshake completed.
	ErrHandshakeIncomplete = errors.New("session: handshake not complete")
	// ErrHandshakeFailed: the handshake failed earlier and cannot go on.
	ErrHandshakeFailed = errors.New("session: handshake failed")
	// ErrHandshakeTooLarge: a message over Config.MaxHandshakeMessage.
	ErrHandshakeTooLarge = errors.New("session: handshake message too large")
	// ErrHandshakeMessage: Noise rejected a message: too short, failed
	// authentication, or carried an unusable key.
	ErrHandshakeMessage = errors.New("session: bad handshake message")
	// ErrHandshakeFrame: not a whole, well-formed HANDSHAKE frame with QoS 0.
	ErrHandshakeFrame = errors.New("session: not a handshake frame")
	// ErrUnexpectedPayload: a payload where the protocol has none, or where
	// the Handshake supplies it itself (certificate, token).
	ErrUnexpectedPayload = errors.New("session: unexpected handshake payload")
)

// The only cipher suite is Noise_XX/IK_25519_AESGCM_SHA256: each
// Handshake gives noise a handshakeSuite of its own (dh.go), whose DH
// function keeps the parsed keys.

// Prologues: "MYIM", protocol version 1, pattern byte. Both sides mix the
// prologue into the handshake hash, so a peer speaking another version or
// pattern fails the handshake instead of being downgraded.
var (
	prologueXX = []byte{'M', 'Y', 'I', 'M', 1, 'X'}
	prologueIK = []byte{'M', 'Y', 'I', 'M', 1, 'K'}
)

// Noise message sizes without payload. An ephemeral key is 32 bytes; an
// encrypted static key 32+16; once a key is mixed in, the payload carries a
// 16-byte tag even when empty.
var (
	overheadXX = []int{32, 32 + 48 + 16, 48 + 16} // -> e; <- e, ee, s, es; -> s, se
	overheadIK = []int{32 + 48 + 16, 32 + 16}     // -> e, es, s, ss; <- e, ee, se
)

type hsKind byte

const (
	loginClient hsKind = iota
	loginServer
	endpointClient
	endpointServer
)

// Handshake wraps a flynn/noise HandshakeState. It checks turn, size and
// state before every Noise call, so misuse becomes an error instead of
// reaching the library; it supplies and checks the credentials each pattern
// carries (the login service's certificate in XX message 2, the access token
// in IK message 1); and when complete it yields the transport Keys.
//
// Login (XX, the client initiates):
//
//	client WriteFrame(nil)      -> msg 1: e
//	server ReadFrame, WriteFrame(nil)
//	                            <- msg 2: e, ee, s, es; payload: the server's Cert
//	client ReadFrame (verifies the Cert against the pinned roots, role login,
//	       and that it certifies the key the server proved), WriteFrame(login request)
//	                            -> msg 3: s, se; payload: LoginRequest
//	server ReadFrame returns the LoginRequest; PeerStatic is the device key.
//
// Endpoint (IK, the client knows the endpoint's static key):
//
//	client WriteFrame(nil)      -> msg 1: e, es, s, ss; payload: the token
//	server ReadFrame (verifies the token and that its "dk" claim is the hash
//	       of the device key the client proved), WriteFrame(Accepted)
//	                            <- msg 2: e, ee, se; payload: Accepted
//	client ReadFrame returns the Accepted record.
//
// A Handshake belongs to one connection and is not safe for concurrent use.
// It does no I/O and keeps no timer: the caller enforces the deadline.
type Handshake struct {
	cfg       Config
	kind      hsKind
	initiator bool
	overhead  []int
	idx       int // messages done
	hs        *noise.HandshakeState
	static    noise.DHKey // our copy of the local static key, zeroed at the end
	dh        x25519DH    // the suite's DH function: the parsed static and ephemeral keys

	roots     []VerifyKey // login client
	cert      []byte      // login server
	token     string      // endpoint client
	tokenKeys []VerifyKey // endpoint server
	audience  string      // endpoint server

	peerStatic []byte
	peerCert   *Cert
	claims     *TokenClaims
	binding    []byte
	keys       *Keys
	err        error
}

// NewLoginClient starts a client's XX handshake with the login service.
// device is the device's static key; roots are the pinned cluster roots the
// service's certificate must chain to.
func NewLoginClient(cfg *Config, device *ecdh.PrivateKey, roots []VerifyKey) (*Handshake, error) {
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: no pinned roots", ErrCertUnknownRoot)
	}
	h := &Handshake{kind: loginClient, initiator: true, roots: roots}
	if err := h.start(cfg, device, noise.HandshakeXX, prologueXX, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// NewLoginServer starts the login service's side of an XX handshake. cert
// must certify static for RoleLogin; it is sent in message 2.
func NewLoginServer(cfg *Config, static *ecdh.PrivateKey, cert *Cert) (*Handshake, error) {
	if cert == nil || cert.Role != RoleLogin {
		return nil, ErrCertRole
	}
	if !bytes.Equal(cert.StaticKey[:], static.PublicKey().Bytes()) {
		return nil, ErrCertStaticKey
	}
	raw, _ := cert.MarshalBinary()
	h := &Handshake{kind: loginServer, cert: raw}
	if err := h.start(cfg, static, noise.HandshakeXX, prologueXX, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// NewEndpointClient starts a client's IK handshake with an endpoint whose
// static public key (from the server list the login service sent) is
// endpointStatic. token, bound to device, is sent in message 1.
func NewEndpointClient(cfg *Config, device *ecdh.PrivateKey, endpointStatic []byte, token string) (*Handshake, error) {
	if err := checkX25519Public(endpointStatic); err != nil {
		return nil, err
	}
	if token == "" {
		return nil, ErrTokenMalformed
	}
	h := &Handshake{kind: endpointClient, initiator: true, token: token, peerStatic: bytes.Clone(endpointStatic)}
	if err := h.start(cfg, device, noise.HandshakeIK, prologueIK, h.peerStatic); err != nil {
		return nil, err
	}
	return h, nil
}

// NewEndpointServer starts an endpoint's side of an IK handshake. Tokens
// must be signed by one of tokenKeys and carry audience.
func NewEndpointServer(cfg *Config, static *ecdh.PrivateKey, tokenKeys []VerifyKey, audience string) (*Handshake, error) {
	if len(tokenKeys) == 0 || audience == "" {
		return nil, fmt.Errorf("%w: no token keys or audience", ErrTokenSignature)
	}
	h := &Handshake{kind: endpointServer, tokenKeys: tokenKeys, audience: audience}
	if err := h.start(cfg, static, noise.HandshakeIK, prologueIK, nil); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Handshake) start(cfg *Config, static *ecdh.PrivateKey, p noise.HandshakePattern, prologue, peerStatic []byte) error {
	if static == nil || static.Curve() != ecdh.X25519() {
		return ErrStaticKey
	}
	h.cfg = cfg.withDefaults()
	h.overhead = overheadXX
	if p.Name == noise.HandshakeIK.Name {
		h.overhead = overheadIK
	}
	h.static = noise.DHKey{Private: static.Bytes(), Public: static.PublicKey().Bytes()}
	h.dh = x25519DH{rand: h.cfg.Rand, static: static, staticBytes: h.static.Private}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   handshakeSuite{&h.dh},
		Pattern:       p,
		Initiator:     h.initiator,
		Prologue:      prologue,
		StaticKeypair: h.static,
		PeerStatic:    peerStatic,
		Random:        h.cfg.Rand,
	})
	if err != nil {
		h.dh.wipe()
		clear(h.static.Private)
		return err
	}
	h.hs = hs
	return nil
}

// WantsWrite reports whether the next step is this side's WriteFrame.
func (h *Handshake) WantsWrite() bool {
	return h.hs != nil && h.myTurn()
}

func (h *Handshake) myTurn() bool { return (h.idx%2 == 0) == h.initiator }

// Done reports whether the handshake completed; Keys is then available.
func (h *Handshake) Done() bool { return h.keys != nil }

// Err returns the error that failed the handshake, or nil.
func (h *Handshake) Err() error { return h.err }

// ready checks that a write (or read) may go to Noise now.
func (h *Handshake) ready(write bool) error {
	switch {
	case h.err != nil:
		return fmt.Errorf("%w: %w", ErrHandshakeFailed, h.err)
	case h.keys != nil:
		return ErrHandshakeDone
	case h.hs == nil || h.idx >= len(h.overhead):
		return ErrHandshakeFailed
	case h.myTurn() != write:
		return ErrHandshakeTurn
	}
	return nil
}

// ownPayload reports whether the Handshake supplies the payload of the
// message it is about to write, and returns it.
func (h *Handshake) ownPayload() (payload []byte, owned bool) {
	switch {
	case h.kind == loginServer && h.idx == 1:
		return h.cert, true
	case h.kind == endpointClient && h.idx == 0:
		return []byte(h.token), true
	case h.kind == loginClient && h.idx == 0:
		return nil, true // XX message 1 is unencrypted: nothing goes in it
	}
	return nil, false
}

// WriteFrame appends the next handshake message to dst as a whole
// HANDSHAKE frame. payload is the application's part: the LoginRequest
// encoding in XX message 3, the Accepted encoding in IK message 2; it must
// be empty for the other messages, whose payload (if any) the Handshake
// supplies. Payload is encrypted in both of those messages. On error dst is
// returned unchanged.
func (h *Handshake) WriteFrame(dst, payload []byte) ([]byte, error) {
	if err := h.ready(true); err != nil {
		return dst, err
	}
	if own, owned := h.ownPayload(); owned {
		if len(payload) != 0 {
			return dst, ErrUnexpectedPayload
		}
		payload = own
	}
	n := h.overhead[h.idx] + len(payload)
	if n > h.cfg.MaxHandshakeMessage {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrHandshakeTooLarge, n, h.cfg.MaxHandshakeMessage)
	}
	out, err := frame.AppendHeader(dst, frame.CmdHandshake, frame.QoS0, n)
	if err != nil {
		return dst, err
	}
	bodyStart := len(out)
	out, cs1, cs2, err := h.hs.WriteMessage(out, payload)
	if err != nil {
		return dst, h.fail(fmt.Errorf("%w: %v", ErrHandshakeMessage, err))
	}
	if len(out)-bodyStart != n {
		return dst, h.fail(fmt.Errorf("%w: message is %d bytes, expected %d", ErrHandshakeMessage, len(out)-bodyStart, n))
	}
	h.idx++
	if cs1 != nil {
		if err := h.finish(cs1, cs2); err != nil {
			return dst, err
		}
	}
	return out, nil
}

// ReadFrame processes the peer's next handshake message, f, which must be
// one whole HANDSHAKE frame, and appends its payload to dst: the server's
// certificate (already verified) in XX message 2, the LoginRequest
// encoding in XX message 3, the token (already verified) in IK message 1,
// the Accepted encoding in IK message 2. f is only read. Any error fails
// the handshake.
func (h *Handshake) ReadFrame(dst []byte, f frame.Frame) ([]byte, error) {
	if err := h.ready(false); err != nil {
		return dst, err
	}
	size, err := frame.Split(f, frame.MaxEncodable)
	if err != nil || size == 0 || size != len(f) || f.Cmd() != frame.CmdHandshake || f.QoS() != frame.QoS0 {
		return dst, h.fail(ErrHandshakeFrame)
	}
	body := f.Body()
	if len(body) > h.cfg.MaxHandshakeMessage {
		return dst, h.fail(fmt.Errorf("%w: %d bytes, limit %d", ErrHandshakeTooLarge, len(body), h.cfg.MaxHandshakeMessage))
	}
	if len(body) < h.overhead[h.idx] {
		return dst, h.fail(fmt.Errorf("%w: %d bytes, need %d", ErrHandshakeMessage, len(body), h.overhead[h.idx]))
	}
	start := len(dst)
	out, cs1, cs2, err := h.hs.ReadMessage(dst, body)
	if err != nil {
		return dst, h.fail(fmt.Errorf("%w: %v", ErrHandshakeMessage, err))
	}
	h.idx++
	if rs := h.hs.PeerStatic(); len(rs) > 0 && h.peerStatic == nil {
		h.peerStatic = bytes.Clone(rs)
	}
	if err := h.checkPayload(out[start:]); err != nil {
		return dst, h.fail(err)
	}
	if cs1 != nil {
		if err := h.finish(cs1, cs2); err != nil {
			return dst, err
		}
	}
	return out, nil
}

// checkPayload verifies what the message just read carries.
func (h *Handshake) checkPayload(p []byte) error {
	switch {
	case h.kind == loginServer && h.idx == 1:
		if len(p) != 0 {
			return ErrUnexpectedPayload
		}
	case h.kind == loginClient && h.idx == 2:
		c, err := VerifyCert(h.roots, p, h.cfg.Now(), RoleLogin)
		if err != nil {
			return err
		}
		if !bytes.Equal(c.StaticKey[:], h.peerStatic) {
			return ErrCertStaticKey
		}
		h.peerCert = c
	case h.kind == endpointServer && h.idx == 1:
		c, err := VerifyToken(h.tokenKeys, string(p), h.audience, h.cfg.Now())
		if err != nil {
			return err
		}
		if !c.BoundTo(h.peerStatic) {
			return ErrTokenDeviceKey
		}
		h.claims = c
	}
	return nil
}

// finish turns Split's CipherStates into Keys and drops the Noise state.
// Split's first CipherState encrypts initiator to responder.
func (h *Handshake) finish(cs1, cs2 *noise.CipherState) error {
	k1, k2 := cs1.UnsafeKey(), cs2.UnsafeKey()
	send, recv := &k1, &k2
	if !h.initiator {
		send, recv = recv, send
	}
	keys, err := newKeys(&h.cfg, send, recv)
	clear(k1[:])
	clear(k2[:])
	if err != nil {
		return h.fail(err)
	}
	h.binding = bytes.Clone(h.hs.ChannelBinding())
	h.keys = keys
	h.drop()
	return nil
}

// fail records err as the handshake's failure and drops the Noise state.
func (h *Handshake) fail(err error) error {
	if h.err == nil {
		h.err = err
	}
	h.drop()
	return err
}

// drop zeroes the private keys the Handshake can reach (its copy of the
// static key, the ephemeral key Noise generated) and forgets the Noise
// state and the parsed keys. The chaining key inside noise and the parsed
// ephemeral key inside crypto/ecdh are unreachable and left to the GC.
func (h *Handshake) drop() {
	if h.hs != nil {
		clear(h.hs.LocalEphemeral().Private)
		h.hs = nil
	}
	h.dh.wipe()
	clear(h.static.Private)
}

// ReadAccepted completes a client's endpoint (IK) handshake: it reads the
// endpoint's answer f, a HANDSHAKE frame, and returns what the endpoint
// accepted and the transport state, as ReadFrame, ParseAccepted and Keys
// would in turn.
func (h *Handshake) ReadAccepted(f frame.Frame) (Accepted, *Keys, error) {
	payload, err := h.ReadFrame(nil, f)
	if err != nil {
		return Accepted{}, nil, err
	}
	acc, err := ParseAccepted(payload)
	if err != nil {
		return Accepted{}, nil, err
	}
	keys, err := h.Keys()
	if err != nil {
		return Accepted{}, nil, err
	}
	return acc, keys, nil
}

// Keys returns the transport state once the handshake is complete. The
// caller owns it from then on (and should Wipe it when the connection
// closes); every call returns the same *Keys.
func (h *Handshake) Keys() (*Keys, error) {
	if h.keys == nil {
		if h.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrHandshakeFailed, h.err)
		}
		return nil, ErrHandshakeIncomplete
	}
	return h.keys, nil
}

// PeerStatic returns the peer's static X25519 public key once a message
// carrying it has been read (the device key on servers, the server key on
// clients), or nil.
func (h *Handshake) PeerStatic() []byte { return h.peerStatic }

// PeerCert returns the login service's verified certificate (login client,
// after message 2), or nil.
func (h *Handshake) PeerCert() *Cert { return h.peerCert }

// TokenClaims returns the verified, device-bound token claims (endpoint
// server, after message 1), or nil.
func (h *Handshake) TokenClaims() *TokenClaims { return h.claims }

// ChannelBinding returns the handshake hash once complete: a value unique to
// this session that both sides share, for binding higher-level proofs to the
// connection. Nil before completion.
func (h *Handshake) ChannelBinding() []byte { return h.binding }
