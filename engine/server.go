package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// Handler is what an embedder (or a MyIM role) plugs into a Server. Every
// method runs on the connection's event loop and must not block: storage,
// Redis and password hashing go to other goroutines, whose results come back
// through Conn.Post.
//
// The engine itself answers PING with PONG, enforces the frame size, the
// envelope (Cmd known, QoS 0 or 1) and every timeout; a handler sees only
// other frames and validates bodies itself (after opening them, when
// sealed).
type Handler interface {
	// OnOpen is called for a new connection. An error closes it.
	OnOpen(c *Conn) error
	// OnFrame is called for each complete frame. f aliases gnet's buffer
	// and is valid only until OnFrame returns: copy what must outlive it.
	// An error closes the connection (with the reason of a ReasonError).
	OnFrame(c *Conn, f frame.Frame) error
	// OnClose is called once when the connection is gone.
	OnClose(c *Conn, r CloseReason)
}

// MailHandler is implemented by handlers that process posted buffers
// themselves (for example to seal them); b is valid until OnMail returns.
// Without it, posted buffers are written as they are.
type MailHandler interface {
	OnMail(c *Conn, b []byte) error
}

// Stats are a server's counters. Safe for concurrent use. The event loops
// add to them once per read or flush, not per frame, so that counting costs
// no lock and no allocation.
type Stats struct {
	Conns    atomic.Int64
	Accepted atomic.Uint64
	FramesIn atomic.Uint64
	BytesIn  atomic.Uint64
	// BytesOut and Writes count what flushes handed to the sockets: bytes
	// and write calls (one per connection per loop iteration).
	BytesOut atomic.Uint64
	Writes   atomic.Uint64
	Closed   [reasonCount]atomic.Uint64
	// AcceptErrors counts failed accepts (EMFILE, ENFILE, ENOBUFS...): the
	// listener backs off and goes on.
	AcceptErrors atomic.Uint64
	// LoopLag is the delay between the ticker scheduling a loop's sweep and
	// the loop running it: how far behind the event loops are.
	LoopLag LatencyHistogram
}

// Server is one listener with its event loops.
type Server struct {
	cfg   Config
	h     Handler
	mh    MailHandler
	start time.Time
	stats Stats

	eng     gnet.Engine
	nextID  atomic.Uint64
	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop
	addr    net.Addr
	ready   chan error
	done    chan error
	stop    atomic.Bool

	// ln is the listener the server accepts on itself (see Start); nil
	// with ReusePort, where gnet accepts. sockDir holds gnet's own unused
	// listener. failed is closed, with failErr set, when the listener or
	// the loops stop without Stop.
	ln       net.Listener
	sockDir  string
	failOnce sync.Once
	failed   chan struct{}
	failErr  error
	// started is closed by the first tick: gnet calls OnBoot before its
	// loops exist, and Register needs them.
	startOnce sync.Once
	started   chan struct{}
}

// loop is the per-event-loop state; only its own loop touches it, except
// that el is read by the ticker goroutine to post sweeps.
type loop struct {
	el    gnet.EventLoop
	wheel wheel
	dirty []*Conn
	// flushing is set while flush walks dirty (see flush).
	flushing bool
	mail     []*bytebufferpool.ByteBuffer // scratch for draining mailboxes
	sweep    gnet.RunnableFunc

	// Connections with posted buffers. Posters append under mailMu and
	// schedule one drain task per loop while none is pending; gnet runs
	// tasks after the socket events of its current iteration, so every
	// message posted while a batch of reads is handled reaches its
	// connection in one write, and a burst from other goroutines costs one
	// wake-up per loop, not one per connection.
	// Connections with mail and Conn.Exec's jobs share one list, in the
	// order they came, so that a job queued after a buffer was posted to
	// a connection writes after it.
	mailMu    sync.Mutex
	inbox     []inboxItem // guarded by mailMu
	inboxRest []inboxItem // loop only
	wakeSet   atomic.Bool // a drain is scheduled through Execute
	drainMail gnet.RunnableFunc
	// reading is set while the loop runs a read callback (OnTraffic),
	// whose end sees to the mail posted meanwhile (endRead): a post from
	// a handler on this loop (a push between two of its connections) or
	// from another goroutine then needs no Execute of its own. Written by
	// the loop only.
	reading atomic.Bool
	// lastBusy is when the loop last finished a read or a mail drain
	// (since srv.start). Loop only.
	lastBusy time.Duration
	// sweepAt is when the ticker scheduled the pending sweep (since
	// srv.start, in ns), 0 when none is pending. Set by the ticker, taken by
	// the loop.
	sweepAt atomic.Int64
	srv     *Server

	// Scratch for flushes through a transport.
	iov  [4][]byte
	hdr  [16]byte
	tail []byte
}

