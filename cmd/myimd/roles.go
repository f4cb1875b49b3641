package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/route"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// node is one process's parts, wired by role:
//
//	all       store, keys, center, endpoint, login, HTTP API (the default)
//	center    store, keys (the cluster's first node), center, link listener
//	endpoint  keys from the first node, endpoint, link to a center
//	login     store (MySQL, shared with the center), keys from the first node
//
// The first node (role all or center) holds the cluster root and, after
// `myimd cluster init`, the CA that certifies links; other nodes join with
// the token it prints. A further center (role all or center with
// --join-url) joins the same way and gets its keys from the first node;
// with --redis-addr the centers find each other in the server registry
// and route to each other's users (engine.ClusterConfig).
type node struct {
	cfg     Config
	log     *slog.Logger
	closers []func()
	starts  []func()
}

func (b *node) onClose(f func()) { b.closers = append(b.closers, f) }

// onStart runs f once the listeners are bound.
func (b *node) onStart(f func()) { b.starts = append(b.starts, f) }

func (b *node) started() {
	for _, f := range b.starts {
		f()
	}
}

func (b *node) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

func has(role string, want ...string) bool {
	for _, w := range want {
		if role == w {
			return true
		}
	}
	return false
}

// buildNode wires the roles the config asks for. The caller starts the
// returned engine node, then calls started, and close at the end.
func buildNode(cfg Config, log *slog.Logger, logs *engine.LogRing) (*engine.Node, *node, error) {
	b := &node{cfg: cfg, log: log}
	n, err := b.build(logs)
	if err != nil {
		b.close()
		return nil, nil, err
	}
	return n, b, nil
}

