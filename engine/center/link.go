package center

// Endpoint <-> center links.
//
// A link is one long-lived TCP (or mutual-TLS) connection from an endpoint
// to its center that carries the Center and Endpoint interfaces as frames.
// It uses the client protocol's envelope, Length + Cmd + QoS + body (see
// package frame), with one command of its own, LINK (0x40), which never
// appears on a client connection. A LINK body starts with an op byte;
// integers are big-endian:
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
// Centers link to each other with the same envelope (link_peer.go): HELLO
// flags bit 0 marks a center, and four more ops carry traffic one way, from
// the dialing center to the listening one (each center dials every other,
// so each direction has its own connection):
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
// the client-facing path stays on gnet. Everything a link writes goes
// through one bounded FIFO (linkQueue); callers on event loops or under the
// center's locks only append to it and never block.

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/frame"
)

// cmdLink is the envelope command of every link frame. It lies outside the
// client command range (frame.Cmd.Known is false for it), so that a link
// frame reaching a client parser fails as an unknown command.
const cmdLink frame.Cmd = 0x40

// Link ops: the first body byte of a LINK frame.
const (
	linkHello   byte = 0x01
	linkOnline  byte = 0x02
	linkOffline byte = 0x03
	linkHandle  byte = 0x04
	linkDeliver byte = 0x05
	linkNotify  byte = 0x06
	linkPing    byte = 0x07
	linkPong    byte = 0x08
	linkForward byte = 0x09
	linkResult  byte = 0x0A
	linkFanout  byte = 0x0B
	linkStored  byte = 0x0C
	// linkDeliverMany is DELIVER for many sessions of one endpoint.
	linkDeliverMany byte = 0x0D
	linkOpLimit     byte = 0x0E
)

const (
	linkVersion = 1
	// linkResumed flags an ONLINE that re-announces, after a reconnect, a
	// session the center had already been told about.
	linkResumed byte = 1
	// linkHelloCenter flags the HELLO of a center linking to another center.
	linkHelloCenter byte = 1
	// linkHelloMany flags the HELLO of an endpoint that takes DELIVER_MANY.
	linkHelloMany byte = 2
	// linkHelloRerouting flags the HELLO of a center (both the dialing and
	// the answering one) that takes RESULT moved, STORED and FILE frames in
	// FORWARDs. A center sends those only to a peer that set it, so that a
	// cluster can be upgraded one center at a time: an older peer gets
	// what it knows, and the sender falls back (stores, or tells the user
	// to retry) where it would have used them.
	linkHelloRerouting byte = 4
	// linkForwardP2P flags a FORWARD that carries a point-to-point message
	// (MSG or FILE, its MID assigned by the sending center).
	linkForwardP2P byte = 1
	// linkForwardFile flags a FORWARD of a FILE frame of a transfer held by
	// one of the two centers (center_cluster_files.go): a control frame of
	// user's (its From) for the center holding the transfer, or a chunk or
	// re-offer for user's session (its To).
	linkForwardFile byte = 2
	// linkHeadMax bounds an item's head: Length (4) + Cmd + QoS + op + the
	// widest fixed fields (16).
	linkHeadMax = 4 + 2 + 1 + 17
)

// linkFixed is each op's fixed field size after the op byte; linkTail says
// whether bytes may follow them.
var (
	linkFixed = [linkOpLimit]int{linkHello: 6, linkOnline: 17, linkOffline: 17, linkHandle: 16,
		linkDeliver: 8, linkNotify: 10, linkPing: 8, linkPong: 16, linkForward: 9, linkResult: 17, linkFanout: 4,
		linkStored: 4, linkDeliverMany: 4}
	linkTail = [linkOpLimit]bool{linkHandle: true, linkDeliver: true, linkNotify: true, linkForward: true,
		linkFanout: true, linkStored: true, linkDeliverMany: true}
)

