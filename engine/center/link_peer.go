package center

// Center <-> center links.
//
// Every center dials every other center it finds in the server registry
// (role "center") and sends its traffic for that center on the connection
// it dialed: FORWARD, RESULT, FANOUT and STORED (see link.go). The
// listening side only reads that traffic and answers PINGs, so each
// direction of a pair of centers has a connection of its own and neither
// side has to decide which of two crossing dials wins. Both ends run mutual TLS with certificates of
// role "center" (or plain TCP on private networks, as endpoint links).
//
// Peer links carry no retained frames and are not replayed after a
// reconnect: the sending center keeps each forwarded QoS 1 message until
// its RESULT arrives, and stores it offline itself when the link drops or
// the RESULT is overdue (center_cluster.go).

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
)

// dialLink connects to the link listener at addr: TCP, then (unless lc is
// plain text) mutual TLS with a peer whose certificate has role want, then
// HELLO both ways, ours with id and flags. It returns the connection, a
// reader past the peer's HELLO, and the id and HELLO flags the peer
// announced.
func dialLink(ctx context.Context, addr string, lc *LinkConfig, want string, id uint32, flags byte,
	timeout time.Duration) (net.Conn, *bufio.Reader, uint32, byte, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, uint32, byte, error) {
		nc.Close()
		return nil, nil, 0, 0, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if lc.TLS == nil {
		if !plainAllowed(nc.RemoteAddr()) {
			return fail(fmt.Errorf("%w: plain TCP to public address %s", ErrLinkRefused, nc.RemoteAddr()))
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = nc.SetDeadline(dl)
		}
		err := linkAuthDial(nc, lc.Secret)
		_ = nc.SetDeadline(time.Time{})
		if err != nil {
			return fail(err)
		}
	} else {
		tc := tls.Client(nc, lc.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		peer, err := clusterca.PeerNode(tc.ConnectionState())
		if err != nil {
			return fail(err)
		}
		if peer.Role != want {
			return fail(fmt.Errorf("%w: peer is a %s, not a %s", ErrLinkRefused, peer.Role, want))
		}
		nc = watchPeer(tc, lc.TLS, lc.RecheckInterval, lc.Logger)
	}
	if err := writeHello(nc, id, flags, timeout); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetReadDeadline(dl)
	}
	peerID, peerFlags, err := readHello(&linkReader{r: br, max: 64})
	if err != nil {
		return fail(err)
	}
	return nc, br, peerID, peerFlags, nil
}

// peerLink is this center's outbound link to another center. It reconnects
// with jittered backoff until closed. Traffic is queued only while the link
// is up; a push while it is down fails, and the caller falls back (QoS 1
// to the offline store). Safe for concurrent use; push never blocks.
type peerLink struct {
	id   uint32 // the peer center's id
	addr string
	cl   *cluster
	q    *linkQueue
	log  *slog.Logger
	redialer
	// Guarded by q.mu.
	rerouting bool // the peer's HELLO set linkHelloRerouting
	helloSeen bool // a HELLO came back: rerouting is known
}

func newPeerLink(cl *cluster, id uint32, addr string) *peerLink {
	p := &peerLink{id: id, addr: addr, cl: cl, q: newLinkQueue(&cl.cfg.Link),
		log: cl.log.With("peer_center", id, "addr", addr), redialer: newRedialer(peerMinBackoff, peerMaxBackoff)}
	go p.redialer.run(p)
	return p
}

// push queues a traffic item; false (the caller keeps it.buf) when the
// link is down or its queue is full, or when the item needs a peer that
// takes rerouting and this one did not say so in its HELLO: every caller
// already falls back for a link that is down.
func (p *peerLink) push(it linkItem) bool {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	if !p.connected || (it.rerouting && !p.rerouting) {
		return false
	}
	return p.q.pushLocked(it)
}

// up reports whether the link is connected.
func (p *peerLink) up() bool {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	return p.connected
}

// close stops the link and waits for its goroutine.
func (p *peerLink) close() {
	p.q.mu.Lock()
	nc, _ := p.shutLocked()
	p.q.mu.Unlock()
	if nc != nil {
		nc.Close() // outside the queue's lock, as RemoteCenter.Close
	}
	<-p.done
}

func (p *peerLink) dialFailed(n int, err error, _ time.Duration) {
	p.cl.PeerDialFails.Add(1)
	if n == 1 || (n-1)%20 == 0 {
		p.log.Warn("center peer link: connect failed", "err", err, "attempt", n)
	}
}

