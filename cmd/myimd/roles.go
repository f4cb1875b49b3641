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
	"strings"
	"time"

	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/engine/login"
	"github.com/myim/myim/engine/node"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
	"github.com/myim/myim/storage/mysql"
)

// builder assembles one process's parts, wired by role:
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
// and route to each other's users (center.ClusterConfig).
type builder struct {
	cfg     Config
	log     *slog.Logger
	say     *banner
	closers []func()
	starts  []func()
	closed  bool

	// Set by build for the shutdown drain.
	endpoint  *endpoint.Handler
	ctr       *center.LocalCenter
	servers   func(context.Context) []login.ServerInfo
	advertise func() // re-registers the endpoint at once (its priority follows the drain)
}

func (b *builder) onClose(f func()) { b.closers = append(b.closers, f) }

// onStart runs f once the listeners are bound.
func (b *builder) onStart(f func()) { b.starts = append(b.starts, f) }

func (b *builder) started() {
	for _, f := range b.starts {
		f()
	}
}

func (b *builder) close() {
	if b.closed {
		return
	}
	b.closed = true
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
func buildNode(cfg Config, log *slog.Logger, logs *node.LogRing, say *banner) (*node.Node, *builder, error) {
	b := &builder{cfg: cfg, log: log, say: say}
	n, err := b.build(logs)
	if err != nil {
		b.close()
		return nil, nil, err
	}
	return n, b, nil
}

// revocations returns the node's list of revoked tokens: shared through
// Redis when the cluster has one, else through the store (a single node,
// or centers on one MySQL), else this node's own; read at start, so that a
// revocation outlives a restart, and again every RevocationSyncInterval.
func (b *builder) revocations(reg route.Table, store *node.TimedStore) (*clusterca.RevocationList, error) {
	var backend clusterca.RevocationBackend
	if rb, ok := reg.(clusterca.RevocationBackend); ok && b.cfg.RedisAddr != "" {
		backend = rb
	} else if store != nil {
		backend = clusterca.StoreRevocations(store)
	} else {
		b.log.Warn("no --redis-addr and no store: tokens revoked elsewhere are not refused here")
	}
	revs := clusterca.NewRevocationList(backend, b.log.With("part", "revocations"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := revs.Sync(ctx); err != nil {
		// Kept running: the sync retries, and a node that cannot reach
		// Redis or its store has bigger troubles than this.
		b.log.Error("revoked tokens unreadable at start; retrying", "err", err)
	}
	run, stop := context.WithCancel(context.Background())
	b.onClose(stop)
	go revs.Run(run, clusterca.RevocationSyncInterval)
	return revs, nil
}

// clusterConfig joins the center to the cluster's other centers when the
// route table is shared (Redis) and links are possible; nil otherwise.
func (b *builder) clusterConfig(reg route.Table) (*center.ClusterConfig, error) {
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
		retry = -1 // -1 tells the center: store at once
	}
	if b.cfg.RouteTTL < 3*time.Second {
		return nil, fmt.Errorf("--route-ttl %v: at least 3s", b.cfg.RouteTTL)
	}
	return &center.ClusterConfig{Routes: reg, Link: lc, LookupRetry: retry, RouteTTL: b.cfg.RouteTTL}, nil
}

// advertiseCenter registers this center's link address in the server
// registry, where the other centers find it, every few seconds; the entry
// lapses if the process dies and is removed at a clean stop.
func (b *builder) advertiseCenter(ctx context.Context, bound net.Addr, reg route.Table) {
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
	srv := center.CenterServer(uint32(b.cfg.ServerID), addr)
	register := func() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := reg.RegisterServer(rctx, srv, ttl); err != nil && ctx.Err() == nil {
			b.log.Warn("server registry (center)", "err", err)
		}
	}
	register()
	done := make(chan struct{})
	ctx, stop := context.WithCancel(ctx)
	b.onClose(func() { stop(); <-done }) // the entry goes before the registry closes
	go func() {
		defer close(done)
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
func (b *builder) joinIdentity(ctx context.Context, role string) (*clusterca.Identity, error) {
	cfg := b.cfg
	if cfg.JoinURL == "" {
		return nil, fmt.Errorf("the %s role needs --join-url (and a join token on first start)", role)
	}
	if _, err := clusterca.ReadNodeCert(cfg.DataDir); err != nil {
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
		if err := clusterca.Join(jctx, cfg.JoinURL, token, cfg.DataDir, uint32(cfg.ServerID), role); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
		b.log.Info("joined the cluster", "role", role, "node", cfg.ServerID)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := clusterca.FetchIdentity(fctx, cfg.JoinURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	renew, stop := context.WithCancel(context.Background())
	b.onClose(stop)
	go clusterca.RenewLoop(renew, cfg.JoinURL, cfg.DataDir, b.log)
	go clusterca.DenyLoop(renew, cfg.JoinURL, cfg.DataDir, b.log)
	return id, nil
}

// linkConfig returns the link settings: mutual TLS with this node's
// cluster certificate, or plain text when --link-plaintext is set. ok is
// false when neither is possible (no certificate, no plain text).
func (b *builder) linkConfig(server bool) (link.Config, bool, error) {
	lc := link.Config{Logger: b.log.With("part", "link")}
	if b.cfg.LinkPlaintext {
		lc.Plaintext, lc.Secret = true, []byte(b.cfg.LinkSecret)
		if len(lc.Secret) < 16 {
			return lc, false, errors.New("--link-plaintext needs --link-secret (at least 16 bytes, the same on every node)")
		}
		return lc, true, nil
	}
	if _, err := clusterca.ReadNodeCert(b.cfg.DataDir); err != nil {
		return lc, false, nil
	}
	srv, cli, err := clusterca.LoadNodeTLS(b.cfg.DataDir)
	if err != nil {
		return lc, false, err
	}
	lc.TLS = cli
	if server {
		lc.TLS = srv
	}
	return lc, true, nil
}

func (b *builder) remoteCenter() (*center.RemoteCenter, error) {
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
		failback = -1 // -1 tells the link: never
	}
	return center.NewRemoteCenter(center.RemoteCenterConfig{Addr: addrs[0], Fallbacks: addrs[1:], Link: lc,
		FailbackInterval: failback})
}

// serveJoins runs the join listener (TLS, certificates from the CA) when
// this first node has run `myimd cluster init`.
func (b *builder) serveJoins(ctx context.Context, id *clusterca.Identity) error {
	if b.cfg.JoinAddr == "" {
		return nil
	}
	if _, err := clusterca.ReadNodeCert(b.cfg.DataDir); err != nil {
		return nil // no CA yet: nothing to join
	}
	svc, err := clusterca.JoinHandler(b.cfg.DataDir, b.log.With("part", "join"))
	if err != nil {
		return err
	}
	tcfg, err := svc.TLSConfig()
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(clusterca.JoinPath, svc)
	mux.Handle(clusterca.IdentityPath, clusterca.IdentityHandler(id, svc, b.log.With("part", "join")))
	mux.HandleFunc("GET "+clusterca.DenyPath, svc.ServeDenied)
	ln, err := net.Listen("tcp", b.cfg.JoinAddr)
	if err != nil {
		return fmt.Errorf("join listener: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(b.log.Handler(), slog.LevelWarn)}
	go func() { _ = hs.Serve(tls.NewListener(ln, tcfg)) }()
	b.onClose(func() { _ = hs.Close() })
	go clusterca.RenewLoop(ctx, "", b.cfg.DataDir, b.log)
	b.say.listening("join", ln.Addr().String(), "cluster joins")
	return nil
}

// advertiser returns the registration of this endpoint in the server
// registry, with its current load; it is made every few seconds and lapses
// if the process dies.
func (b *builder) advertiser(bound, wsBound net.Addr, reg route.Table, id *clusterca.Identity, ep *endpoint.Handler) func(context.Context) {
	const ttl = 15 * time.Second
	cert, _ := id.EndpointCert.MarshalBinary()
	addr := b.cfg.AdvertiseAddr
	if addr == "" && bound != nil {
		addr = advertised(bound, b.cfg.EndpointAddr)
	}
	// Browsers reach the endpoint on its WebSocket listener: the same host
	// as addr (or the configured one), the bound port.
	var wsAddr string
	if wsBound != nil {
		wsAddr = advertised(wsBound, b.cfg.WSAddr)
		if b.cfg.AdvertiseAddr != "" {
			host, _, _ := net.SplitHostPort(b.cfg.AdvertiseAddr)
			_, port, _ := net.SplitHostPort(wsBound.String())
			wsAddr = net.JoinHostPort(host, port)
		}
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
		err := reg.RegisterServer(rctx, route.Server{ID: uint32(b.cfg.ServerID), Role: im.RoleEndpoint, Addr: addr, WSAddr: wsAddr,
			Priority: prio, Load: ep.Sessions(), StaticKey: id.Static.PublicKey().Bytes(), Cert: cert}, ttl)
		if err != nil && ctx.Err() == nil {
			b.log.Warn("server registry", "err", err)
		}
	}
}

// advertised is a bound listener's port with the host it was configured
// with: an empty host tells clients to use the host they logged in at.
func advertised(bound net.Addr, configured string) string {
	_, port, _ := net.SplitHostPort(bound.String())
	host, _, _ := net.SplitHostPort(configured)
	return net.JoinHostPort(host, port)
}

// httpTLS is the public HTTP listener's TLS configuration, nil for plain
// HTTP.
func (b *builder) httpTLS() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch {
	case b.cfg.HTTPTLSCert != "":
		if cert, err = tls.LoadX509KeyPair(b.cfg.HTTPTLSCert, b.cfg.HTTPTLSKey); err != nil {
			return nil, fmt.Errorf("--http-tls-cert: %w", err)
		}
	case b.cfg.HTTPTLSAuto:
		var hosts []string
		for _, a := range []string{b.cfg.HTTPAddr, b.cfg.AdvertiseAddr} {
			if h, _, err := net.SplitHostPort(a); err == nil {
				hosts = append(hosts, h)
			}
		}
		if cert, err = clusterca.HTTPCertificate(b.cfg.DataDir, hosts); err != nil {
			return nil, fmt.Errorf("--http-tls-auto: %w", err)
		}
	default:
		return nil, nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// drainPoll is how often a draining node looks whether it is empty.
const drainPoll = 50 * time.Millisecond

// drain empties the node for a stop, until ctx ends: readiness turns 503
// at once; an endpoint refuses new sessions, moves its registration to the
// end of the server list and tells its clients to move, spread over half
// the grace (all at once, and no waiting for them, when there is no other
// endpoint to go to); then it waits until the sessions are gone and the
// center's QoS 1 messages in flight are receipted or stored.
func (b *builder) drain(ctx context.Context, n *node.Node) {
	n.SetDraining(true)
	alone := true
	if b.endpoint != nil {
		if b.servers != nil {
			for _, s := range b.servers(ctx) {
				if s.ID != uint32(b.cfg.ServerID) {
					alone = false
				}
			}
		}
		spread := b.cfg.ShutdownGrace / 2
		if alone {
			spread = 0
		}
		b.endpoint.DrainOver(spread)
		if b.advertise != nil {
			b.advertise()
		}
	}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		left := 0
		if b.endpoint != nil && !alone {
			left += b.endpoint.Sessions()
		}
		if b.ctr != nil {
			left += b.ctr.InFlight()
		}
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openStore opens the MySQL store dsn names, or, without one, the embedded
// store in dataDir.
func openStore(dsn, dataDir string) (storage.Store, error) {
	if dsn != "" {
		return mysql.Open(mysql.Config{DSN: dsn})
	}
	return bolt.Open(bolt.Config{Dir: dataDir})
}