func (b *node) build(logs *engine.LogRing) (*engine.Node, error) {
	cfg, log := b.cfg, b.log
	role := cfg.Role
	ctx := context.Background()

	// Durable state: users, messages, groups.
	var store *engine.TimedStore
	if has(role, engine.RoleAll, engine.RoleCenter, engine.RoleLogin) {
		if role == engine.RoleLogin && cfg.MySQLDSN == "" {
			return nil, errors.New("the login role needs --mysql-dsn: it shares the users with the center")
		}
		raw, err := storage.Open(storage.Config{MySQLDSN: cfg.MySQLDSN, DataDir: cfg.DataDir})
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		store = engine.NewTimedStore(raw)
		b.onClose(func() { store.Close() })
	}

	// Keys: the first node makes them, the others get theirs at join.
	var id *engine.Identity
	var err error
	if has(role, engine.RoleAll, engine.RoleCenter) && cfg.JoinURL != "" {
		if cfg.MySQLDSN == "" {
			return nil, errors.New("a joining center needs --mysql-dsn: centers share the store")
		}
		if id, err = b.joinIdentity(ctx, engine.RoleCenter); err != nil {
			return nil, err
		}
	} else if has(role, engine.RoleAll, engine.RoleCenter) {
		if id, err = engine.LoadIdentity(cfg.DataDir, uint32(cfg.ServerID), time.Now()); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
	} else if id, err = b.joinIdentity(ctx, role); err != nil {
		return nil, err
	}

	// The server registry: Redis for a cluster, in-process otherwise.
	var reg route.Table
	if cfg.RedisAddr != "" {
		r, err := route.NewRedis(route.Options{Addr: cfg.RedisAddr, Prefix: cfg.RedisPrefix})
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		reg = r
	} else {
		if role == engine.RoleEndpoint || role == engine.RoleLogin {
			log.Warn("no --redis-addr: this node's server list holds only itself")
		}
		reg = route.NewMemory()
	}
	b.onClose(func() { reg.Close() })
	servers := func(ctx context.Context) []engine.ServerInfo {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		list, err := reg.Servers(ctx, engine.RoleEndpoint)
		if err != nil {
			log.Warn("server list", "err", err)
			return nil
		}
		out := make([]engine.ServerInfo, len(list))
		for i, s := range list {
			out[i] = engine.ServerInfo{ID: s.ID, Addr: s.Addr, Priority: s.Priority, Load: s.Load, Key: s.StaticKey, Cert: s.Cert}
		}
		return out
	}

	scfg := &session.Config{}
	var center *engine.LocalCenter
	if has(role, engine.RoleAll, engine.RoleCenter) {
		ccfg := engine.CenterConfig{ID: uint32(cfg.ServerID), Store: store, Servers: servers,
			AckTimeout: cfg.ReceiptTimeout, Files: filesConfig(cfg), Logger: log.With("role", "center")}
		if ccfg.Cluster, err = b.clusterConfig(reg); err != nil {
			return nil, err
		}
		center = engine.NewLocalCenter(ccfg)
		b.onClose(center.Close)
	}

	var endpoint *engine.EndpointHandler
	var remote *engine.RemoteCenter
	if has(role, engine.RoleAll, engine.RoleEndpoint) {
		var c engine.Center = center
		if role == engine.RoleEndpoint {
			if remote, err = b.remoteCenter(); err != nil {
				return nil, err
			}
			b.onClose(remote.Close)
			c = remote
		}
		endpoint = engine.NewEndpoint(engine.EndpointConfig{ID: uint32(cfg.ServerID), Identity: id, Session: scfg,
			Center: c, HandshakeTimeout: cfg.HandshakeTimeout, MaxSession: cfg.MaxSession,
			Logger: log.With("role", "endpoint")})
	}

	var login *engine.Login
	var hasher *session.Hasher
	if store != nil {
		if hasher, err = session.NewHasher(scfg); err != nil {
			return nil, err
		}
	}
	if has(role, engine.RoleAll, engine.RoleLogin) {
		var notify func(uint64, uint16, []byte)
		if center != nil {
			notify = center.Notify
		}
		login = engine.NewLogin(engine.LoginConfig{Store: store, Identity: id, Hasher: hasher, Session: scfg,
			Servers: servers, Notify: notify, Logger: log.With("role", "login")})
		b.onClose(login.Wait)
	}

	// The center link listener replaces the bare center listener when
	// links are possible: over TLS once the cluster CA exists, or in plain
	// text when asked.
	centerAddr := cfg.CenterAddr
	var links *engine.LinkServer
	if center != nil && cfg.CenterAddr != "" {
		lc, ok, err := b.linkConfig(true)
		if err != nil {
			return nil, err
		}
		if ok {
			if links, err = engine.NewLinkServer(engine.LinkServerConfig{Addr: cfg.CenterAddr, Center: center, Link: lc}); err != nil {
				return nil, err
			}
			centerAddr = ""
		}
	}

	ready := func(ctx context.Context) error {
		if endpoint != nil && endpoint.Draining() {
			return errors.New("draining") // load balancers send no one new
		}
		if remote != nil {
			return remote.Ready(ctx)
		}
		if store != nil {
			return store.Ping(ctx)
		}
		return nil
	}
	var lh, eh engine.Handler
	if login != nil {
		lh = login
	}
	if endpoint != nil {
		eh = endpoint
	}
	n, err := engine.NewNode(engine.NodeConfig{
		Role:         role,
		ServerID:     uint32(cfg.ServerID),
		EndpointAddr: cfg.EndpointAddr,
		LoginAddr:    cfg.LoginAddr,
		HTTPAddr:     cfg.HTTPAddr,
		CenterAddr:   centerAddr,
		Limits: engine.Config{
			Loops:             cfg.Loops,
			MaxFrame:          cfg.MaxFrame,
			MaxOutbound:       cfg.MaxOutbound,
			MaxConns:          cfg.MaxConns,
			IdleTimeout:       cfg.IdleTimeout,
			FirstFrameTimeout: cfg.FirstFrameTimeout,
		},
		HandshakeTimeout: cfg.HandshakeTimeout,
		Logger:           log,
		LoginHandler:     lh,
		EndpointHandler:  eh,
		Ready:            ready,
	})
	if err != nil {
		return nil, err
	}
	if store != nil {
		api := &engine.API{Store: store, Hasher: hasher, Identity: id, Center: center}
		api.Register(n)
		api.RegisterFiles(n)
	}
	mon := engine.NewMonitor(engine.MonitorConfig{Node: n, Center: center, Endpoint: endpoint, Login: login,
		Store: store, Logs: logs, ServerID: uint32(cfg.ServerID), Version: version})
	mon.Register(n)
	b.onClose(mon.Close)
	var st storage.Store
	if store != nil {
		st = store
	}
	(&engine.Admin{Secret: cfg.AdminSecret, Store: st, Hasher: hasher, Identity: id, Endpoint: endpoint,
		Center: center, Monitor: mon, Servers: servers, PProf: cfg.PProf, Logger: log.With("role", "admin")}).Register(n)

	bg, cancel := context.WithCancel(context.Background())
	b.onClose(cancel)
	if links != nil {
		if err := links.Start(); err != nil {
			return nil, fmt.Errorf("center link listener: %w", err)
		}
		b.onClose(func() { _ = links.Close() })
		fmt.Fprintf(os.Stdout, "  %-9s listening on %s (links)\n", "center", links.Addr())
		if center.ClusterStats() != nil {
			b.advertiseCenter(bg, links.Addr(), reg)
		}
	}
	if has(role, engine.RoleAll, engine.RoleCenter) && id.Root != nil {
		if err := b.serveJoins(bg, id); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stdout, "  root key  %s (clients pin it; also in %s)\n", id.Root.Verify().String(),
			filepath.Join(cfg.DataDir, "root.pub"))
	}
	if endpoint != nil {
		b.onStart(func() {
			// The first registration is made before the node says it
			// started, so that a login right after start lists it.
			adv := b.advertiser(n.Addrs()["endpoint"], reg, id, endpoint)
			adv(bg)
			go func() {
				t := time.NewTicker(5 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-bg.Done():
						rctx, cancel := context.WithTimeout(context.Background(), time.Second)
						_ = reg.UnregisterServer(rctx, uint32(cfg.ServerID))
						cancel()
						return
					case <-t.C:
						adv(bg)
					}
				}
			}()
		})
	}
	return n, nil
}

