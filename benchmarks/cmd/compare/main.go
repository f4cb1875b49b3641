// Command compare runs MyIM and its peers side by side on this machine with
// the same load generator (cmd/myim-bench) and prints a markdown table of
// medians with min and max, and MyIM's ratio to the best peer of each row.
//
// Each system runs as its own process, started fresh for every figure, in
// turn: A B C D E, A B C D E, ... for --rounds rounds, so that drift of a
// shared machine spreads over all of them. Every server takes SIGUSR1 as a
// forced collection, which the compare sends alike to all of them before
// the idle ramp and once more after the hold. Run it from benchmarks/:
//
//	go run ./cmd/compare            # or: bash run.sh
//
// Every duration and size is a flag; the defaults keep one run under about
// ten minutes on two cores.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	repo, out, only     string
	myimd               string
	rounds              int
	idleN, p2pN, pingN  int
	groupN, loginN      int
	p2pDur, pingDur     time.Duration
	groupDur, loginDur  time.Duration
	rate                float64
	halfPeak            bool
	window, pingWindow  int
	size, loops, mochiQ int
	hold                time.Duration
}

// report is the part of myim-bench's --json the table uses.
type report struct {
	Conns         int     `json:"conns"`
	Throughput    float64 `json:"throughput_per_s"`
	Offered       float64 `json:"offered_rate"`
	Errors        int64   `json:"errors"`
	Lost          int64   `json:"lost"`
	LastError     string  `json:"last_error"`
	RSSPerSession float64 `json:"server_rss_per_session_kb"`
	RSSPerSessGC  float64 `json:"server_rss_per_session_gc_kb"`
	CPUPerMillion float64 `json:"server_cpu_s_per_million"`
	WritesPerMsg  float64 `json:"server_writes_per_msg"`
	Latency       struct {
		P99 int64 `json:"p99_us"`
	} `json:"latency"`
}

// system is one server under test.
type system struct {
	key, name, proto string
}

// systemsFor lists the systems in column order, MyIM first. The bare gnet
// forwarder runs twice: with one loop per CPU (or --loops) and with one
// loop, which on two cores is the faster of the two (no cross-loop
// AsyncWrite, no second loop to wake).
func systemsFor(o options) []system {
	loops := "1 loop per CPU"
	if o.loops > 0 {
		loops = fmt.Sprintf("%d loops", o.loops)
	}
	return []system{
		{"myim", "MyIM", "myim"},
		{"mochi", "mochi-mqtt", "mqtt"},
		{"gnet", "bare gnet forwarder, " + loops, "fwd"},
		{"gnet1", "bare gnet forwarder, 1 loop", "fwd"},
		{"conn", "goroutine-per-conn forwarder", "fwd"},
	}
}

// metric is one row of the table, read from a run's report. higher says
// which way is better, for picking a row's best peer; a plain row (the
// rate offered to all alike) judges nothing.
type metric struct {
	label  string
	get    func(report) float64
	format string
	higher bool
	plain  bool
}

