package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Roles a node can run.
const (
	RoleAll      = "all"      // login + endpoint + center in one process
	RoleLogin    = "login"    // the login center only
	RoleEndpoint = "endpoint" // client connections only
	RoleCenter   = "center"   // routing, message ids and the offline store
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
	CenterAddr       string // center link listener
	Limits           Config // limits for the client listeners; Addr is ignored
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
	// Handlers for each listener; a nil one refuses everything but PING
	// until authenticated peers exist for it.
	LoginHandler, EndpointHandler, CenterHandler Handler
	// Ready reports whether the node's dependencies (store, Redis, center
	// links) are usable; /readyz calls it. Nil means always ready.
	Ready func(ctx context.Context) error
}

func (c *NodeConfig) fillDefaults() {
	if c.Role == "" {
		c.Role = RoleAll
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
}

// Node runs the listeners of one process's roles.
type Node struct {
	cfg     NodeConfig
	servers map[string]*Server
	order   []string
	http    *http.Server
	httpLn  net.Listener
	mux     *http.ServeMux
	admin   *http.Server
	adminLn net.Listener
	amux    *http.ServeMux
	routes  []Route // what mux and amux were given, for Routes
	mu      sync.Mutex
	stopped bool
	// draining turns /readyz to 503 while the node empties.
	draining atomic.Bool
}

// NewNode prepares a node; handlers for each listener come from the role.
func NewNode(cfg NodeConfig) (*Node, error) {
	cfg.fillDefaults()
	n := &Node{cfg: cfg, servers: make(map[string]*Server), mux: http.NewServeMux(), amux: http.NewServeMux()}
	all := cfg.Role == RoleAll
	add := func(name, addr string, h Handler) {
		if addr == "" {
			return
		}
		lim := cfg.Limits
		lim.Addr = addr
		if lim.PreAuthMaxFrame == 0 {
			lim.PreAuthMaxFrame = DefaultPreAuthMaxFrame
		}
		lim.Logger = cfg.Logger.With("listener", name)
		n.servers[name] = New(h, WithConfig(lim))
		n.order = append(n.order, name)
	}
	switch cfg.Role {
	case RoleAll, RoleLogin, RoleEndpoint, RoleCenter:
	default:
		return nil, fmt.Errorf("engine: unknown role %q", cfg.Role)
	}
	or := func(h Handler) Handler {
		if h == nil {
			return &preAuth{timeout: cfg.HandshakeTimeout}
		}
		return h
	}
	if all || cfg.Role == RoleLogin {
		add("login", cfg.LoginAddr, or(cfg.LoginHandler))
	}
	if all || cfg.Role == RoleEndpoint {
		add("endpoint", cfg.EndpointAddr, or(cfg.EndpointHandler))
	}
	if all || cfg.Role == RoleCenter {
		add("center", cfg.CenterAddr, or(cfg.CenterHandler))
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

// serveHTTP listens on addr (nothing when empty) and serves h there.
func (n *Node) serveHTTP(name, addr string, tcfg *tls.Config, h http.Handler) (*http.Server, net.Listener, error) {
	if addr == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s listener: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tcfg,
		ErrorLog: slog.NewLogLogger(n.cfg.Logger.Handler(), slog.LevelWarn)}
	serve := func() error { return srv.Serve(ln) }
	if tcfg != nil {
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	}
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error(name+" server", "err", err)
		}
	}()
	return srv, ln, nil
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
func (n *Node) Server(name string) *Server { return n.servers[name] }

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