func (p *peerLink) down(err error, upFor, _ time.Duration) {
	p.log.Warn("center peer link down", "err", err, "up_for", upFor.Round(time.Millisecond))
}

// Peer reconnect backoff: a restarted center is back within seconds, and
// while a peer is away its traffic goes to the offline store, so the
// ceiling stays short.
const (
	peerMinBackoff = 100 * time.Millisecond
	peerMaxBackoff = 2 * time.Second
)

func (p *peerLink) dial() (net.Conn, *bufio.Reader, error) {
	timeout := p.cl.cfg.DialTimeout
	ctx, cancel := stoppableContext(p.stop, timeout)
	defer cancel()
	nc, br, id, flags, err := dialLink(ctx, p.addr, &p.cl.cfg.Link, im.RoleCenter, p.cl.c.cfg.ID,
		linkHelloCenter|linkHelloRerouting, timeout)
	if err != nil {
		return nil, nil, err
	}
	if id != p.id {
		nc.Close()
		return nil, nil, fmt.Errorf("%w: %s answers as center %d, the registry says %d", ErrLinkRefused, p.addr, id, p.id)
	}
	p.q.mu.Lock()
	p.rerouting, p.helloSeen = flags&linkHelloRerouting != 0, true
	p.q.mu.Unlock()
	if flags&linkHelloRerouting == 0 {
		p.cl.log.Warn("center peer runs an older version: no rerouting of stale routes, hints or file transfers to it",
			"peer_center", p.id)
	}
	return nc, br, nil
}

// serve runs one connection until it fails; the cluster then hears that
// the peer is down.
func (p *peerLink) serve(nc net.Conn, br *bufio.Reader) error {
	defer p.cl.peerDown(p.id)
	p.q.mu.Lock()
	if !p.upLocked(nc) {
		p.q.mu.Unlock()
		return engine.ErrClosed
	}
	p.q.resetLocked(nil)
	p.q.mu.Unlock()
	p.cl.PeerConnects.Add(1)
	p.log.Info("center peer link up", "tls", p.cl.cfg.Link.TLS != nil)
	p.cl.replayStored(p)

	err := p.q.serve(nc, &p.cl.cfg.Link, func() error { return p.read(nc, br) })
	p.q.mu.Lock()
	p.downLocked()
	// What was queued and not written is dropped: the forwarded QoS 1
	// messages among it are still held by the cluster and go to the
	// offline store in peerDown.
	for i := range p.q.items {
		p.q.releaseLocked(&p.q.items[i])
	}
	for i := range p.q.kept {
		p.q.releaseLocked(&p.q.kept[i].it)
	}
	p.q.items, p.q.kept, p.q.acked = p.q.items[:0], p.q.kept[:0], 0
	p.q.mu.Unlock()
	return err
}

// read consumes the listening side's heartbeats.
func (p *peerLink) read(nc net.Conn, br *bufio.Reader) error {
	lr := linkReader{r: br, max: 64}
	timeout := p.cl.cfg.Link.HeartbeatTimeout
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		op, fixed, _, err := lr.next()
		if err != nil {
			return err
		}
		switch op {
		case linkPing:
			p.q.push(pingItem(linkPong, binary.BigEndian.Uint64(fixed), lr.count))
		case linkPong:
		default:
			return fmt.Errorf("%w: op %d from a peer center's listener", ErrLinkProtocol, op)
		}
	}
}

// forwardItem is a FORWARD of buf for user.
func forwardItem(user uint64, flags byte, buf *bytebufferpool.ByteBuffer) linkItem {
	var it linkItem
	h := it.begin(linkForward, len(buf.B))
	h = binary.BigEndian.AppendUint64(h, user)
	it.end(append(h, flags))
	it.buf, it.data = buf, true
	it.rerouting = flags&linkForwardFile != 0 || (flags&linkForwardP2P != 0 && frame.Frame(buf.B).Cmd() == frame.CmdFile)
	return it
}

// resultItem is a RESULT for a forwarded message.
func resultItem(to, mid uint64, status byte) linkItem {
	var it linkItem
	h := it.begin(linkResult, 0)
	h = binary.BigEndian.AppendUint64(h, to)
	h = binary.BigEndian.AppendUint64(h, mid)
	it.end(append(h, status))
	it.data, it.rerouting = true, status == resultMoved
	return it
}

// fanoutItem is a FANOUT of a client frame to users; the tail is the user
// ids followed by the frame, built in one pooled buffer.
func fanoutItem(users []uint64, b []byte) linkItem { return idsItem(linkFanout, users, b) }

