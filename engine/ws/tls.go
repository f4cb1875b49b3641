package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
)

// TLS (wss://) runs in two halves. The handshake, which Go's crypto/tls
// can only run against a blocking connection, runs in TLSListener's Accept
// path, one short-lived goroutine per connection being accepted (at most
// Handshakes at a time, each bounded by a deadline). The connection then
// joins an event loop like any other, and its records are opened and
// sealed there, by the same tls.Conn reading from and writing to memory:
// no goroutine per established connection.

// ErrNoTLSState closes a connection that reached a TLS listener's loops
// without a handshake (it cannot happen short of a bug).
var ErrNoTLSState = errors.New("ws: connection without a TLS handshake")

// errWouldBlock is what a detached connection's Read returns when it has
// no bytes: temporary, so crypto/tls keeps its state and reads again later.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "ws: no bytes buffered" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// memConn is the tls.Conn's connection: the socket during the handshake,
// memory after it (detached): Read takes what the loop fed, Write keeps
// what the loop is to send. Loop only once detached.
type memConn struct {
	net.Conn
	detached bool
	in, out  []byte
}

func (m *memConn) Read(p []byte) (int, error) {
	if !m.detached {
		return m.Conn.Read(p)
	}
	if len(m.in) == 0 {
		return 0, wouldBlock{}
	}
	n := copy(p, m.in)
	m.in = m.in[n:]
	if len(m.in) == 0 {
		m.in = nil
	}
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error) {
	if !m.detached {
		return m.Conn.Write(p)
	}
	m.out = append(m.out, p...)
	return len(p), nil
}

func (m *memConn) SetDeadline(t time.Time) error {
	if m.detached {
		return nil
	}
	return m.Conn.SetDeadline(t)
}

func (m *memConn) SetReadDeadline(t time.Time) error {
	if m.detached {
		return nil
	}
	return m.Conn.SetReadDeadline(t)
}

func (m *memConn) SetWriteDeadline(t time.Time) error {
	if m.detached {
		return nil
	}
	return m.Conn.SetWriteDeadline(t)
}

// TLSConfig configures a TLSListener.
type TLSConfig struct {
	// TLS is the server's configuration (certificate, versions).
	TLS *tls.Config
	// HandshakeTimeout bounds each TLS handshake. Default 10 s.
	HandshakeTimeout time.Duration
	// Handshakes caps the handshakes run at once; further accepted
	// connections wait their turn in the kernel's backlog. Default 256.
	Handshakes int
}

// TLS serves wss://: its Listener, for engine.WithWrapListener, returns
// each accepted connection once its TLS handshake is done, and its Wrap
// puts the record layer under a WebSocket transport. Safe for concurrent
// use; one listener per TLS.
type TLS struct {
	ln      net.Listener
	cfg     TLSConfig
	sem     chan struct{}
	results chan acceptResult
	done    chan struct{}
	once    sync.Once

	mu     sync.Mutex
	states map[string]*memTLS // by remote address, until the loop takes it
}

type acceptResult struct {
	c   net.Conn
	err error
}

// memTLS is a handshaken tls.Conn over its memConn.
type memTLS struct {
	tc *tls.Conn
	mc *memConn
}

// NewTLS returns wss:// with cfg.
func NewTLS(cfg TLSConfig) *TLS {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Handshakes <= 0 {
		cfg.Handshakes = 256
	}
	return &TLS{cfg: cfg, sem: make(chan struct{}, cfg.Handshakes),
		results: make(chan acceptResult), done: make(chan struct{}), states: make(map[string]*memTLS)}
}

// Listener starts accepting on ln and returns the listener of handshaken
// connections. Call it once.
func (l *TLS) Listener(ln net.Listener) net.Listener {
	l.ln = ln
	go l.acceptLoop()
	return (*tlsListener)(l)
}

// tlsListener is TLS's net.Listener face.
type tlsListener TLS