// New returns a server for h with the given options. It does not listen
// until Start.
func New(h Handler, opts ...Option) *Server {
	var cfg Config
	for _, o := range opts {
		o(&cfg)
	}
	cfg.fillDefaults()
	s := &Server{cfg: cfg, h: h, loops: make(map[gnet.EventLoop]*loop),
		ready: make(chan error, 1), done: make(chan error, 1), failed: make(chan struct{}), started: make(chan struct{})}
	s.mh, _ = h.(MailHandler)
	return s
}

// Config returns the server's effective configuration.
func (s *Server) Config() Config { return s.cfg }

// Stats returns the server's live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Start listens and runs the event loops in the background. It returns once
// the listener is bound, or with the error that prevented it.
//
// The server accepts connections itself and hands them to gnet's loops
// (Engine.Register): gnet treats any accept error as fatal and stops the
// engine with every connection on it, so a moment without file
// descriptors (EMFILE, ENFILE) would end the listener for good. Here a
// failed accept is counted (Stats.AcceptErrors) and retried after a
// backoff of 5 ms doubling to 1 s, as net/http does; gnet listens only on
// a private Unix socket nobody dials. With ReusePort gnet accepts itself,
// one listener per loop, and an accept error stops the server (Failed).
func (s *Server) Start() error {
	s.start = time.Now()
	addr := s.cfg.Addr
	if !strings.Contains(addr, "://") {
		addr = "tcp://" + addr
	}
	opts := []gnet.Option{
		gnet.WithNumEventLoop(s.cfg.Loops),
		// A restarted server rebinds at once, while the old process's
		// connections still sit in TIME_WAIT (Go's own listener below sets
		// SO_REUSEADDR too).
		gnet.WithReuseAddr(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.cfg.Logger}),
	}
	if s.cfg.ReusePort && s.cfg.WrapListener == nil {
		opts = append(opts, gnet.WithReusePort(true))
	} else {
		network, host, _ := strings.Cut(addr, "://")
		lc := net.ListenConfig{KeepAlive: -1} // as gnet: no TCP keepalive
		ln, err := lc.Listen(context.Background(), network, host)
		if err != nil {
			return fmt.Errorf("engine: listen %s: %w", s.cfg.Addr, err)
		}
		if w := s.cfg.WrapListener; w != nil {
			ln = w(ln)
		}
		dir, err := os.MkdirTemp("", "myim-gnet-")
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("engine: listen %s: %w", s.cfg.Addr, err)
		}
		s.ln, s.sockDir, s.addr = ln, dir, ln.Addr()
		addr = "unix://" + filepath.Join(dir, "loop.sock")
		// Registered connections go round robin, as gnet's own accepts
		// did: gnet's balancer is not safe for concurrent callers, and the
		// accept loop is its only one (nobody dials the Unix socket).
	}
	go func() {
		err := gnet.Run(&gnetHandler{s}, addr, opts...)
		select {
		case s.ready <- err: // failed before boot
		default:
		}
		if !s.stop.Load() {
			s.fail(fmt.Errorf("event loops stopped: %w", errOr(err, errLoopsStopped)))
		}
		s.done <- err
	}()
	if err := <-s.ready; err != nil {
		s.closeListener()
		return fmt.Errorf("engine: listen %s: %w", s.cfg.Addr, err)
	}
	if s.ln != nil {
		select {
		case <-s.started:
		case <-s.failed:
			s.closeListener()
			return fmt.Errorf("engine: listen %s: %w", s.cfg.Addr, s.FailErr())
		}
		go s.acceptLoop()
	}
	return nil
}

var errLoopsStopped = errors.New("engine: event loops stopped")

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// acceptLoop accepts connections and registers them with the loops until
// the listener is closed.
func (s *Server) acceptLoop() {
	var backoff time.Duration
	var logged time.Time
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.stop.Load() || errors.Is(err, net.ErrClosed) {
				if !s.stop.Load() {
					s.fail(fmt.Errorf("listener closed: %w", err))
				}
				return
			}
			// EMFILE, ENFILE, ENOBUFS, ECONNABORTED...: none of them is the
			// listener's fault; back off so as not to spin, and go on.
			s.stats.AcceptErrors.Add(1)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if time.Since(logged) > 5*time.Second {
				logged = time.Now()
				s.cfg.Logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ctx := gnet.NewNetConnContext(context.Background(), nc)
		if _, err := s.eng.Register(ctx); err != nil {
			// The engine is stopping, or its worker pool refused: the
			// connection is dropped, the listener goes on.
			_ = nc.Close()
			s.stats.AcceptErrors.Add(1)
		}
	}
}

