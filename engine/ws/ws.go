// Package ws is MyIM's WebSocket transport (RFC 6455) for the engine's
// event loops: the upgrade and the framing run on the loop that owns the
// connection, with no goroutine per connection, the frame header parsed
// where it lies in the read buffer and the payload unmasked in place.
//
// Each binary message carries one or more whole MyIM frames; a frame never
// spans messages, so a message is handed to the frame parser as it is,
// without joining. Text messages are refused (close 1003). Fragmented
// messages are accepted (intermediaries may fragment): their pieces are
// joined in a buffer held only until the message is handled. Server
// messages are unmasked, one binary message per flush, holding every frame
// the flush writes.
//
// WebSocket ping is answered with pong, and neither counts as MyIM traffic:
// only MyIM frames (MyIM PING included) keep a session from its idle
// timeout, exactly as on TCP.
package ws

import (
	"bytes"
	"errors"
	"net"
	"strings"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// Config is a WebSocket listener's configuration. Zero values mean the
// defaults.
type Config struct {
	// Paths are the request paths accepted, in the order a Mux routes
	// them; others are answered 404. Empty accepts any path.
	Paths []string
	// Origins lists the Origin values accepted from browsers, such as
	// "https://chat.example.com"; "*" accepts any. A request without an
	// Origin header (not a browser) is always accepted. With an empty
	// list, only an Origin whose host is the request's Host's (any port:
	// the node's own pages come from its HTTP listener) is. MyIM
	// authenticates in its own handshakes, not with cookies, so the check
	// is a policy on which pages may connect, not a guard for credentials.
	Origins []string
	// MaxMessage caps a message's size (after joining fragments). Default
	// frame.DefaultMaxFrame plus 4 KiB.
	MaxMessage int
	// PreAuthMaxMessage caps a message's size before the connection's
	// handshake has authenticated a user. Default 8 KiB: twice the
	// listeners' frame cap before authentication.
	PreAuthMaxMessage int
	// MaxRequest caps the upgrade request's head. Default 4 KiB.
	MaxRequest int
}

func (c *Config) fillDefaults() {
	if c.MaxMessage <= 0 {
		c.MaxMessage = frame.DefaultMaxFrame + 4<<10
	}
	if c.PreAuthMaxMessage <= 0 {
		c.PreAuthMaxMessage = 8 << 10
	}
	c.PreAuthMaxMessage = min(c.PreAuthMaxMessage, c.MaxMessage)
	if c.MaxRequest <= 0 {
		c.MaxRequest = 4 << 10
	}
}

// Transport is the WebSocket engine.Transport. Safe for concurrent use.
type Transport struct {
	cfg     Config
	anyOrig bool
}

// New returns a WebSocket transport for engine.WithTransport.
func New(cfg Config) *Transport {
	cfg.fillDefaults()
	t := &Transport{cfg: cfg}
	for _, o := range cfg.Origins {
		if o == "*" {
			t.anyOrig = true
		}
	}
	return t
}

// Config returns the transport's effective configuration.
func (t *Transport) Config() Config { return t.cfg }

// Open implements engine.Transport.
func (t *Transport) Open(*engine.Conn) engine.TransportConn { return &conn{t: t} }

// Connection states.
const (
	stateUpgrade uint8 = iota
	stateOpen
	stateClosed // a close or an HTTP error was sent, or a close received
)

// conn is one connection's WebSocket state, touched only on its loop.
type conn struct {
	t     *Transport
	state uint8
	route uint8  // index in Config.Paths of the upgrade's path
	code  uint16 // close code a framing error chose; 0: from the reason
	// frag joins a fragmented message; fragDone says it was handed out
	// whole and goes back to the pool at the next call.
	fragDone bool
	frag     *bytebufferpool.ByteBuffer
}

var fragPool bytebufferpool.Pool

// errPeerClose is the cause of closing after the peer's close message.
var errPeerClose = errors.New("ws: closed by the peer")

// Ready implements engine.TransportConn.
func (w *conn) Ready() bool { return w.state == stateOpen }

// wsConn returns the WebSocket state, for Mux.
func (w *conn) wsConn() *conn { return w }

// Unwrap implements engine.TransportConn.
func (w *conn) Unwrap(c *engine.Conn, in []byte) (int, []byte, int, error) {
	if w.state == stateUpgrade {
		return w.upgrade(c, in)
	}
	return w.unwrapOpen(c, in)
}

// unwrapOpen is Unwrap after the upgrade.
func (w *conn) unwrapOpen(c peer, in []byte) (int, []byte, int, error) {
	if w.fragDone {
		w.releaseFrag()
	}
	if w.state != stateOpen {
		return len(in), nil, 0, nil // after a close: ignored
	}
	return w.message(c, in)
}

// upgrade answers the upgrade request at the start of in.
func (w *conn) upgrade(c *engine.Conn, in []byte) (int, []byte, int, error) {
	end := headerEnd(in[:min(len(in), w.t.cfg.MaxRequest)])
	if end == 0 {
		if len(in) >= w.t.cfg.MaxRequest {
			return 0, nil, 0, w.refuse(c, ErrRequestTooLarge)
		}
		return 0, nil, w.t.cfg.MaxRequest, nil
	}
	r, err := ParseRequest(in[:end])
	if err == nil {
		err = w.findRoute(&r)
	}
	if err == nil && !w.t.originOK(&r) {
		err = ErrOrigin
	}
	if err != nil {
		return 0, nil, 0, w.refuse(c, err)
	}
	var buf [256]byte
	c.WriteRaw(AppendResponse(buf[:0], &r))
	w.state = stateOpen
	return end, nil, 0, nil
}

// route finds the request's path among the configured ones.
func (w *conn) findRoute(r *Request) error {
	if len(w.t.cfg.Paths) == 0 {
		return nil
	}
	for i, p := range w.t.cfg.Paths {
		if string(r.Path) == p {
			w.route = uint8(i)
			return nil
		}
	}
	return ErrPath
}

// refuse answers a failed upgrade with its HTTP status and returns the
// error that closes the connection.
func (w *conn) refuse(c *engine.Conn, err error) error {
	code, text := statusFor(err)
	var buf [160]byte
	c.WriteRaw(AppendError(buf[:0], code, text))
	w.state = stateClosed
	r := engine.ReasonMalformed
	switch {
	case errors.Is(err, ErrOrigin):
		r = engine.ReasonAuth
	case errors.Is(err, ErrRequestTooLarge):
		r = engine.ReasonTooLarge
	}
	return engine.CloseWith(r, err)
}

// originOK applies Config.Origins to the request.
func (t *Transport) originOK(r *Request) bool {
	if r.Origin == nil || t.anyOrig {
		return true
	}
	if len(t.cfg.Origins) == 0 {
		// Same host: the page came from the host the browser asks, on any
		// port (myimd's own pages are on the HTTP listener's port).
		_, hostport, ok := bytes.Cut(r.Origin, []byte("://"))
		return ok && strings.EqualFold(hostOnly(string(hostport)), hostOnly(string(r.Host)))
	}
	for _, o := range t.cfg.Origins {
		if strings.EqualFold(o, string(r.Origin)) {
			return true
		}
	}
	return false
}

// peer is what message needs of the connection: *engine.Conn, or a
// stand-in in the fuzz test.
type peer interface {
	User() uint64
	WriteRaw(b []byte)
}

// message handles the frame at the start of in.
func (w *conn) message(c peer, in []byte) (int, []byte, int, error) {
	h, need, ok, err := wswire.ParseHeader(in)
	if err != nil {
		return 0, nil, 0, w.fail(1002, engine.ReasonMalformed, err)
	}
	if !ok {
		return 0, nil, need, nil
	}
	if !h.Masked {
		return 0, nil, 0, w.fail(1002, engine.ReasonMalformed, wswire.ErrUnmasked)
	}
	limit := w.t.cfg.MaxMessage
	if c.User() == 0 {
		limit = w.t.cfg.PreAuthMaxMessage
	}
	joined := 0
	if w.frag != nil {
		joined = len(w.frag.B)
	}
	if h.Op < wswire.OpClose && h.Length > int64(limit-joined) { // data frames
		return 0, nil, 0, w.fail(1009, engine.ReasonTooLarge, wswire.ErrTooLarge)
	}
	total := h.Size + int(h.Length)
	if len(in) < total {
		return 0, nil, total, nil
	}
	p := in[h.Size:total]
	wswire.Cipher(p, h.Mask, 0)
	switch h.Op {
	case wswire.OpBinary:
		if w.frag != nil {
			return 0, nil, 0, w.fail(1002, engine.ReasonMalformed, wswire.ErrInterleaved)
		}
		if h.Fin {
			return total, p, 0, nil
		}
		w.frag = fragPool.Get()
		w.frag.B = append(w.frag.B, p...)
		return total, nil, 0, nil
	case wswire.OpContinuation:
		if w.frag == nil {
			return 0, nil, 0, w.fail(1002, engine.ReasonMalformed, wswire.ErrContinuation)
		}
		w.frag.B = append(w.frag.B, p...)
		if !h.Fin {
			return total, nil, 0, nil
		}
		w.fragDone = true
		return total, w.frag.B, 0, nil
	case wswire.OpText:
		return 0, nil, 0, w.fail(1003, engine.ReasonMalformed, wswire.ErrText)
	case wswire.OpPing:
		var hb [2]byte
		c.WriteRaw(wswire.AppendHeader(hb[:0], wswire.OpPong, len(p)))
		c.WriteRaw(p)
		return total, nil, 0, nil
	case wswire.OpClose:
		return 0, nil, 0, w.peerClose(c, p)
	}
	return total, nil, 0, nil // pong
}

// peerClose answers the peer's close message by echoing its code.
func (w *conn) peerClose(c peer, p []byte) error {
	if len(p) == 1 {
		return w.fail(1002, engine.ReasonMalformed, wswire.ErrBadClose)
	}
	var b [4]byte
	out := wswire.AppendHeader(b[:0], wswire.OpClose, 0)
	if len(p) >= 2 {
		code := uint16(p[0])<<8 | uint16(p[1])
		if !validCloseCode(code) {
			code = 1002
		}
		out = wswire.AppendHeader(b[:0], wswire.OpClose, 2)
		out = append(out, byte(code>>8), byte(code))
	}
	c.WriteRaw(out)
	w.state = stateClosed
	return engine.CloseWith(engine.ReasonPeer, errPeerClose)
}

// validCloseCode reports whether a peer may send code (RFC 6455 section
// 7.4).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < 1000 || code > 1014:
		return false
	}
	return code != 1004 && code != 1005 && code != 1006
}