// storedItem is a STORED hint naming users whose messages were just stored
// offline; the tail is the user ids, built in one pooled buffer.
func storedItem(users []uint64) linkItem {
	buf := bytebufferpool.Get()
	for _, u := range users {
		buf.B = binary.BigEndian.AppendUint64(buf.B, u)
	}
	var it linkItem
	h := it.begin(linkStored, len(buf.B))
	it.end(binary.BigEndian.AppendUint32(h, uint32(len(users))))
	it.buf, it.data, it.rerouting = buf, true, true
	return it
}

// servePeer runs a link another center dialed: it reads that center's
// traffic and answers its PINGs until the connection fails.
func (s *LinkServer) servePeer(raw, nc net.Conn, lr *linkReader, id uint32, peer *clusterca.NodeIdentity) {
	c := s.cfg.Center
	if peer != nil && peer.Role != im.RoleCenter {
		s.reject(raw, fmt.Errorf("%w: HELLO of a center from a %s certificate", ErrLinkRefused, peer.Role))
		return
	}
	if peer != nil && peer.NodeID != id {
		s.reject(raw, fmt.Errorf("%w: certificate of node %d, HELLO of center %d", ErrLinkRefused, peer.NodeID, id))
		return
	}
	if c.cl == nil {
		s.reject(raw, fmt.Errorf("%w: this center is not clustered (no route table)", ErrLinkRefused))
		return
	}
	if id == 0 || id == c.cfg.ID {
		s.reject(raw, fmt.Errorf("%w: center id %d", ErrLinkRefused, id))
		return
	}
	if err := writeHello(nc, c.cfg.ID, linkHelloCenter|linkHelloRerouting, s.cfg.HelloTimeout); err != nil {
		s.reject(raw, err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	s.Accepted.Add(1)
	log := s.cfg.Link.Logger.With("peer_center", id, "remote", raw.RemoteAddr().String())
	log.Info("center peer link accepted", "tls", peer != nil)
	q := newLinkQueue(&s.cfg.Link)
	lr.max = s.cfg.Link.MaxFrame
	err := q.serve(nc, &s.cfg.Link, func() error { return s.readPeer(id, q, nc, lr) })
	q.mu.Lock()
	q.closeLocked()
	q.mu.Unlock()
	if s.closing() {
		log.Info("center peer link closed: this center stops")
		return
	}
	log.Warn("center peer link closed", "err", err)
}

// readPeer handles what a peer center sends.
func (s *LinkServer) readPeer(from uint32, q *linkQueue, nc net.Conn, lr *linkReader) error {
	cl := s.cfg.Center.cl
	timeout := s.cfg.Link.HeartbeatTimeout
	var users []uint64
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		op, fixed, tail, err := lr.next()
		if err != nil {
			return err
		}
		switch op {
		case linkForward:
			user, flags := binary.BigEndian.Uint64(fixed), fixed[8]
			buf, err := lr.readClientFrame(tail)
			if err != nil {
				return err
			}
			if err := cl.onForward(from, user, flags, buf); err != nil {
				return err
			}
		case linkResult:
			cl.onResult(from, binary.BigEndian.Uint64(fixed), binary.BigEndian.Uint64(fixed[8:]), fixed[16])
		case linkFanout:
			n := int(binary.BigEndian.Uint32(fixed))
			var buf *bytebufferpool.ByteBuffer
			var err error
			if users, buf, err = lr.readIDsFrame("FANOUT", n, tail, users[:0]); err != nil {
				return err
			}
			cl.onFanout(users, buf.B[8*n:])
			bytebufferpool.Put(buf)
		case linkStored:
			n := int(binary.BigEndian.Uint32(fixed))
			if n != tail/8 || tail%8 != 0 {
				return fmt.Errorf("%w: STORED of %d users in %d bytes", ErrLinkProtocol, n, tail)
			}
			buf, err := lr.readTail(tail)
			if err != nil {
				return err
			}
			users = appendUsers(users[:0], buf.B, n)
			bytebufferpool.Put(buf)
			cl.onStored(users)
		case linkPing:
			q.push(pingItem(linkPong, binary.BigEndian.Uint64(fixed), lr.count))
		case linkPong:
		default:
			return fmt.Errorf("%w: op %d from center %d", ErrLinkProtocol, op, from)
		}
	}
}

// appendUsers appends the n big-endian user ids at the start of b.
func appendUsers(users []uint64, b []byte, n int) []uint64 {
	for i := 0; i < n; i++ {
		users = append(users, binary.BigEndian.Uint64(b[8*i:]))
	}
	return users
}
