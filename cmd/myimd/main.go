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
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/internal/buildinfo"
)

// setGCPercent applies --gc-percent unless GOGC is set, and returns the
// collector target in force. Most of an idle session's memory is the
// collector's headroom over its live objects: at 50 an idle session costs
// about 0.7 times what it does at Go's default of 100 (docs/scaling.md).
func setGCPercent(cfg Config, getenv func(string) string) int {
	if getenv("GOGC") != "" {
		prev := debug.SetGCPercent(100)
		debug.SetGCPercent(prev)
		return prev
	}
	debug.SetGCPercent(cfg.GCPercent)
	return cfg.GCPercent
}

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

// Exit statuses: 0 after a clean stop, 1 when a started node fails, 2 for
// a bad flag, address, data directory or a listener address in use.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, buildinfo.Get().String("myimd"))
		return 0
	}
	if len(args) > 0 && args[0] == "cluster" {
		return runCluster(args[1:], getenv, stdout, stderr)
	}
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
	files := engine.RaiseFileLimit()
	gc := setGCPercent(cfg, getenv)
	// Signals are caught before anything listens, so that a stop request
	// that comes right after start is a clean stop too.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	say := newBanner(cfg, stdout)
	n, parts, err := buildNode(cfg, log, logs, say)
	if err != nil {
		fmt.Fprintf(stderr, "myimd: %v\n", oneLine(err.Error()))
		if errors.Is(err, syscall.EADDRINUSE) {
			return 2
		}
		return 1
	}
	defer parts.close()
	if err := n.Start(); err != nil {
		fmt.Fprintf(stderr, "myimd: %v\n", oneLine(err.Error()))
		if errors.Is(err, syscall.EADDRINUSE) {
			return 2
		}
		return 1
	}
	parts.started()
	abs, _ := filepath.Abs(cfg.DataDir)
	addrs := n.Addrs()
	say.started(cfg)
	for _, name := range []string{"endpoint", "login", "center", "http", "admin"} {
		if a := addrs[name]; a != nil {
			note := ""
			if name == "http" && (cfg.HTTPTLSCert != "" || cfg.HTTPTLSAuto) {
				note = "TLS"
			}
			say.listening(name, a.String(), note)
		}
	}
	say.data(abs, storeKind(cfg))
	log.Info("started", "version", version, "role", cfg.Role, "server_id", cfg.ServerID, "open_file_limit", files, "gc_percent", gc)

	s := <-sig
	return parts.shutdown(n, s, sig)
}

// version is this build's version (internal/buildinfo).
var version = buildinfo.Get().Version

// shutdown drains, then stops: /readyz turns 503 at once, new sessions are
// refused, clients are told to move (spread over half the grace, so that
// they do not all log in elsewhere in the same instant), and the node
// waits until its sessions have left and the QoS 1 messages in flight are
// receipted or stored. The grace running out or a second signal stops it
// at once. It returns the exit status.
func (b *node) shutdown(n *engine.Node, first os.Signal, sig <-chan os.Signal) int {
	log, grace := b.log, b.cfg.ShutdownGrace
	log.Info("draining", "signal", first.String(), "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	forced := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			log.Warn("second signal: stopping now", "signal", s.String())
			close(forced)
			cancel()
		case <-ctx.Done():
		}
	}()
	b.drain(ctx, n)
	stopWithin := 15 * time.Second
	select {
	case <-forced:
		stopWithin = time.Second
	default:
		if ctx.Err() != nil {
			log.Warn("shutdown grace over: stopping with sessions or messages left", "grace", grace)
			stopWithin = 5 * time.Second
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), stopWithin)
	defer scancel()
	err := n.Stop(sctx)
	b.close()
	select {
	case <-forced:
		log.Info("stopped at once")
		return 1
	default:
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("stop", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// storeKind names the store the node opens; an endpoint has none.
func storeKind(cfg Config) string {
	switch {
	case cfg.Role == engine.RoleEndpoint:
		return "keys only: an endpoint keeps no store"
	case cfg.MySQLDSN != "":
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

// runCluster handles `myimd cluster init` (on the first node: create the
// cluster CA and print a join token) and `myimd cluster token` (print a new
// join token). Both take only --data-dir and --server-id (flags or their
// environment variables).
func runCluster(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	usage := "usage: myimd cluster init|token [--data-dir DIR] [--server-id N]"
	if len(args) == 0 || (args[0] != "init" && args[0] != "token") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
			fmt.Fprintln(stdout, usage)
			return 0
		}
		fmt.Fprintln(stderr, usage)
		return 2
	}
	c := defaults()
	fs := flag.NewFlagSet("myimd cluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var own []option
	for _, o := range c.options() {
		if o.name == "data-dir" || o.name == "server-id" {
			own = append(own, o)
			if v := getenv(envName(o.name)); v != "" {
				if err := o.value.Set(v); err != nil {
					fmt.Fprintf(stderr, "myimd cluster: %s=%q: %v\n", envName(o.name), v, err)
					return 2
				}
			}
			fs.Var(o.value, o.name, o.usage)
		}
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "%s\n\n", usage)
			if args[0] == "init" {
				fmt.Fprintf(stdout, "Creates the cluster CA in the data dir and prints a join token.\n\n")
			} else {
				fmt.Fprintf(stdout, "Prints a new join token (valid 24 hours).\n\n")
			}
			printFlags(stdout, own)
			return 0
		}
		fmt.Fprintf(stderr, "myimd cluster %s: %v\n", args[0], err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "myimd cluster %s: unexpected argument %q\n", args[0], fs.Arg(0))
		return 2
	}
	cfg := c
	if cfg.ServerID == 0 || cfg.ServerID > 65535 {
		fmt.Fprintf(stderr, "myimd cluster: --server-id must be 1..65535, got %d\n", cfg.ServerID)
		return 2
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		fmt.Fprintf(stderr, "myimd cluster: data dir %s: %v\n", cfg.DataDir, err)
		return 2
	}
	var token string
	var err error
	if args[0] == "init" {
		if token, err = engine.InitCluster(cfg.DataDir); err == nil {
			err = engine.IssueNodeCert(cfg.DataDir, uint32(cfg.ServerID), engine.RoleCenter)
		}
		if err == nil { // the session root, so that joined nodes get keys
			_, err = engine.LoadIdentity(cfg.DataDir, uint32(cfg.ServerID), time.Now())
		}
	} else {
		token, err = engine.NewJoinToken(cfg.DataDir, 24*time.Hour)
	}
	if err != nil {
		fmt.Fprintf(stderr, "myimd cluster %s: %v\n", args[0], err)
		return 1
	}
	fmt.Fprintln(stdout, token)
	return 0
}

// filesConfig is the file server's and file transfer's part of cfg; file
// contents live under the data directory.
func filesConfig(cfg Config) engine.FilesConfig {
	return engine.FilesConfig{Dir: filepath.Join(cfg.DataDir, "files"), Quota: int64(cfg.FileQuota),
		MaxFileSize: int64(cfg.MaxFileSize), UploadTimeout: cfg.UploadTimeout, XferIdle: cfg.XferIdle}
}