// fail records that the server stopped serving without Stop.
func (s *Server) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		s.cfg.Logger.Error("listener stopped", "addr", s.cfg.Addr, "err", err)
		close(s.failed)
	})
}

// Failed is closed when the server stops serving without Stop (its event
// loops ended, or its listener failed for good); FailErr then says why.
// Safe for concurrent use.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// FailErr returns why the server failed, nil while it has not. Safe for
// concurrent use once Failed is closed.
func (s *Server) FailErr() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

func (s *Server) closeListener() {
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.sockDir != "" {
		_ = os.RemoveAll(s.sockDir)
	}
}

// Addr returns the bound listen address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// Stop stops accepting, closes every connection after flushing what is
// queued for it, and waits for the loops to end or ctx to expire.
func (s *Server) Stop(ctx context.Context) error {
	if s.stop.Swap(true) {
		return nil
	}
	s.closeListener()
	err := s.eng.Stop(ctx)
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

func (s *Server) now() time.Duration { return time.Since(s.start) }

func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = &loop{el: el}
		l.wheel.unit = s.cfg.TickInterval
		l.wheel.pos = l.wheel.tickOf(s.now()) - 1
		l.sweep = func(context.Context) error { s.sweep(l); return nil }
		l.srv = s
		l.drainMail = func(context.Context) error {
			l.wakeSet.Store(false)
			s.deliverMail(l)
			s.flush(l)
			l.lastBusy = s.now()
			return nil
		}
		s.loops[el] = l
	}
	return l
}

// A read is quiet when it began more than quietGap after the loop last
// finished something, carried at most quietFrames frames and left at most
// quietMail connections (or jobs) with mail. Reads of one epoll batch
// follow each other within a microsecond or two; but a loop that the
// kernel preempts on a busy machine shows gaps too, so the gap alone would
// take a loaded loop for an idle one: a loaded loop's reads carry several
// frames each (clients keep a window in flight) and leave mail for several
// connections, which then waits for the batch's drain.
const (
	quietGap    = 10 * time.Microsecond
	quietFrames = 2
	quietMail   = 2
)

// endRead sees to the mail posted while a read callback that began at
// began and carried frames frames ran. After a quiet read, most likely the
// only one of its batch, the mail is delivered now, into this read's
// flush: that saves a wake-up (an eventfd write and an epoll round) per
// push and lets a push between two connections of the loop go out at
// once. Otherwise the mail is left to one drain task after the batch, so
// that each connection gets the batch's messages in one write. Loop only.
func (s *Server) endRead(l *loop, began time.Duration, frames int) {
	l.reading.Store(false)
	l.mailMu.Lock()
	pending := len(l.inbox)
	l.mailMu.Unlock()
	if pending == 0 {
		return
	}
	if began-l.lastBusy > quietGap && frames <= quietFrames && pending <= quietMail {
		s.deliverMail(l)
		return
	}
	if l.wakeSet.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l.drainMail); err != nil {
			l.wakeSet.Store(false)
		}
	}
}

// sweep runs on the loop: expire deadlines, then flush what expiry wrote.
func (s *Server) sweep(l *loop) {
	if at := l.sweepAt.Swap(0); at != 0 {
		s.stats.LoopLag.Observe(s.now() - time.Duration(at))
	}
	l.wheel.advance(s.now(), s.expire)
	s.flush(l)
}

func (s *Server) expire(c *Conn, r CloseReason) {
	code := frame.ErrCodeIdle
	if r == ReasonDeadline {
		code = frame.ErrCodeUnauthorized
	}
	s.writeError(c, code, r.String())
	c.closeOnLoop(r)
}

func (s *Server) writeError(c *Conn, code uint16, text string) {
	out := c.Out()
	out.B, _ = frame.AppendError(out.B, code, 0, text)
}

