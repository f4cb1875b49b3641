// Command myim-bench is MyIM's load generator. It opens many client
// sessions to a running server and drives one scenario at a time: idle,
// ping, p2p, group, login-storm or reconnect-storm. It reports throughput,
// latency percentiles from an HDR histogram, errors, and, when the server
// runs on the same machine (--server-pid), the server's resident memory and
// CPU-seconds per million messages.
//
// With --proto fwd or --proto mqtt it drives the peers of benchmarks/ (bare
// length-prefixed forwarders and an MQTT broker) with the same load shape,
// so that one loader measures every system.
//
// One process holds at most its open-file limit of sessions. With --procs N
// the idle scenario runs as N child processes of this binary, each with its
// own share of the users and source addresses, and one combined report;
// with --spread the sessions go round the whole server list instead of to
// one endpoint, so that several endpoint processes share them.
//
// Every loop is bounded in count and in time and stops by itself. It dials
// only the addresses it is given (loopback by default).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/internal/buildinfo"
)

// Config is everything a run needs; flags fill it. Zero values take the
// defaults of fillDefaults.
type Config struct {
	Scenario string // idle, ping, p2p, group, login-storm, reconnect-storm
	Proto    string // myim (default), fwd, mqtt
	// Transport carries MyIM over tcp (default) or ws: WebSocket to
	// WSAddr's /login and /endpoint, in place of the server list's
	// addresses.
	Transport string
	WSAddr    string

	// Server addresses. Endpoint defaults to what the token answer lists
	// (MyIM) and is required for the peers.
	Endpoint string
	Login    string // login listener, for login-storm and login fallback
	HTTP     string // host:port of the HTTP API
	AdminAPI string // host:port of the admin listener (bulk users, tokens, pprof)
	Admin    string // admin secret for the provisioning API
	Root     string // root.pub file or the key itself (login needs it)

	Conns    int      // sessions to open
	Sources  []string // source addresses to spread connections over
	DialRate int      // connections per second while ramping; 0 is unlimited
	Dialers  int      // concurrent dials

	Prefix   string // bench user names are Prefix + number
	First    int    // first user number
	Password string

	Duration time.Duration // how long the measured phase runs
	Count    int64         // stop after this many messages (0: duration only)
	Drain    time.Duration // how long to wait for what is in flight at the end
	Hold     time.Duration // idle: how long to hold the sessions
	Window   int           // messages in flight per client
	QoS      int
	Size     int     // payload bytes
	Rate     float64 // offered messages (or pings) per second; 0 is closed loop

	GroupSize  int // group: members (<= Conns)
	Senders    int // group: members that send
	LoginConc  int // login-storm: concurrent logins
	DropEvery  time.Duration
	DropFrac   float64 // reconnect-storm: share of clients dropped per DropEvery
	DropAbrupt bool    // reconnect-storm: close at once instead of half-closing
	// ServerPIDs are server processes on this machine whose RSS and CPU
	// are reported, summed and per process.
	ServerPIDs []int
	Procs      int  // idle: child processes to run the sessions in (0, 1: this one)
	Spread     bool // session i goes to server i mod len(list), not one endpoint
	MinServers int  // spread: wait until the server list has this many endpoints
	Settle     bool // before the ramp: a GC in the server at HTTP, then RSS settles
	Storm      bool // idle: once all are held, every session drops and reopens
	// GCSignal: the --server-pid processes take SIGUSR1 as a forced
	// collection; Settle signals them instead of asking myimd's pprof, and
	// the idle scenario reads RSS a second time after one more.
	GCSignal   bool
	JSON       string
	Plot       string
	Progress   time.Duration
	Keepalive  time.Duration
	Out        io.Writer
	Quiet      bool
	AllowWider bool // permit a non-loopback target

	args []string   // the command line, which --procs children get again
	link *childLink // set in a child of --procs: the pipe to the parent
}