// Link errors.
var (
	// ErrLinkProtocol: the peer sent a frame that is not a valid link frame.
	ErrLinkProtocol = errors.New("center: link protocol violation")
	// ErrLinkRefused: the peer is not allowed on this link (wrong role,
	// wrong id, plain TCP from a public address).
	ErrLinkRefused = errors.New("center: link refused")
	// ErrLinkDown: the center link is not connected.
	ErrLinkDown = errors.New("center: center link down")
)

// LinkConfig tunes either end of an endpoint <-> center link. Zero values
// mean the defaults.
type LinkConfig struct {
	// TLS secures the link with mutual TLS (LoadNodeTLS gives both
	// sides' configurations). Nil means plain TCP, which must be asked for
	// with Plaintext and is accepted only from and to loopback and private
	// addresses, and only from a peer that proves it holds Secret.
	TLS       *tls.Config
	Plaintext bool
	// Secret authenticates plain-TCP links: before HELLO each side proves
	// it holds it (linkAuth). At least 16 bytes; required with Plaintext.
	Secret []byte
	// QueueLen bounds the frames carrying traffic (HANDLE, DELIVER, NOTIFY)
	// that wait to be written, or, at the endpoint, wait for the center to
	// confirm them; QueueBytes bounds their bytes. Past either, the
	// endpoint refuses QoS 1 sends with ErrCodeRetry and the center's
	// Deliver fails with ErrSlowReader (the center then stores QoS 1
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
	// DenyPollInterval.
	RecheckInterval time.Duration
	Logger          *slog.Logger
}

func (c *LinkConfig) fillDefaults() {
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

// watchedConn is a TLS link connection whose peer certificate is checked
// again every interval (the tls.Config's VerifyConnection, which reads the
// deny list); the connection is closed once it fails, or the watch ends
// when the connection is closed.
type watchedConn struct {
	*tls.Conn
	once sync.Once
	stop chan struct{}
}

func (w *watchedConn) Close() error {
	w.once.Do(func() { close(w.stop) })
	return w.Conn.Close()
}

// watchPeer returns tc wrapped so that it closes itself once its peer no
// longer verifies under cfg.
func watchPeer(tc *tls.Conn, cfg *tls.Config, every time.Duration, log *slog.Logger) net.Conn {
	if cfg.VerifyConnection == nil || every <= 0 {
		return tc
	}
	w := &watchedConn{Conn: tc, stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			if err := cfg.VerifyConnection(tc.ConnectionState()); err != nil {
				log.Warn("link peer no longer trusted: closing the link", "remote", tc.RemoteAddr().String(), "err", err)
				_ = w.Close()
				return
			}
		}
	}()
	return w
}

// check refuses plain TCP that was not asked for.
func (c *LinkConfig) check() error {
	if c.TLS == nil && !c.Plaintext {
		return errors.New("center: link needs TLS, or Plaintext set explicitly")
	}
	if c.TLS == nil && len(c.Secret) < minLinkSecret {
		return ErrLinkSecret
	}
	return nil
}

// minLinkSecret is the shortest shared secret a plain-TCP link takes.
const minLinkSecret = 16

// ErrLinkSecret: a plain-TCP link without a shared secret long enough.
var ErrLinkSecret = fmt.Errorf("center: a plain-text link needs a shared secret of at least %d bytes", minLinkSecret)

// Plain-TCP link authentication, before HELLO, with the shared secret K:
//
//	dialer   -> listener  Nd (32 random bytes)
//	listener -> dialer    Nl (32 random bytes), HMAC-SHA256(K, "myim link listener" | Nd | Nl)
//	dialer   -> listener  HMAC-SHA256(K, "myim link dialer" | Nd | Nl)
//
// Each side checks the other's MAC in constant time and closes the
// connection on a mismatch; fresh nonces on both sides make a recorded
// exchange useless. It proves the peer holds K; it does not protect what
// follows from someone on the path, which is what TLS is for.
const linkNonce = 32

func linkMAC(secret []byte, label string, nd, nl []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(nd)
	m.Write(nl)
	return m.Sum(nil)
}