// figure is one bench run per system and round; it yields one or more rows.
type figure struct {
	key      string
	args     []string
	only     []string // systems it applies to; nil means all
	metrics  []metric
	mustLose bool // fail the run if messages were lost
	// halfPeak: offer half the rate MyIM's p2p figure reached in the same
	// round (--rate), to every system alike.
	halfPeak bool
}

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", "..", "the MyIM repository (root module)")
	flag.StringVar(&o.myimd, "myimd", "", "use this myimd binary instead of building one (to compare builds)")
	flag.StringVar(&o.out, "out", "", "keep logs and JSON reports here (default: a temporary directory)")
	flag.StringVar(&o.only, "only", "", "comma-separated figures to run: idle,p2p,rate,half,ping,group,login (default all)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds (each runs every system once per figure)")
	flag.IntVar(&o.idleN, "idle-n", 10000, "idle sessions (at most about 19,000: one process's file limit)")
	flag.IntVar(&o.p2pN, "p2p-n", 1000, "p2p connections")
	flag.IntVar(&o.pingN, "ping-n", 1000, "ping connections")
	flag.IntVar(&o.groupN, "group-n", 1000, "group members (MyIM)")
	flag.IntVar(&o.loginN, "login-n", 200, "login-storm users (MyIM)")
	flag.DurationVar(&o.p2pDur, "p2p-duration", 8*time.Second, "p2p measured phase")
	flag.DurationVar(&o.pingDur, "ping-duration", 5*time.Second, "ping measured phase")
	flag.DurationVar(&o.groupDur, "group-duration", 6*time.Second, "group measured phase")
	flag.DurationVar(&o.loginDur, "login-duration", 5*time.Second, "login-storm measured phase")
	// 30 s: a server that did work to open its sessions (MyIM's Noise
	// handshakes) holds that garbage's pages until the Go runtime's
	// scavenger returns them, over tens of seconds; read earlier, RSS
	// counts the ramp, not what the sessions keep.
	flag.DurationVar(&o.hold, "hold", 30*time.Second, "idle: hold before measuring")
	flag.Float64Var(&o.rate, "rate", 10000, "p2p offered rate for the fixed-rate latency row (0 skips it)")
	flag.BoolVar(&o.halfPeak, "half-peak", true, "also offer half of MyIM's p2p peak of the same round to every system (needs the p2p figure)")
	flag.IntVar(&o.window, "window", 16, "p2p messages in flight per client")
	flag.IntVar(&o.pingWindow, "ping-window", 1, "pings in flight per client")
	flag.IntVar(&o.size, "size", 256, "payload bytes")
	flag.IntVar(&o.loops, "loops", 0, "event loops for myimd and the gnet forwarder (0: their default, one per CPU)")
	flag.IntVar(&o.mochiQ, "mochi-queue", 0, "mochi's per-client write queue (0: library default)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func figures(o options) []figure {
	common := []string{"--size", strconv.Itoa(o.size), "--quiet"}
	perMsg := metric{"server CPU per message (µs)", func(r report) float64 { return r.CPUPerMillion }, "%.1f", false, false}
	writes := metric{"server write calls per message", func(r report) float64 { return r.WritesPerMsg }, "%.2f", false, false}
	p99 := metric{"p99 (ms)", func(r report) float64 { return float64(r.Latency.P99) / 1000 }, "%.1f", false, false}
	rate := func(l string) metric {
		return metric{l, func(r report) float64 { return r.Throughput }, "%.0f", true, false}
	}
	fs := []figure{
		{key: "idle", args: []string{"--scenario", "idle", "--n", strconv.Itoa(o.idleN), "--hold", o.hold.String()},
			metrics: []metric{
				{fmt.Sprintf("server RSS per idle session at %d sessions (KiB)", o.idleN),
					func(r report) float64 { return r.RSSPerSession }, "%.2f", false, false},
				{"same, after a forced collection (SIGUSR1) (KiB)",
					func(r report) float64 { return r.RSSPerSessGC }, "%.2f", false, false}}},
		{key: "p2p", args: []string{"--scenario", "p2p", "--qos", "1", "--n", strconv.Itoa(o.p2pN),
			"--window", strconv.Itoa(o.window), "--duration", o.p2pDur.String()}, mustLose: true,
			metrics: []metric{
				rate(fmt.Sprintf("p2p QoS 1 messages/s, %d conns, %d B, window %d", o.p2pN, o.size, o.window)),
				withLabel(p99, "p2p QoS 1 p99 at saturation (ms)"),
				withLabel(perMsg, "p2p QoS 1 server CPU per message (µs)"),
				withLabel(writes, "p2p QoS 1 server write calls per message")}},
	}
	if o.rate > 0 {
		fs = append(fs, figure{key: "rate", args: []string{"--scenario", "p2p", "--qos", "1", "--n", strconv.Itoa(o.p2pN),
			"--window", strconv.Itoa(o.window), "--duration", o.p2pDur.String(), "--rate", fmt.Sprint(o.rate)}, mustLose: true,
			metrics: []metric{
				withLabel(p99, fmt.Sprintf("p2p QoS 1 p99 at %.0f msgs/s offered (ms)", o.rate)),
				withLabel(perMsg, fmt.Sprintf("p2p QoS 1 server CPU per message at %.0f msgs/s (µs)", o.rate))}})
	}
	if o.halfPeak {
		fs = append(fs, figure{key: "half", halfPeak: true, args: []string{"--scenario", "p2p", "--qos", "1", "--n", strconv.Itoa(o.p2pN),
			"--window", strconv.Itoa(o.window), "--duration", o.p2pDur.String()}, mustLose: true,
			metrics: []metric{
				{label: "p2p QoS 1 rate offered at half MyIM's peak (msgs/s)", get: func(r report) float64 { return r.Offered },
					format: "%.0f", plain: true},
				withLabel(p99, "p2p QoS 1 p99 at half the peak (ms)"),
				withLabel(perMsg, "p2p QoS 1 server CPU per message at half the peak (µs)")}})
	}
	fs = append(fs,
		figure{key: "ping", args: []string{"--scenario", "ping", "--n", strconv.Itoa(o.pingN),
			"--window", strconv.Itoa(o.pingWindow), "--duration", o.pingDur.String()},
			metrics: []metric{rate(fmt.Sprintf("ping round trips/s, %d conns, window %d", o.pingN, o.pingWindow)),
				withLabel(perMsg, "server CPU per ping round trip (µs)"),
				withLabel(writes, "server write calls per ping round trip")}},
		figure{key: "group", only: []string{"myim"}, args: []string{"--scenario", "group", "--n", strconv.Itoa(o.groupN),
			"--window", strconv.Itoa(o.window), "--duration", o.groupDur.String()},
			metrics: []metric{rate(fmt.Sprintf("group fan-out deliveries/s, %d members, 1 sender", o.groupN)),
				withLabel(perMsg, "group server CPU per delivery (µs)")}},
		figure{key: "login", only: []string{"myim"}, args: []string{"--scenario", "login-storm", "--n", strconv.Itoa(o.loginN),
			"--duration", o.loginDur.String()},
			metrics: []metric{rate("login-storm logins/s (argon2id)")}},
	)
	for i := range fs {
		fs[i].args = append(fs[i].args, common...)
	}
	if o.only != "" {
		want := strings.Split(o.only, ",")
		fs = slices.DeleteFunc(fs, func(f figure) bool { return !slices.Contains(want, f.key) })
	}
	return fs
}

