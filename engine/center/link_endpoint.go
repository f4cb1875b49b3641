package center

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
)

// ErrLinkDown: the center link is not connected.
var ErrLinkDown = errors.New("center: center link down")

// RemoteCenterConfig wires an endpoint to a center over a link.
type RemoteCenterConfig struct {
	// Addr is the center's link listener, host:port.
	Addr string
	// Fallbacks are other centers' link listeners: when the current center
	// cannot be reached, the endpoint tries the next, in turn, and
	// announces its sessions there. The centers must share the store and
	// the route table (a cluster of centers), so that nothing acked is
	// lost by the move.
	Fallbacks []string
	Link      link.Config
	// DialTimeout bounds connecting, the TLS handshake and HELLO. Default 5 s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts,
	// which doubles per failed attempt and is jittered so that the
	// endpoints of a restarted center do not all come back at once.
	// Defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// FailbackInterval is how often an endpoint linked to a fallback
	// center tries its first center (Addr) again; once that one answers,
	// the endpoint moves back to it, as it moved away: its sessions are
	// announced there, and what the fallback center had pushed and not
	// seen acked is stored and then drained to them from the store.
	// Without it, the endpoints of a restarted center would stay on the
	// others for good. Default 30 s; negative: never move back.
	FailbackInterval time.Duration
}

func (c *RemoteCenterConfig) fillDefaults() {
	c.Link.FillDefaults()
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.FailbackInterval == 0 {
		c.FailbackInterval = 30 * time.Second
	}
}

// RemoteCenter is the Center an endpoint process uses when its center runs
// elsewhere: every call becomes a link frame (see package link), and DELIVERs
// from the center reach the attached endpoint's Deliver. It keeps one link
// up, reconnecting with jittered exponential backoff, and after each
// reconnect announces again every session the endpoint holds. While the
// link is down, traffic waits in the bounded queue; a QoS 1 message that
// does not fit is refused to its sender with an ERROR (ErrCodeRetry, ref
// the message's client id). All methods are safe for concurrent use and
// never block: they are called on event loops.
type RemoteCenter struct {
	cfg RemoteCenterConfig
	q   *link.Queue
	r   *link.Redialer

	// Guarded by q's lock, inside q.Do, so that they stay in step with
	// what is queued (an ONLINE is pushed, and the queue reset for a new
	// connection, under it).
	ep       im.Endpoint
	sessions map[uint64]*remoteSess // by session id

	startOnce sync.Once

	// Stats, for metrics and tests.
	Connects  atomic.Uint64 // links established
	DialFails atomic.Uint64 // failed connection attempts
	Refused   atomic.Uint64 // QoS 1 messages and requests refused: queue full
	Dropped   atomic.Uint64 // QoS 0 traffic dropped: queue full
	Resent    atomic.Uint64 // QoS 1 messages written again after a reconnect
	Failbacks atomic.Uint64 // moves back to the first center
	// AnswersLost counts QoS 1 messages answered ERROR 5 by the endpoint
	// because the link ended between the center taking them and their
	// answer.
	AnswersLost atomic.Uint64
	// DeliveredMany counts DELIVER_MANY frames: group messages that crossed
	// the link once for several sessions.
	DeliveredMany atomic.Uint64
}

type remoteSess struct {
	user uint64
	// announced: the center was told about it on some connection, so a
	// re-announcement is a resumption.
	announced bool
	// unanswered holds the CIDs of the session's QoS 1 messages sent to
	// the center that no ACK or ERROR has answered yet; made on first use.
	unanswered map[uint64]struct{}
}

// NewRemoteCenter checks cfg and returns a center that connects once an
// endpoint is attached (endpoint.New does that).
func NewRemoteCenter(cfg RemoteCenterConfig) (*RemoteCenter, error) {
	cfg.fillDefaults()
	if err := cfg.Link.Check(); err != nil {
		return nil, err
	}
	if cfg.Addr == "" {
		return nil, errors.New("center: remote center needs an address")
	}
	return &RemoteCenter{cfg: cfg, q: link.NewQueue(&cfg.Link), sessions: make(map[uint64]*remoteSess),
		r: link.NewRedialer(cfg.MinBackoff, cfg.MaxBackoff)}, nil
}

// Attach registers the endpoint that receives DELIVERs and starts the link.
// A RemoteCenter serves one endpoint; attaching another replaces it.
func (rc *RemoteCenter) Attach(ep im.Endpoint) {
	rc.q.Do(func(link.Locked) { rc.ep = ep })
	rc.startOnce.Do(func() {
		go rc.r.Run(&remoteSide{rc: rc, addrs: append([]string{rc.cfg.Addr}, rc.cfg.Fallbacks...)})
	})
}

func (rc *RemoteCenter) endpoint() im.Endpoint {
	var ep im.Endpoint
	rc.q.Do(func(link.Locked) { ep = rc.ep })
	return ep
}

