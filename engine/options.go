package engine

import (
	"log/slog"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/myim/myim/frame"
)

// Config holds one server's limits. Zero values mean "use the default"; the
// defaults are filled in one place, fillDefaults.
type Config struct {
	// Addr is the listen address, e.g. "tcp://:5222" or ":5222".
	Addr string
	// Loops is the number of event loops; 0 means one per CPU. On two
	// shared cores one loop can beat two, since cross-loop forwards cost a
	// queue hop: measure.
	Loops int
	// MaxFrame caps a frame's size (its Length value). Default 1 MiB.
	MaxFrame int
	// PreAuthMaxFrame, when positive, caps a frame's size on a connection
	// whose handshake has not authenticated a user (Conn.User is 0), so
	// that an unauthenticated peer cannot make the server buffer
	// MaxFrame-sized frames. 0 means MaxFrame throughout. MyIM's listeners
	// use DefaultPreAuthMaxFrame.
	PreAuthMaxFrame int
	// FirstFrameTimeout closes a connection that sends no complete frame
	// this long after connecting. Default 10 s.
	FirstFrameTimeout time.Duration
	// IdleTimeout closes a connection that sends no complete frame for this
	// long; a half frame that stalls counts as no frame. Clients PING well
	// inside it. Default 120 s.
	IdleTimeout time.Duration
	// MaxOutbound caps the bytes queued for one connection (gnet's outbound
	// buffer plus posted, unwritten buffers). A peer that stops reading is
	// disconnected when it is exceeded. Default 4 MiB.
	MaxOutbound int
	// MaxConns caps concurrent connections. 0 means 1,000,000, and any value
	// is lowered to leave room under the process's open-file limit: a
	// refused connection is one client turned away, while accept failing
	// for want of file descriptors would stop the listener.
	MaxConns int
	// TickInterval is the timing wheel's resolution. Default 1 s.
	TickInterval time.Duration
	// ReusePort gives each loop its own SO_REUSEPORT listener.
	ReusePort bool
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Transport, when set, is an outer framing between the sockets and
	// the frame parser (a WebSocket); nil means plain MyIM frames.
	Transport Transport
	// Gate, when set, caps this server's connections together with the
	// other servers given the same gate, besides MaxConns.
	Gate *ConnGate
	// WrapListener, when set, wraps the listener Start opens on Addr
	// (a TLS handshake before the loops, for instance); ReusePort does
	// not apply. The wrapper's Accept must return connections gnet can
	// take over: *net.TCPConn or *net.UnixConn. Stop closes it.
	WrapListener func(net.Listener) net.Listener
}

func (c *Config) fillDefaults() {
	if c.Addr == "" {
		c.Addr = ":5222"
	}
	if c.Loops <= 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = frame.DefaultMaxFrame
	}
	if c.MaxFrame > frame.MaxEncodable {
		c.MaxFrame = frame.MaxEncodable
	}
	if c.PreAuthMaxFrame <= 0 || c.PreAuthMaxFrame > c.MaxFrame {
		c.PreAuthMaxFrame = c.MaxFrame
	}
	if c.FirstFrameTimeout <= 0 {
		c.FirstFrameTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.MaxOutbound <= 0 {
		c.MaxOutbound = 4 << 20
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1_000_000
	}
	if limit := FileLimit(); limit > 0 {
		// Keep a tenth of the files, at most 1,024, for the other
		// listeners, the store, Redis and the logs.
		room := max(limit-min(1024, limit/10), 1)
		c.MaxConns = min(c.MaxConns, room)
	}
	if c.TickInterval <= 0 {
		c.TickInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// DefaultPreAuthMaxFrame is the frame cap before authentication on MyIM's
// listeners: the largest handshake message (session.Config's
// MaxHandshakeMessage, 2 KiB: a login request with a long password) with
// room to spare.
const DefaultPreAuthMaxFrame = 4 << 10

// Option sets one field of a server's Config.
type Option func(*Config)

// WithWrapListener sets Config.WrapListener.
func WithWrapListener(w func(net.Listener) net.Listener) Option {
	return func(c *Config) { c.WrapListener = w }
}

// WithConfig replaces the whole Config; later options still apply.
func WithConfig(c Config) Option { return func(dst *Config) { *dst = c } }

// WithAddr sets the listen address.
func WithAddr(addr string) Option { return func(c *Config) { c.Addr = addr } }

// WithLoops sets the number of event loops.
func WithLoops(n int) Option { return func(c *Config) { c.Loops = n } }

// WithMaxFrame sets the maximum frame size.
func WithMaxFrame(n int) Option { return func(c *Config) { c.MaxFrame = n } }

// WithPreAuthMaxFrame sets the maximum frame size before authentication.
func WithPreAuthMaxFrame(n int) Option { return func(c *Config) { c.PreAuthMaxFrame = n } }

// WithIdleTimeout sets the idle timeout.
func WithIdleTimeout(d time.Duration) Option { return func(c *Config) { c.IdleTimeout = d } }

// WithFirstFrameTimeout sets the deadline for the first frame.
func WithFirstFrameTimeout(d time.Duration) Option {
	return func(c *Config) { c.FirstFrameTimeout = d }
}

// WithMaxOutbound sets the per-connection outbound cap in bytes.
func WithMaxOutbound(n int) Option { return func(c *Config) { c.MaxOutbound = n } }

// WithMaxConns sets the connection cap.
func WithMaxConns(n int) Option { return func(c *Config) { c.MaxConns = n } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Config) { c.Logger = l } }

// FileLimit returns the process's open-file limit (the soft RLIMIT_NOFILE),
// 0 if unknown.
func FileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}

// RaiseFileLimit lifts the process's soft open-file limit to its hard
// limit and returns the result, for servers that hold many connections.
func RaiseFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	return FileLimit()
}
