package engine

import (
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/myim/myim/frame"
)

// Transport is an outer framing that a listener runs between its sockets
// and the MyIM frame parser, on the event loop: a WebSocket, for example
// (package engine/ws). Set it with WithTransport. Without one, a
// listener's byte stream is MyIM frames.
//
// With a Transport the frame codec, the handshakes, the limits and the
// timeouts stay those of a plain listener: the transport only unwraps
// inbound bytes into runs of whole MyIM frames and frames what the server
// writes. Handler.OnOpen is called once the transport's own handshake is
// done (TransportConn.Ready), so a handler never sees a connection that
// cannot carry frames; the first-frame deadline runs from the accept and
// so bounds the transport's handshake too.
type Transport interface {
	// Open returns the transport state of a new connection. Called on
	// the connection's event loop before anything is read from it.
	Open(c *Conn) TransportConn
}

// TransportConn is one connection's transport state. Every method is
// called on the connection's event loop.
type TransportConn interface {
	// Unwrap parses in, the start of the bytes received and not yet
	// consumed. in aliases the connection's read buffer: Unwrap may
	// rewrite consumed bytes in place (a WebSocket unmasks them), and
	// neither in nor payload may be kept after the engine has handled
	// payload.
	//
	// When in starts with a whole unit (an upgrade request, a message),
	// Unwrap returns its size n > 0 and payload, the whole MyIM frames it
	// carries (none for a control message); payload aliases in or the
	// transport's own buffer and is valid until the next call. Otherwise
	// it returns n == 0 and need, the number of bytes it wants to see
	// (the unit's size when known, else an upper bound), and must have
	// changed nothing: the engine calls again with up to need bytes when
	// it has more than in, or after the next read. need < 0 says instead
	// that the transport holds input of its own (a TLS layer's decrypted
	// bytes): the engine calls again even with nothing new, in empty. An
	// error closes the connection, with the reason of a ReasonError (see
	// CloseWith).
	//
	// Bytes the transport answers with itself (an upgrade response, a
	// pong) go out with Conn.WriteRaw.
	Unwrap(c *Conn, in []byte) (n int, payload []byte, need int, err error)
	// Ready reports whether the transport's handshake is done, so that
	// frames may flow.
	Ready() bool
	// AppendHeader appends to dst the header that frames size bytes of
	// MyIM frames written in one flush. It returns dst unchanged to drop
	// them (before Ready, or once closed).
	AppendHeader(dst []byte, size int) []byte
	// AppendClose appends to dst what the transport sends last when the
	// engine closes the connection for r (a close message, an HTTP error
	// before the upgrade), or returns dst unchanged.
	AppendClose(dst []byte, r CloseReason) []byte
	// Release is called once when the connection is gone.
	Release()
}

// TransportSealer is implemented by a TransportConn that transforms every
// byte written (TLS): Seal returns what to write for the bytes of one
// flush, iov, which it must not keep. The result may alias the
// transport's buffers until the next call. Called on the loop.
type TransportSealer interface {
	Seal(iov [][]byte) ([][]byte, error)
}

// WithTransport sets the listener's transport.
func WithTransport(t Transport) Option { return func(c *Config) { c.Transport = t } }

// ErrFrameSplit is the cause of closing a connection whose transport
// message ends inside a MyIM frame: each message carries whole frames.
var ErrFrameSplit = errors.New("engine: frame split across transport messages")

// transportPeek is how many buffered bytes Unwrap is shown at first: an
// upgrade request or a message fits, and when the read buffer wraps gnet
// copies no more than this to join it.
const transportPeek = 4096

// Transport returns the connection's transport state, nil on a listener
// without one. Loop only.
func (c *Conn) Transport() TransportConn { return c.tc }

// WriteRaw queues b to be written as it is, outside the transport's
// framing, ahead of the MyIM frames queued in this event-loop iteration.
// It is for transports (an upgrade response, a pong); without a transport
// it is Write. b is copied. Loop only.
func (c *Conn) WriteRaw(b []byte) {
	if c.tc == nil {
		c.Write(b)
		return
	}
	if c.closing {
		return
	}
	if c.raw == nil {
		c.raw = outPool.Get()
	}
	c.raw.B = append(c.raw.B, b...)
	c.markDirty()
}

// readTransport unwraps and handles what a connection with a transport
// has buffered, one transport unit at a time (more: the transport may
// hold input already), and returns the frames and bytes handled.
func (s *Server) readTransport(c *Conn, gc gnet.Conn, more bool) (frames, bytes int) {
	for !c.closing {
		avail := gc.InboundBuffered()
		if avail == 0 && !more {
			break
		}
		var in []byte
		if avail > 0 {
			in, _ = gc.Peek(min(avail, transportPeek))
		}
		n, payload, need, err := c.tc.Unwrap(c, in)
		if err == nil && n == 0 && payload == nil && need > len(in) && avail > len(in) {
			// A unit longer than the first look: show what there is.
			in, _ = gc.Peek(min(need, avail))
			n, payload, need, err = c.tc.Unwrap(c, in)
		}
		if err != nil {
			s.handlerError(c, err)
			break
		}
		more = need < 0
		if n == 0 && payload == nil && !more {
			break // wait for the rest; the deadlines bound the wait
		}
		if !c.opened && c.tc.Ready() {
			c.opened = true
			if err := s.h.OnOpen(c); err != nil {
				s.handlerError(c, err)
			}
		}
		f, b := s.payloadFrames(c, payload)
		frames += f
		bytes += b
		if n > 0 {
			_, _ = gc.Discard(n)
		}
	}
	return frames, bytes
}

// payloadFrames handles the whole frames of one transport message.
func (s *Server) payloadFrames(c *Conn, p []byte) (frames, bytes int) {
	for len(p) > 0 && !c.closing {
		limit := s.cfg.MaxFrame
		if c.user.Load() == 0 {
			limit = s.cfg.PreAuthMaxFrame
		}
		size, err := frame.Split(p, limit)
		if err == nil && (size == 0 || size > len(p)) {
			err = ErrFrameSplit
		}
		if err != nil {
			s.frameError(c, err)
			break
		}
		frames++
		bytes += size
		s.dispatch(c, frame.Frame(p[:size]))
		p = p[size:]
	}
	return frames, bytes
}

// flushTransport writes a connection's batch through its transport: raw
// bytes first, then the MyIM frames under one header, then, when the
// connection is closing, the transport's last words; one write call. It
// returns the bytes written, or an error when the write failed.
func (s *Server) flushTransport(l *loop, c *Conn) (int, error) {
	iov := l.iov[:0]
	raw, out := c.raw, c.out
	c.raw, c.out = nil, nil
	if raw != nil && len(raw.B) > 0 {
		iov = append(iov, raw.B)
	}
	if out != nil && len(out.B) > 0 {
		if h := c.tc.AppendHeader(l.hdr[:0], len(out.B)); len(h) > 0 {
			iov = append(iov, h, out.B)
		}
	}
	if c.closing {
		if t := c.tc.AppendClose(l.tail[:0], c.Reason()); len(t) > 0 {
			l.tail = t[:0]
			iov = append(iov, t)
		}
	}
	var n int
	var err error
	if sl, ok := c.tc.(TransportSealer); ok && !c.closed.Load() {
		var sealed [][]byte
		sealed, err = sl.Seal(iov)
		clear(iov)
		iov = sealed
	}
	if err == nil && len(iov) > 0 && !c.closed.Load() {
		n, err = c.gc.Writev(iov)
	}
	clear(iov)
	if raw != nil {
		outPool.Put(raw)
	}
	if out != nil {
		outPool.Put(out)
	}
	return n, err
}