// Online reports a session; while the link is down it is only recorded, and
// announced when the link comes back.
func (rc *RemoteCenter) Online(user uint64, s im.SessionRef) {
	rc.q.Do(func(q link.Locked) {
		rs := &remoteSess{user: user}
		rc.sessions[s.Session] = rs
		if rc.r.Connected() {
			rs.announced = q.Push(link.NewOnline(user, s.Session, 0)) == nil
		}
	})
}

// Offline reports a session gone.
func (rc *RemoteCenter) Offline(user uint64, s im.SessionRef, bye bool) {
	rc.q.Do(func(q link.Locked) {
		delete(rc.sessions, s.Session)
		if rc.r.Connected() {
			_ = q.Push(link.NewOffline(user, s.Session, bye))
		}
	})
}

// Handle queues a frame for the center; see Center.Handle. When the queue
// is full it answers requests and QoS 1 messages with ErrCodeRetry.
func (rc *RemoteCenter) Handle(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	f := frame.Frame(buf.B)
	it := link.NewHandle(user, s.Session, buf)
	var cid uint64
	if f.Cmd().Message() && f.QoS() == frame.QoS1 {
		// Kept until the center confirms it, and written again on the next
		// link (to a fallback center if this one died). A group message
		// resent to another center may be appended twice; members drop
		// the copy by its (sender, CID).
		cid = frame.Msg(f.Body()).CID()
		it.Retain = cid != 0
	}
	var ok bool
	if cid == 0 {
		ok = rc.q.Push(it) == nil // no state of ours to keep in step
	} else {
		rc.q.Do(func(q link.Locked) {
			ok = q.Push(it) == nil
			// Until its answer passes back: if the link ends first, the
			// center may have read it and died before answering, so the
			// client is told to retry (answerLost).
			if rs := rc.sessions[s.Session]; ok && rs != nil {
				if rs.unanswered == nil {
					rs.unanswered = make(map[uint64]struct{})
				}
				rs.unanswered[cid] = struct{}{}
			}
		})
	}
	if ok {
		return
	}
	rc.refuse(s, f)
	bytebufferpool.Put(buf)
}

// refuse answers a frame that could not be queued.
func (rc *RemoteCenter) refuse(s im.SessionRef, f frame.Frame) {
	var ref uint64
	switch cmd := f.Cmd(); {
	case cmd.Ref() == frame.RefNone, cmd.Message() && f.QoS() != frame.QoS1:
		// receipts, presence, QoS 0 messages: the client has nothing to
		// retry
		rc.Dropped.Add(1)
		return
	default: // a QoS 1 message by its CID, a request by its Req
		ref = frame.RequestRef(cmd, f.Body())
	}
	rc.Refused.Add(1)
	ep := rc.endpoint()
	if ep == nil {
		return
	}
	b := bytebufferpool.Get()
	b.B, _ = frame.AppendError(b.B, frame.ErrCodeRetry, ref, "center unreachable; retry")
	if ep.Deliver(s, b) != nil {
		bytebufferpool.Put(b)
	}
}

// Notify queues a NOTICE for every session of user; dropped when the queue
// is full.
func (rc *RemoteCenter) Notify(user uint64, code uint16, json []byte) {
	b := bytebufferpool.Get()
	b.B = append(b.B, json...)
	if rc.q.Push(link.NewNotify(user, code, b)) != nil {
		bytebufferpool.Put(b)
		rc.Dropped.Add(1)
	}
}

// Connected reports whether the link is up.
func (rc *RemoteCenter) Connected() bool { return rc.r.Connected() }

// Ready returns ErrLinkDown while the link is down; for NodeConfig.Ready.
func (rc *RemoteCenter) Ready(context.Context) error {
	if !rc.Connected() {
		return ErrLinkDown
	}
	return nil
}

// Queued returns how many traffic frames wait or await confirmation.
func (rc *RemoteCenter) Queued() int { return rc.q.Queued() }

// Close stops the link for good; queued frames are dropped.
func (rc *RemoteCenter) Close() {
	var (
		nc          net.Conn
		ok, started bool
	)
	rc.q.Do(func(link.Locked) {
		nc, ok = rc.r.Shut()
		started = rc.ep != nil
	})
	if !ok {
		return
	}
	if nc != nil {
		// Outside every lock: closing a TLS link waits for its
		// close_notify to be written, and producers on event loops must
		// not wait behind that.
		nc.Close()
	}
	if started {
		<-rc.r.Done()
	}
	rc.q.Close()
}

// remoteSide makes RemoteCenter's attempts: the centers in turn, and back
// to the first one when a probe finds it again while on a fallback. Run
// goroutine only.
type remoteSide struct {
	rc    *RemoteCenter
	addrs []string  // the first center, then the fallbacks
	cur   int       // index into addrs of the center tried now
	back  *handover // a link to the first center, ready to take over
}