// flush writes each dirty connection's batch in one call and closes those
// marked for closing or over the outbound cap.
//
// A failed write makes gnet close the connection at once, so the handler's
// OnClose runs inside this loop and may write to other connections: they
// join l.dirty while it is walked, hence the index loop that rereads its
// length, and the flushing flag that turns the flush OnClose asks for
// into a no-op (this one reaches them).
func (s *Server) flush(l *loop) {
	if l.flushing {
		return
	}
	l.flushing = true
	var bytes, writes int
	for i := 0; i < len(l.dirty); i++ {
		c := l.dirty[i]
		l.dirty[i] = nil
		c.dirty = false
		if c.tc != nil {
			if n, err := s.flushTransport(l, c); err != nil {
				c.closeOnLoop(ReasonPeer)
			} else if n > 0 {
				bytes += n
				writes++
			}
		} else if out := c.out; out != nil {
			// Detach the buffer first: a failed write closes the
			// connection at once, and OnClose must not release it too.
			c.out = nil
			if len(out.B) > 0 && !c.closed.Load() {
				if _, err := c.gc.Write(out.B); err != nil {
					c.closeOnLoop(ReasonPeer)
				} else {
					bytes += len(out.B)
					writes++
				}
			}
			outPool.Put(out)
		}
		if !c.closing && c.gc.OutboundBuffered() > s.cfg.MaxOutbound {
			c.closeOnLoop(ReasonSlowReader)
		}
		if c.closing && !c.closed.Swap(true) {
			_ = c.gc.Close()
		}
	}
	l.dirty = l.dirty[:0]
	l.flushing = false
	if writes > 0 {
		s.stats.BytesOut.Add(uint64(bytes))
		s.stats.Writes.Add(uint64(writes))
	}
}

func (s *Server) frameError(c *Conn, err error) {
	code, r := frame.ErrCodeMalformed, ReasonMalformed
	if errors.Is(err, frame.ErrTooLarge) {
		code, r = frame.ErrCodeTooLarge, ReasonTooLarge
	}
	s.writeError(c, code, err.Error())
	c.closeOnLoop(r)
}

func (s *Server) handlerError(c *Conn, err error) {
	var re *ReasonError
	r := ReasonHandler
	if errors.As(err, &re) {
		r = re.Reason
	}
	c.closeOnLoop(r)
	if l := s.cfg.Logger; l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("closing connection", "conn", c.id, "remote", c.RemoteAddr(), "reason", r.String(), "err", err)
	}
}

// gnetHandler adapts Server to gnet's callbacks; it is unexported so that
// the engine's public surface stays the Handler interface.
type gnetHandler struct{ s *Server }

func (g *gnetHandler) OnBoot(eng gnet.Engine) gnet.Action {
	s := g.s
	s.eng = eng
	if s.ln == nil { // gnet's own listeners (ReusePort)
		if fd, err := eng.Dup(); err == nil {
			if sa, err := syscall.Getsockname(fd); err == nil {
				s.addr = sockaddrToTCP(sa)
			}
			_ = syscall.Close(fd)
		}
	}
	s.ready <- nil
	return gnet.None
}

func (g *gnetHandler) OnShutdown(gnet.Engine) {}

func (g *gnetHandler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := g.s
	n := s.stats.Conns.Add(1)
	s.stats.Accepted.Add(1)
	l := s.loopFor(gc.EventLoop())
	c := &Conn{gc: gc, srv: s, loop: l, id: s.nextID.Add(1), openedAt: s.now(), wheelTick: -1}
	c.remote = ownAddr(gc.RemoteAddr())
	gc.SetContext(c)
	if t := s.cfg.Transport; t != nil {
		c.tc = t.Open(c)
	}
	full := n > int64(s.cfg.MaxConns)
	if g := s.cfg.Gate; g != nil && !g.enter() {
		full = true
	}
	if full || s.stop.Load() {
		r := ReasonMaxConns
		if s.stop.Load() {
			r = ReasonShutdown
		}
		c.reason.Store(uint32(r))
		c.closed.Store(true)
		var out []byte
		if c.tc != nil {
			out = c.tc.AppendClose(nil, r)
		} else {
			out, _ = frame.AppendError(nil, frame.ErrCodeRetry, 0, "server full")
		}
		return out, gnet.Close
	}
	l.wheel.schedule(c, c.nextDeadline())
	if c.tc == nil { // with a transport, once it is ready
		c.opened = true
		if err := s.h.OnOpen(c); err != nil {
			s.handlerError(c, err)
		}
	} else if frames, bytes := s.readTransport(c, gc, true); frames > 0 {
		// A transport may hold input from before the loop took the
		// connection (the end of a TLS handshake).
		s.noteFrames(c, frames, bytes)
	}
	s.flush(l)
	return nil, gnet.None
}

