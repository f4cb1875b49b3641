package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/ws"
	"github.com/myim/myim/frame"
)

// NodeConfig describes one MyIM process. Empty addresses disable their
// listener; the role decides which listeners exist at all.
type NodeConfig struct {
	Role         string
	ServerID     uint32
	EndpointAddr string // client listener
	LoginAddr    string // login listener
	HTTPAddr     string // the public HTTP API and health
	// HTTPTLS, when set, serves the public HTTP API over TLS.
	HTTPTLS *tls.Config
	// AdminAddr is the operators' listener: metrics, the admin API, pprof,
	// the status page and health. Empty: those routes are not served.
	AdminAddr        string
	CenterAddr       string        // center link listener
	Limits           engine.Config // limits for the client listeners; Addr is ignored
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
	// Handlers for each listener; a nil one refuses everything but PING
	// until authenticated peers exist for it.
	LoginHandler, EndpointHandler, CenterHandler engine.Handler
	// WSAddr is the WebSocket listener (empty: none): /login and
	// /endpoint for the roles the node runs, on engine/ws, with the client
	// listeners' limits. WSOrigins are the browser origins it accepts
	// besides its own (ws.Config.Origins).
	WSAddr    string
	WSOrigins []string
	// WSTLS, when set, makes the WebSocket listener wss:// (ws.NewTLS):
	// MyIM serves it with the HTTP listener's certificate.
	WSTLS *tls.Config
	// Ready reports whether the node's dependencies (store, Redis, center
	// links) are usable; /readyz calls it. Nil means always ready.
	Ready func(ctx context.Context) error
	// FileReserve is how many file descriptors the listeners leave for
	// everything else: the store, Redis, center links, files being
	// transferred, logs. The listeners' connection caps are derived so
	// that together they stay below RLIMIT_NOFILE minus it (see
	// connShares). 0 means 64 plus a tenth of the limit.
	FileReserve int
	// HTTPMaxConns caps the HTTP API's connections (lowered to fit the
	// file budget). 0 means 1,024.
	HTTPMaxConns int
}

func (c *NodeConfig) fillDefaults() {
	if c.Role == "" {
		c.Role = im.RoleAll
	}
	if c.ServerID == 0 {
		c.ServerID = 1
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPMaxConns <= 0 {
		c.HTTPMaxConns = 1024
	}
}

// HTTP server timeouts: a client gets ReadHeaderTimeout to send its
// headers, httpReadTimeout for a whole request, httpWriteTimeout for the
// answer, and an idle keep-alive connection is closed after
// httpIdleTimeout. File uploads and downloads are long by nature: their
// routes (/v1/files, /v1/uploads) lift the read and write deadlines and
// are bounded by the file server's own timeouts.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 60 * time.Second
	httpIdleTimeout       = 120 * time.Second
)

// connShares splits the file descriptors left after reserve among the
// listeners: the login and HTTP listeners an eighth each, any other
// listener a sixteenth, and the endpoint what is left; a configured cap
// below its share is kept. The WebSocket listener of a process with an
// endpoint carries the same sessions and gets the endpoint's cap: the two
// share it through one engine.ConnGate (see NewNode), so that on a machine
// whose clients all use TCP the WebSocket listener keeps no files from
// the endpoint. Without an endpoint it takes a quarter. limit 0 (unknown
// or unlimited) leaves the caps as they are.
func connShares(limit, reserve int, names []string, caps map[string]int) map[string]int {
	out := make(map[string]int, len(caps))
	for k, v := range caps {
		out[k] = v
	}
	if limit <= 0 {
		return out
	}
	avail := max(limit-reserve, len(names))
	left := avail
	_, endpoint := out["endpoint"]
	for _, n := range names {
		if n == "endpoint" || n == "ws" && endpoint {
			continue
		}
		share := avail / 8
		switch n {
		case "login", "http":
		case "ws": // logins only (no endpoint here): a quarter
			share = avail / 4
		default:
			share = avail / 16
		}
		out[n] = max(min(out[n], share), 1)
		left -= out[n]
	}
	if endpoint {
		out["endpoint"] = max(min(out["endpoint"], left), 1)
		if _, ok := out["ws"]; ok {
			out["ws"] = out["endpoint"]
		}
	}
	return out
}

