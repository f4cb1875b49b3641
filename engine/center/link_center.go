package center

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
)

// ErrLinkProtocol is link.ErrProtocol: what a link's peer sent, or what a
// peer center forwarded, is not valid.
var ErrLinkProtocol = link.ErrProtocol

// LinkServerConfig wires the center's link listener.
type LinkServerConfig struct {
	// Addr is the listen address, host:port.
	Addr   string
	Center *LocalCenter
	Link   link.Config
	// HelloTimeout bounds the TLS handshake and HELLO of a new link.
	// Default 5 s.
	HelloTimeout time.Duration
}

// LinkServer accepts endpoint links for a LocalCenter. Each link becomes an
// Endpoint attached to the center under the id the endpoint announced
// (with TLS, the id its certificate carries: an endpoint cannot speak for
// another). A second link with the same id replaces the first. When a link
// drops, every session it reported goes offline at the center, which
// stores what was pushed to them and not acknowledged. Safe for concurrent
// use.
type LinkServer struct {
	cfg LinkServerConfig
	ln  net.Listener

	mu     sync.Mutex
	links  map[uint32]*remoteEndpoint
	conns  map[net.Conn]struct{}
	closed bool
	// attachMu serialises link registration, so that a replaced link has
	// sent its sessions offline before its successor's arrive.
	attachMu sync.Mutex
	wg       sync.WaitGroup

	// Stats, for metrics and tests.
	Accepted atomic.Uint64 // links established
	Rejected atomic.Uint64 // connections refused: TLS, role, id, HELLO
}

// NewLinkServer checks cfg; Start binds the listener.
func NewLinkServer(cfg LinkServerConfig) (*LinkServer, error) {
	cfg.Link.FillDefaults()
	if err := cfg.Link.Check(); err != nil {
		return nil, err
	}
	if cfg.Center == nil {
		return nil, errors.New("center: link server needs a center")
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 5 * time.Second
	}
	return &LinkServer{cfg: cfg, links: make(map[uint32]*remoteEndpoint), conns: make(map[net.Conn]struct{})}, nil
}

// Start binds the listener and accepts links in the background.
func (s *LinkServer) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	if s.cfg.Link.TLS == nil {
		s.cfg.Link.Logger.Warn("center link listener is plain TCP: only loopback and private peers are accepted",
			"addr", ln.Addr().String())
	}
	s.wg.Add(1)
	go s.accept()
	return nil
}

// Addr returns the bound address, or nil before Start.
func (s *LinkServer) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Links returns the ids of the endpoints linked now, ascending.
func (s *LinkServer) Links() []uint32 {
	s.mu.Lock()
	ids := make([]uint32, 0, len(s.links))
	for id := range s.links {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// CloseLink closes endpoint id's link (its sessions go offline here; the
// endpoint reconnects) and reports whether there was one.
func (s *LinkServer) CloseLink(id uint32) bool {
	s.mu.Lock()
	re := s.links[id]
	s.mu.Unlock()
	if re == nil {
		return false
	}
	re.nc.Close()
	<-re.done
	return true
}

// Close stops accepting, closes every link and waits for them.
func (s *LinkServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close() // outside s.mu, as every link connection
	}
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	s.wg.Wait()
	return err
}

func (s *LinkServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Link.Logger.Warn("link accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(nc)
	}
}

func (s *LinkServer) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
	nc.Close()
}

func (s *LinkServer) reject(nc net.Conn, err error) {
	s.Rejected.Add(1)
	s.cfg.Link.Logger.Warn("center link refused", "remote", nc.RemoteAddr().String(), "err", err)
}