func (g *gnetHandler) OnClose(gc gnet.Conn, err error) gnet.Action {
	s := g.s
	c, _ := gc.Context().(*Conn)
	s.stats.Conns.Add(-1)
	if g := s.cfg.Gate; g != nil {
		g.leave()
	}
	if c == nil {
		return gnet.None
	}
	r := ReasonPeer
	if s.stop.Load() {
		r = ReasonShutdown
	}
	c.reason.CompareAndSwap(0, uint32(r))
	c.closed.Store(true)
	c.closing = true
	c.wheelTick = -1
	reason := c.Reason()
	s.stats.Closed[reason].Add(1)
	if c.out != nil {
		outPool.Put(c.out)
		c.out = nil
	}
	if c.tc != nil {
		if c.raw != nil {
			outPool.Put(c.raw)
			c.raw = nil
		}
		c.tc.Release()
	}
	mail, _ := c.takeMail(nil)
	for _, b := range mail {
		bytebufferpool.Put(b)
	}
	if c.opened {
		s.h.OnClose(c, reason)
		// Send what OnClose wrote to other connections now, not at the
		// next sweep (a no-op when a failed write in flush closed c).
		s.flush(c.loop)
	}
	return gnet.None
}

func (g *gnetHandler) OnTraffic(gc gnet.Conn) gnet.Action {
	s := g.s
	c := gc.Context().(*Conn)
	l := c.loop
	if c.closing {
		return gnet.Close
	}
	l.reading.Store(true)
	began := s.now()
	var frames, bytes int
	if c.tc != nil {
		frames, bytes = s.readTransport(c, gc, false)
	} else {
		frames, bytes = s.readFrames(c, gc)
	}
	if frames > 0 {
		s.noteFrames(c, frames, bytes)
	}
	if c.closing {
		// Nothing more is read from a closing connection: drop what it
		// sent, or gnet would copy it into the connection's buffer first
		// (up to a read's 64 KiB, for a peer refused at a frame header).
		_, _ = gc.Discard(-1)
	}
	s.endRead(l, began, frames)
	s.flush(l)
	l.lastBusy = s.now()
	if c.closing && !c.closed.Swap(true) {
		return gnet.Close // closing with nothing left to write
	}
	return gnet.None
}

func (g *gnetHandler) OnTick() (time.Duration, gnet.Action) {
	s := g.s
	s.startOnce.Do(func() { close(s.started) })
	s.loopsMu.Lock()
	now := int64(s.now())
	for _, l := range s.loops {
		// A sweep still pending keeps its first scheduling time, so a loop
		// that falls further behind shows a growing lag.
		l.sweepAt.CompareAndSwap(0, now)
		_ = l.el.Execute(context.Background(), l.sweep)
	}
	s.loopsMu.Unlock()
	return s.cfg.TickInterval, gnet.None
}

func sockaddrToTCP(sa syscall.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// gnetLogger sends gnet's own logs to the server's slog.Logger.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "src", "gnet") }

// readFrames handles the whole frames a connection without a transport
// has buffered and returns the frames and bytes handled.
func (s *Server) readFrames(c *Conn, gc gnet.Conn) (frames, bytes int) {
	for !c.closing {
		n := gc.InboundBuffered()
		if n == 0 {
			break
		}
		hdr, _ := gc.Peek(min(n, frame.MaxLengthBytes))
		limit := s.cfg.MaxFrame
		if c.user.Load() == 0 {
			limit = s.cfg.PreAuthMaxFrame // nothing big before authentication
		}
		size, err := frame.Split(hdr, limit)
		if err != nil {
			s.frameError(c, err)
			break
		}
		if size == 0 || n < size {
			break // wait for the rest; the idle deadline bounds the wait
		}
		buf, err := gc.Peek(size)
		if err != nil {
			break
		}
		frames++
		bytes += size
		s.dispatch(c, frame.Frame(buf))
		_, _ = gc.Discard(size)
	}
	return frames, bytes
}

// dispatch checks a whole frame's envelope, answers PING and hands the
// rest to the handler.
func (s *Server) dispatch(c *Conn, f frame.Frame) {
	if err := frame.CheckEnvelope(f); err != nil {
		s.frameError(c, err)
		return
	}
	if f.Cmd() == frame.CmdPing {
		out := c.Out()
		out.B = pongFor(out.B, f)
	} else if err := s.h.OnFrame(c, f); err != nil {
		s.handlerError(c, err)
	}
}

// noteFrames records the frames a read handled.
func (s *Server) noteFrames(c *Conn, frames, bytes int) {
	c.lastFrame = s.now()
	s.stats.FramesIn.Add(uint64(frames))
	s.stats.BytesIn.Add(uint64(bytes))
}
