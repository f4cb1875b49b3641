package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/login"
	"github.com/myim/myim/engine/node"
	"github.com/myim/myim/internal/buildinfo"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/redis"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// parts holds what build has made so far, step by step; each step reads
// the parts made before it.
type parts struct {
	store      *node.TimedStore
	id         *clusterca.Identity
	reg        route.Table
	revs       *clusterca.RevocationList
	servers    func(context.Context) []login.ServerInfo
	scfg       *session.Config
	ctr        *center.LocalCenter
	remote     *center.RemoteCenter
	ep         *endpoint.Handler
	lg         *login.Handler
	hasher     *session.Hasher
	links      *center.LinkServer
	centerAddr string
	invites    *node.Invites
	mon        *node.Monitor
}

// build wires the roles in order: store, keys, registry, role handlers,
// center links, the engine node, its HTTP routes, then what runs in the
// background. Each step registers its own closers, so that close undoes
// them in reverse.
func (b *builder) build(logs *node.LogRing) (*node.Node, error) {
	p := &parts{scfg: &session.Config{}}
	ctx := context.Background()
	if err := b.openNodeStore(p); err != nil {
		return nil, err
	}
	if err := b.identity(ctx, p); err != nil {
		return nil, err
	}
	if err := b.registry(p); err != nil {
		return nil, err
	}
	if err := b.roles(p); err != nil {
		return nil, err
	}
	if err := b.centerLinks(p); err != nil {
		return nil, err
	}
	n, err := b.newNode(p)
	if err != nil {
		return nil, err
	}
	if err := b.registerRoutes(n, p, logs); err != nil {
		return nil, err
	}
	if err := b.background(n, p); err != nil {
		return nil, err
	}
	return n, nil
}