// serve runs one link: TLS and HELLO, registration, then the reader here
// and the writer on its own goroutine, until either fails.
func (s *LinkServer) serve(raw net.Conn) {
	defer s.wg.Done()
	defer s.untrack(raw)
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	_ = raw.SetDeadline(time.Now().Add(s.cfg.HelloTimeout))
	nc, peer, err := link.Accept(raw, &s.cfg.Link, s.cfg.HelloTimeout, im.RoleEndpoint, im.RoleCenter)
	if err != nil {
		s.reject(raw, err)
		return
	}
	if peer != nil {
		defer nc.Close() // ends the watch of the peer's certificate
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	lr := link.NewReader(br, 64)
	h, err := lr.Hello()
	if err != nil {
		s.reject(raw, err)
		return
	}
	id, flags := h.ID, h.Flags
	if flags&link.HelloCenter != 0 {
		s.servePeer(raw, nc, lr, id, peer)
		return
	}
	if peer != nil && peer.Role != im.RoleEndpoint {
		s.reject(raw, fmt.Errorf("%w: peer is a %s, not an endpoint", link.ErrRefused, peer.Role))
		return
	}
	if peer != nil && peer.NodeID != id {
		s.reject(raw, fmt.Errorf("%w: certificate of node %d, HELLO of endpoint %d", link.ErrRefused, peer.NodeID, id))
		return
	}
	if id == 0 {
		s.reject(raw, fmt.Errorf("%w: endpoint id 0", ErrLinkProtocol))
		return
	}
	re := &remoteEndpoint{id: id, q: link.NewQueue(&s.cfg.Link), nc: nc, done: make(chan struct{}),
		many: flags&link.HelloMany != 0}
	if !s.attach(re) {
		s.reject(raw, fmt.Errorf("%w: endpoint %d is linked already", link.ErrRefused, id))
		return
	}
	log := s.cfg.Link.Logger.With("endpoint", id, "remote", raw.RemoteAddr().String())
	err = link.WriteHello(nc, link.Hello{ID: s.cfg.Center.cfg.ID}, s.cfg.HelloTimeout)
	if err == nil {
		_ = raw.SetDeadline(time.Time{})
		s.Accepted.Add(1)
		log.Info("endpoint link up", "tls", peer != nil)
		if peer == nil {
			log.Warn("endpoint link is plain TCP: run it only over a private network")
		}
		lr.SetMax(s.cfg.Link.MaxFrame)
		err = re.q.Serve(nc, &s.cfg.Link, func() error { return s.read(re, nc, lr) })
	}
	n := s.detach(re)
	if s.closing() {
		log.Info("endpoint link closed: this center stops", "sessions_offline", n)
		return
	}
	log.Warn("endpoint link down", "err", err, "sessions_offline", n)
}

// closing reports whether Close was called: links that end then end
// because of it, which is no warning.
func (s *LinkServer) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// attach registers re unless an endpoint with its id is linked already:
// a second link with a live id is refused, not allowed to take the first
// one's sessions (a restarted endpoint gets in once the center has noticed
// its old link dead, within the heartbeat timeout).
func (s *LinkServer) attach(re *remoteEndpoint) bool {
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	// A live link of that id, or the center's own in-process endpoint.
	if s.links[re.id] != nil || s.cfg.Center.endpoint(re.id) != nil {
		s.mu.Unlock()
		return false
	}
	s.links[re.id] = re
	s.mu.Unlock()
	s.cfg.Center.Attach(re)
	return true
}

// detach closes re's queue, sends its sessions offline and unregisters it;
// it returns how many sessions went offline.
func (s *LinkServer) detach(re *remoteEndpoint) int {
	re.q.Close()
	for sess, user := range re.online {
		s.cfg.Center.Offline(user, im.SessionRef{Endpoint: re.id, Session: sess}, false)
	}
	s.mu.Lock()
	if s.links[re.id] == re {
		delete(s.links, re.id)
	}
	s.mu.Unlock()
	s.cfg.Center.Detach(re)
	close(re.done)
	return len(re.online)
}

// read handles what an endpoint sends until the connection fails.
func (s *LinkServer) read(re *remoteEndpoint, nc net.Conn, lr *link.Reader) error {
	c := s.cfg.Center
	timeout := s.cfg.Link.HeartbeatTimeout
	re.online = make(map[uint64]uint64)
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		op, fixed, tail, err := lr.Next()
		if err != nil {
			return err
		}
		switch op {
		case link.OpOnline, link.OpOffline, link.OpHandle:
			user, sess := binary.BigEndian.Uint64(fixed), binary.BigEndian.Uint64(fixed[8:])
			ref := im.SessionRef{Endpoint: re.id, Session: sess}
			switch op {
			case link.OpOnline:
				re.online[sess] = user
				c.Online(user, ref)
				if fixed[16]&link.Resumed != 0 {
					// The session stayed connected to its endpoint while
					// the link was down: push what was stored for it
					// meanwhile, since its client will not fetch.
					c.resumeSession(user, ref)
				}
			case link.OpOffline:
				delete(re.online, sess)
				c.Offline(user, ref, fixed[16] != 0)
			case link.OpHandle:
				buf, err := lr.ReadClientFrame(tail)
				if err != nil {
					return err
				}
				f := frame.Frame(buf.B)
				if f.Cmd().Message() && frame.Msg(f.Body()).From() != user {
					bytebufferpool.Put(buf)
					return fmt.Errorf("%w: message of user %d in a HANDLE for user %d",
						ErrLinkProtocol, frame.Msg(f.Body()).From(), user)
				}
				c.Handle(user, ref, buf)
			}
		case link.OpNotify:
			buf, err := lr.ReadTail(tail)
			if err != nil {
				return err
			}
			c.Notify(binary.BigEndian.Uint64(fixed), binary.BigEndian.Uint16(fixed[8:]), buf.B)
			bytebufferpool.Put(buf)
		case link.OpPing:
			_ = re.q.Push(link.NewPong(binary.BigEndian.Uint64(fixed), lr.Count()))
		case link.OpPong:
		default:
			return fmt.Errorf("%w: op %d from endpoint", ErrLinkProtocol, op)
		}
	}
}