// linkAuthDial runs the dialer's side on nc, under nc's deadline.
func linkAuthDial(nc net.Conn, secret []byte) error {
	var nd [linkNonce]byte
	_, _ = rand.Read(nd[:])
	if _, err := nc.Write(nd[:]); err != nil {
		return err
	}
	var in [linkNonce + sha256.Size]byte
	if _, err := io.ReadFull(nc, in[:]); err != nil {
		return fmt.Errorf("%w: no proof of the link secret: %v", ErrLinkRefused, err)
	}
	nl := in[:linkNonce]
	if !hmac.Equal(in[linkNonce:], linkMAC(secret, "myim link listener", nd[:], nl)) {
		return fmt.Errorf("%w: the listener does not hold the link secret", ErrLinkRefused)
	}
	_, err := nc.Write(linkMAC(secret, "myim link dialer", nd[:], nl))
	return err
}

// linkAuthAccept runs the listener's side on nc, under nc's deadline.
func linkAuthAccept(nc net.Conn, secret []byte) error {
	var nd [linkNonce]byte
	if _, err := io.ReadFull(nc, nd[:]); err != nil {
		return fmt.Errorf("%w: no link authentication: %v", ErrLinkRefused, err)
	}
	var nl [linkNonce]byte
	_, _ = rand.Read(nl[:])
	out := append(nl[:], linkMAC(secret, "myim link listener", nd[:], nl[:])...)
	if _, err := nc.Write(out); err != nil {
		return err
	}
	var mac [sha256.Size]byte
	if _, err := io.ReadFull(nc, mac[:]); err != nil {
		return fmt.Errorf("%w: no proof of the link secret: %v", ErrLinkRefused, err)
	}
	if !hmac.Equal(mac[:], linkMAC(secret, "myim link dialer", nd[:], nl[:])) {
		return fmt.Errorf("%w: the dialer does not hold the link secret", ErrLinkRefused)
	}
	return nil
}

// plainAllowed reports whether a plain-TCP peer address is loopback or
// private: plain links must not cross the internet.
func plainAllowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	return ta.IP.IsLoopback() || ta.IP.IsPrivate()
}

// linkItem is one frame waiting in a linkQueue: a small head (the envelope
// and fixed fields) and an optional pooled tail (a client frame or JSON),
// written back to back so that the tail is never copied.
type linkItem struct {
	head [linkHeadMax]byte
	n    uint8
	op   byte
	// data marks traffic that counts against the queue's bounds.
	data bool
	// retain: a QoS 1 message the endpoint keeps until the center has
	// confirmed reading it.
	retain bool
	// rerouting: only a peer center whose HELLO set linkHelloRerouting
	// takes it.
	rerouting bool
	buf       *bytebufferpool.ByteBuffer
}

func (it *linkItem) size() int {
	n := int(it.n)
	if it.buf != nil {
		n += len(it.buf.B)
	}
	return n
}

// begin writes the envelope and op for fixed field bytes plus tail bytes
// and returns the head so far; the caller appends the fixed fields and
// calls end.
func (it *linkItem) begin(op byte, tail int) []byte {
	it.op = op
	h, _ := frame.AppendHeader(it.head[:0], cmdLink, frame.QoS0, 1+linkFixed[op]+tail)
	return append(h, op)
}

func (it *linkItem) end(h []byte) { it.n = uint8(len(h)) }

func helloItem(id uint32, flags byte) linkItem {
	var it linkItem
	h := it.begin(linkHello, 0)
	h = append(h, linkVersion, flags)
	it.end(binary.BigEndian.AppendUint32(h, id))
	return it
}

func sessItem(op byte, user, session uint64, flag byte) linkItem {
	var it linkItem
	h := it.begin(op, 0)
	h = binary.BigEndian.AppendUint64(h, user)
	h = binary.BigEndian.AppendUint64(h, session)
	it.end(append(h, flag))
	return it
}