func (c *Config) fillDefaults() {
	if c.Scenario == "" {
		c.Scenario = "p2p"
	}
	if c.Proto == "" {
		c.Proto = "myim"
	}
	if c.Conns <= 0 {
		c.Conns = 100
	}
	if c.Dialers <= 0 {
		c.Dialers = 4 * runtime.NumCPU()
	}
	if c.Prefix == "" {
		c.Prefix = "bench"
	}
	if c.First <= 0 {
		c.First = 1
	}
	if c.Password == "" {
		c.Password = "bench-password"
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 15 * time.Second
	}
	if c.Hold <= 0 {
		c.Hold = 3 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 16
	}
	if c.Size < payloadMin {
		c.Size = payloadMin
	}
	if c.GroupSize <= 0 || c.GroupSize > c.Conns {
		c.GroupSize = c.Conns
	}
	if c.Senders <= 0 {
		c.Senders = 1
	}
	if c.LoginConc <= 0 {
		c.LoginConc = 4 * runtime.NumCPU()
	}
	if c.DropEvery <= 0 {
		c.DropEvery = time.Second
	}
	if c.DropFrac <= 0 {
		c.DropFrac = 0.1
	}
	if c.Progress <= 0 {
		c.Progress = time.Second
	}
	if c.Keepalive <= 0 {
		c.Keepalive = 30 * time.Second
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Procs <= 0 {
		c.Procs = 1
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, buildinfo.Get().String("myim-bench"))
		return 0
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "myim-bench: %v\n", err)
		return 2
	}
	cfg.Out = stdout
	if os.Getenv(childEnv) != "" {
		return runChild(ctx, cfg, stderr)
	}
	var rep *Report
	if cfg.Procs > 1 {
		rep, err = RunProcs(ctx, cfg)
	} else {
		rep, err = Run(ctx, cfg)
	}
	if rep != nil {
		rep.WriteTable(stdout)
		if cfg.JSON != "" {
			if werr := rep.WriteJSON(cfg.JSON); werr != nil {
				fmt.Fprintf(stderr, "myim-bench: %v\n", werr)
			}
		}
		if cfg.Plot != "" && rep.hist != nil {
			if werr := writePlot(cfg.Plot, rep); werr != nil {
				fmt.Fprintf(stderr, "myim-bench: %v\n", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "myim-bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("myim-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src, pids := defineFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.args = args
	var err error
	if c.Sources, err = parseSources(*src); err != nil {
		return c, err
	}
	if c.ServerPIDs, err = parsePIDs(*pids); err != nil {
		return c, err
	}
	return c, c.check()
}

// defineFlags defines the flags that fill c on fs and returns the two
// that are parsed further: --src and --server-pid.
func defineFlags(fs *flag.FlagSet, c *Config) (src, pids *string) {
	fs.StringVar(&c.Scenario, "scenario", "p2p", "idle, ping, p2p, group, login-storm or reconnect-storm")
	fs.StringVar(&c.Proto, "proto", "myim", "myim, or a peer of benchmarks/: fwd (length-prefixed forwarders) or mqtt")
	fs.StringVar(&c.Transport, "transport", "tcp", "MyIM over tcp, or ws: WebSocket to --ws-addr (/login and /endpoint) for every session and login")
	fs.StringVar(&c.WSAddr, "ws-addr", "127.0.0.1:5290", "myimd's WebSocket listener, with --transport ws")
	fs.StringVar(&c.Endpoint, "addr", "", "endpoint address (MyIM: default from the server list; required for peers)")
	fs.StringVar(&c.Login, "login-addr", "127.0.0.1:5223", "login listener")
	fs.StringVar(&c.HTTP, "http-addr", "127.0.0.1:5280", "HTTP API address")
	fs.StringVar(&c.AdminAPI, "admin-addr", "127.0.0.1:5281", "myimd's admin listener (bulk users, tokens; pprof for --settle)")
	fs.StringVar(&c.Admin, "admin-secret", os.Getenv("MYIM_ADMIN_SECRET"), "admin secret for bulk users and tokens (env MYIM_ADMIN_SECRET); without it users register and log in one by one")
	fs.StringVar(&c.Root, "root", "myim-data/root.pub", "the cluster root key, or a file holding it (login needs it)")
	fs.IntVar(&c.Conns, "n", 100, "sessions to open")
	src = fs.String("src", "auto", "source addresses, comma separated, or A-B for a range of IPv4 addresses; auto: 127.0.0.2-127.0.0.9 for a loopback target; none: let the kernel choose")
	fs.IntVar(&c.DialRate, "dial-rate", 0, "connections per second while ramping, in total over --procs (0: as fast as the dialers go)")
	fs.IntVar(&c.Dialers, "dialers", 0, "concurrent dials (default 4 per CPU)")
	fs.StringVar(&c.Prefix, "prefix", "bench", "bench users are PREFIX1, PREFIX2, ...")
	fs.IntVar(&c.First, "first", 1, "number of the first bench user (give each of several bench processes its own range)")
	fs.StringVar(&c.Password, "password", "bench-password", "password of the bench users")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured phase")
	fs.Int64Var(&c.Count, "count", 0, "stop after this many messages (0: run for --duration)")
	fs.DurationVar(&c.Drain, "drain", 15*time.Second, "longest wait for messages in flight at the end")
	fs.DurationVar(&c.Hold, "hold", 3*time.Second, "idle: how long to hold the sessions before measuring")
	fs.IntVar(&c.Window, "window", 16, "messages (or pings) in flight per client")
	fs.IntVar(&c.QoS, "qos", 1, "0 or 1")
	fs.IntVar(&c.Size, "size", 256, fmt.Sprintf("payload bytes (at least %d: timestamp, sender, sequence)", payloadMin))
	fs.Float64Var(&c.Rate, "rate", 0, "offered messages per second in total, open loop (0: closed loop, as fast as the window allows)")
	fs.IntVar(&c.GroupSize, "group-size", 0, "group: members (default all sessions)")
	fs.IntVar(&c.Senders, "senders", 1, "group: members that send")
	fs.IntVar(&c.LoginConc, "logins", 0, "login-storm: concurrent logins (default 4 per CPU)")
	fs.DurationVar(&c.DropEvery, "drop-every", time.Second, "reconnect-storm: interval between drops")
	fs.Float64Var(&c.DropFrac, "drop-frac", 0.1, "reconnect-storm: share of the clients dropped each interval")
	fs.BoolVar(&c.DropAbrupt, "drop-abrupt", false, "reconnect-storm: close dropped sockets at once (a reset when data is unread) instead of half-closing")
	pids = fs.String("server-pid", "", "server processes on this machine, comma separated: report their RSS and CPU from /proc, summed and per process")
	fs.IntVar(&c.Procs, "procs", 1, "idle: run the sessions in this many child processes of the bench (one process holds at most its open-file limit), each with its own user range, share of --n and source addresses; one combined report")
	fs.BoolVar(&c.Spread, "spread", false, "spread the sessions over every endpoint of the server list (session i to server i mod the list's length) instead of one")
	fs.IntVar(&c.MinServers, "min-servers", 0, "with --spread: wait up to 60s until the server list has this many endpoints")
	fs.BoolVar(&c.Storm, "storm", false, "idle: once every session is held and has answered a PING, drop them all at once and open each again with its token (through the ramp's dialers, retrying a failed attempt); report the time until every one is back and has answered a PING")
	fs.BoolVar(&c.Settle, "settle", false, "before the ramp, have the server at --http-addr collect the garbage of provisioning (myimd --pprof) and wait until the --server-pid processes' RSS stops falling, so that it is not taken off the sessions' growth")
	fs.BoolVar(&c.GCSignal, "gc-signal", false, "the --server-pid processes collect their garbage and return it to the kernel on SIGUSR1 (myimd and the peers of benchmarks/ do): --settle sends it instead of asking myimd's pprof, and idle reads RSS per session again after one more")
	fs.StringVar(&c.JSON, "json", "", "write the report as JSON to this file")
	fs.StringVar(&c.Plot, "plot", "", "draw the latency distribution as SVG to this file")
	fs.DurationVar(&c.Progress, "progress", time.Second, "progress line interval")
	fs.DurationVar(&c.Keepalive, "keepalive", 30*time.Second, "PING interval on held sessions (below the server's idle timeout)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&c.AllowWider, "allow-remote", false, "allow a target outside 127.0.0.0/8 and ::1 (only hosts you run)")
	return src, pids
}

// check rejects flag values that do not go together, or that are unknown.
func (c *Config) check() error {
	if c.Procs > 1 && c.Scenario != "idle" {
		return fmt.Errorf("--procs runs the idle scenario only (the others measure across their own sessions)")
	}
	if c.Storm && c.Scenario != "idle" {
		return errors.New("--storm runs in the idle scenario (reconnect-storm drops sessions under load)")
	}
	if c.Procs > maxProcs {
		return fmt.Errorf("--procs: at most %d", maxProcs)
	}
	if c.Spread && (c.Proto != "myim" || c.Endpoint != "") {
		return errors.New("--spread needs --proto myim and no --addr: it takes the server list that comes with the tokens")
	}
	if c.Settle && (c.Admin == "" && !c.GCSignal || len(c.ServerPIDs) == 0) {
		return errors.New("--settle needs --server-pid and --admin-secret or --gc-signal")
	}
	if c.GCSignal && len(c.ServerPIDs) == 0 {
		return errors.New("--gc-signal needs --server-pid")
	}
	if c.MinServers > 0 && (!c.Spread || c.Admin == "") {
		return errors.New("--min-servers needs --spread and --admin-secret")
	}
	switch {
	case c.Transport == "ws" && c.Proto != "myim":
		return errors.New("--transport ws needs --proto myim")
	case c.Transport != "tcp" && c.Transport != "ws":
		return fmt.Errorf("unknown transport %q", c.Transport)
	}
	switch c.Scenario {
	case "idle", "ping", "p2p", "group", "login-storm", "reconnect-storm":
	default:
		return fmt.Errorf("unknown scenario %q", c.Scenario)
	}
	switch c.Proto {
	case "myim":
	case "fwd", "mqtt":
		if c.Scenario != "idle" && c.Scenario != "ping" && c.Scenario != "p2p" {
			return fmt.Errorf("scenario %s needs --proto myim", c.Scenario)
		}
		if c.Endpoint == "" {
			return fmt.Errorf("--proto %s needs --addr", c.Proto)
		}
	default:
		return fmt.Errorf("unknown protocol %q", c.Proto)
	}
	if c.QoS != 0 && c.QoS != 1 {
		return errors.New("--qos must be 0 or 1")
	}
	return nil
}

// parsePIDs reads --server-pid.
func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pid, err := strconv.Atoi(part)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--server-pid: %q is not a process id", part)
		}
		out = append(out, pid)
	}
	return out, nil
}

// parseSources reads --src.
func parseSources(s string) ([]string, error) {
	switch s {
	case "", "none":
		return nil, nil
	case "auto":
		return []string{"auto"}, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if a, b, ok := strings.Cut(part, "-"); ok {
			r, err := ipRange(a, b)
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
			continue
		}
		out = append(out, part)
	}
	return out, nil
}

// webSocket is the SDK's WebSocket configuration for --transport ws, nil
// for TCP.
func (c *Config) webSocket() *client.WebSocketConfig {
	if c.Transport != "ws" {
		return nil
	}
	return &client.WebSocketConfig{Addr: c.WSAddr}
}
