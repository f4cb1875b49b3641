package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/frame"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "myimd-test")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "myimd")
	// A plain build: the race detector runs over the same code in the
	// in-process tests, and would distort the memory figures here.
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build myimd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running myimd.
type proc struct {
	argv  []string
	dir   string
	cmd   *exec.Cmd
	addrs map[string]string
	data  string // the banner's data line
	out   *logBuf
	done  chan error
}

// logBuf holds a process's stderr: exec's copier writes it while tests
// read it, so both go through its lock.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listenRe = regexp.MustCompile(`^\s+(\w+)\s+listening on (\S+)`)

// startMyimd runs the binary with a fresh data dir and port-0 listeners
// unless args say otherwise, and waits until it prints its addresses.
func startMyimd(t testing.TB, args ...string) *proc {
	t.Helper()
	return startMyimdDir(t, t.TempDir(), args...)
}

// startMyimdDir is startMyimd on a given data dir, for restarts.
func startMyimdDir(t testing.TB, dir string, args ...string) *proc {
	t.Helper()
	return startMyimdVia(t, dir, nil, args...)
}

// startMyimdVia is startMyimdDir with the binary run through a wrapper
// command (e.g. sh -c 'ulimit -n 256; exec "$0" "$@"'), which must exec it.
func startMyimdVia(t testing.TB, dir string, wrapper []string, args ...string) *proc {
	t.Helper()
	base := []string{"--data-dir", dir, "--endpoint-addr", "127.0.0.1:0",
		"--login-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--center-addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--shutdown-grace", "5s"}
	argv := append(append(append([]string(nil), wrapper...), binPath), append(base, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, _ := cmd.StdoutPipe()
	stderr := &logBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{argv: append(base, args...), dir: dir, cmd: cmd, addrs: map[string]string{}, out: stderr, done: make(chan error, 1)}
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
	for sc.Scan() {
		line := sc.Text()
		if m := listenRe.FindStringSubmatch(line); m != nil {
			p.addrs[m[1]] = m[2]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "data") {
			p.data = strings.TrimSpace(line)
			break
		}
	}
	deadline.Stop()
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	go func() { p.done <- cmd.Wait() }()
	if len(p.addrs) == 0 {
		t.Fatalf("myimd did not start: %s", stderr.String())
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// flags returns the given flags with their values as this process got them.
func (p *proc) flags(names ...string) []string {
	var out []string
	for i := 0; i+1 < len(p.argv); i++ {
		for _, n := range names {
			if p.argv[i] == n {
				out = append(out, n, p.argv[i+1])
			}
		}
	}
	return out
}

// kill ends the process with SIGKILL, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) stop(t testing.TB) int {
	if p.cmd.ProcessState != nil {
		return p.cmd.ProcessState.ExitCode()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("myimd did not stop on SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) rssKB(t testing.TB) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func TestRawPingAndStop(t *testing.T) {
	p := startMyimd(t)
	c, err := net.Dial("tcp", p.addrs["endpoint"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x03, 0x01, 0x01})
	got := make([]byte, 3)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte{0x03, 0x02, 0x00}) {
		t.Fatalf("got % x, %v", got, err)
	}
	// A non-PING frame before the handshake is refused and closed.
	_, _ = c.Write([]byte{0x03, 0x05, 0x00})
	rest, _ := io.ReadAll(c)
	f, _, err := frame.Decode(rest, 0)
	if err != nil || f.Cmd() != frame.CmdError || frame.Error(f.Body()).Code() != frame.ErrCodeUnauthorized {
		t.Fatalf("want unauthorized error, got % x", rest)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0; stderr:\n%s", code, p.out)
	}
}

// SIGUSR1 is a forced collection, not a stop: the node keeps serving and
// stops cleanly afterwards.
func TestCollectSignal(t *testing.T) {
	p := startMyimd(t)
	for range 2 {
		if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
	}
	c, err := net.Dial("tcp", p.addrs["endpoint"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x03, 0x01, 0x01})
	got := make([]byte, 3)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte{0x03, 0x02, 0x00}) {
		t.Fatalf("after SIGUSR1: got % x, %v; stderr:\n%s", got, err, p.out)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0; stderr:\n%s", code, p.out)
	}
}

func TestBadConfigExits2(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(file, nil, 0o400)
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--endpoint-addr", "nonsense"},
		{"--role", "king"},
		{"--data-dir", filepath.Join(file, "sub")},
		{"--idle-timeout", "soon"},
		{"--gc-percent", "0"},
	} {
		cmd := exec.Command(binPath, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: want exit 2, got %v", args, err)
		}
		if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n"); lines != 0 {
			t.Errorf("%v: want a one-line error, got:\n%s", args, stderr.String())
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "myimd.json")
	_ = os.WriteFile(file, []byte(`{"log-format":"json","max-frame":4096,"idle-timeout":"30s"}`), 0o600)
	env := map[string]string{"MYIM_MAX_FRAME": "8192"}
	cfg, err := loadConfig([]string{"--config", file, "--idle-timeout", "45s"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogFormat != "json" || cfg.MaxFrame != 8192 || cfg.IdleTimeout != 45*time.Second {
		t.Fatalf("precedence wrong: %+v", cfg)
	}
	if _, err := loadConfig([]string{"--config", file}, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, []byte(`{"nope":1}`), 0o600)
	if _, err := loadConfig([]string{"--config", bad}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("unknown config key accepted")
	}
}

// --gc-percent sets the collector's target; GOGC, when set, wins.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	cfg, err := loadConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := setGCPercent(cfg, func(string) string { return "" }); got != 50 {
		t.Fatalf("default target %d, want 50", got)
	}
	if now := debug.SetGCPercent(100); now != 50 {
		t.Fatalf("collector target %d after setGCPercent, want 50", now)
	}
	cfg.GCPercent = 80
	gogc := func(k string) string {
		if k == "GOGC" {
			return "100"
		}
		return ""
	}
	if got := setGCPercent(cfg, gogc); got != 100 {
		t.Fatalf("with GOGC set: target %d, want the runtime's 100 left alone", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("with GOGC set the target moved to %d", now)
	}
}

// TestHoldsIdleConnections opens many idle connections to one myimd and
// reports the server's resident memory per connection. MYIM_TEST_IDLE_CONNS
// sets the count (default 10,000; the machine allows 20,000 files a process).
func TestHoldsIdleConnections(t *testing.T) {
	n := 10000
	if v := os.Getenv("MYIM_TEST_IDLE_CONNS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	if testing.Short() {
		n = 1000
	}
	p := startMyimd(t, "--first-frame-timeout", "10m", "--handshake-timeout", "10m", "--loops", "2")
	before := p.rssKB(t)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", p.addrs["endpoint"])
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Every connection is live: each answers a PING.
	for i, c := range conns {
		if _, err := c.Write(frame.Ping); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	buf := make([]byte, 3)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, frame.Pong) {
			t.Fatalf("conn %d: % x %v", i, buf, err)
		}
	}
	after := p.rssKB(t)
	t.Logf("%d idle connections: server RSS %d KiB -> %d KiB, %.2f KiB per connection (user space; the kernel's socket buffers are extra)",
		n, before, after, float64(after-before)/float64(n))
}

// TestClusterCommands runs the cluster commands in process: a token needs
// a role, is printed alone on stdout, can be revoked by the id printed
// beside it; remove takes an enrolled node and refuses an unknown one.
func TestClusterCommands(t *testing.T) {
	dir := t.TempDir()
	env := func(string) string { return "" }
	var out, errb bytes.Buffer
	if rc := run([]string{"cluster", "init", "--data-dir", dir}, env, &out, &errb); rc != 0 {
		t.Fatalf("init: %d %s", rc, errb.String())
	}
	if out.Len() != 0 {
		t.Fatalf("init printed a token: %q", out.String())
	}
	if rc := run([]string{"cluster", "token", "--data-dir", dir}, env, &out, &errb); rc != 2 {
		t.Fatalf("token without --role: %d", rc)
	}
	out.Reset()
	errb.Reset()
	if rc := run([]string{"cluster", "token", "--data-dir", dir, "--role", "endpoint", "--node", "4", "--uses=2", "--ttl", "10m"}, env, &out, &errb); rc != 0 {
		t.Fatalf("token: %d %s", rc, errb.String())
	}
	if _, _, err := clusterca.ParseJoinToken(out.String()); err != nil {
		t.Fatalf("token %q: %v", out.String(), err)
	}
	var id string
	if _, err := fmt.Sscanf(errb.String(), "join token %s", &id); err != nil || !strings.Contains(errb.String(), "node 4, 2 use(s)") {
		t.Fatalf("token description %q", errb.String())
	}
	id = strings.TrimSuffix(id, ":")
	if rc := run([]string{"cluster", "token", "--data-dir", dir, "--revoke", id}, env, &out, &errb); rc != 0 {
		t.Fatalf("revoke %s: %d %s", id, rc, errb.String())
	}
	if rc := run([]string{"cluster", "token", "--revoke", id, "--data-dir", dir}, env, &out, &errb); rc != 1 {
		t.Fatalf("revoke twice: %d", rc)
	}
	if rc := run([]string{"cluster", "remove", "1", "--data-dir", dir}, env, &out, &errb); rc != 0 {
		t.Fatalf("remove 1: %d %s", rc, errb.String())
	}
	if rc := run([]string{"cluster", "remove", "7", "--data-dir", dir}, env, &out, &errb); rc != 1 {
		t.Fatalf("remove of an unknown node: %d", rc)
	}
}
