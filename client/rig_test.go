package client_test

import (
	"context"
	"crypto/ecdh"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/login"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/nodetest"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// testArgon2 keeps password hashing cheap on a shared machine; the login
// path is the same.
var testArgon2 = session.Argon2Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// rig is a MyIM node in the test process: a login listener and two
// endpoints on one center over the embedded store. Clients reach each
// endpoint through a proxy the test can cut; the login's server list
// names the proxies, endpoint 0 first.
type rig struct {
	t       testing.TB
	store   storage.Store
	id      *clusterca.Identity
	ctr     *center.LocalCenter
	login   *engine.Server
	eps     [2]*endpoint.Handler
	proxies [2]*testenv.Proxy
	// dials counts the connections clients opened to endpoint 0.
	dials atomic.Int64
}

func startRig(t testing.TB) *rig {
	t.Helper()
	n := nodetest.New(t, nodetest.Options{NoSync: true, NoEndpoint: true,
		Center: center.Config{Files: center.FilesConfig{Dir: t.TempDir()}}})
	st, id := n.Store, n.Identity
	r := &rig{t: t, store: st, id: id, ctr: n.Center}
	scfg := &session.Config{Argon2: testArgon2}
	for i := range r.eps {
		r.eps[i] = endpoint.New(endpoint.Config{ID: uint32(i + 1), Identity: id, Session: scfg,
			Center: r.ctr})
		srv := startServer(t, r.eps[i])
		r.proxies[i] = testenv.StartProxy(t, srv.Addr().String())
	}
	cert, err := id.EndpointCert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	servers := func(context.Context) []login.ServerInfo {
		out := make([]login.ServerInfo, len(r.proxies))
		for i, p := range r.proxies {
			out[i] = login.ServerInfo{ID: uint32(i + 1), Addr: p.Addr(), Priority: i,
				Key: id.Static.PublicKey().Bytes(), Cert: cert}
		}
		return out
	}
	hasher, err := session.NewHasher(scfg)
	if err != nil {
		t.Fatal(err)
	}
	l := login.New(login.Config{Store: st, Identity: id, Hasher: hasher, Session: scfg,
		Servers: servers, Notify: r.ctr.Notify})
	// Registered before the server's Stop, so that it runs after it
	// (cleanups run last first): Wait must not race a login still coming in.
	t.Cleanup(l.Wait)
	r.login = startServer(t, l)
	return r
}

func startServer(t testing.TB, h engine.Handler) *engine.Server {
	t.Helper()
	s := engine.New(h, engine.WithAddr("tcp://127.0.0.1:0"), engine.WithLoops(1))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

func (r *rig) loginAddr() string { return r.login.Addr().String() }

// cut drops every client connection to the endpoints and refuses new ones
// until restore.
func (r *rig) cut() {
	for _, p := range r.proxies {
		p.Cut()
	}
}

func (r *rig) restore() {
	for _, p := range r.proxies {
		p.Restore()
	}
}

// addUser stores a user with password "pw-"+name and returns its id.
func (r *rig) addUser(name string) uint64 {
	r.t.Helper()
	hash, err := session.HashPassword([]byte("pw-"+name), testArgon2)
	if err != nil {
		r.t.Fatal(err)
	}
	id, err := r.store.CreateUser(context.Background(), storage.User{Name: name, PassHash: hash})
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

// cfg is a device's configuration for the rig: pinned to its root, every
// endpoint dial counted.
func (r *rig) cfg() client.Config {
	r.t.Helper()
	dev, err := session.NewStaticKey()
	if err != nil {
		r.t.Fatal(err)
	}
	return client.Config{Roots: r.id.Roots(), Device: dev, LoginRetry: -1, DialTimeout: 10 * time.Second,
		DialContext: r.dialer()}
}

func (r *rig) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	ep0 := r.proxies[0].Addr()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == ep0 {
			r.dials.Add(1)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// connect logs name in with cfg and connects to the first endpoint.
func (r *rig) connect(cfg client.Config, name string) *client.Conn {
	r.t.Helper()
	ctx := context.Background()
	res, err := client.Login(ctx, cfg, r.loginAddr(), name, []byte("pw-"+name))
	if err != nil {
		r.t.Fatalf("login %s: %v", name, err)
	}
	c, err := client.Connect(ctx, cfg, res, res.Servers[0])
	if err != nil {
		r.t.Fatalf("connect %s: %v", name, err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// runSession runs a Session for name until the test ends.
func (r *rig) runSession(cfg client.Config, name string) *client.Session {
	r.t.Helper()
	s := client.NewSession(cfg, r.loginAddr(), name, []byte("pw-"+name))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

// waitConn waits for the session's first connection, or for one newer than
// old.
func waitConn(t testing.TB, s *client.Session, old *client.Conn) *client.Conn {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		c, changed := s.Conn()
		if c != nil && c != old {
			return c
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatal("no new connection")
		}
	}
}

// recv returns the next frame of cmd on c, failing after 20 s.
func recv(t testing.TB, c *client.Conn, cmd frame.Cmd) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == cmd })
	if err != nil {
		t.Fatalf("waiting for %v: %v", cmd, err)
	}
	return f
}

func newDevice(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := session.NewStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