func withLabel(m metric, l string) metric { m.label = l; return m }

func run(ctx context.Context, o options) error {
	if o.rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	repo, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "myim-compare-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(o.out, "bin")
	fmt.Fprintf(os.Stderr, "compare: building into %s\n", bin)
	builds := []struct{ dir, pkg, name string }{
		{repo, "./cmd/myim-bench", "myim-bench"},
		{filepath.Join(repo, "benchmarks"), "./cmd/mochi", "mochi"},
		{filepath.Join(repo, "benchmarks"), "./cmd/gnetfwd", "gnetfwd"},
		{filepath.Join(repo, "benchmarks"), "./cmd/connfwd", "connfwd"},
	}
	if o.myimd == "" {
		builds = append(builds, struct{ dir, pkg, name string }{repo, "./cmd/myimd", "myimd"})
		o.myimd = filepath.Join(bin, "myimd")
	}
	for _, b := range builds {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, b.name), b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", b.name, err, out)
		}
	}
	figs := figures(o)
	systems := systemsFor(o)
	// results[figure][system][metric] = one value per round
	results := map[string]map[string][][]float64{}
	start := time.Now()
	for round := 1; round <= o.rounds; round++ {
		peak := 0.0 // MyIM's p2p rate in this round
		for _, f := range figs {
			if f.halfPeak {
				if peak <= 0 {
					return errors.New("--half-peak needs the p2p figure before it (--only p2p,half)")
				}
				f.args = append(slices.Clone(f.args), "--rate", fmt.Sprintf("%.0f", peak/2))
			}
			for _, s := range systems {
				if f.only != nil && !slices.Contains(f.only, s.key) {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t0 := time.Now()
				rep, err := runOne(ctx, o, bin, round, f, s)
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", round, f.key, s.name, err)
				}
				if results[f.key] == nil {
					results[f.key] = map[string][][]float64{}
				}
				vals := make([]float64, len(f.metrics))
				for i, m := range f.metrics {
					vals[i] = m.get(rep)
				}
				results[f.key][s.key] = append(results[f.key][s.key], vals)
				if f.key == "p2p" && s.key == "myim" {
					peak = rep.Throughput
				}
				fmt.Fprintf(os.Stderr, "compare: round %d %-6s %-34s %s (%.0fs, errors %d)\n", round, f.key, s.name,
					fmtVals(f, vals), time.Since(t0).Seconds(), rep.Errors)
			}
		}
	}
	md := table(o, systems, figs, results, time.Since(start))
	fmt.Print(md)
	return os.WriteFile(filepath.Join(o.out, "table.md"), []byte(md), 0o644)
}

func fmtVals(f figure, v []float64) string {
	var parts []string
	for i, m := range f.metrics {
		parts = append(parts, fmt.Sprintf(m.format, v[i]))
	}
	return strings.Join(parts, " / ")
}

// proc is a running server.
type proc struct {
	cmd   *exec.Cmd
	addrs map[string]string
	done  chan struct{}
}

var listenRe = regexp.MustCompile(`(\w+)\s+listening on (\S+)`)

