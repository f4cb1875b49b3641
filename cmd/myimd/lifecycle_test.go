package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/frame"
)

// The operator's lifecycle: restart at once, the ports, TLS, versions,
// the banner, the cluster subcommand's help.

// TestRestartRebindsAtOnce stops a server that had clients (so that the
// client and login ports hold connections in TIME_WAIT) and starts a new
// one on the very same ports within the same second: every listener binds.
func TestRestartRebindsAtOnce(t *testing.T) {
	dir := t.TempDir()
	p := startMyimdDir(t, dir)
	p.register(t, "rex", "password-rex")
	p.register(t, "roy", "password-roy")
	rex := p.connect(t, "rex", newDevice(t))
	roy := p.connect(t, "roy", newDevice(t))
	if _, err := rex.conn.SendMsg(roy.id, frame.QoS1, []byte("before the restart")); err != nil {
		t.Fatal(err)
	}
	recvCmd(t, roy.conn, frame.CmdMsg)
	// The server closes first, so the TIME_WAIT sockets are on its side.
	ports := []string{"--endpoint-addr", p.addrs["endpoint"], "--login-addr", p.addrs["login"],
		"--http-addr", p.addrs["http"], "--admin-addr", p.addrs["admin"], "--center-addr", p.addrs["center"], "--ws-addr", p.addrs["ws"]}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.out)
	}
	exited := time.Now()
	rex.conn.Close()
	roy.conn.Close()
	// The case that failed before SO_REUSEADDR: connections of the old
	// process in TIME_WAIT on the ports the new one binds.
	if n := timeWait(t, p.addrs["endpoint"], p.addrs["login"]); n == 0 {
		t.Fatal("no connection in TIME_WAIT on the client or login port: the restart proves nothing")
	} else {
		t.Logf("%d connections in TIME_WAIT on the ports", n)
	}
	q := startMyimdDir(t, dir, ports...)
	t.Logf("the new process listened %v after the old one exited", time.Since(exited).Round(time.Millisecond))
	for _, name := range []string{"endpoint", "login", "http", "admin", "center"} {
		if q.addrs[name] != p.addrs[name] {
			t.Errorf("%s listener on %s after the restart, was %s", name, q.addrs[name], p.addrs[name])
		}
	}
	// The new server serves the old users.
	q.connect(t, "rex", newDevice(t))
}

// timeWait counts the TCP connections in TIME_WAIT whose local address is
// one of addrs (IPv4, from /proc/net/tcp).
func timeWait(t testing.TB, addrs ...string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := map[string]bool{}
	for _, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		want[fmt.Sprintf("0100007F:%04X", p)] = true
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 3 && want[f[1]] && f[3] == "06" {
			n++
		}
	}
	return n
}

// TestPortInUseExits2 wants one line and exit status 2 when a listener's
// address is taken.
func TestPortInUseExits2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, flag := range []string{"--endpoint-addr", "--http-addr", "--admin-addr"} {
		args := []string{"--data-dir", t.TempDir(), "--endpoint-addr", "127.0.0.1:0", "--login-addr", "127.0.0.1:0",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--center-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0",
			flag, ln.Addr().String()}
		cmd := exec.Command(binPath, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s in use: want exit 2, got %v\n%s", flag, err, stderr.String())
		}
		if got := strings.TrimSpace(stderr.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, "address already in use") {
			t.Errorf("%s in use: want one line, got:\n%s", flag, got)
		}
	}
}

// TestAdminListenerApart wants operators' routes on the admin listener
// only, and the user API on the public one only.
func TestAdminListenerApart(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret, "--pprof")
	get := func(addr, path string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+testSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/metrics", "/v1/status", "/v1/admin/stats", "/debug/pprof/", "/"} {
		if code := get(p.addrs["http"], path); code != http.StatusNotFound {
			t.Errorf("public listener answers %s with %d, want 404", path, code)
		}
		if code := get(p.addrs["admin"], path); code != http.StatusOK {
			t.Errorf("admin listener answers %s with %d, want 200", path, code)
		}
	}
	for _, addr := range []string{p.addrs["http"], p.addrs["admin"]} {
		if code := get(addr, "/readyz"); code != http.StatusOK {
			t.Errorf("%s/readyz: %d", addr, code)
		}
	}
	if code := get(p.addrs["admin"], "/v1/friends"); code != http.StatusNotFound {
		t.Errorf("admin listener serves the user API: %d", code)
	}
}

