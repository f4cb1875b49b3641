package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bytedance/sonic"
)

// server is a myimd run by a test.
type server struct {
	dir   string
	pid   int
	addrs map[string]string
}

var listenRe = regexp.MustCompile(`^\s+(\w+)\s+listening on (\S+)`)

// TestMain runs the test binary as the bench itself when a --procs test
// starts it as a child, as myim-bench re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// myimdBin builds myimd once for the tests (a plain build: the race
// detector covers the bench here, and the server's own tests cover the
// server).
func myimdBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "myim-bench-test"); binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "myimd"), "github.com/myim/myim/cmd/myimd").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build myimd: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "myimd")
}

// startServer runs an all-in-one myimd on port-0 listeners with an admin
// secret.
func startServer(t testing.TB) *server {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	return startMyimd(t, dir, "--admin-secret", "bench-secret", "--pprof")
}

// startMyimd runs myimd with its data in dir, on port-0 listeners, with
// args added, and stops it at the end of the test.
func startMyimd(t testing.TB, dir string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(myimdBin(t), append([]string{"--data-dir", dir,
		"--endpoint-addr", "127.0.0.1:0", "--login-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--shutdown-grace", "5s", "--ws-addr", "127.0.0.1:0",
		"--center-addr", "127.0.0.1:0", "--log-level", "warn"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{dir: dir, pid: cmd.Process.Pid, addrs: map[string]string{}}
	kill := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
			s.addrs[m[1]] = m[2]
		}
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "data") {
			break
		}
	}
	kill.Stop()
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if strings.Contains(stderr.String(), "panic:") {
			t.Errorf("myimd panicked:\n%s", stderr.String())
		}
	})
	if s.addrs["endpoint"] == "" {
		t.Fatalf("myimd did not start: %s", stderr.String())
	}
	return s
}

func (s *server) config(scenario, prefix string) Config {
	return Config{Scenario: scenario, HTTP: s.addrs["http"], AdminAPI: s.addrs["admin"], Login: s.addrs["login"], Admin: "bench-secret",
		Root: filepath.Join(s.dir, "root.pub"), Prefix: prefix, ServerPIDs: []int{s.pid}, Conns: 20,
		Duration: 700 * time.Millisecond, Drain: 10 * time.Second, Hold: 200 * time.Millisecond,
		Window: 4, Size: 64, QoS: 1, Sources: []string{"auto"}, Quiet: true, Out: io.Discard}
}

func runScenario(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("%s: %v", cfg.Scenario, err)
	}
	var b bytes.Buffer
	rep.WriteTable(&b)
	t.Log(b.String())
	if rep.Errors != 0 {
		t.Errorf("%s: %d errors, last: %s", cfg.Scenario, rep.Errors, rep.LastError)
	}
	if rep.Conns != cfg.Conns && cfg.Scenario != "login-storm" {
		t.Errorf("%s: %d of %d sessions", cfg.Scenario, rep.Conns, cfg.Conns)
	}
	return rep
}

