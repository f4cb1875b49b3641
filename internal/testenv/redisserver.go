package testenv

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisServer is a redis-server of the test's own on a free loopback port,
// so that the test can kill it and start it again, by PID, without
// touching the shared Redis. It keeps its data in a directory of its own:
// it starts empty, a restart after Kill is empty again unless Save wrote
// the data set first, and nothing is saved otherwise.
//
// Its methods must be called from the test's goroutine.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd  // nil while killed
	done chan error // cmd's Wait result
	args []string   // more redis-server arguments
}

// StartRedisServer starts a private redis-server and kills it when the test
// ends. When redis-server is not on the PATH the test is skipped, or fails
// under CI.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	return startRedisServer(t)
}

func startRedisServer(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &RedisServer{t: t, bin: bin, dir: t.TempDir(), addr: addr, args: args}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Addr is the server's address; it stays the same across restarts.
func (r *RedisServer) Addr() string { return r.addr }

// PID is the running server's process id, 0 while it is killed.
func (r *RedisServer) PID() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Start runs redis-server, on its port and data directory, and waits until
// it answers PING (a server still loading its data set does not). It is
// how a test restarts the server after Kill; on a running server it does
// nothing.
func (r *RedisServer) Start() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	_, port, _ := net.SplitHostPort(r.addr)
	logFile := filepath.Join(r.dir, "redis.log")
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--dbfilename", "dump.rdb", "--logfile", logFile, "--daemonize", "no"}, r.args...)
	cmd := exec.Command(r.bin, args...)
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan error, 1)
	go func() { r.done <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, err := r.do("PING"); err == nil && got == "+PONG" {
			return
		}
		select {
		case err := <-r.done:
			r.cmd = nil
			log, _ := os.ReadFile(logFile)
			r.t.Fatalf("redis-server on %s exited: %v\n%s", r.addr, err, log)
		default:
		}
		if time.Now().After(deadline) {
			r.Kill()
			r.t.Fatalf("redis-server on %s does not answer PING after 10s", r.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL, by its PID, as a crash would: no
// save, no goodbye to its clients. It does nothing on a killed server.
func (r *RedisServer) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Save writes the data set to the server's directory, for the next Start
// to load.
func (r *RedisServer) Save() {
	r.t.Helper()
	if got, err := r.do("SAVE"); err != nil || got != "+OK" {
		r.t.Fatalf("redis SAVE: %q %v", got, err)
	}
}

// do sends one command and returns the first line of the answer.
func (r *RedisServer) do(args ...string) (string, error) {
	nc, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	var req strings.Builder
	req.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		req.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := nc.Write([]byte(req.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	return strings.TrimSpace(line), err
}

// StartRedisCluster starts n private redis-servers in cluster mode (no
// replicas), joins them into one Redis Cluster with redis-cli, waits until
// the cluster serves every slot, and returns the nodes; any node's address
// seeds a cluster client. They are killed when the test ends. Without
// redis-server or redis-cli the test is skipped, or fails under CI.
func StartRedisCluster(t testing.TB, n int) []*RedisServer {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		Unavailable(t, "redis-cli not installed: %v", err)
	}
	nodes := make([]*RedisServer, n)
	addrs := make([]string, n)
	for i := range nodes {
		nodes[i] = startRedisServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		addrs[i] = nodes[i].Addr()
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, r := range nodes {
		for {
			host, port, _ := net.SplitHostPort(r.Addr())
			out, err := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster on %v not ok after 20s: %s", addrs, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}