// openNodeStore opens the durable state (users, messages, groups) for the
// roles that keep it.
func (b *builder) openNodeStore(p *parts) error {
	cfg, role := b.cfg, b.cfg.Role
	if !has(role, im.RoleAll, im.RoleCenter, im.RoleLogin) {
		return nil
	}
	if role == im.RoleLogin && cfg.MySQLDSN == "" {
		return errors.New("the login role needs --mysql-dsn: it shares the users with the center")
	}
	raw, err := openStore(cfg.MySQLDSN, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	store := node.NewTimedStore(raw)
	p.store = store
	b.onClose(func() { store.Close() })
	return nil
}

// identity loads the node's keys: the first node makes them, the others
// get theirs at join.
func (b *builder) identity(ctx context.Context, p *parts) error {
	cfg, role := b.cfg, b.cfg.Role
	var err error
	if has(role, im.RoleAll, im.RoleCenter) && cfg.JoinURL != "" {
		if cfg.MySQLDSN == "" {
			return errors.New("a joining center needs --mysql-dsn: centers share the store")
		}
		p.id, err = b.joinIdentity(ctx, im.RoleCenter)
		return err
	}
	if has(role, im.RoleAll, im.RoleCenter) {
		if p.id, err = clusterca.LoadIdentity(cfg.DataDir, uint32(cfg.ServerID), time.Now()); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		return nil
	}
	p.id, err = b.joinIdentity(ctx, role)
	return err
}

// registry opens the server registry (Redis for a cluster, in-process
// otherwise), the revocation list and the endpoint list logins hand out.
func (b *builder) registry(p *parts) error {
	cfg, log := b.cfg, b.log
	var reg route.Table
	if cfg.RedisAddr != "" {
		r, err := redis.New(redis.Options{Addr: cfg.RedisAddr, Prefix: cfg.RedisPrefix})
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		reg = r
	} else {
		if cfg.Role == im.RoleEndpoint || cfg.Role == im.RoleLogin {
			log.Warn("no --redis-addr: this node's server list holds only itself")
		}
		reg = route.NewMemory()
	}
	p.reg = reg
	b.onClose(func() { reg.Close() })
	revs, err := b.revocations(reg, p.store)
	if err != nil {
		return err
	}
	p.revs = revs
	p.servers = func(ctx context.Context) []login.ServerInfo {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		list, err := reg.Servers(ctx, im.RoleEndpoint)
		if err != nil {
			log.Warn("server list", "err", err)
			return nil
		}
		out := make([]login.ServerInfo, len(list))
		for i, s := range list {
			out[i] = login.ServerInfo{ID: s.ID, Addr: s.Addr, WS: s.WSAddr, Priority: s.Priority, Load: s.Load, Key: s.StaticKey, Cert: s.Cert}
		}
		return out
	}
	return nil
}

// roles makes the center, endpoint and login handlers the role asks for.
func (b *builder) roles(p *parts) error {
	cfg, log, role := b.cfg, b.log, b.cfg.Role
	var err error
	if has(role, im.RoleAll, im.RoleCenter) {
		ccfg := center.Config{ID: uint32(cfg.ServerID), Store: p.store, Servers: p.servers,
			AckTimeout: cfg.ReceiptTimeout, Files: filesConfig(cfg), Logger: log.With("role", "center")}
		ccfg.GroupTTL, ccfg.GroupSweep = cfg.GroupTTL, cfg.GroupSweep
		if ccfg.Cluster, err = b.clusterConfig(p.reg); err != nil {
			return err
		}
		p.ctr = center.NewLocalCenter(ccfg)
		b.onClose(p.ctr.Close)
	}

	if has(role, im.RoleAll, im.RoleEndpoint) {
		var c im.Center = p.ctr
		if role == im.RoleEndpoint {
			if p.remote, err = b.remoteCenter(); err != nil {
				return err
			}
			b.onClose(p.remote.Close)
			c = p.remote
		}
		p.ep = endpoint.New(endpoint.Config{ID: uint32(cfg.ServerID), Identity: p.id, Session: p.scfg,
			Center: c, HandshakeTimeout: cfg.HandshakeTimeout, MaxSession: cfg.MaxSession,
			HandshakeRate: cfg.HandshakeRate, HandshakeBurst: cfg.HandshakeBurst, Revocations: p.revs,
			Logger: log.With("role", "endpoint")})
	}

	if p.store != nil {
		if p.hasher, err = session.NewHasher(p.scfg); err != nil {
			return err
		}
	}
	if has(role, im.RoleAll, im.RoleLogin) {
		var notify func(uint64, uint16, []byte)
		if p.ctr != nil {
			notify = p.ctr.Notify
		}
		p.lg = login.New(login.Config{Store: p.store, Identity: p.id, Hasher: p.hasher, Session: p.scfg,
			Servers: p.servers, Notify: notify, Logger: log.With("role", "login"), HandshakeTimeout: cfg.HandshakeTimeout})
		b.onClose(p.lg.Wait)
	}
	return nil
}

// centerLinks makes the center link listener. It replaces the bare center
// listener when links are possible: over TLS once the cluster CA exists,
// or in plain text when asked.
func (b *builder) centerLinks(p *parts) error {
	p.centerAddr = b.cfg.CenterAddr
	if p.ctr == nil || b.cfg.CenterAddr == "" {
		return nil
	}
	lc, ok, err := b.linkConfig(true)
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	if p.links, err = center.NewLinkServer(center.LinkServerConfig{Addr: b.cfg.CenterAddr, Center: p.ctr, Link: lc}); err != nil {
		return err
	}
	p.centerAddr = ""
	return nil
}

// newNode makes the engine node that owns the listeners.
func (b *builder) newNode(p *parts) (*node.Node, error) {
	cfg := b.cfg
	httpTLS, err := b.httpTLS()
	if err != nil {
		return nil, err
	}
	ep, remote, store := p.ep, p.remote, p.store
	ready := func(ctx context.Context) error {
		if ep != nil && ep.Draining() {
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
	if p.lg != nil {
		lh = p.lg
	}
	if ep != nil {
		eh = ep
	}
	return node.NewNode(node.NodeConfig{
		Role:         cfg.Role,
		ServerID:     uint32(cfg.ServerID),
		EndpointAddr: cfg.EndpointAddr,
		LoginAddr:    cfg.LoginAddr,
		HTTPAddr:     cfg.HTTPAddr,
		HTTPTLS:      httpTLS,
		AdminAddr:    cfg.AdminAddr,
		CenterAddr:   p.centerAddr,
		Limits: engine.Config{
			Loops:             cfg.Loops,
			MaxFrame:          cfg.MaxFrame,
			MaxOutbound:       cfg.MaxOutbound,
			MaxConns:          cfg.MaxConns,
			IdleTimeout:       cfg.IdleTimeout,
			FirstFrameTimeout: cfg.FirstFrameTimeout,
		},
		HandshakeTimeout: cfg.HandshakeTimeout,
		Logger:           b.log,
		LoginHandler:     lh,
		EndpointHandler:  eh,
		WSAddr:           cfg.WSAddr,
		WSOrigins:        splitList(cfg.WSOrigins),
		WSTLS:            httpTLS,
		Ready:            ready,
	})
}

// registerRoutes adds the HTTP API, the web chat, the monitor and the
// admin routes to n.
func (b *builder) registerRoutes(n *node.Node, p *parts, logs *node.LogRing) error {
	cfg, store := b.cfg, p.store
	// Registrations hash on their own share of the cores, so that a flood
	// of them does not queue in front of logins.
	if store != nil {
		p.invites = &node.Invites{Store: store, TTL: cfg.InviteTTL, PerUser: cfg.UserInvites}
		rcfg := *p.scfg
		rcfg.HashConcurrency = max(1, runtime.GOMAXPROCS(0)/2)
		regHasher, err := session.NewHasher(&rcfg)
		if err != nil {
			return err
		}
		api := &node.API{Store: store, Hasher: regHasher, Identity: p.id, Center: p.ctr, Revocations: p.revs,
			Registration: cfg.Registration, Invites: p.invites}
		if cfg.RegistrationRate > 0 {
			api.RegisterRate = node.NewAddrRate(time.Hour/time.Duration(cfg.RegistrationRate), cfg.RegistrationRate)
		}
		api.Register(n)
		api.RegisterFiles(n)
	}
	if cfg.WSAddr != "" && p.lg != nil && p.ep != nil && p.id != nil {
		serveChat(n, p.id)
	}
	bi := buildinfo.Get()
	mcfg := node.MonitorConfig{Node: n, Center: p.ctr, Endpoint: p.ep, Login: p.lg,
		Store: store, Logs: logs, ServerID: uint32(cfg.ServerID), Version: bi.Version, Commit: bi.Commit,
		Registry: p.reg}
	mon := node.NewMonitor(mcfg)
	p.mon = mon
	mon.Register(n)
	b.onClose(mon.Close)
	b.onStart(func() { // the admin address is known once bound
		if a := n.Addrs()["admin"]; a != nil {
			mon.SetAdminAddr(a.String())
		}
		mon.Publish()
	})
	var st storage.Store
	if store != nil {
		st = store
	}
	b.endpoint, b.ctr, b.servers = p.ep, p.ctr, p.servers
	(&node.Admin{Secret: cfg.AdminSecret, Store: st, Hasher: p.hasher, Identity: p.id, Endpoint: p.ep, Revocations: p.revs,
		Center: p.ctr, Monitor: mon, Servers: p.servers, PProf: cfg.PProf, Logger: b.log.With("role", "admin"),
		Invites: p.invites, Node: n, OnDrain: func(bool) {
			if b.advertise != nil {
				b.advertise()
			}
		}}).Register(n)
	return nil
}

// background starts the center link listener, serves joins on the first
// node, and keeps the endpoint registered in the server registry.
func (b *builder) background(n *node.Node, p *parts) error {
	bg, cancel := context.WithCancel(context.Background())
	b.onClose(cancel)
	if p.links != nil {
		links := p.links
		if err := links.Start(); err != nil {
			return fmt.Errorf("center link listener: %w", err)
		}
		b.onClose(func() { _ = links.Close() })
		b.say.listening("center", links.Addr().String(), "links")
		if p.ctr.ClusterStats() != nil {
			b.advertiseCenter(bg, links.Addr(), p.reg)
		}
	}
	if has(b.cfg.Role, im.RoleAll, im.RoleCenter) && p.id.Root != nil {
		if err := b.serveJoins(bg, p.id); err != nil {
			return err
		}
		b.say.rootKey(p.id.Root.Verify().String(), filepath.Join(b.cfg.DataDir, "root.pub"))
	}
	if p.ep != nil {
		b.onStart(func() { b.keepAdvertised(bg, cancel, n, p) })
	}
	return nil
}

// keepAdvertised registers the endpoint in the server registry and renews
// the registration until bg ends; called once the listeners are bound.
func (b *builder) keepAdvertised(bg context.Context, cancel context.CancelFunc, n *node.Node, p *parts) {
	reg := p.reg
	// The first registration is made before the node says it started, so
	// that a login right after start lists it.
	adv := b.advertiser(n.Addrs()["endpoint"], n.Addrs()["ws"], reg, p.id, p.ep)
	adv(bg)
	b.advertise = func() { adv(bg) }
	done := make(chan struct{})
	// At close the registration is removed before the registry closes,
	// and before the process exits.
	b.onClose(func() { cancel(); <-done })
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				rctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = reg.UnregisterServer(rctx, uint32(b.cfg.ServerID))
				cancel()
				return
			case <-t.C:
				adv(bg)
			}
		}
	}()
}