// clusterConfig joins the center to the cluster's other centers when the
// route table is shared (Redis) and links are possible; nil otherwise.
func (b *node) clusterConfig(reg route.Table) (*engine.ClusterConfig, error) {
	if b.cfg.RedisAddr == "" || b.cfg.CenterAddr == "" {
		return nil, nil
	}
	lc, ok, err := b.linkConfig(false)
	if err != nil {
		return nil, err
	}
	if !ok {
		b.log.Info("no cluster certificate and no --link-plaintext: this center does not link to other centers")
		return nil, nil
	}
	lc.Logger = b.log.With("part", "cluster")
	retry := b.cfg.RouteRetry
	if retry == 0 {
		retry = -1 // engine: store at once
	}
	if b.cfg.RouteTTL < 3*time.Second {
		return nil, fmt.Errorf("--route-ttl %v: at least 3s", b.cfg.RouteTTL)
	}
	return &engine.ClusterConfig{Routes: reg, Link: lc, LookupRetry: retry, RouteTTL: b.cfg.RouteTTL}, nil
}

// advertiseCenter registers this center's link address in the server
// registry, where the other centers find it, every few seconds; the entry
// lapses if the process dies and is removed at a clean stop.
func (b *node) advertiseCenter(ctx context.Context, bound net.Addr, reg route.Table) {
	const ttl = 15 * time.Second
	addr := b.cfg.LinkAdvertise
	if addr == "" {
		addr = bound.String()
		_, port, _ := net.SplitHostPort(addr)
		if host, _, _ := net.SplitHostPort(b.cfg.CenterAddr); host != "" {
			addr = net.JoinHostPort(host, port)
		} else {
			b.log.Warn("center link address to advertise is a wildcard: set --link-advertise-addr", "addr", addr)
		}
	}
	srv := engine.CenterServer(uint32(b.cfg.ServerID), addr)
	register := func() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := reg.RegisterServer(rctx, srv, ttl); err != nil && ctx.Err() == nil {
			b.log.Warn("server registry (center)", "err", err)
		}
	}
	register()
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				rctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = reg.UnregisterServer(rctx, srv.ID)
				cancel()
				return
			case <-t.C:
				register()
			}
		}
	}()
}

