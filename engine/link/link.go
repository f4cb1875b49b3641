// Package link is the wire protocol and the connection machinery of the
// links between MyIM's nodes: an endpoint's link to its center, and a
// center's links to the other centers. It holds the frame codec (Item and
// its builders, Reader), the plain-TCP authentication and the TLS dial and
// accept (Dial, Accept), the bounded outbound queue with its writer (Queue)
// and the reconnect loop (Redialer). The two ends that use it, the
// center's listener and an endpoint's remote center, live in engine/center.
// It does not import the reactor: links run on goroutines of their own.
//
// A link is one long-lived TCP (or mutual-TLS) connection that carries the
// Center and Endpoint interfaces as frames. It uses the client protocol's
// envelope, Length + Cmd + QoS + body (see package frame), with one command
// of its own, LINK (0x40), which never appears on a client connection. A
// LINK body starts with an op byte; integers are big-endian:
//
//	op  name     direction  fields after op
//	01  HELLO    both       version u8 (1), flags u8, id u32
//	                        (the endpoint's server id; the center answers
//	                        with its own). Always the first frame each way.
//	                        An endpoint sets flags bit 1: it takes
//	                        DELIVER_MANY. A center sets bit 0 (a center)
//	                        and bit 2: it takes RESULT moved, STORED and
//	                        FILE frames in FORWARD, which are sent only to
//	                        a center that set it.
//	02  ONLINE   ep -> c    user u64, session u64, flags u8
//	                        (bit 0: resumed, re-announced after a reconnect)
//	03  OFFLINE  ep -> c    user u64, session u64, bye u8
//	04  HANDLE   ep -> c    user u64, session u64, then one whole plaintext
//	                        client frame (Center.Handle)
//	05  DELIVER  c -> ep    session u64, then one whole plaintext client
//	                        frame (Endpoint.Deliver)
//	06  NOTIFY   ep -> c    user u64, code u16, then JSON (Center.Notify)
//	07  PING     both       nonce u64
//	08  PONG     both       nonce u64, received u64: how many frames after
//	                        HELLO the sender of the PONG has read and handled
//	                        on this connection
//	0D  DELIVER_MANY c -> ep
//	                        count u32, then count session ids (u64 each) and
//	                        one whole plaintext client frame for all of them:
//	                        a group message crosses the link once per
//	                        endpoint, which fans it out (only to an endpoint
//	                        whose HELLO set flags bit 1)
//
// Centers link to each other with the same envelope: HELLO flags bit 0
// marks a center, and four more ops carry traffic one way, from the
// dialing center to the listening one (each center dials every other, so
// each direction has its own connection):
//
//	09  FORWARD  c -> c     user u64, flags u8 (bit 0: a point-to-point
//	                        message or FILE offer to route and answer with
//	                        RESULT; bit 1: a FILE frame of a transfer held
//	                        on one of the two centers; neither: a copy to
//	                        push to user's sessions), then one whole
//	                        plaintext client frame for user
//	0A  RESULT   c -> c     to u64, mid u64, status u8: what became of a
//	                        forwarded QoS 1 message (an ACK status; FF:
//	                        refused, the sender must retry; FE: moved, the
//	                        recipient has no session there and nothing was
//	                        stored: the forwarding center routes it again)
//	0B  FANOUT   c -> c     count u32, then count user ids (u64 each) and
//	                        one whole plaintext client frame for all of them
//	0C  STORED   c -> c     count u32, then count user ids (u64 each):
//	                        messages for these users, who have no session
//	                        on the sender, were just stored offline; their
//	                        sessions on the receiver drain the store
//
// docs/operations.md shows one frame of each op in hex; TestLinkVectors
// holds the encoder and the Reader to those bytes, and FuzzLinkReader
// starts from them.
//
// Each side sends a PING every heartbeat interval and closes the link when
// nothing at all arrives for the heartbeat timeout, so that a dead peer is
// noticed within seconds even when no traffic flows.
//
// The endpoint keeps the QoS 1 messages (MSG and FILE with a client id) it
// wrote until a PONG's received count covers them, and writes them again
// first after a reconnect: the center's (sender, client id) table makes the
// repeat harmless, and a message that was in the socket when the link broke
// is not lost.
//
// Each link runs one reader and one writer goroutine: links are few, and
// the client-facing path stays on the reactor's event loops. Everything a
// link writes goes through one bounded FIFO (Queue); callers on event
// loops or under the center's locks only append to it and never block.
package link

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/frame"
)