// start runs a server and waits for its "listening on" lines; last is the
// name whose line comes last.
func start(ctx context.Context, logPath string, last string, name string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stderr = logf
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, addrs: map[string]string{}, done: make(chan struct{})}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				p.addrs[m[1]] = m[2]
				if m[1] == last {
					close(found)
					break
				}
			}
		}
		_, _ = io.Copy(logf, stdout)
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	select {
	case <-found:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited at start; see %s", filepath.Base(name), logPath)
	case <-time.After(20 * time.Second):
	case <-ctx.Done():
	}
	p.stop()
	return nil, fmt.Errorf("%s did not start; see %s", filepath.Base(name), logPath)
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// runOne starts system s fresh, runs figure f's bench against it and
// returns the report.
func runOne(ctx context.Context, o options, bin string, round int, f figure, s system) (report, error) {
	var rep report
	tag := fmt.Sprintf("r%d-%s-%s", round, f.key, s.key)
	addr, err := freePort()
	if err != nil {
		return rep, err
	}
	bargs := append([]string{"--proto", s.proto, "--json", filepath.Join(o.out, tag+".json")}, f.args...)
	var p *proc
	logPath := filepath.Join(o.out, tag+".server.log")
	switch s.key {
	case "myim":
		dir := filepath.Join(o.out, tag+".data")
		args := []string{"--data-dir", dir, "--endpoint-addr", addr, "--login-addr", "127.0.0.1:0",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--center-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--shutdown-grace", "5s", "--admin-secret", "compare-secret",
			"--log-level", "warn", "--pprof", "--handshake-rate", "-1"}
		if o.loops > 0 {
			args = append(args, "--loops", strconv.Itoa(o.loops))
		}
		if p, err = start(ctx, logPath, "admin", o.myimd, args...); err != nil {
			return rep, err
		}
		defer os.RemoveAll(dir)
		bargs = append(bargs, "--http-addr", p.addrs["http"], "--admin-addr", p.addrs["admin"], "--login-addr", p.addrs["login"],
			"--admin-secret", "compare-secret", "--root", filepath.Join(dir, "root.pub"))
	case "mochi":
		args := []string{"--addr", addr}
		if o.mochiQ > 0 {
			args = append(args, "--write-queue", strconv.Itoa(o.mochiQ))
		}
		p, err = start(ctx, logPath, "mochi", filepath.Join(bin, "mochi"), args...)
	case "gnet":
		args := []string{"--addr", addr}
		if o.loops > 0 {
			args = append(args, "--loops", strconv.Itoa(o.loops))
		}
		p, err = start(ctx, logPath, "gnetfwd", filepath.Join(bin, "gnetfwd"), args...)
	case "gnet1":
		p, err = start(ctx, logPath, "gnetfwd", filepath.Join(bin, "gnetfwd"), "--addr", addr, "--loops", "1")
	case "conn":
		p, err = start(ctx, logPath, "connfwd", filepath.Join(bin, "connfwd"), "--addr", addr)
	}
	if err != nil {
		return rep, err
	}
	defer p.stop()
	if s.key != "myim" {
		bargs = append(bargs, "--addr", addr)
	}
	// --settle --gc-signal, for every system alike: before the ramp each
	// server collects its garbage (MyIM's bulk user creation leaves
	// hashing garbage that the ramp would free and take off the sessions'
	// cost) and returns it to the kernel; idle reads RSS again after one
	// more collection at the end of the hold.
	bargs = append(bargs, "--server-pid", strconv.Itoa(p.cmd.Process.Pid), "--settle", "--gc-signal")
	time.Sleep(300 * time.Millisecond) // let the server settle before its baseline RSS is read
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "myim-bench"), bargs...)
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(o.out, tag+".bench.log"), out, 0o644)
	if err != nil {
		return rep, fmt.Errorf("myim-bench: %v\n%s", err, tail(out, 2000))
	}
	b, err := os.ReadFile(filepath.Join(o.out, tag+".json"))
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, err
	}
	if f.mustLose && rep.Lost != 0 {
		return rep, fmt.Errorf("%d messages lost (%s)", rep.Lost, rep.LastError)
	}
	return rep, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// machine describes this machine: cores, memory, CPU, kernel, Go.
func machine() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				mem = fmt.Sprintf("%.1f GiB", kb/1024/1024)
			}
		}
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	goVer := runtime.Version()
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVer = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("Machine: %d cores (%s), %s memory, Linux %s, %s, %s/%s.", runtime.NumCPU(), model, mem,
		strings.TrimSpace(string(kernel)), goVer, runtime.GOOS, runtime.GOARCH)
}