// remoteEndpoint is a linked endpoint as the center sees it.
type remoteEndpoint struct {
	id   uint32
	q    *link.Queue
	nc   net.Conn
	done chan struct{} // closed once its sessions are offline
	many bool          // its HELLO said it takes DELIVER_MANY
	// online maps session -> user for what the endpoint reported; only
	// the link's reader goroutine touches it.
	online map[uint64]uint64
}

// ID returns the endpoint's server id.
func (re *remoteEndpoint) ID() uint32 { return re.id }

// maxDeliverMany bounds the sessions of one DELIVER_MANY: 4,096 ids are
// 32 KiB, far below the link's frame limit, and a larger fan-out takes
// several frames.
const maxDeliverMany = 4096

// DeliverMany queues frame b for sessions of this endpoint in as few
// DELIVER_MANY frames as maxDeliverMany allows, and returns how many
// sessions it queued b for: the rest found the link's queue full or the
// link gone. The endpoint must take DELIVER_MANY (many). Safe for
// concurrent use; never blocks.
func (re *remoteEndpoint) DeliverMany(sessions []uint64, b []byte) int {
	n := 0
	for len(sessions) > 0 {
		part := sessions[:min(len(sessions), maxDeliverMany)]
		sessions = sessions[len(part):]
		it := link.NewDeliverMany(part, b)
		if re.q.Push(it) != nil {
			it.Release()
			continue
		}
		n += len(part)
	}
	return n
}

// Deliver queues a DELIVER; ErrSlowReader when the link's queue is full,
// ErrClosed once the link is gone. Safe for concurrent use; never blocks.
func (re *remoteEndpoint) Deliver(s im.SessionRef, buf *bytebufferpool.ByteBuffer) error {
	switch re.q.Push(link.NewDeliver(s.Session, buf)) {
	case nil:
		return nil
	case link.ErrClosed:
		return im.ErrClosed
	default:
		return im.ErrSlowReader
	}
}
