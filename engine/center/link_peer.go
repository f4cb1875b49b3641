package center

// Center <-> center links.
//
// Every center dials every other center it finds in the server registry
// (role "center") and sends its traffic for that center on the connection
// it dialed: FORWARD, RESULT, FANOUT and STORED (see package link). The
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
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
)

// peerLink is this center's outbound link to another center. It reconnects
// with jittered backoff until closed. Traffic is queued only while the link
// is up; a push while it is down fails, and the caller falls back (QoS 1
// to the offline store). Safe for concurrent use; push never blocks.
type peerLink struct {
	id   uint32 // the peer center's id
	addr string
	cl   *cluster
	q    *link.Queue
	r    *link.Redialer
	log  *slog.Logger
	// Guarded by q's lock, inside q.Do, so that what push checks (the
	// link up, the peer's HELLO) stays in step with the queue.
	rerouting bool // the peer's HELLO set link.HelloRerouting
	helloSeen bool // a HELLO came back: rerouting is known
}

func newPeerLink(cl *cluster, id uint32, addr string) *peerLink {
	p := &peerLink{id: id, addr: addr, cl: cl, q: link.NewQueue(&cl.cfg.Link),
		log: cl.log.With("peer_center", id, "addr", addr), r: link.NewRedialer(peerMinBackoff, peerMaxBackoff)}
	go p.r.Run(p)
	return p
}

// push queues a traffic item; false (the caller keeps it and releases it)
// when the link is down or its queue is full, or when the item needs a
// peer that takes rerouting and this one did not say so in its HELLO:
// every caller already falls back for a link that is down.
func (p *peerLink) push(it link.Item) bool {
	ok := false
	p.q.Do(func(q link.Locked) {
		ok = p.r.Connected() && (!it.Rerouting() || p.rerouting) && q.Push(it) == nil
	})
	return ok
}

// up reports whether the link is connected.
func (p *peerLink) up() bool { return p.r.Connected() }

// reroutes reports whether the peer may be sent what needs rerouting: true
// until its HELLO is known, then what the HELLO said.
func (p *peerLink) reroutes() (ok bool) {
	p.q.Do(func(link.Locked) { ok = !p.helloSeen || p.rerouting })
	return ok
}

// close stops the link and waits for its goroutine.
func (p *peerLink) close() {
	if nc, _ := p.r.Shut(); nc != nil {
		nc.Close() // outside every lock, as RemoteCenter.Close
	}
	<-p.r.Done()
}

// DialFailed, Down, Dial and Serve are the peer link's link.Side, called
// on its redialer's goroutine.
func (p *peerLink) DialFailed(n int, err error, _ time.Duration) {
	p.cl.PeerDialFails.Add(1)
	if n == 1 || (n-1)%20 == 0 {
		p.log.Warn("center peer link: connect failed", "err", err, "attempt", n)
	}
}

func (p *peerLink) Down(err error, upFor, _ time.Duration) {
	p.log.Warn("center peer link down", "err", err, "up_for", upFor.Round(time.Millisecond))
}

// Peer reconnect backoff: a restarted center is back within seconds, and
// while a peer is away its traffic goes to the offline store, so the
// ceiling stays short.
const (
	peerMinBackoff = 100 * time.Millisecond
	peerMaxBackoff = 2 * time.Second
)

func (p *peerLink) Dial() (net.Conn, *bufio.Reader, error) {
	timeout := p.cl.cfg.DialTimeout
	ctx, cancel := p.r.Context(timeout)
	defer cancel()
	nc, br, h, err := link.Dial(ctx, p.addr, &p.cl.cfg.Link, im.RoleCenter,
		link.Hello{ID: p.cl.c.cfg.ID, Flags: link.HelloCenter | link.HelloRerouting}, timeout)
	if err != nil {
		return nil, nil, err
	}
	if h.ID != p.id {
		nc.Close()
		return nil, nil, fmt.Errorf("%w: %s answers as center %d, the registry says %d", link.ErrRefused, p.addr, h.ID, p.id)
	}
	rerouting := h.Flags&link.HelloRerouting != 0
	p.q.Do(func(link.Locked) { p.rerouting, p.helloSeen = rerouting, true })
	if !rerouting {
		p.cl.log.Warn("center peer runs an older version: no rerouting of stale routes, hints or file transfers to it",
			"peer_center", p.id)
	}
	return nc, br, nil
}