// Cmd is the envelope command of every link frame (a constant, safe
// anywhere). It lies outside the client command range (frame.Cmd.Known is false for it), so that a link
// frame reaching a client parser fails as an unknown command.
const Cmd frame.Cmd = 0x40

// Op is a link frame's operation: the first body byte of a LINK frame.
// A plain value: safe to copy and compare anywhere.
type Op byte

// The link ops (see the package documentation for their fields);
// constants, safe anywhere.
const (
	OpHello   Op = 0x01
	OpOnline  Op = 0x02
	OpOffline Op = 0x03
	OpHandle  Op = 0x04
	OpDeliver Op = 0x05
	OpNotify  Op = 0x06
	OpPing    Op = 0x07
	OpPong    Op = 0x08
	OpForward Op = 0x09
	OpResult  Op = 0x0A
	OpFanout  Op = 0x0B
	OpStored  Op = 0x0C
	// OpDeliverMany is DELIVER for many sessions of one endpoint.
	OpDeliverMany Op = 0x0D
	opLimit       Op = 0x0E
)

// Version is the link protocol version a HELLO carries (a constant).
const Version = 1

// Flags of the link frames: constants, safe anywhere.
const (
	// Resumed flags an ONLINE that re-announces, after a reconnect, a
	// session the center had already been told about.
	Resumed byte = 1
	// HelloCenter flags the HELLO of a center linking to another center.
	HelloCenter byte = 1
	// HelloMany flags the HELLO of an endpoint that takes DELIVER_MANY.
	HelloMany byte = 2
	// HelloRerouting flags the HELLO of a center (both the dialing and
	// the answering one) that takes RESULT moved, STORED and FILE frames in
	// FORWARDs. A center sends those only to a peer that set it, so that a
	// cluster can be upgraded one center at a time: an older peer gets
	// what it knows, and the sender falls back (stores, or tells the user
	// to retry) where it would have used them.
	HelloRerouting byte = 4
	// ForwardP2P flags a FORWARD that carries a point-to-point message
	// (MSG or FILE, its MID assigned by the sending center).
	ForwardP2P byte = 1
	// ForwardFile flags a FORWARD of a FILE frame of a transfer held by
	// one of the two centers: a control frame of user's (its From) for the
	// center holding the transfer, or a chunk or re-offer for user's
	// session (its To).
	ForwardFile byte = 2
)

// RESULT statuses beside the ACK statuses (constants, safe anywhere).
const (
	// ResultRefused: the other center could not keep the forwarded
	// message; the sender must send it again.
	ResultRefused byte = 0xFF
	// ResultMoved: the recipient has no session on the other center, which
	// kept nothing; the forwarding center routes the message again. Only a
	// peer whose HELLO set HelloRerouting takes it.
	ResultMoved byte = 0xFE
)

// headMax bounds an item's head: Length (4) + Cmd + QoS + op + the widest
// fixed fields (16).
const headMax = 4 + 2 + 1 + 17

// fixedLen is each op's fixed field size after the op byte; hasTail says
// whether bytes may follow them.
var (
	fixedLen = [opLimit]int{OpHello: 6, OpOnline: 17, OpOffline: 17, OpHandle: 16,
		OpDeliver: 8, OpNotify: 10, OpPing: 8, OpPong: 16, OpForward: 9, OpResult: 17, OpFanout: 4,
		OpStored: 4, OpDeliverMany: 4}
	hasTail = [opLimit]bool{OpHandle: true, OpDeliver: true, OpNotify: true, OpForward: true,
		OpFanout: true, OpStored: true, OpDeliverMany: true}
)