func (l *TLS) acceptLoop() {
	var backoff time.Duration
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return
		}
		c, err := l.ln.Accept()
		if err != nil {
			<-l.sem
			if !l.deliver(acceptResult{err: err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go l.handshake(c)
	}
}

// deliver hands r to Accept, false once the listener is closed.
func (l *TLS) deliver(r acceptResult) bool {
	select {
	case l.results <- r:
		return true
	case <-l.done:
		return false
	}
}

func (l *TLS) handshake(c net.Conn) {
	mc := &memConn{Conn: c}
	tc := tls.Server(mc, l.cfg.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.HandshakeTimeout)
	_ = c.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.sem
	if err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	mc.detached = true
	key := c.RemoteAddr().String()
	l.mu.Lock()
	l.states[key] = &memTLS{tc: tc, mc: mc}
	l.mu.Unlock()
	if !l.deliver(acceptResult{c: c}) {
		l.take(key)
		_ = c.Close()
	}
}

// take removes and returns the handshaken state of the connection from
// remote.
func (l *TLS) take(remote string) *memTLS {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.states[remote]
	delete(l.states, remote)
	return s
}

// Accept returns the next connection whose handshake is done.
func (tl *tlsListener) Accept() (net.Conn, error) {
	l := (*TLS)(tl)
	select {
	case r := <-l.results:
		return r.c, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (tl *tlsListener) Close() error {
	l := (*TLS)(tl)
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

// Addr is the listener's address.
func (tl *tlsListener) Addr() net.Addr { return tl.ln.Addr() }

// Wrap returns t's transport under this listener's TLS record layer.
func (l *TLS) Wrap(t *Transport) engine.Transport { return &tlsTransport{l: l, t: t} }

type tlsTransport struct {
	l *TLS
	t *Transport
}

// Open implements engine.Transport.
func (t *tlsTransport) Open(c *engine.Conn) engine.TransportConn {
	w := &tlsConn{inner: conn{t: t.t}}
	if s := t.l.take(c.RemoteAddr()); s != nil {
		w.tc, w.mc = s.tc, s.mc
	}
	return w
}

// tlsConn is a wss:// connection: TLS records around the WebSocket state.
// Loop only.
type tlsConn struct {
	inner conn
	tc    *tls.Conn
	mc    *memConn
	plain *bytebufferpool.ByteBuffer // opened bytes not yet unwrapped
	off   int
	sent  int // bytes of mc.out the last Seal handed out
	buf   []byte
	iov   [1][]byte
}

var plainPool bytebufferpool.Pool

// Unwrap implements engine.TransportConn: it takes every ciphertext byte,
// opens what records are whole, and unwraps one WebSocket unit of the
// plaintext, asking to be called again while plaintext remains.
func (w *tlsConn) Unwrap(c *engine.Conn, in []byte) (int, []byte, int, error) {
	if w.tc == nil {
		return 0, nil, 0, engine.CloseWith(engine.ReasonCrypto, ErrNoTLSState)
	}
	w.mc.in = append(w.mc.in, in...)
	if w.plain == nil {
		w.plain = plainPool.Get()
	} else if w.off > 0 {
		w.plain.B = append(w.plain.B[:0], w.plain.B[w.off:]...)
		w.off = 0
	}
	for {
		p := w.plain.B
		if cap(p)-len(p) < 4096 {
			p = slices.Grow(p, 16<<10)
		}
		k, err := w.tc.Read(p[len(p):cap(p)])
		w.plain.B = p[:len(p)+k]
		if err != nil {
			var wb wouldBlock
			switch {
			case errors.As(err, &wb):
			case errors.Is(err, io.EOF):
				return len(in), nil, 0, engine.CloseWith(engine.ReasonPeer, err)
			default:
				return len(in), nil, 0, engine.CloseWith(engine.ReasonCrypto, err)
			}
			break
		}
	}
	if len(w.mc.out) > w.sent {
		c.WriteRaw(nil) // a record the read produced (a key update): flush it
	}
	m, payload, need, err := w.inner.Unwrap(c, w.plain.B[w.off:])
	if err != nil {
		return len(in), nil, 0, err
	}
	w.off += m
	if m > 0 {
		need = -1 // more may be whole already
	} else if w.off == len(w.plain.B) {
		plainPool.Put(w.plain)
		w.plain, w.off = nil, 0
	}
	if m == 0 {
		need = 0 // the plaintext's size is not the ciphertext's
	}
	return len(in), payload, need, nil
}

// Seal implements engine.TransportSealer: the flush's bytes as TLS
// records.
func (w *tlsConn) Seal(iov [][]byte) ([][]byte, error) {
	if w.tc == nil {
		return nil, ErrNoTLSState
	}
	w.mc.out = append(w.mc.out[:0], w.mc.out[w.sent:]...)
	w.buf = w.buf[:0]
	for _, b := range iov {
		w.buf = append(w.buf, b...)
	}
	if len(w.buf) > 0 {
		if _, err := w.tc.Write(w.buf); err != nil {
			return nil, err
		}
	}
	if cap(w.buf) > 64<<10 {
		w.buf = nil
	}
	w.sent = len(w.mc.out)
	if w.sent == 0 {
		return nil, nil
	}
	w.iov[0] = w.mc.out
	return w.iov[:], nil
}

// Ready implements engine.TransportConn.
func (w *tlsConn) Ready() bool { return w.inner.Ready() }

// wsConn returns the WebSocket state, for Mux.
func (w *tlsConn) wsConn() *conn { return &w.inner }

// AppendHeader implements engine.TransportConn.
func (w *tlsConn) AppendHeader(dst []byte, size int) []byte { return w.inner.AppendHeader(dst, size) }

// AppendClose implements engine.TransportConn.
func (w *tlsConn) AppendClose(dst []byte, r engine.CloseReason) []byte {
	return w.inner.AppendClose(dst, r)
}

// Release implements engine.TransportConn.
func (w *tlsConn) Release() {
	w.inner.Release()
	if w.plain != nil {
		plainPool.Put(w.plain)
		w.plain = nil
	}
	w.buf = nil
	if w.mc != nil {
		w.mc.in, w.mc.out = nil, nil
	}
}