// fail records the close code a framing error calls for and returns the
// error that closes the connection.
func (w *conn) fail(code uint16, r engine.CloseReason, err error) error {
	w.code = code
	return engine.CloseWith(r, err)
}

// AppendHeader implements engine.TransportConn: one final binary message.
func (w *conn) AppendHeader(dst []byte, size int) []byte {
	if w.state != stateOpen {
		return dst
	}
	return wswire.AppendHeader(dst, wswire.OpBinary, size)
}

// AppendClose implements engine.TransportConn: an HTTP error before the
// upgrade, a close message after it, nothing once closed.
func (w *conn) AppendClose(dst []byte, r engine.CloseReason) []byte {
	switch w.state {
	case stateUpgrade:
		w.state = stateClosed
		switch r {
		case engine.ReasonMaxConns, engine.ReasonShutdown:
			return AppendError(dst, 503, "Service Unavailable")
		case engine.ReasonFirstFrame, engine.ReasonDeadline, engine.ReasonIdle:
			return AppendError(dst, 408, "Request Timeout")
		}
		return AppendError(dst, 400, "Bad Request")
	case stateOpen:
		w.state = stateClosed
		code := w.code
		if code == 0 {
			code = CloseCode(r)
		}
		text := r.String()
		dst = wswire.AppendHeader(dst, wswire.OpClose, 2+len(text))
		dst = append(dst, byte(code>>8), byte(code))
		return append(dst, text...)
	}
	return dst
}

// Release implements engine.TransportConn.
func (w *conn) Release() { w.releaseFrag() }

func (w *conn) releaseFrag() {
	if w.frag != nil {
		fragPool.Put(w.frag)
		w.frag = nil
	}
	w.fragDone = false
}

// CloseCode is the close code sent when the server closes a connection
// for r: a standard code where one fits, else 4000 plus the reason's
// number. The close message's text is the reason's name (r.String()).
func CloseCode(r engine.CloseReason) uint16 {
	switch r {
	case engine.ReasonDone, engine.ReasonPeer:
		return 1000
	case engine.ReasonShutdown:
		return 1001
	case engine.ReasonMalformed:
		return 1002
	case engine.ReasonTooLarge:
		return 1009
	case engine.ReasonHandler:
		return 1011
	case engine.ReasonMaxConns:
		return 1013
	}
	return 4000 + uint16(r)
}

// hostOnly strips the port from host[:port] (IPv6 in brackets included).
func hostOnly(hp string) string {
	if h, _, err := net.SplitHostPort(hp); err == nil {
		return h
	}
	return strings.Trim(hp, "[]")
}
