package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server is a myimd run by a test.
type server struct {
	dir   string
	pid   int
	addrs map[string]string
}

var listenRe = regexp.MustCompile(`^\s+(\w+)\s+listening on (\S+)`)

// startServer builds myimd (a plain build: the race detector covers the
// bench here, and the server's own tests cover the server) and runs it on
// port-0 listeners with an admin secret.
func startServer(t testing.TB) *server {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "myimd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/myim/myim/cmd/myimd").CombinedOutput(); err != nil {
		t.Fatalf("build myimd: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--admin-secret", "bench-secret",
		"--endpoint-addr", "127.0.0.1:0", "--login-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--center-addr", "127.0.0.1:0", "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{dir: filepath.Join(dir, "data"), pid: cmd.Process.Pid, addrs: map[string]string{}}
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
	if s.addrs["endpoint"] == "" || s.addrs["http"] == "" {
		t.Fatalf("myimd did not start: %s", stderr.String())
	}
	return s
}

func (s *server) config(scenario, prefix string) Config {
	return Config{Scenario: scenario, HTTP: s.addrs["http"], Login: s.addrs["login"], Admin: "bench-secret",
		Root: filepath.Join(s.dir, "root.pub"), Prefix: prefix, ServerPID: s.pid, Conns: 20,
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
		rep := runScenario(t, s.config("idle", "idle"))
		if rep.ServerRSSKB == 0 {
			t.Error("no server RSS")
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
		cfg.Conns, cfg.LoginConc, cfg.Count = 4, 2, 6
		rep := runScenario(t, cfg)
		if rep.Delivered != 6 {
			t.Errorf("logins: %d, want 6", rep.Delivered)
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
