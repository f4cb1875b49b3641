package engine

import (
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// Conn is one client connection. Methods marked "loop only" may be called
// only from the connection's own event loop, that is from inside a Handler
// callback for this connection or for another connection on the same loop
// (see SameLoop); the others are safe for concurrent use.
type Conn struct {
	gc   gnet.Conn
	srv  *Server
	loop *loop
	id   uint64

	// Loop-only state.
	openedAt  time.Duration // since srv.start
	lastFrame time.Duration // since srv.start; 0 until the first frame
	deadline  time.Duration // handler's deadline, since srv.start; 0 = none
	wheelTick int64         // tick of the wheel slot that holds c; -1 = none
	out       *bytebufferpool.ByteBuffer
	ctx       any
	remote    net.Addr                   // formatted when asked: most connections never are
	tc        TransportConn              // nil without a transport
	raw       *bytebufferpool.ByteBuffer // WriteRaw's bytes, with a transport

	// Shared state.
	user   atomic.Uint64 // the authenticated user, 0 before
	reason atomic.Uint32 // CloseReason, set once
	closed atomic.Bool
	opened bool // OnOpen was called (loop only)
	queued bool // in its loop's mail list; guarded by mu
	shut   bool // Close was called; guarded by mu
	// Loop only, beside the flags above: in the padding after them, the
	// connection is 176 bytes where it was 184 (a 192-byte size class).
	dirty   bool
	closing bool
	mu      sync.Mutex // guards box, queued and shut
	box     *mailbox   // made by the first Post: most connections get none
}

// ownAddr returns a peer address the connection may keep after gnet
// releases its own: gnet hands a TCP address's zone back to a pool on
// close, so an address with a zone is copied; the others are not reused
// and are kept as they are.
func ownAddr(a net.Addr) net.Addr {
	if t, ok := a.(*net.TCPAddr); ok && t.Zone != "" {
		return &net.TCPAddr{IP: slices.Clone(t.IP), Port: t.Port, Zone: strings.Clone(t.Zone)}
	}
	return a
}

// mailbox holds what was posted to a connection and not yet taken by its
// loop.
type mailbox struct {
	mail  []*bytebufferpool.ByteBuffer
	bytes int
}

// ID returns the connection's id, unique for the server's lifetime (file
// descriptors are reused by the kernel; ids are not). Safe for concurrent use.
func (c *Conn) ID() uint64 { return c.id }

// User returns the authenticated user of the connection, 0 before its
// handshake. Safe for concurrent use.
func (c *Conn) User() uint64 { return c.user.Load() }

// RemoteAddr returns the peer's address as text. Safe for concurrent use.
func (c *Conn) RemoteAddr() string {
	if c.remote == nil {
		return ""
	}
	return c.remote.String()
}

// Context returns the handler's per-connection value. Loop only.
func (c *Conn) Context() any { return c.ctx }

// SetContext sets the handler's per-connection value. Loop only.
func (c *Conn) SetContext(v any) { c.ctx = v }

// SameLoop reports whether o runs on c's event loop, so that a handler
// running for c may call o.Write directly instead of o.Post.
func (c *Conn) SameLoop(o *Conn) bool { return c.loop == o.loop }

// SetDeadline closes the connection with ReasonDeadline if it is still open
// d from now; d <= 0 clears it. Handlers use it for handshake deadlines.
// Loop only.
func (c *Conn) SetDeadline(d time.Duration) {
	if d <= 0 {
		c.deadline = 0
		return
	}
	c.deadline = c.srv.now() + d
	c.loop.wheel.schedule(c, c.nextDeadline())
}

// Write queues b for the connection; it is sent, with everything else queued
// during this event-loop iteration, in one write when the iteration ends.
// b is copied and may be reused at once. Loop only.
func (c *Conn) Write(b []byte) {
	if c.closing {
		return
	}
	if c.out == nil {
		c.out = outPool.Get()
	}
	c.out.B = append(c.out.B, b...)
	c.markDirty()
}

// Out returns the buffer that the next flush writes, so that a frame can be
// encoded (or sealed) straight into it: append to its B field. Loop only;
// the buffer must not be kept past the callback.
func (c *Conn) Out() *bytebufferpool.ByteBuffer {
	if c.out == nil {
		c.out = outPool.Get()
	}
	c.markDirty()
	return c.out
}

func (c *Conn) markDirty() {
	if !c.dirty {
		c.dirty = true
		c.loop.dirty = append(c.loop.dirty, c)
	}
}

// Post hands b to the connection's event loop, where the handler's OnMail
// sees it (or, for handlers without OnMail, it is written as is). Ownership
// of b passes to the engine on success; on error the caller keeps it. Post
// fails with ErrSlowReader when the bytes already posted and not yet written
// exceed the outbound cap, so that a producer can shed or store instead.
// Safe for concurrent use.
func (c *Conn) Post(b *bytebufferpool.ByteBuffer) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.box == nil {
		c.box = new(mailbox)
	}
	if c.box.bytes+len(b.B) > c.srv.cfg.MaxOutbound {
		c.mu.Unlock()
		return ErrSlowReader
	}
	c.box.mail = append(c.box.mail, b)
	c.box.bytes += len(b.B)
	enqueue := !c.queued
	c.queued = true
	c.mu.Unlock()
	if enqueue {
		c.loop.addMail(c)
	}
	return nil
}

