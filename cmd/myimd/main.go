// Command myimd runs a MyIM node. With no flags it runs all-in-one (login +
// endpoint + center) on an embedded store in ./myim-data; see --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "myimd: %v (see myimd --help)\n", err)
		return 2
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		fmt.Fprintf(stderr, "myimd: data dir %s: %v\n", cfg.DataDir, err)
		return 2
	}
	log, logs := newLogger(cfg, stderr)
	// Signals are caught before anything listens, so that a stop request
	// that comes right after start is a clean stop too.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	n, cleanup, err := buildNode(cfg, log, logs)
	if err != nil {
		fmt.Fprintf(stderr, "myimd: %v\n", err)
		return 1
	}
	defer cleanup()
	if err := n.Start(); err != nil {
		fmt.Fprintf(stderr, "myimd: %v\n", err)
		return 1
	}
	abs, _ := filepath.Abs(cfg.DataDir)
	addrs := n.Addrs()
	fmt.Fprintf(stdout, "myimd %s node %d started (role %s)\n", version, cfg.ServerID, cfg.Role)
	for _, name := range []string{"endpoint", "login", "center", "http"} {
		if a := addrs[name]; a != nil {
			fmt.Fprintf(stdout, "  %-9s listening on %s\n", name, a)
		}
	}
	fmt.Fprintf(stdout, "  data      %s (%s)\n", abs, storeKind(cfg))
	log.Info("started", "role", cfg.Role, "server_id", cfg.ServerID)

	s := <-sig
	log.Info("stopping", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		log.Error("stop", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

const version = "0.1.0"

func storeKind(cfg Config) string {
	if cfg.MySQLDSN != "" {
		return "MySQL store"
	}
	return "embedded store"
}

// checkDataDir creates the directory and proves it writable.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return errors.New("not writable")
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// recentErrors is how many warnings and errors the status page lists.
const recentErrors = 20

// newLogger returns the process's logger, which also keeps the recent
// warnings and errors for the status page.
func newLogger(cfg Config, w io.Writer) (*slog.Logger, *engine.LogRing) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	ring := engine.NewLogRing(h, recentErrors)
	return slog.New(ring), ring
}

// buildNode wires the roles the config asks for: the store, the keys, the
// center, the endpoint and login handlers, the HTTP API, and what operators
// see: metrics, status page and admin API.
func buildNode(cfg Config, log *slog.Logger, logs *engine.LogRing) (*engine.Node, func(), error) {
	raw, err := storage.Open(storage.Config{MySQLDSN: cfg.MySQLDSN, DataDir: cfg.DataDir})
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	store := engine.NewTimedStore(raw)
	id, err := engine.LoadIdentity(cfg.DataDir, uint32(cfg.ServerID), time.Now())
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("keys: %w", err)
	}
	scfg := &session.Config{}
	hasher, err := session.NewHasher(scfg)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	var n *engine.Node
	servers := func(context.Context) []engine.ServerInfo {
		addr := cfg.EndpointAddr
		if n != nil {
			if a := n.Addrs()["endpoint"]; a != nil {
				_, port, _ := net.SplitHostPort(a.String())
				host, _, _ := net.SplitHostPort(cfg.EndpointAddr)
				addr = net.JoinHostPort(host, port)
			}
		}
		cert, _ := id.EndpointCert.MarshalBinary()
		return []engine.ServerInfo{{ID: uint32(cfg.ServerID), Addr: addr, Key: id.Static.PublicKey().Bytes(), Cert: cert}}
	}
	center := engine.NewLocalCenter(engine.CenterConfig{ID: uint32(cfg.ServerID), Store: store, Servers: servers,
		Logger: log.With("role", "center")})
	endpoint := engine.NewEndpoint(engine.EndpointConfig{ID: uint32(cfg.ServerID), Identity: id, Session: scfg,
		Center: center, HandshakeTimeout: cfg.HandshakeTimeout, MaxSession: cfg.MaxSession, Logger: log.With("role", "endpoint")})
	login := engine.NewLogin(engine.LoginConfig{Store: store, Identity: id, Hasher: hasher, Session: scfg,
		Servers: servers, Notify: center.Notify, Logger: log.With("role", "login")})
	n, err = engine.NewNode(engine.NodeConfig{
		Role:         cfg.Role,
		ServerID:     uint32(cfg.ServerID),
		EndpointAddr: cfg.EndpointAddr,
		LoginAddr:    cfg.LoginAddr,
		HTTPAddr:     cfg.HTTPAddr,
		CenterAddr:   cfg.CenterAddr,
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
		LoginHandler:     login,
		EndpointHandler:  endpoint,
		Ready: func(ctx context.Context) error {
			// A draining endpoint asks load balancers to send no one new.
			if endpoint.Draining() {
				return errors.New("draining")
			}
			return store.Ping(ctx)
		},
	})
	if err != nil {
		center.Close()
		store.Close()
		return nil, nil, err
	}
	(&engine.API{Store: store, Hasher: hasher, Identity: id, Center: center}).Register(n)
	mon := engine.NewMonitor(engine.MonitorConfig{Node: n, Center: center, Endpoint: endpoint, Login: login,
		Store: store, Logs: logs, ServerID: uint32(cfg.ServerID), Version: version})
	mon.Register(n)
	(&engine.Admin{Secret: cfg.AdminSecret, Store: store, Hasher: hasher, Identity: id, Endpoint: endpoint,
		Center: center, Monitor: mon, Servers: servers, PProf: cfg.PProf, Logger: log.With("role", "admin")}).Register(n)
	fmt.Fprintf(os.Stdout, "  root key  %s (clients pin it; also in %s)\n", id.Root.Verify().String(),
		filepath.Join(cfg.DataDir, "root.pub"))
	return n, func() {
		mon.Close()
		login.Wait()
		center.Close()
		store.Close()
	}, nil
}
