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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/node"
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
	collectOnSignal()
	reclaimWhenQuiet(cfg.IdleReclaim)
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
	for _, name := range []string{"endpoint", "login", "center", "http", "admin", "ws"} {
		if a := addrs[name]; a != nil {
			note := ""
			if name == "http" && (cfg.HTTPTLSCert != "" || cfg.HTTPTLSAuto) {
				note = "TLS"
			}
			if name == "ws" {
				note = "WebSocket /login /endpoint"
				if cfg.HTTPTLSCert != "" || cfg.HTTPTLSAuto {
					note = "wss:// /login /endpoint"
				}
			}
			say.listening(name, a.String(), note)
		}
	}
	say.data(abs, storeKind(cfg))
	log.Info("started", "version", version, "role", cfg.Role, "server_id", cfg.ServerID, "open_file_limit", files, "gc_percent", gc)

	select {
	case s := <-sig:
		return parts.shutdown(n, s, sig)
	case err := <-n.Fatal():
		// A listener that stopped does not come back by itself: exit so
		// that the supervisor restarts the process (/readyz says 503 until
		// then).
		log.Error("exiting: a listener stopped serving; restart the process", "err", err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
		return 1
	}
}

// version is this build's version (internal/buildinfo).
var version = buildinfo.Get().Version

// shutdown drains, then stops: /readyz turns 503 at once, new sessions are
// refused, clients are told to move (spread over half the grace, so that
// they do not all log in elsewhere in the same instant), and the node
// waits until its sessions have left and the QoS 1 messages in flight are
// receipted or stored. The grace running out or a second signal stops it
// at once. It returns the exit status.
func (b *builder) shutdown(n *node.Node, first os.Signal, sig <-chan os.Signal) int {
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
	case cfg.Role == im.RoleEndpoint:
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
func newLogger(cfg Config, w io.Writer) (*slog.Logger, *node.LogRing) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	ring := node.NewLogRing(h, recentErrors)
	return slog.New(ring), ring
}

// clusterUsage is printed for a bad `myimd cluster` command line.
const clusterUsage = `usage:
  myimd cluster init   [--data-dir DIR] [--server-id N]
  myimd cluster token  --role center|endpoint|login [--node N] [--uses N] [--ttl D] [--replace] [--data-dir DIR]
  myimd cluster token  --revoke ID|TOKEN [--data-dir DIR]
  myimd cluster remove NODE [--data-dir DIR]`

// clusterFlags are the options of the cluster commands, taken out of the
// command line before the node's own flags (--data-dir, --server-id, the
// config file, the environment) are read from the rest.
type clusterFlags struct {
	role    string
	node    uint
	uses    int
	ttl     time.Duration
	replace bool
	revoke  string
}

func splitClusterFlags(args []string) (clusterFlags, []string, error) {
	var cf clusterFlags
	fs := flag.NewFlagSet("myimd cluster", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cf.role, "role", "", "")
	fs.UintVar(&cf.node, "node", 0, "")
	fs.IntVar(&cf.uses, "uses", 1, "")
	fs.DurationVar(&cf.ttl, "ttl", clusterca.JoinTokenTTL, "")
	fs.BoolVar(&cf.replace, "replace", false, "")
	fs.StringVar(&cf.revoke, "revoke", "", "")
	var mine, rest []string
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || fs.Lookup(name) == nil {
			rest = append(rest, args[i])
			continue
		}
		mine = append(mine, args[i])
		if !hasValue && name != "replace" && i+1 < len(args) {
			i++
			mine = append(mine, args[i])
		}
	}
	if err := fs.Parse(mine); err != nil {
		return cf, nil, err
	}
	return cf, rest, nil
}

