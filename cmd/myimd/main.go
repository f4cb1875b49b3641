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

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
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
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	n, parts, err := buildNode(cfg, log, logs)
	if err != nil {
		fmt.Fprintf(stderr, "myimd: %v\n", err)
		return 1
	}
	defer parts.close()
	if err := n.Start(); err != nil {
		fmt.Fprintf(stderr, "myimd: %v\n", err)
		return 1
	}
	parts.started()
	abs, _ := filepath.Abs(cfg.DataDir)
	addrs := n.Addrs()
	fmt.Fprintf(stdout, "myimd %s node %d started (role %s)\n", version, cfg.ServerID, cfg.Role)
	for _, name := range []string{"endpoint", "login", "center", "http"} {
		if a := addrs[name]; a != nil {
			fmt.Fprintf(stdout, "  %-9s listening on %s\n", name, a)
		}
	}
	fmt.Fprintf(stdout, "  data      %s (%s)\n", abs, storeKind(cfg))
	log.Info("started", "role", cfg.Role, "server_id", cfg.ServerID, "open_file_limit", files, "gc_percent", gc)

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

// runCluster handles `myimd cluster init` (on the first node: create the
// cluster CA and print a join token) and `myimd cluster token` (print a new
// join token). Both take the node's flags, --data-dir and --server-id.
func runCluster(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "init" && args[0] != "token") {
		fmt.Fprintln(stderr, "usage: myimd cluster init|token [--data-dir DIR] [--server-id N]")
		return 2
	}
	cfg, err := loadConfig(args[1:], getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "myimd cluster: %v\n", err)
		return 2
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		fmt.Fprintf(stderr, "myimd cluster: data dir %s: %v\n", cfg.DataDir, err)
		return 2
	}
	var token string
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