// joinIdentity gets the link certificate (joining with the token on first
// start) and then the session keys from the first node.
func (b *node) joinIdentity(ctx context.Context, role string) (*engine.Identity, error) {
	cfg := b.cfg
	if cfg.JoinURL == "" {
		return nil, fmt.Errorf("the %s role needs --join-url (and a join token on first start)", role)
	}
	if _, err := engine.ReadNodeCert(cfg.DataDir); err != nil {
		token := cfg.Join
		if token == "" && cfg.JoinFile != "" {
			b, err := os.ReadFile(cfg.JoinFile)
			if err != nil {
				return nil, fmt.Errorf("--join-file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		if token == "" {
			return nil, fmt.Errorf("no cluster certificate in %s: start once with a join token in --join-file or MYIM_JOIN", cfg.DataDir)
		}
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := engine.Join(jctx, cfg.JoinURL, token, cfg.DataDir, uint32(cfg.ServerID), role); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
		b.log.Info("joined the cluster", "role", role, "node", cfg.ServerID)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := engine.FetchIdentity(fctx, cfg.JoinURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	renew, stop := context.WithCancel(context.Background())
	b.onClose(stop)
	go engine.RenewLoop(renew, cfg.JoinURL, cfg.DataDir, b.log)
	go engine.DenyLoop(renew, cfg.JoinURL, cfg.DataDir, b.log)
	return id, nil
}

// linkConfig returns the link settings: mutual TLS with this node's
// cluster certificate, or plain text when --link-plaintext is set. ok is
// false when neither is possible (no certificate, no plain text).
func (b *node) linkConfig(server bool) (engine.LinkConfig, bool, error) {
	lc := engine.LinkConfig{Logger: b.log.With("part", "link")}
	if b.cfg.LinkPlaintext {
		lc.Plaintext, lc.Secret = true, []byte(b.cfg.LinkSecret)
		if len(lc.Secret) < 16 {
			return lc, false, errors.New("--link-plaintext needs --link-secret (at least 16 bytes, the same on every node)")
		}
		return lc, true, nil
	}
	if _, err := engine.ReadNodeCert(b.cfg.DataDir); err != nil {
		return lc, false, nil
	}
	srv, cli, err := engine.LoadNodeTLS(b.cfg.DataDir)
	if err != nil {
		return lc, false, err
	}
	lc.TLS = cli
	if server {
		lc.TLS = srv
	}
	return lc, true, nil
}

func (b *node) remoteCenter() (*engine.RemoteCenter, error) {
	if b.cfg.CenterLink == "" {
		return nil, errors.New("the endpoint role needs --center-link host:port")
	}
	lc, ok, err := b.linkConfig(false)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no cluster certificate for the center link: join first, or use --link-plaintext")
	}
	// A list: the first center, then the others to move to if it is lost.
	addrs := strings.Split(b.cfg.CenterLink, ",")
	for i := range addrs {
		addrs[i] = strings.TrimSpace(addrs[i])
	}
	failback := b.cfg.Failback
	if failback == 0 {
		failback = -1 // engine: never
	}
	return engine.NewRemoteCenter(engine.RemoteCenterConfig{Addr: addrs[0], Fallbacks: addrs[1:], Link: lc,
		FailbackInterval: failback})
}

// serveJoins runs the join listener (TLS, certificates from the CA) when
// this first node has run `myimd cluster init`.
func (b *node) serveJoins(ctx context.Context, id *engine.Identity) error {
	if b.cfg.JoinAddr == "" {
		return nil
	}
	if _, err := engine.ReadNodeCert(b.cfg.DataDir); err != nil {
		return nil // no CA yet: nothing to join
	}
	svc, err := engine.JoinHandler(b.cfg.DataDir, b.log.With("part", "join"))
	if err != nil {
		return err
	}
	tcfg, err := svc.TLSConfig()
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(engine.JoinPath, svc)
	mux.Handle(engine.IdentityPath, engine.IdentityHandler(id, svc, b.log.With("part", "join")))
	mux.HandleFunc("GET "+engine.DenyPath, svc.ServeDenied)
	ln, err := net.Listen("tcp", b.cfg.JoinAddr)
	if err != nil {
		return fmt.Errorf("join listener: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(b.log.Handler(), slog.LevelWarn)}
	go func() { _ = hs.Serve(tls.NewListener(ln, tcfg)) }()
	b.onClose(func() { _ = hs.Close() })
	go engine.RenewLoop(ctx, "", b.cfg.DataDir, b.log)
	fmt.Fprintf(os.Stdout, "  %-9s listening on %s (cluster joins)\n", "join", ln.Addr())
	return nil
}

// advertiser returns the registration of this endpoint in the server
// registry, with its current load; it is made every few seconds and lapses
// if the process dies.
func (b *node) advertiser(bound net.Addr, reg route.Table, id *engine.Identity, ep *engine.EndpointHandler) func(context.Context) {
	const ttl = 15 * time.Second
	cert, _ := id.EndpointCert.MarshalBinary()
	addr := b.cfg.AdvertiseAddr
	if addr == "" && bound != nil {
		// The listener's port, with the host it was configured with: an
		// empty host tells clients to use the host they logged in at.
		_, port, _ := net.SplitHostPort(bound.String())
		host, _, _ := net.SplitHostPort(b.cfg.EndpointAddr)
		addr = net.JoinHostPort(host, port)
	}
	return func(ctx context.Context) {
		if addr == "" {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		prio := b.cfg.Priority
		if ep.Draining() {
			prio += 1 << 20 // last on every list while it empties
		}
		err := reg.RegisterServer(rctx, route.Server{ID: uint32(b.cfg.ServerID), Role: engine.RoleEndpoint, Addr: addr,
			Priority: prio, Load: ep.Sessions(), StaticKey: id.Static.PublicKey().Bytes(), Cert: cert}, ttl)
		if err != nil && ctx.Err() == nil {
			b.log.Warn("server registry", "err", err)
		}
	}
}