// Link errors: sentinels, compare with errors.Is; safe anywhere.
var (
	// ErrProtocol: the peer sent a frame that is not a valid link frame.
	ErrProtocol = errors.New("link: protocol violation")
	// ErrRefused: the peer is not allowed on this link (wrong role,
	// wrong id, plain TCP from a public address, no proof of the secret).
	ErrRefused = errors.New("link: refused")
	// ErrSecret: a plain-TCP link without a shared secret long enough.
	ErrSecret = fmt.Errorf("link: a plain-text link needs a shared secret of at least %d bytes", minSecret)
	// ErrNoTLS: a link with neither TLS nor Plaintext set.
	ErrNoTLS = errors.New("link: a link needs TLS, or Plaintext set explicitly")
	// ErrFull: Queue.Push found the queue's bounds reached.
	ErrFull = errors.New("link: queue full")
	// ErrClosed: Queue.Push after Queue.Close.
	ErrClosed = errors.New("link: queue closed")
	// ErrHandover ends a link whose successor is already connected (see
	// Side.Serve).
	ErrHandover = errors.New("link: handed over")
)

// minSecret is the shortest shared secret a plain-TCP link takes.
const minSecret = 16

// Config tunes either end of a link. Zero values mean the defaults, which
// FillDefaults sets. A Config is read by every link that was given it and
// must not change once a link uses it.
type Config struct {
	// TLS secures the link with mutual TLS (clusterca.LoadNodeTLS gives
	// both sides' configurations). Nil means plain TCP, which must be
	// asked for with Plaintext and is accepted only from and to loopback
	// and private addresses, and only from a peer that proves it holds
	// Secret.
	TLS       *tls.Config
	Plaintext bool
	// Secret authenticates plain-TCP links: before HELLO each side proves
	// it holds it (AuthDial, AuthAccept). At least 16 bytes; required
	// with Plaintext.
	Secret []byte
	// QueueLen bounds the frames carrying traffic (HANDLE, DELIVER, NOTIFY)
	// that wait to be written, or, at the endpoint, wait for the center to
	// confirm them; QueueBytes bounds their bytes. Past either, the
	// endpoint refuses QoS 1 sends with ErrCodeRetry and the center's
	// Deliver fails with im.ErrSlowReader (the center then stores QoS 1
	// offline). Defaults 65,536 and 64 MiB: one link carries the traffic
	// of all of an endpoint's sessions.
	QueueLen, QueueBytes int
	// HeartbeatInterval is how often each side sends a PING; the link is
	// closed when nothing arrives for HeartbeatTimeout, and a write that
	// takes longer also fails it. Defaults 1 s and 3 s: a dead center is
	// noticed in about 3 s, while a 3x margin rides out a GC pause.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// MaxFrame caps a link frame's size. Default 16 MiB: a link carries
	// client frames plus 24 bytes, and center answers (member lists) can be
	// larger than what a client may send.
	MaxFrame int
	// RecheckInterval is how often a TLS link checks its peer's
	// certificate again (chain and deny list) and closes the link once it
	// fails: a removed node loses its links within it. Default
	// clusterca.DenyPollInterval.
	RecheckInterval time.Duration
	// Logger takes the links' logs. Default: discarded.
	Logger *slog.Logger
}

// FillDefaults sets every zero field to its default. Not safe for
// concurrent use: call it once, before the Config is shared.
func (c *Config) FillDefaults() {
	if c.QueueLen <= 0 {
		c.QueueLen = 1 << 16
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 64 << 20
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 3 * c.HeartbeatInterval
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RecheckInterval <= 0 {
		c.RecheckInterval = clusterca.DenyPollInterval
	}
}

// Check refuses plain TCP that was not asked for (ErrNoTLS) and a plain
// link without a long enough secret (ErrSecret). It only reads c: safe
// for concurrent use.
func (c *Config) Check() error {
	if c.TLS == nil && !c.Plaintext {
		return ErrNoTLS
	}
	if c.TLS == nil && len(c.Secret) < minSecret {
		return ErrSecret
	}
	return nil
}

// Hello is what a HELLO announces: the sender's node id and its HELLO
// flags. A plain value.
type Hello struct {
	ID    uint32
	Flags byte
}