// Dial, DialFailed, Serve and Down are remoteSide's link.Side.
func (s *remoteSide) Dial() (net.Conn, *bufio.Reader, error) {
	if b := s.back; b != nil {
		s.cur, s.back = 0, nil
		return b.nc, b.br, nil
	}
	return s.rc.connect(s.addrs[s.cur])
}

func (s *remoteSide) DialFailed(n int, err error, wait time.Duration) {
	s.rc.DialFails.Add(1)
	s.rc.cfg.Link.Logger.Warn("center link: connect failed", "center", s.addrs[s.cur], "err", err,
		"attempt", n, "retry_in", wait)
	s.cur = (s.cur + 1) % len(s.addrs) // the next center, in turn
}

// Serve runs a link, and on a fallback probes the first center meanwhile:
// when it answers, the link ends with link.ErrHandover and the run loop
// serves the new one at once.
func (s *remoteSide) Serve(nc net.Conn, br *bufio.Reader) error {
	rc := s.rc
	rc.Connects.Add(1)
	start := time.Now()
	log := rc.cfg.Link.Logger.With("center", s.addrs[s.cur])
	var fb *failback
	if s.cur != 0 && rc.cfg.FailbackInterval > 0 {
		fb = &failback{quit: make(chan struct{})}
		go rc.probeFirst(s.addrs[0], nc, fb)
	}
	err := rc.serve(nc, br, log)
	if fb != nil {
		s.back = fb.end()
	}
	if s.back == nil {
		return err
	}
	if rc.r.Stopping() {
		s.back.nc.Close()
		s.back = nil
		return err
	}
	rc.Failbacks.Add(1)
	log.Info("center link: moving back to the first center", "first", s.addrs[0],
		"up_for", time.Since(start).Round(time.Millisecond))
	return link.ErrHandover
}

func (s *remoteSide) Down(err error, upFor, wait time.Duration) {
	s.rc.cfg.Link.Logger.Warn("center link down", "center", s.addrs[s.cur], "err", err,
		"up_for", upFor.Round(time.Millisecond), "queued", s.rc.Queued(), "retry_in", wait)
}

// handover is a link to the first center, dialed while the endpoint was
// on a fallback.
type handover struct {
	nc net.Conn
	br *bufio.Reader
}

// failback is the state shared by a link on a fallback center and the
// goroutine probing the first center meanwhile.
type failback struct {
	quit chan struct{} // closed when the link ends
	mu   sync.Mutex
	done bool // the link ended: a late probe closes its connection
	got  *handover
}

// end stops the probe and returns the link it handed over, if any.
func (fb *failback) end() *handover {
	close(fb.quit)
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.done = true
	return fb.got
}

// probeFirst tries the first center every FailbackInterval while cur, the
// link to a fallback, lasts. When the first center answers, the new link
// is handed over and cur closed, which ends the fallback link; the run
// loop then serves the handed-over one without a backoff wait.
func (rc *RemoteCenter) probeFirst(first string, cur net.Conn, fb *failback) {
	t := time.NewTicker(rc.cfg.FailbackInterval)
	defer t.Stop()
	for {
		select {
		case <-fb.quit:
			return
		case <-rc.r.Stopped():
			return
		case <-t.C:
		}
		nc, br, err := rc.connect(first)
		if err != nil {
			continue
		}
		fb.mu.Lock()
		if fb.done {
			fb.mu.Unlock()
			nc.Close()
			return
		}
		fb.got = &handover{nc: nc, br: br}
		fb.mu.Unlock()
		cur.Close()
		return
	}
}

// connect dials, runs the TLS handshake, checks the peer is a center and
// exchanges HELLO.
func (rc *RemoteCenter) connect(addr string) (net.Conn, *bufio.Reader, error) {
	ctx, cancel := rc.r.Context(rc.cfg.DialTimeout)
	defer cancel()
	nc, br, _, err := link.Dial(ctx, addr, &rc.cfg.Link, im.RoleCenter,
		link.Hello{ID: rc.endpoint().ID(), Flags: link.HelloMany}, rc.cfg.DialTimeout)
	return nc, br, err
}