func TestScenarios(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()

	t.Run("idle", func(t *testing.T) {
		cfg := s.config("idle", "idle")
		cfg.Settle = true
		rep := runScenario(t, cfg)
		if rep.ServerRSSKB == 0 {
			t.Error("no server RSS")
		}
	})
	t.Run("idle-storm", func(t *testing.T) {
		cfg := s.config("idle", "st")
		cfg.Storm = true
		rep := runScenario(t, cfg)
		st := rep.Storm
		if st == nil || st.Dropped != cfg.Conns || st.Back != cfg.Conns || st.Failed != 0 || st.Seconds <= 0 || st.ServerCPUSeconds <= 0 {
			t.Errorf("storm: %+v, want all %d sessions back", st, cfg.Conns)
		}
	})
	t.Run("ping", func(t *testing.T) {
		rep := runScenario(t, s.config("ping", "ping"))
		if rep.Delivered == 0 || rep.Delivered != rep.Sent || rep.Latency.Count != rep.Delivered {
			t.Errorf("pings: sent %d, answered %d, timed %d", rep.Sent, rep.Delivered, rep.Latency.Count)
		}
	})
	t.Run("p2p-qos1", func(t *testing.T) {
		cfg := s.config("p2p", "pa")
		cfg.JSON, cfg.Plot = filepath.Join(dir, "p2p.json"), filepath.Join(dir, "p2p.svg")
		rep := runScenario(t, cfg)
		if rep.Sent == 0 || rep.Acked != rep.Sent || rep.Delivered+rep.Stored < rep.Acked || rep.Lost != 0 {
			t.Errorf("QoS 1: sent %d, acked %d, delivered %d, stored %d", rep.Sent, rep.Acked, rep.Delivered, rep.Stored)
		}
		if rep.ServerCPUSeconds <= 0 || rep.CPUPerMillion <= 0 {
			t.Errorf("no server CPU figures: %+v", rep)
		}
		if err := rep.WriteJSON(cfg.JSON); err != nil {
			t.Fatal(err)
		}
		if err := writePlot(cfg.Plot, rep); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(cfg.Plot); !bytes.Contains(b, []byte("<polyline")) {
			t.Error("plot has no curve")
		}
	})
	t.Run("p2p-qos1-ws", func(t *testing.T) {
		cfg := s.config("p2p", "pw")
		cfg.Transport, cfg.WSAddr = "ws", s.addrs["ws"]
		rep := runScenario(t, cfg)
		if rep.Sent == 0 || rep.Acked != rep.Sent || rep.Delivered+rep.Stored < rep.Acked || rep.Lost != 0 {
			t.Errorf("QoS 1 over WebSocket: sent %d, acked %d, delivered %d, stored %d", rep.Sent, rep.Acked, rep.Delivered, rep.Stored)
		}
	})
	t.Run("p2p-qos0-rate", func(t *testing.T) {
		cfg := s.config("p2p", "pb")
		cfg.QoS, cfg.Rate, cfg.Count = 0, 2000, 1000
		rep := runScenario(t, cfg)
		if rep.Sent == 0 || rep.Delivered != rep.Sent {
			t.Errorf("QoS 0: sent %d, delivered %d", rep.Sent, rep.Delivered)
		}
	})
	t.Run("group", func(t *testing.T) {
		cfg := s.config("group", "gr")
		cfg.Senders = 2
		rep := runScenario(t, cfg)
		if rep.Acked == 0 || rep.Delivered != rep.Acked*int64(cfg.Conns) {
			t.Errorf("group: acked %d, deliveries %d, want %d", rep.Acked, rep.Delivered, rep.Acked*int64(cfg.Conns))
		}
	})
	t.Run("login-storm", func(t *testing.T) {
		cfg := s.config("login-storm", "ls")
		// The outcome, not the speed: every one of 6 logins must succeed
		// however busy the machine is. The duration is only a generous
		// bound (within runScenario's context), so the count ends the run.
		cfg.Conns, cfg.LoginConc, cfg.Count = 4, 2, 6
		cfg.Duration = 25 * time.Second
		rep := runScenario(t, cfg)
		if rep.Delivered != 6 || rep.Errors != 0 || rep.Latency.Count != 6 {
			t.Errorf("logins: %d succeeded (%d timed), %d failed; want 6 and none failed",
				rep.Delivered, rep.Latency.Count, rep.Errors)
		}
	})
	t.Run("reconnect-storm", func(t *testing.T) {
		cfg := s.config("reconnect-storm", "rs")
		cfg.Duration, cfg.DropEvery, cfg.DropFrac = 1500*time.Millisecond, 200*time.Millisecond, 0.2
		rep := runScenario(t, cfg)
		if rep.Reconnects == 0 || rep.Acked == 0 || rep.Lost != 0 {
			t.Errorf("reconnects %d, acked %d, acked but never received %d", rep.Reconnects, rep.Acked, rep.Lost)
		}
	})
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--proto", "mqtt"}, // peers need --addr
		{"--proto", "fwd", "--scenario", "group", "--addr", "127.0.0.1:1"}, // MyIM only
		{"--qos", "2"},
		{"--src", "127.0.0.9-x"},
		{"--scenario", "p2p", "--procs", "2"}, // idle only
		{"--spread", "--addr", "127.0.0.1:1"},
		{"--min-servers", "2"},              // needs --spread
		{"--settle", "--admin-secret", "s"}, // needs --server-pid
		{"--settle", "--server-pid", "1"},   // needs --admin-secret or --gc-signal
		{"--gc-signal"},                     // needs --server-pid
		{"--scenario", "ping", "--storm"},   // idle only
		{"--server-pid", "12,x"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if err := checkTarget("10.1.2.3:5222", false); err == nil {
		t.Error("non-loopback target accepted without --allow-remote")
	}
	src, err := parseSources("127.0.0.2-127.0.0.4")
	if err != nil || strings.Join(src, ",") != "127.0.0.2,127.0.0.3,127.0.0.4" {
		t.Errorf("sources %v %v", src, err)
	}
}

// runProcs runs the bench through its command line with args and returns
// the combined report it wrote as JSON and what it printed.
func runProcs(t *testing.T, args ...string) (*Report, string) {
	t.Helper()
	js := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, append(args, "--json", js), &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := sonic.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep, out.String()
}

func (s *server) args(prefix string, n int) []string {
	return []string{"--scenario", "idle", "--http-addr", s.addrs["http"], "--admin-addr", s.addrs["admin"], "--admin-secret", "bench-secret",
		"--prefix", prefix, "--n", strconv.Itoa(n), "--hold", "300ms", "--progress", "200ms"}
}

// TestProcs runs the idle scenario in two child processes of the bench
// against one myimd: the parent splits the users, sources and sessions,
// reads the server while both children hold theirs, has every session drop
// and come back (--storm), and combines.
func TestProcs(t *testing.T) {
	s := startServer(t)
	rep, out := runProcs(t, append(s.args("pr", 30), "--procs", "2", "--first", "101",
		"--src", "127.0.0.2-127.0.0.5", "--server-pid", strconv.Itoa(s.pid), "--settle", "--storm")...)
	if rep.Procs != 2 || rep.Conns != 30 || rep.Wanted != 30 || rep.Errors != 0 {
		t.Fatalf("procs %d, %d of %d sessions, %d errors (%s)", rep.Procs, rep.Conns, rep.Wanted, rep.Errors, rep.LastError)
	}
	if st := rep.Storm; st == nil || st.Dropped != 30 || st.Back != 30 || st.Failed != 0 || st.Seconds <= 0 {
		t.Errorf("storm: %+v, want all 30 sessions back", st)
	}
	if !strings.Contains(out, "storm: settled") {
		t.Error("no storm line in the output")
	}
	if len(rep.Children) != 2 {
		t.Fatalf("%d children", len(rep.Children))
	}
	for k, c := range rep.Children {
		wantFirst, wantSrc := 101+15*k, []string{"127.0.0.2,127.0.0.4", "127.0.0.3,127.0.0.5"}[k]
		if c.Conns != 15 || c.First != wantFirst || c.Sources != wantSrc || c.Errors != 0 || c.Error != "" || c.PID == 0 {
			t.Errorf("child %d: %+v, want 15 sessions from user %d over %s", k+1, c, wantFirst, wantSrc)
		}
		if !strings.Contains(out, fmt.Sprintf("[%d] ", k+1)) {
			t.Errorf("nothing of child %d in the output", k+1)
		}
	}
	if rep.ServerRSSKB == 0 || rep.RampRate <= 0 || rep.ServerPID != s.pid {
		t.Errorf("server RSS %d, ramp %.0f/s, pid %d", rep.ServerRSSKB, rep.RampRate, rep.ServerPID)
	}
	// The all-in-one process listens on the only endpoint: its figures
	// are per session of that endpoint.
	if len(rep.Servers) != 1 || rep.Servers[0].Sessions != 30 || len(rep.Servers[0].Endpoints) != 1 ||
		rep.Servers[0].Endpoints[0] != s.addrs["endpoint"] {
		t.Errorf("server figures %+v, want 30 sessions on %s", rep.Servers, s.addrs["endpoint"])
	}
	if !strings.Contains(out, "bench process 2") {
		t.Error("the combined table lists no bench process")
	}
}

// TestSpreadProcs runs a first node and an endpoint process sharing a Redis
// registry, and two bench processes spreading their sessions over both
// endpoints; each server process is reported with its own sessions.
func TestSpreadProcs(t *testing.T) {
	redis := testRedis(t)
	prefix := fmt.Sprintf("benchtest%d:", time.Now().UnixNano())
	dir1 := filepath.Join(t.TempDir(), "first")
	if err := exec.Command(myimdBin(t), "cluster", "init", "--data-dir", dir1, "--server-id", "1").Run(); err != nil {
		t.Fatalf("cluster init: %v", err)
	}
	out, err := exec.Command(myimdBin(t), "cluster", "token", "--data-dir", dir1, "--role", "endpoint", "--node", "3").Output()
	if err != nil {
		t.Fatalf("cluster token: %v", err)
	}
	token := strings.TrimSpace(string(out))
	common := []string{"--redis-addr", redis, "--redis-prefix", prefix}
	first := startMyimd(t, dir1, append([]string{"--server-id", "1", "--join-addr", "127.0.0.1:0",
		"--admin-secret", "bench-secret"}, common...)...)
	if first.addrs["join"] == "" || first.addrs["center"] == "" || first.addrs["http"] == "" {
		t.Fatalf("first node lists no join, link or HTTP listener: %v", first.addrs)
	}
	ep := startMyimd(t, filepath.Join(t.TempDir(), "ep"), append([]string{"--role", "endpoint", "--server-id", "3",
		"--join", token, "--join-url", "https://" + first.addrs["join"], "--center-link", first.addrs["center"]}, common...)...)

	rep, _ := runProcs(t, append(first.args("sp", 20), "--procs", "2", "--spread", "--min-servers", "2",
		"--server-pid", fmt.Sprintf("%d,%d", first.pid, ep.pid))...)
	if rep.Conns != 20 || rep.Errors != 0 {
		t.Fatalf("%d of 20 sessions, %d errors (%s)", rep.Conns, rep.Errors, rep.LastError)
	}
	want := map[string]int{first.addrs["endpoint"]: 10, ep.addrs["endpoint"]: 10}
	if len(rep.ByEndpoint) != 2 || rep.ByEndpoint[first.addrs["endpoint"]] != 10 || rep.ByEndpoint[ep.addrs["endpoint"]] != 10 {
		t.Errorf("sessions by endpoint %v, want %v", rep.ByEndpoint, want)
	}
	if len(rep.Servers) != 2 {
		t.Fatalf("%d server processes reported", len(rep.Servers))
	}
	for k, p := range []*server{first, ep} {
		f := rep.Servers[k]
		if f.PID != p.pid || f.Sessions != 10 || len(f.Endpoints) != 1 || f.Endpoints[0] != p.addrs["endpoint"] || f.RSSKB == 0 {
			t.Errorf("server %d: %+v, want 10 sessions on %s", k, f, p.addrs["endpoint"])
		}
	}
}

// testRedis returns the test Redis address; it skips the test without
// one, or fails it under CI=true.
func testRedis(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("MYIM_TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis unavailable: %v", err)
		}
		t.Skipf("Redis unavailable: %v", err)
	}
	c.Close()
	return addr
}