// Node runs the listeners of one process's roles.
type Node struct {
	cfg     NodeConfig
	servers map[string]*engine.Server
	order   []string
	http    *http.Server
	httpLn  net.Listener
	httpLim *limitListener // httpLn, with its cap
	httpCap int
	mux     *http.ServeMux
	admin   *http.Server
	adminLn net.Listener
	amux    *http.ServeMux
	routes  []Route // what mux and amux were given, for Routes
	mu      sync.Mutex
	stopped bool
	// fatal receives the first listener that stopped without Stop.
	fatal chan error
	// draining turns /readyz to 503 while the node empties.
	draining atomic.Bool
}

// NewNode prepares a node; handlers for each listener come from the role.
func NewNode(cfg NodeConfig) (*Node, error) {
	cfg.fillDefaults()
	n := &Node{cfg: cfg, servers: make(map[string]*engine.Server), mux: http.NewServeMux(), amux: http.NewServeMux(),
		fatal: make(chan error, 1)}
	all := cfg.Role == im.RoleAll
	wsRoutes := cfg.wsRoutes()
	caps := cfg.listenerCaps(len(wsRoutes) > 0)
	n.httpCap = caps["http"]
	// The endpoint's TCP and WebSocket listeners hold sessions alike: one
	// cap for both.
	var sessions *engine.ConnGate
	if _, ok := caps["ws"]; ok && caps["endpoint"] > 0 {
		sessions = engine.NewConnGate(caps["endpoint"])
	}
	add := func(name, addr string, h engine.Handler) {
		n.addListener(name, addr, h, caps[name], sessions)
	}
	switch cfg.Role {
	case im.RoleAll, im.RoleLogin, im.RoleEndpoint, im.RoleCenter:
	default:
		return nil, fmt.Errorf("node: unknown role %q", cfg.Role)
	}
	or := func(h engine.Handler) engine.Handler {
		if h == nil {
			return engine.PreAuthHandler(cfg.HandshakeTimeout)
		}
		return h
	}
	if all || cfg.Role == im.RoleLogin {
		add("login", cfg.LoginAddr, or(cfg.LoginHandler))
	}
	if all || cfg.Role == im.RoleEndpoint {
		add("endpoint", cfg.EndpointAddr, or(cfg.EndpointHandler))
	}
	if all || cfg.Role == im.RoleCenter {
		add("center", cfg.CenterAddr, or(cfg.CenterHandler))
	}
	if len(wsRoutes) > 0 {
		for i := range wsRoutes {
			wsRoutes[i].Handler = or(wsRoutes[i].Handler)
		}
		add("ws", cfg.WSAddr, ws.NewMux(wsRoutes...))
	}
	healthz := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}
	for _, m := range []*http.ServeMux{n.mux, n.amux} {
		m.HandleFunc("GET /healthz", healthz)
		m.HandleFunc("GET /readyz", n.readyz)
	}
	for _, l := range []string{ListenerHTTP, ListenerAdmin} {
		n.routes = append(n.routes, Route{l, "GET /healthz"}, Route{l, "GET /readyz"})
	}
	return n, nil
}

// listenerCaps returns each listener's connection cap: its share of the
// process's file budget. ws says whether the WebSocket listener is on.
func (c *NodeConfig) listenerCaps(ws bool) map[string]int {
	all := c.Role == im.RoleAll
	var names []string
	caps := map[string]int{}
	want := func(name, addr string, on bool) {
		if on && addr != "" {
			names = append(names, name)
			caps[name] = c.Limits.MaxConns
			if caps[name] <= 0 {
				caps[name] = 1_000_000
			}
		}
	}
	want("login", c.LoginAddr, all || c.Role == im.RoleLogin)
	want("endpoint", c.EndpointAddr, all || c.Role == im.RoleEndpoint)
	want("center", c.CenterAddr, all || c.Role == im.RoleCenter)
	want("ws", c.WSAddr, ws)
	if c.HTTPAddr != "" {
		names = append(names, "http")
		caps["http"] = c.HTTPMaxConns
	}
	limit := engine.FileLimit()
	reserve := c.FileReserve
	if reserve <= 0 {
		reserve = 64 + limit/10
	}
	return connShares(limit, reserve, names, caps)
}