func handleItem(user, session uint64, buf *bytebufferpool.ByteBuffer) linkItem {
	var it linkItem
	h := it.begin(linkHandle, len(buf.B))
	h = binary.BigEndian.AppendUint64(h, user)
	it.end(binary.BigEndian.AppendUint64(h, session))
	it.buf, it.data = buf, true
	return it
}

func deliverItem(session uint64, buf *bytebufferpool.ByteBuffer) linkItem {
	var it linkItem
	h := it.begin(linkDeliver, len(buf.B))
	it.end(binary.BigEndian.AppendUint64(h, session))
	it.buf, it.data = buf, true
	return it
}

func notifyItem(user uint64, code uint16, buf *bytebufferpool.ByteBuffer) linkItem {
	var it linkItem
	h := it.begin(linkNotify, len(buf.B))
	h = binary.BigEndian.AppendUint64(h, user)
	it.end(binary.BigEndian.AppendUint16(h, code))
	it.buf, it.data = buf, true
	return it
}

func pingItem(op byte, nonce, received uint64) linkItem {
	var it linkItem
	h := it.begin(op, 0)
	h = binary.BigEndian.AppendUint64(h, nonce)
	if op == linkPong {
		h = binary.BigEndian.AppendUint64(h, received)
	}
	it.end(h)
	return it
}

// retained is a written QoS 1 message the peer has not confirmed yet.
type retained struct {
	seq uint64
	it  linkItem
}

// linkQueue is a link's bounded outbound FIFO, shared by the producers
// (event loops, center workers, the reader) and the one writer goroutine.
// Only traffic counts against the bounds; control frames (ONLINE,
// OFFLINE, PING, PONG) are always admitted, since dropping one would leave
// the two ends disagreeing, and their number is bounded by session churn
// and the heartbeat. Safe for concurrent use; mu also guards the fields the
// owner (RemoteCenter, remoteEndpoint) keeps beside it.
type linkQueue struct {
	mu       sync.Mutex
	items    []linkItem
	data     int // traffic items queued or retained
	bytes    int // their bytes
	kept     []retained
	acked    uint64 // the peer's last received count, this connection
	closed   bool
	maxItems int
	maxBytes int
	wake     chan struct{}
}

func newLinkQueue(cfg *LinkConfig) *linkQueue {
	return &linkQueue{maxItems: cfg.QueueLen, maxBytes: cfg.QueueBytes, wake: make(chan struct{}, 1)}
}

// pushLocked appends it; for traffic it reports false when the queue is
// full (or closed), and the caller keeps it.buf. q.mu must be held.
func (q *linkQueue) pushLocked(it linkItem) bool {
	if q.closed {
		return false
	}
	if it.data {
		sz := it.size()
		if q.data >= q.maxItems || q.bytes+sz > q.maxBytes {
			return false
		}
		q.data++
		q.bytes += sz
	}
	q.items = append(q.items, it)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *linkQueue) push(it linkItem) bool {
	q.mu.Lock()
	ok := q.pushLocked(it)
	q.mu.Unlock()
	return ok
}

// releaseLocked frees an item that leaves the queue for good.
func (q *linkQueue) releaseLocked(it *linkItem) {
	if it.data {
		q.data--
		q.bytes -= it.size()
	}
	if it.buf != nil {
		bytebufferpool.Put(it.buf)
		it.buf = nil
	}
}

// take moves every queued item to dst, in order.
func (q *linkQueue) take(dst []linkItem) []linkItem {
	q.mu.Lock()
	dst = append(dst, q.items...)
	clear(q.items)
	q.items = q.items[:0]
	q.mu.Unlock()
	return dst
}

// written records a batch the writer handled: items to keep are retained
// (all of them when the write failed, since the peer may not have them),
// the others released. seq counts frames written on this connection.
func (q *linkQueue) written(batch []linkItem, seq *uint64, failed bool) {
	q.mu.Lock()
	for i := range batch {
		it := &batch[i]
		*seq++
		if it.retain && (failed || *seq > q.acked) {
			q.kept = append(q.kept, retained{seq: *seq, it: *it})
			continue
		}
		q.releaseLocked(it)
	}
	q.mu.Unlock()
	clear(batch)
}