// Serve runs one connection until it fails; the cluster then hears that
// the peer is down.
func (p *peerLink) Serve(nc net.Conn, br *bufio.Reader) error {
	defer p.cl.peerDown(p.id)
	up := false
	p.q.Do(func(q link.Locked) {
		if up = p.r.Up(nc); up {
			q.Reset(nil)
		}
	})
	if !up {
		nc.Close() // outside the queue's lock
		return im.ErrClosed
	}
	p.cl.PeerConnects.Add(1)
	p.log.Info("center peer link up", "tls", p.cl.cfg.Link.TLS != nil)
	p.cl.replayStored(p)

	err := p.q.Serve(nc, &p.cl.cfg.Link, func() error { return p.read(nc, br) })
	// What was queued and not written is dropped: the forwarded QoS 1
	// messages among it are still held by the cluster and go to the
	// offline store in peerDown.
	p.q.Do(func(q link.Locked) {
		p.r.Down()
		q.Clear()
	})
	return err
}

// read consumes the listening side's heartbeats.
func (p *peerLink) read(nc net.Conn, br *bufio.Reader) error {
	lr := link.NewReader(br, 64)
	timeout := p.cl.cfg.Link.HeartbeatTimeout
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		op, fixed, _, err := lr.Next()
		if err != nil {
			return err
		}
		switch op {
		case link.OpPing:
			_ = p.q.Push(link.NewPong(binary.BigEndian.Uint64(fixed), lr.Count()))
		case link.OpPong:
		default:
			return fmt.Errorf("%w: op %d from a peer center's listener", ErrLinkProtocol, op)
		}
	}
}

// servePeer runs a link another center dialed: it reads that center's
// traffic and answers its PINGs until the connection fails.
func (s *LinkServer) servePeer(raw, nc net.Conn, lr *link.Reader, id uint32, peer *clusterca.NodeIdentity) {
	c := s.cfg.Center
	if peer != nil && peer.Role != im.RoleCenter {
		s.reject(raw, fmt.Errorf("%w: HELLO of a center from a %s certificate", link.ErrRefused, peer.Role))
		return
	}
	if peer != nil && peer.NodeID != id {
		s.reject(raw, fmt.Errorf("%w: certificate of node %d, HELLO of center %d", link.ErrRefused, peer.NodeID, id))
		return
	}
	if c.cl == nil {
		s.reject(raw, fmt.Errorf("%w: this center is not clustered (no route table)", link.ErrRefused))
		return
	}
	if id == 0 || id == c.cfg.ID {
		s.reject(raw, fmt.Errorf("%w: center id %d", link.ErrRefused, id))
		return
	}
	if err := link.WriteHello(nc, link.Hello{ID: c.cfg.ID, Flags: link.HelloCenter | link.HelloRerouting}, s.cfg.HelloTimeout); err != nil {
		s.reject(raw, err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	s.Accepted.Add(1)
	log := s.cfg.Link.Logger.With("peer_center", id, "remote", raw.RemoteAddr().String())
	log.Info("center peer link accepted", "tls", peer != nil)
	q := link.NewQueue(&s.cfg.Link)
	lr.SetMax(s.cfg.Link.MaxFrame)
	err := q.Serve(nc, &s.cfg.Link, func() error { return s.readPeer(id, q, nc, lr) })
	q.Close()
	if s.closing() {
		log.Info("center peer link closed: this center stops")
		return
	}
	log.Warn("center peer link closed", "err", err)
}

// readPeer handles what a peer center sends.
func (s *LinkServer) readPeer(from uint32, q *link.Queue, nc net.Conn, lr *link.Reader) error {
	cl := s.cfg.Center.cl
	timeout := s.cfg.Link.HeartbeatTimeout
	var users []uint64
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		op, fixed, tail, err := lr.Next()
		if err != nil {
			return err
		}
		switch op {
		case link.OpForward:
			user, flags := binary.BigEndian.Uint64(fixed), fixed[8]
			buf, err := lr.ReadClientFrame(tail)
			if err != nil {
				return err
			}
			if err := cl.onForward(from, user, flags, buf); err != nil {
				return err
			}
		case link.OpResult:
			cl.onResult(from, binary.BigEndian.Uint64(fixed), binary.BigEndian.Uint64(fixed[8:]), fixed[16])
		case link.OpFanout:
			n := int(binary.BigEndian.Uint32(fixed))
			var buf *bytebufferpool.ByteBuffer
			var err error
			if users, buf, err = lr.ReadIDsFrame("FANOUT", n, tail, users[:0]); err != nil {
				return err
			}
			cl.onFanout(users, buf.B[8*n:])
			bytebufferpool.Put(buf)
		case link.OpStored:
			var err error
			if users, err = lr.ReadIDs("STORED", int(binary.BigEndian.Uint32(fixed)), tail, users[:0]); err != nil {
				return err
			}
			cl.onStored(users)
		case link.OpPing:
			_ = q.Push(link.NewPong(binary.BigEndian.Uint64(fixed), lr.Count()))
		case link.OpPong:
		default:
			return fmt.Errorf("%w: op %d from center %d", ErrLinkProtocol, op, from)
		}
	}
}