// addListener makes the engine server for listener name on addr, capped
// at maxConns; the endpoint and ws listeners also share the sessions
// gate. An empty addr adds nothing. Called by NewNode only.
func (n *Node) addListener(name, addr string, h engine.Handler, maxConns int, sessions *engine.ConnGate) {
	if addr == "" {
		return
	}
	cfg := &n.cfg
	lim := cfg.Limits
	lim.MaxConns = maxConns
	if name == "endpoint" || name == "ws" {
		lim.Gate = sessions
	}
	lim.Addr = addr
	if lim.PreAuthMaxFrame == 0 {
		lim.PreAuthMaxFrame = engine.DefaultPreAuthMaxFrame
	}
	lim.Logger = cfg.Logger.With("listener", name)
	if name == "ws" {
		t := ws.New(ws.Config{Paths: h.(*ws.Mux).Paths(), Origins: cfg.WSOrigins,
			MaxMessage: max(lim.MaxFrame, frame.DefaultMaxFrame) + 4<<10})
		lim.Transport = t
		if cfg.WSTLS != nil {
			tc := cfg.WSTLS.Clone()
			tc.NextProtos = []string{"http/1.1"}
			wss := ws.NewTLS(ws.TLSConfig{TLS: tc, HandshakeTimeout: cfg.HandshakeTimeout})
			lim.WrapListener, lim.Transport = wss.Listener, wss.Wrap(t)
		}
	}
	n.servers[name] = engine.New(h, engine.WithConfig(lim))
	n.order = append(n.order, name)
}

// HandleHTTP adds a route to the node's public HTTP API, before Start.
func (n *Node) HandleHTTP(pattern string, h http.Handler) {
	n.mux.Handle(pattern, h)
	n.routes = append(n.routes, Route{ListenerHTTP, pattern})
}

// The HTTP listeners of a node, as Route.Listener names them.
const (
	ListenerHTTP  = "http"  // --http-addr: the public API
	ListenerAdmin = "admin" // --admin-addr: operators
)

// Route is one HTTP route of a node.
type Route struct {
	Listener string // ListenerHTTP or ListenerAdmin
	Pattern  string // as given to HandleHTTP or HandleAdmin: "GET /v1/friends"
}

// Routes returns the node's HTTP routes in the order they were added: what
// docs/openapi.yaml is checked against. Not safe to call concurrently with
// HandleHTTP or HandleAdmin.
func (n *Node) Routes() []Route { return slices.Clone(n.routes) }

// HandleAdmin adds a route to the node's admin listener, before Start.
func (n *Node) HandleAdmin(pattern string, h http.Handler) {
	n.amux.Handle(pattern, h)
	n.routes = append(n.routes, Route{ListenerAdmin, pattern})
}

// SetDraining marks the node as emptying (true) or serving again (false):
// while draining /readyz answers 503, so that load balancers send no one
// new. Safe for concurrent use.
func (n *Node) SetDraining(on bool) { n.draining.Store(on) }

// Draining reports whether SetDraining(true) is in force.
func (n *Node) Draining() bool { return n.draining.Load() }