// serve runs one connection until it fails: the center first hears ONLINE
// for every session, then the messages it did not confirm on the last
// connection, then what waited meanwhile.
func (rc *RemoteCenter) serve(nc net.Conn, br *bufio.Reader, log *slog.Logger) error {
	var up bool
	var sessions, queued int
	rc.q.Do(func(q link.Locked) {
		if up = rc.r.Up(nc); !up {
			return
		}
		front := make([]link.Item, 0, len(rc.sessions))
		for id, s := range rc.sessions {
			var flag byte
			if s.announced {
				flag = link.Resumed
			}
			s.announced = true
			front = append(front, link.NewOnline(s.user, id, flag))
		}
		q.Reset(front)
		sessions, queued = len(front), q.Queued()
	})
	if !up {
		nc.Close() // outside the queue's lock
		return im.ErrClosed
	}
	log.Info("center link up", "sessions", sessions, "queued", queued, "tls", rc.cfg.Link.TLS != nil)
	if rc.cfg.Link.TLS == nil {
		log.Warn("center link is plain TCP: run it only over a private network")
	}

	err := rc.q.Serve(nc, &rc.cfg.Link, func() error { return rc.read(nc, br) })
	var lost []lostSend
	rc.q.Do(func(q link.Locked) {
		rc.r.Down()
		rc.Resent.Add(uint64(q.Reset(nil)))
		lost = rc.unansweredLocked()
	})
	rc.answerLost(lost)
	return err
}

// lostSend is a QoS 1 message whose answer the link took with it.
type lostSend struct{ session, cid uint64 }

// unansweredLocked takes every session's unanswered CIDs. Inside q.Do.
func (rc *RemoteCenter) unansweredLocked() []lostSend {
	var out []lostSend
	for id, rs := range rc.sessions {
		for cid := range rs.unanswered {
			out = append(out, lostSend{id, cid})
		}
		rs.unanswered = nil
	}
	return out
}

// answerLost tells the senders of the messages the center took and did
// not answer before its link ended to send them again (ERROR 5, ref the
// CID): the center may have died with them in its queues. Those still
// kept are written again on the next link as well; whichever answer
// comes first, the resend with the same CID is shown once.
func (rc *RemoteCenter) answerLost(lost []lostSend) {
	ep := rc.endpoint()
	if ep == nil || len(lost) == 0 {
		return
	}
	rc.AnswersLost.Add(uint64(len(lost)))
	for _, l := range lost {
		b := bytebufferpool.Get()
		b.B, _ = frame.AppendError(b.B, frame.ErrCodeRetry, l.cid, "center link lost; retry")
		if ep.Deliver(im.SessionRef{Endpoint: ep.ID(), Session: l.session}, b) != nil {
			bytebufferpool.Put(b)
		}
	}
}

// answered forgets a session's message once its ACK or ERROR passes back
// to the client.
func (rc *RemoteCenter) answered(sess uint64, b []byte) {
	f := frame.Frame(b)
	cid := frame.AnswerRef(f.Cmd(), f.Body()) // checked by link.Reader.ReadClientFrame
	if cid == 0 {
		return
	}
	rc.q.Do(func(link.Locked) {
		if rs := rc.sessions[sess]; rs != nil && rs.unanswered != nil {
			delete(rs.unanswered, cid)
		}
	})
}

// read handles what the center sends until the connection fails.
func (rc *RemoteCenter) read(nc net.Conn, br *bufio.Reader) error {
	lr := link.NewReader(br, rc.cfg.Link.MaxFrame)
	ep := rc.endpoint()
	timeout := rc.cfg.Link.HeartbeatTimeout
	var sessions []uint64
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		op, fixed, tail, err := lr.Next()
		if err != nil {
			return err
		}
		switch op {
		case link.OpDeliver:
			sess := binary.BigEndian.Uint64(fixed)
			buf, err := lr.ReadClientFrame(tail)
			if err != nil {
				return err
			}
			rc.answered(sess, buf.B)
			if ep.Deliver(im.SessionRef{Endpoint: ep.ID(), Session: sess}, buf) != nil {
				bytebufferpool.Put(buf) // the center's receipt timeout covers QoS 1
			}
		case link.OpDeliverMany:
			n := int(binary.BigEndian.Uint32(fixed))
			var buf *bytebufferpool.ByteBuffer
			if sessions, buf, err = lr.ReadIDsFrame("DELIVER_MANY", n, tail, sessions[:0]); err != nil {
				return err
			}
			rc.DeliveredMany.Add(1)
			b := buf.B[8*n:]
			if md, ok := ep.(manyDeliverer); ok {
				md.DeliverMany(sessions, b)
				bytebufferpool.Put(buf)
				continue
			}
			for _, sess := range sessions {
				out := bytebufferpool.Get()
				out.B = append(out.B, b...)
				if ep.Deliver(im.SessionRef{Endpoint: ep.ID(), Session: sess}, out) != nil {
					bytebufferpool.Put(out)
				}
			}
			bytebufferpool.Put(buf)
		case link.OpPing:
			_ = rc.q.Push(link.NewPong(binary.BigEndian.Uint64(fixed), lr.Count()))
		case link.OpPong:
			rc.q.Confirm(binary.BigEndian.Uint64(fixed[8:]))
		default:
			return fmt.Errorf("%w: op %d from center", ErrLinkProtocol, op)
		}
	}
}