// runCluster handles the cluster commands, run on the cluster's first node
// (the CA holder): `init` creates the cluster CA and the node's own link
// certificate; `token` prints a join token for one role (by default for
// one node within an hour) or revokes one; `remove` takes a node out of the
// cluster.
func runCluster(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "init" && args[0] != "token" && args[0] != "remove") {
		fmt.Fprintln(stderr, clusterUsage)
		return 2
	}
	cmd := args[0]
	for _, a := range args[1:] {
		if a == "-h" || a == "-help" || a == "--help" {
			clusterHelp(stdout, cmd)
			return 0
		}
	}
	cf, rest, err := splitClusterFlags(args[1:])
	var target uint64
	if err == nil && cmd == "remove" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			err = errors.New("remove: which node?")
		} else if target, err = strconv.ParseUint(rest[0], 10, 32); err == nil && target == 0 {
			err = errors.New("remove: node 0")
		}
		if len(rest) > 0 {
			rest = rest[1:]
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "myimd cluster: %v\n%s\n", err, clusterUsage)
		return 2
	}
	cfg, err := loadConfig(rest, getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "myimd cluster: %v\n", err)
		return 2
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		fmt.Fprintf(stderr, "myimd cluster: data dir %s: %v\n", cfg.DataDir, err)
		return 2
	}
	switch {
	case cmd == "init":
		err = clusterca.InitCluster(cfg.DataDir)
		if err == nil {
			err = clusterca.IssueNodeCert(cfg.DataDir, uint32(cfg.ServerID), im.RoleCenter)
		}
		if err == nil { // the session root, so that joined nodes get keys
			_, err = clusterca.LoadIdentity(cfg.DataDir, uint32(cfg.ServerID), time.Now())
		}
		if err == nil {
			fmt.Fprintln(stderr, "cluster CA ready; make a join token per node with 'myimd cluster token --role ROLE --node N'")
		}
	case cmd == "remove":
		if err = clusterca.RemoveNode(cfg.DataDir, uint32(target)); err == nil {
			fmt.Fprintf(stderr, "node %d removed: every node refuses it within %v\n", target, 3*clusterca.DenyPollInterval)
		}
	case cf.revoke != "":
		if err = clusterca.RevokeJoinToken(cfg.DataDir, cf.revoke); err == nil {
			fmt.Fprintln(stderr, "join token revoked")
		}
	default:
		if cf.role == "" {
			fmt.Fprintf(stderr, "myimd cluster token: --role is required\n%s\n", clusterUsage)
			return 2
		}
		var token, id string
		token, id, err = clusterca.NewJoinToken(cfg.DataDir, clusterca.JoinTokenSpec{Role: cf.role, NodeID: uint32(cf.node),
			Uses: cf.uses, TTL: cf.ttl, Replace: cf.replace})
		if err == nil {
			fmt.Fprintln(stdout, token)
			fmt.Fprintf(stderr, "join token %s: role %s, node %s, %d use(s), expires %s\n", id, cf.role,
				nodeText(cf.node), max(cf.uses, 1), time.Now().Add(cf.ttl).UTC().Format(time.RFC3339))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "myimd cluster %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// clusterHelp prints the usage of one cluster command with its own flags
// only (not the server's).
func clusterHelp(w io.Writer, cmd string) {
	c := defaults()
	var own []option
	for _, o := range c.options() {
		if o.name == "data-dir" || (o.name == "server-id" && cmd == "init") {
			own = append(own, o)
		}
	}
	switch cmd {
	case "init":
		fmt.Fprintf(w, "Usage: myimd cluster init [--data-dir DIR] [--server-id N]\n\n"+
			"On the cluster's first node: creates the cluster CA and this node's link certificate.\n\n")
	case "token":
		fmt.Fprintf(w, "Usage: myimd cluster token --role center|endpoint|login [--node N] [--uses N] [--ttl D] [--replace] [--data-dir DIR]\n"+
			"       myimd cluster token --revoke ID|TOKEN [--data-dir DIR]\n\n"+
			"Prints a join token for one role, or revokes one.\n\n"+
			"  --role      the role the token joins as: center, endpoint or login\n"+
			"  --node      the node id the token is for (0: any)\n"+
			"  --uses      how many nodes may join with it (default 1)\n"+
			"  --ttl       how long it is valid (default %v)\n"+
			"  --replace   let it replace a node that holds the id\n"+
			"  --revoke    revoke a token, by its id or itself\n", clusterca.JoinTokenTTL)
	case "remove":
		fmt.Fprintf(w, "Usage: myimd cluster remove NODE [--data-dir DIR]\n\nTakes a node out of the cluster: every node refuses it.\n\n")
	}
	printFlags(w, own)
}

func nodeText(n uint) string {
	if n == 0 {
		return "any"
	}
	return strconv.FormatUint(uint64(n), 10)
}

// filesConfig is the file server's and file transfer's part of cfg; file
// contents live under the data directory.
func filesConfig(cfg Config) center.FilesConfig {
	return center.FilesConfig{Dir: filepath.Join(cfg.DataDir, "files"), Quota: int64(cfg.FileQuota),
		MaxFileSize: int64(cfg.MaxFileSize), UploadTimeout: cfg.UploadTimeout, XferIdle: cfg.XferIdle}
}