func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if n.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"unready","error":"draining"}`))
		return
	}
	for _, name := range n.order {
		if err := n.servers[name].FailErr(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, `{"status":"unready","error":%q}`, name+" listener stopped: "+err.Error())
			return
		}
	}
	if n.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := n.cfg.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, `{"status":"unready","error":%q}`, err.Error())
			return
		}
	}
	_, _ = w.Write([]byte(`{"status":"ready"}`))
}

// Start binds every listener; on any failure it stops what it started.
func (n *Node) Start() error {
	for _, name := range n.order {
		if err := n.servers[name].Start(); err != nil {
			n.stopAll(context.Background())
			return fmt.Errorf("%s listener: %w", name, err)
		}
		go n.watch(name, n.servers[name])
	}
	var err error
	if n.http, n.httpLn, err = n.serveHTTP("http", n.cfg.HTTPAddr, n.cfg.HTTPTLS, n.mux); err != nil {
		n.stopAll(context.Background())
		return err
	}
	if n.admin, n.adminLn, err = n.serveHTTP("admin", n.cfg.AdminAddr, nil, n.amux); err != nil {
		n.stopAll(context.Background())
		return err
	}
	return nil
}

// serveHTTP listens on addr (nothing when empty) and serves h there. The
// public API ("http") gets a connection cap (its share of the file budget)
// and read, write and idle timeouts; file transfers lift the read and
// write deadlines (see httpReadTimeout). A server that stops with an
// error is reported on Fatal.
func (n *Node) serveHTTP(name, addr string, tcfg *tls.Config, h http.Handler) (*http.Server, net.Listener, error) {
	if addr == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s listener: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, TLSConfig: tcfg,
		ErrorLog: slog.NewLogLogger(n.cfg.Logger.Handler(), slog.LevelWarn)}
	if name == "http" {
		n.httpLim = newLimitListener(ln, n.httpCap)
		ln = n.httpLim
		srv.Handler = fileDeadlines(h)
		srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = httpReadTimeout, httpWriteTimeout, httpIdleTimeout
	}
	serve := func() error { return srv.Serve(ln) }
	if tcfg != nil {
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	}
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error(name+" listener stopped", "err", err)
			select {
			case n.fatal <- fmt.Errorf("%s listener stopped: %w", name, err):
			default:
			}
		}
	}()
	return srv, ln, nil
}

// fileDeadlines lifts the read and write deadlines of file transfers
// (see httpReadTimeout).
func fileDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.HasPrefix(p, "/v1/files") || strings.HasPrefix(p, "/v1/uploads") {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		h.ServeHTTP(w, r)
	})
}

// watch reports a listener that stops serving without Stop on Fatal.
func (n *Node) watch(name string, s *engine.Server) {
	<-s.Failed()
	select {
	case n.fatal <- fmt.Errorf("%s listener stopped: %w", name, s.FailErr()):
	default:
	}
}

// Fatal delivers the first error that leaves the node unable to serve (a
// listener that stopped without Stop); /readyz answers 503 from then on.
// The process should log it and exit, so that its supervisor restarts it.
func (n *Node) Fatal() <-chan error { return n.fatal }

// HTTPStats returns the HTTP listener's accept errors and its connection
// cap (0, 0 without an HTTP listener). Safe for concurrent use after Start.
func (n *Node) HTTPStats() (acceptErrors uint64, maxConns int) {
	if n.httpLim == nil {
		return 0, 0
	}
	return n.httpLim.errors.Load(), n.httpCap
}

// limitListener caps the connections accepted and not yet closed: past the
// cap, Accept waits, so that the excess waits in the kernel's backlog and
// holds no file descriptor of the process. It counts failed accepts
// (net/http retries them with a backoff).
type limitListener struct {
	net.Listener
	sem    chan struct{}
	done   chan struct{}
	once   sync.Once
	errors atomic.Uint64
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, max(n, 1)), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		if !errors.Is(err, net.ErrClosed) {
			l.errors.Add(1)
		}
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Addrs returns each listener's bound address by name: login, endpoint,
// center, http, admin.
func (n *Node) Addrs() map[string]net.Addr {
	m := make(map[string]net.Addr, len(n.servers)+1)
	for name, s := range n.servers {
		m[name] = s.Addr()
	}
	if n.httpLn != nil {
		m["http"] = n.httpLn.Addr()
	}
	if n.adminLn != nil {
		m["admin"] = n.adminLn.Addr()
	}
	return m
}

// Server returns the named listener's server, or nil.
func (n *Node) Server(name string) *engine.Server { return n.servers[name] }

// Stop stops accepting, flushes and closes every connection, and returns
// when all listeners are down or ctx expires.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	n.mu.Unlock()
	return n.stopAll(ctx)
}

func (n *Node) stopAll(ctx context.Context) error {
	var errs []error
	for _, h := range []*http.Server{n.http, n.admin} {
		if h != nil {
			errs = append(errs, h.Shutdown(ctx))
		}
	}
	for _, name := range n.order {
		s := n.servers[name]
		if s.Addr() == nil {
			continue
		}
		if err := s.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// wsRoutes are the WebSocket listener's paths: /login and /endpoint for
// the roles the node runs (nil handlers stand for PreAuthHandler, as on
// TCP); none without --ws-addr.
func (c *NodeConfig) wsRoutes() []ws.Route {
	if c.WSAddr == "" {
		return nil
	}
	all := c.Role == im.RoleAll
	var r []ws.Route
	if all || c.Role == im.RoleLogin {
		r = append(r, ws.Route{Path: "/login", Handler: c.LoginHandler})
	}
	if all || c.Role == im.RoleEndpoint {
		r = append(r, ws.Route{Path: "/endpoint", Handler: c.EndpointHandler})
	}
	return r
}