// TestPublicTLS serves the public API over TLS with a certificate from the
// cluster CA (--http-tls-auto) and with given PEM files, and registers a
// user over it.
func TestPublicTLS(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(binPath, "cluster", "init", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("cluster init: %v\n%s", err, out)
	}
	p := startMyimdDir(t, dir, "--http-tls-auto")
	ca, err := os.ReadFile(filepath.Join(dir, "cluster-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in cluster-ca.pem")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Post("https://"+p.addrs["http"]+"/v1/users", "application/json",
		strings.NewReader(`{"name":"tia","password":"password-tia"}`))
	if err != nil {
		t.Fatalf("register over TLS, verified with the cluster CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register over TLS: %s", resp.Status)
	}
	// Plain HTTP to the TLS listener is refused.
	if resp, err := http.Get("http://" + p.addrs["http"] + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on the TLS listener")
		}
	}
	// Given files: a self-signed certificate, as made without a CA.
	certFile, keyFile := filepath.Join(t.TempDir(), "c.pem"), filepath.Join(t.TempDir(), "k.pem")
	c, k := selfSigned(t)
	_ = os.WriteFile(certFile, c, 0o600)
	_ = os.WriteFile(keyFile, k, 0o600)
	q := startMyimd(t, "--http-tls-cert", certFile, "--http-tls-key", keyFile)
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err = insecure.Get("https://" + q.addrs["http"] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("healthz over TLS with given files: %s", resp.Status)
	}
}

// selfSigned returns a PEM certificate and key for 127.0.0.1, made by the
// same code as --http-tls-auto without a CA.
func selfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	c, err := clusterca.HTTPCertificate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestVersion wants --version on every binary.
func TestVersion(t *testing.T) {
	out, err := exec.Command(binPath, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "myimd ") {
		t.Fatalf("myimd --version: %q %v", out, err)
	}
	for _, pkg := range []string{"../myimctl", "../myim-bench"} {
		bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
		if b, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
		out, err := exec.Command(bin, "--version").Output()
		if err != nil || !strings.HasPrefix(string(out), filepath.Base(pkg)+" ") {
			t.Errorf("%s --version: %q %v", pkg, out, err)
		}
	}
	p := startMyimd(t)
	myimdVer := strings.Fields(mustOutput(t, binPath, "--version"))[1]
	if got := p.metric(t, fmt.Sprintf(`myim_build_info{commit="",goversion=%q,role="all",version=%q}`, goVersion(t), myimdVer)); got != 1 {
		t.Fatalf("myim_build_info %v", got)
	}
	_, body := p.call(t, "GET", "/v1/status", "", "")
	if !bytes.Contains(body, []byte(`"version":"`+myimdVer+`"`)) {
		t.Fatalf("/v1/status has no version %s: %s", myimdVer, body)
	}
}

func mustOutput(t testing.TB, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return string(out)
}

func goVersion(t testing.TB) string {
	out := mustOutput(t, "go", "env", "GOVERSION")
	return strings.TrimSpace(out)
}

// TestJSONBanner wants every line myimd prints at start to be JSON with
// --log-format json.
func TestJSONBanner(t *testing.T) {
	cmd := exec.Command(binPath, "--data-dir", t.TempDir(), "--log-format", "json", "--endpoint-addr", "127.0.0.1:0",
		"--login-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--center-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	listeners := map[string]bool{}
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("banner line is not JSON: %q", sc.Text())
		}
		if rec["msg"] == "listening" {
			listeners[fmt.Sprint(rec["listener"])] = true
		}
		if rec["msg"] == "data" {
			break
		}
	}
	for _, name := range []string{"endpoint", "login", "http", "admin"} {
		if !listeners[name] {
			t.Errorf("no JSON line for the %s listener", name)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_, _ = io.Copy(io.Discard, stdout)
	_ = cmd.Wait()
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "" && !json.Valid([]byte(l)) {
			t.Errorf("log line is not JSON: %q", l)
		}
	}
}

// TestClusterInitHelp wants `myimd cluster init --help` to print its own
// two flags only.
func TestClusterInitHelp(t *testing.T) {
	out := mustOutput(t, binPath, "cluster", "init", "--help")
	if !strings.Contains(out, "--data-dir") || !strings.Contains(out, "--server-id") {
		t.Fatalf("help misses its flags:\n%s", out)
	}
	if n := strings.Count(out, "\n  --"); n != 2 || strings.Contains(out, "--endpoint-addr") {
		t.Fatalf("help lists %d flags, want 2:\n%s", n, out)
	}
}
