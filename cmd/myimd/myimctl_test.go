package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
)

var (
	myimctlOnce sync.Once
	myimctlBin  string
	myimctlErr  error
)

// myimctl builds the operator's tool once per test binary.
func myimctl(t testing.TB) string {
	t.Helper()
	myimctlOnce.Do(func() {
		myimctlBin = filepath.Join(filepath.Dir(binPath), "myimctl")
		if out, err := exec.Command("go", "build", "-o", myimctlBin, "../myimctl").CombinedOutput(); err != nil {
			myimctlErr = fmt.Errorf("build myimctl: %v\n%s", err, out)
		}
	})
	if myimctlErr != nil {
		t.Fatal(myimctlErr)
	}
	return myimctlBin
}

// ctlRun runs myimctl against p with env added, and returns its exit
// status, stdout and stderr.
func ctlRun(t testing.TB, p *proc, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(myimctl(t), append([]string{"--admin", p.addrs["admin"], "--http", p.addrs["http"]}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestMyimctl runs every myimctl command against a real myimd, as tables
// and as JSON, with the admin secret from each of its sources.
func TestMyimctl(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret)
	env := []string{"MYIM_ADMIN_SECRET=" + testSecret}
	ok := func(args []string, stdin string, want ...string) string {
		t.Helper()
		code, out, errOut := ctlRun(t, p, env, stdin, args...)
		if code != 0 {
			t.Fatalf("myimctl %v: exit %d\n%s%s", args, code, out, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("myimctl %v: no %q in:\n%s", args, w, out)
			}
		}
		return out
	}
	jsonOf := func(args ...string) map[string]any {
		t.Helper()
		out := ok(append([]string{"--json"}, args...), "")
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("myimctl --json %v: not JSON: %v\n%s", args, err, out)
		}
		return m
	}
	ok([]string{"user", "add", "amy"}, "password-amy\n", "user amy created")
	amy := p.connect(t, "amy", newDevice(t))
	ok([]string{"version"}, "", "myimctl ", "myimd ")
	ok([]string{"server", "info"}, "", "version", "sessions")
	ok([]string{"cluster", "nodes"}, "", "ROLE", "all", "serving")
	if m := jsonOf("cluster", "nodes"); len(m["nodes"].([]any)) != 1 {
		t.Fatalf("cluster nodes: %v", m)
	}
	ok([]string{"stats"}, "", "sessions", "handshakes endpoint")
	out := ok([]string{"users", "online"}, "", "USER", fmt.Sprintf("\n%d ", amy.id))
	m := jsonOf("users", "online", "--limit", "5")
	sess := m["sessions"].([]any)[0].(map[string]any)
	dev, sid := sess["device"].(string), sess["sid"].(string)
	if dev == "" || sid == "" {
		t.Fatalf("online session without device or sid: %v\n%s", sess, out)
	}
	ok([]string{"user", "info", fmt.Sprint(amy.id)}, "", "name", "amy", "online")
	ok([]string{"user", "kick-device", fmt.Sprint(amy.id), dev}, "", "1 sessions closed")
	<-amy.conn.Done()
	amy2 := p.connect(t, "amy", newDevice(t))
	ok([]string{"user", "kick", fmt.Sprint(amy2.id)}, "", "1 sessions closed")
	<-amy2.conn.Done()
	amy3 := p.connect(t, "amy", newDevice(t))
	sid = jsonOf("users", "online")["sessions"].([]any)[0].(map[string]any)["sid"].(string)
	ok([]string{"token", "revoke", sid}, "", "1 sessions closed")
	<-amy3.conn.Done()
	ok([]string{"drain", "--spread", "1s"}, "", "draining")
	if d := jsonOf("drain", "status"); d["draining"] != true {
		t.Fatalf("drain status: %v", d)
	}
	ok([]string{"undrain"}, "", "serving again")
	if d := jsonOf("drain", "status"); d["draining"] != false {
		t.Fatalf("drain status after undrain: %v", d)
	}
	ok([]string{"users", "bulk", "--prefix", "bulk", "--first", "1", "--count", "3"}, "password-bulk\n", "bulk1", "bulk3", "(3 created, 0 existed)")
	amy4 := p.connect(t, "amy", newDevice(t))
	code, body := p.post(t, "/v1/groups", amy4.login.Token, `{"name":"ops"}`)
	var g struct {
		ID uint64 `json:"group"`
	}
	if err := json.Unmarshal(body, &g); code != 201 || err != nil || g.ID == 0 {
		t.Fatalf("create group: %d %s", code, body)
	}
	ok([]string{"group", "info", fmt.Sprint(g.ID)}, "", "name", "ops", "members", fmt.Sprintf("owner            %d", amy4.id))
	if gi := jsonOf("group", "info", fmt.Sprint(g.ID)); gi["members"] != float64(1) {
		t.Fatalf("group info: %v", gi)
	}
	key := base64.StdEncoding.EncodeToString(newDevice(t).PublicKey().Bytes())
	if tok := jsonOf("token", "issue", "--device-key", key, "--ttl", "10m", fmt.Sprint(amy4.id)); len(tok["tokens"].([]any)) != 1 {
		t.Fatalf("token issue: %v", tok)
	}

	// The secret from a file (flag and env) and from the flag; none is a
	// usage error, a wrong one a refusal.
	file := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(file, []byte(testSecret+"\n"), 0o600)
	for _, c := range []struct {
		env  []string
		args []string
		code int
	}{
		{nil, []string{"--secret-file", file, "stats"}, 0},
		{[]string{"MYIM_ADMIN_SECRET_FILE=" + file}, []string{"stats"}, 0},
		{nil, []string{"--secret", testSecret, "stats"}, 0},
		{nil, []string{"stats"}, 2},
		{[]string{"MYIM_ADMIN_SECRET=wrong"}, []string{"stats"}, 1},
		{env, []string{"user", "info", "nobody"}, 2},
		{env, []string{"no", "such"}, 2},
	} {
		if code, out, errOut := ctlRun(t, p, c.env, "", c.args...); code != c.code {
			t.Errorf("myimctl %v (env %v): exit %d, want %d\n%s%s", c.args, c.env, code, c.code, out, errOut)
		}
	}
	// --help of a command prints its help and asks nothing.
	code, out, _ = ctlRun(t, p, env, "", "user", "add", "--help")
	if code != 0 || !strings.Contains(out, "Usage: myimctl user add NAME") || strings.Contains(out, "password for") {
		t.Fatalf("user add --help: exit %d\n%s", code, out)
	}
}

var promptRe = regexp.MustCompile(`password for \w+: `)

// TestMyimctlPasswordNoEcho types the password on a terminal (a pty made by
// script(1)): it must not appear in what the terminal shows.
func TestMyimctlPasswordNoEcho(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to make a terminal")
	}
	p := startMyimd(t)
	const pw = "secret-typed-password"
	cmd := exec.Command(script, "-qfec", fmt.Sprintf("%s --http %s user add tom", myimctl(t), p.addrs["http"]), "/dev/null")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var shown bytes.Buffer
	r := bufio.NewReader(stdout)
	deadline := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for !promptRe.Match(shown.Bytes()) {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatalf("no prompt: %v\n%s", err, shown.String())
		}
		shown.WriteByte(b)
	}
	time.Sleep(300 * time.Millisecond) // echo is off once the prompt is out
	_, _ = io.WriteString(stdin, pw+"\r")
	rest, _ := io.ReadAll(r)
	shown.Write(rest)
	_ = cmd.Wait()
	if strings.Contains(shown.String(), pw) {
		t.Fatalf("the password was echoed:\n%s", shown.String())
	}
	if !strings.Contains(shown.String(), "user tom created") {
		t.Fatalf("user not created:\n%s", shown.String())
	}
	if _, err := client.Login(context.Background(), p.cfg(t, newDevice(t)), p.addrs["login"], "tom", []byte(pw)); err != nil {
		t.Fatalf("login with the typed password: %v", err)
	}
}

// `myimctl invite new` gives a single-use code that registers one user
// on a server with --registration invite.
func TestMyimctlInvite(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret, "--registration", "invite")
	code, out, errOut := ctlRun(t, p, []string{"MYIM_ADMIN_SECRET=" + testSecret}, "", "--json", "invite", "new")
	var inv struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(out), &inv); code != 0 || err != nil || inv.Code == "" {
		t.Fatalf("invite new: exit %d\n%s%s", code, out, errOut)
	}
	body := fmt.Sprintf(`{"name":"ivy","password":"password-ivy","invite":%q}`, inv.Code)
	if code, b := p.post(t, "/v1/users", "", body); code != 201 {
		t.Fatalf("register with the code: %d %s", code, b)
	}
	body = fmt.Sprintf(`{"name":"ivo","password":"password-ivo","invite":%q}`, inv.Code)
	if code, _ := p.post(t, "/v1/users", "", body); code < 400 || code >= 500 {
		t.Fatalf("the code registered a second user: %d", code)
	}
}