// ReleaseMailbox drops the connection's mailbox if nothing waits in it, so
// that a connection gone quiet keeps no memory for its posts (the mailbox
// and its slice, about 40 bytes, or more after a burst); the next Post
// makes a new one. Safe for concurrent use.
func (c *Conn) ReleaseMailbox() {
	c.mu.Lock()
	if c.box != nil && len(c.box.mail) == 0 && !c.queued {
		c.box = nil
	}
	c.mu.Unlock()
}

// Exec runs fn on the connection's event loop, where posted buffers are
// handed over, and flushes what fn wrote with them: every connection fn
// writes to gets one write for all. Jobs and posted buffers are taken in
// the order they came: a buffer posted to a connection before Exec is
// handed over before what fn writes to it. fn may call
// the loop-only methods of any open connection of that loop (see SameLoop)
// and must check that a connection is still open (Closed) before writing
// to it. Functions run in the order they were given. An error
// (ErrClosed) means fn will not run. Safe for concurrent use.
func (c *Conn) Exec(fn func()) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.loop.addJob(fn)
	return nil
}

// Closed reports whether the connection is closed or closing. Safe for
// concurrent use; from another goroutine the answer may be stale at once.
func (c *Conn) Closed() bool { return c.closed.Load() }

// Close closes the connection with reason r once what is queued for it is
// written: the loop's batch and every buffer posted before the call (a
// Post after it fails with ErrClosed). The close happens on the
// connection's loop, after the current callback when called from one.
// Safe for concurrent use; the first reason given wins.
func (c *Conn) Close(r CloseReason) {
	c.reason.CompareAndSwap(0, uint32(r))
	c.mu.Lock()
	if c.shut || c.closed.Load() {
		c.mu.Unlock()
		return
	}
	c.shut = true
	enqueue := !c.queued
	c.queued = true
	c.mu.Unlock()
	if enqueue && !c.loop.addMail(c) && !c.closed.Swap(true) {
		_ = c.gc.Close() // the loop is stopping: it flushes nothing more
	}
}

// CloseOnLoop marks the connection for closing with reason r when the
// current callback returns, after the output the callback queued is flushed.
// Call it only on the connection's event loop, from a Handler callback or a
// mail handler; from elsewhere use Close. The first reason given wins.
func (c *Conn) CloseOnLoop(r CloseReason) { c.closeOnLoop(r) }

// closeOnLoop marks the connection for closing at the end of this callback.
func (c *Conn) closeOnLoop(r CloseReason) {
	c.reason.CompareAndSwap(0, uint32(r))
	c.closing = true
	if c.tc != nil {
		c.markDirty() // so that the flush sends the transport's close
	}
}

// OpenedAt returns when the server accepted the connection. Safe for
// concurrent use.
func (c *Conn) OpenedAt() time.Time { return c.srv.start.Add(c.openedAt) }

// SetUser records the user the connection authenticated as, which User
// returns from then on. From the next frame on, the connection is held to
// the server's MaxFrame rather than PreAuthMaxFrame. Call it on the
// connection's event loop.
func (c *Conn) SetUser(user uint64) { c.user.Store(user) }

// Reason returns the close reason, ReasonNone while open. Safe for
// concurrent use.
func (c *Conn) Reason() CloseReason { return CloseReason(c.reason.Load()) }

// nextDeadline is the earliest time the connection must be closed at.
func (c *Conn) nextDeadline() time.Duration {
	var d time.Duration
	if c.lastFrame == 0 {
		d = c.openedAt + c.srv.cfg.FirstFrameTimeout
	} else {
		d = c.lastFrame + c.srv.cfg.IdleTimeout
	}
	if c.deadline != 0 && c.deadline < d {
		d = c.deadline
	}
	return d
}

// expiryReason says which deadline passed.
func (c *Conn) expiryReason(now time.Duration) CloseReason {
	switch {
	case c.deadline != 0 && c.deadline <= now:
		return ReasonDeadline
	case c.lastFrame == 0:
		return ReasonFirstFrame
	default:
		return ReasonIdle
	}
}

// takeMail removes and returns the posted buffers, and whether Close was
// called before them.
func (c *Conn) takeMail(dst []*bytebufferpool.ByteBuffer) ([]*bytebufferpool.ByteBuffer, bool) {
	c.mu.Lock()
	shut := c.shut
	if m := c.box; m != nil {
		dst = append(dst, m.mail...)
		clear(m.mail)
		m.mail = m.mail[:0]
		m.bytes = 0
	}
	c.queued = false
	c.mu.Unlock()
	return dst, shut
}

// outPool holds per-connection write batches. They are taken when a
// connection first writes in an iteration and returned after the flush, so
// an idle connection holds no buffer.
var outPool bytebufferpool.Pool

// pongFor appends the answer to a PING: the note's 03 02 00, or, for a PING
// that carries a body (a load generator's timestamp), PONG with that body.
func pongFor(dst []byte, ping frame.Frame) []byte {
	body := ping.Body()
	if len(body) == 0 {
		return append(dst, frame.Pong...)
	}
	dst, _ = frame.Append(dst, frame.CmdPong, frame.QoS0, body)
	return dst
}