// confirm releases the retained messages the peer has read.
func (q *linkQueue) confirm(received uint64) {
	q.mu.Lock()
	if received > q.acked {
		q.acked = received
	}
	n := 0
	for n < len(q.kept) && q.kept[n].seq <= received {
		q.releaseLocked(&q.kept[n].it)
		n++
	}
	q.kept = append(q.kept[:0], q.kept[n:]...)
	q.mu.Unlock()
}

// resetLocked prepares the queue for the next connection: retained
// messages go first, then the traffic still queued; control frames are
// dropped, because the next connection re-announces its sessions. front
// goes before all of them. q.mu must be held.
func (q *linkQueue) resetLocked(front []linkItem) {
	items := make([]linkItem, 0, len(front)+len(q.kept)+len(q.items))
	items = append(items, front...)
	for i := range q.kept {
		items = append(items, q.kept[i].it)
	}
	for i := range q.items {
		it := &q.items[i]
		if it.data {
			items = append(items, *it)
		} else {
			q.releaseLocked(it)
		}
	}
	q.items, q.kept, q.acked = items, q.kept[:0], 0
	if len(items) > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// closeLocked refuses further pushes and frees everything queued.
func (q *linkQueue) closeLocked() {
	q.closed = true
	for i := range q.items {
		q.releaseLocked(&q.items[i])
	}
	for i := range q.kept {
		q.releaseLocked(&q.kept[i].it)
	}
	q.items, q.kept = nil, nil
}

// serve runs one link connection: a goroutine writes what q holds (and
// the heartbeat) while read consumes nc on the caller's goroutine, until
// either fails; then nc is closed and the writer stopped. It returns the
// reader's error, else the writer's.
func (q *linkQueue) serve(nc net.Conn, lc *LinkConfig, read func() error) error {
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		err := q.writeLoop(nc, lc.HeartbeatInterval, lc.HeartbeatTimeout, stop)
		nc.Close() // wakes the reader
		werr <- err
	}()
	err := read()
	nc.Close()
	close(stop)
	if e := <-werr; e != nil && err == nil {
		err = e
	}
	return err
}

// writeLoop writes what the queue holds until stop closes or a write fails,
// and sends a PING every interval. Each write must finish within timeout.
func (q *linkQueue) writeLoop(nc net.Conn, interval, timeout time.Duration, stop <-chan struct{}) error {
	w := bufio.NewWriterSize(nc, 64<<10)
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		batch []linkItem
		seq   uint64
	)
	for {
		select {
		case <-stop:
			return nil
		case now := <-t.C:
			q.push(pingItem(linkPing, uint64(now.UnixNano()), 0))
			continue // the push woke us
		case <-q.wake:
		}
		batch = q.take(batch[:0])
		if len(batch) == 0 {
			continue
		}
		_ = nc.SetWriteDeadline(time.Now().Add(timeout))
		var err error
		for i := range batch {
			it := &batch[i]
			if _, err = w.Write(it.head[:it.n]); err != nil {
				break
			}
			if it.buf != nil {
				if _, err = w.Write(it.buf.B); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = w.Flush()
		}
		q.written(batch, &seq, err != nil)
		if err != nil {
			return err
		}
	}
}

// idsItem builds an item of op whose tail is ids (u64 each) and then frame
// b, in one pooled buffer (FANOUT, DELIVER_MANY).
func idsItem(op byte, ids []uint64, b []byte) linkItem {
	buf := bytebufferpool.Get()
	for _, id := range ids {
		buf.B = binary.BigEndian.AppendUint64(buf.B, id)
	}
	buf.B = append(buf.B, b...)
	var it linkItem
	h := it.begin(op, len(buf.B))
	it.end(binary.BigEndian.AppendUint32(h, uint32(len(ids))))
	it.buf, it.data = buf, true
	return it
}
