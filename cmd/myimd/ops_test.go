package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/sonic"
	"github.com/go-sql-driver/mysql"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// The operator tests: metrics, readiness, the admin API and the status
// page, against a real myimd.

const testSecret = "test-admin-secret"

// adminPath reports whether path is served on the admin listener.
func adminPath(path string) bool {
	for _, pre := range []string{"/metrics", "/v1/status", "/v1/admin/", "/debug/"} {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return path == "/"
}

// call makes an HTTP request to myimd, with the admin secret when given:
// to the admin listener for operators' paths, else to the public one.
func (p *proc) call(t testing.TB, method, path, secret, body string) (int, []byte) {
	t.Helper()
	addr := p.addrs["http"]
	if adminPath(path) {
		addr = p.addrs["admin"]
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// metric returns the value of one sample line of a /metrics scrape, e.g.
// `myim_messages_total{outcome="delivered"}`.
func (p *proc) metric(t testing.TB, series string) float64 {
	t.Helper()
	code, body := p.call(t, "GET", "/metrics", "", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}

type statusDoc struct {
	Connections map[string]int `json:"connections"`
	Sessions    int            `json:"sessions"`
	Delivered   uint64         `json:"delivered"`
	Draining    bool           `json:"draining"`
	P99         float64        `json:"delivery_p99_ms"`
}

func (p *proc) status(t testing.TB) statusDoc {
	t.Helper()
	code, body := p.call(t, "GET", "/v1/status", "", "")
	var s statusDoc
	if code != http.StatusOK || sonic.Unmarshal(body, &s) != nil {
		t.Fatalf("/v1/status: %d %s", code, body)
	}
	return s
}

func (s statusDoc) conns() int {
	n := 0
	for _, c := range s.Connections {
		n += c
	}
	return n
}

// TestMetricsMoveWithMessages scrapes /metrics around a p2p run and wants
// the counters to move by the number of messages sent.
func TestMetricsMoveWithMessages(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "mia", "password-mia")
	p.register(t, "max", "password-max")
	mia := p.connect(t, "mia", newDevice(t))
	mo := p.connect(t, "max", newDevice(t))
	if got := p.metric(t, `myim_handshakes_total{role="endpoint"}`); got != 2 {
		t.Fatalf("endpoint handshakes %v, want 2", got)
	}
	if got := p.metric(t, `myim_handshakes_total{role="login"}`); got != 2 {
		t.Fatalf("logins %v, want 2", got)
	}
	delivered := p.metric(t, `myim_messages_total{outcome="delivered"}`)
	framesIn := p.metric(t, `myim_frames_in_total{listener="endpoint"}`)
	bytesOut := p.metric(t, `myim_bytes_out_total{listener="endpoint"}`)
	receipts := p.metric(t, `myim_delivery_seconds_count`)

	const n = 25
	for i := 0; i < n; i++ {
		if _, err := mia.conn.SendMsg(mo.id, frame.QoS1, []byte(fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		m := frame.Msg(recvCmd(t, mo.conn, frame.CmdMsg).Body)
		if err := mo.conn.Ack(m.MID(), m.From()); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if a := frame.Ack(recvCmd(t, mia.conn, frame.CmdAck).Body); a.Status() != frame.AckDelivered {
			t.Fatalf("ack status %d", a.Status())
		}
	}
	if d := p.metric(t, `myim_messages_total{outcome="delivered"}`) - delivered; d != n {
		t.Fatalf("delivered moved by %v, want %d", d, n)
	}
	// n messages in, n receipts in.
	if d := p.metric(t, `myim_frames_in_total{listener="endpoint"}`) - framesIn; d != 2*n {
		t.Fatalf("endpoint frames in moved by %v, want %d", d, 2*n)
	}
	if d := p.metric(t, `myim_delivery_seconds_count`) - receipts; d != n {
		t.Fatalf("delivery latency observations moved by %v, want %d", d, n)
	}
	if d := p.metric(t, `myim_bytes_out_total{listener="endpoint"}`) - bytesOut; d < 2*n*40 {
		t.Fatalf("endpoint bytes out moved by %v, want at least a sealed MSG and ACK per message", d)
	}
	if got := p.metric(t, `myim_connections{listener="endpoint"}`); got != 2 {
		t.Fatalf("endpoint connections %v, want 2", got)
	}
	if p.metric(t, `myim_storage_seconds_count{method="UserByName"}`) < 2 {
		t.Fatal("storage latency not recorded")
	}
	if p.metric(t, `myim_loop_lag_seconds_count{listener="endpoint"}`) < 0 {
		t.Fatal("no loop lag series")
	}
	p.metric(t, "go_goroutines")
	if s := p.status(t); s.Delivered != n || s.Sessions != 2 || s.P99 < 0 {
		t.Fatalf("status %+v", s)
	}
	// A failed token handshake is counted by reason.
	other := newDevice(t)
	s := mia.login.Servers[0]
	if _, err := client.Dial(context.Background(), p.cfg(t, other), mia.login.EndpointAddr(s), s.Key, mia.login.Token); err == nil {
		t.Fatal("token of another device accepted")
	}
	if got := p.metric(t, `myim_handshake_failures_total{reason="token_device",role="endpoint"}`); got != 1 {
		t.Fatalf("token_device failures %v", got)
	}
}

// TestReadyzFollowsStore runs myimd on MariaDB through a proxy: cutting the
// proxy turns /readyz to 503, restoring it back to 200; /healthz stays 200.
func TestReadyzFollowsStore(t *testing.T) {
	cfg, err := mysql.ParseDSN(testenv.MySQLDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	px := testenv.StartProxy(t, cfg.Addr)
	cfg.Addr = px.Addr()
	p := startMyimd(t, "--mysql-dsn", cfg.FormatDSN())
	ready := func() int { code, _ := p.call(t, "GET", "/readyz", "", ""); return code }
	if code := ready(); code != http.StatusOK {
		t.Fatalf("readyz %d with the store up", code)
	}
	px.Cut()
	testenv.WaitFor(t, 10*time.Second, "readyz 503", func() bool { return ready() == http.StatusServiceUnavailable })
	if code, _ := p.call(t, "GET", "/healthz", "", ""); code != http.StatusOK {
		t.Fatalf("healthz %d while the store is down", code)
	}
	px.Restore()
	testenv.WaitFor(t, 10*time.Second, "readyz 200", func() bool { return ready() == http.StatusOK })
}

func TestAdminAuth(t *testing.T) {
	off := startMyimd(t)
	for _, path := range []string{"/v1/admin/stats", "/debug/pprof/"} {
		if code, _ := off.call(t, "GET", path, testSecret, ""); code != http.StatusNotFound {
			t.Errorf("no secret: %s answered %d, want 404", path, code)
		}
	}
	p := startMyimd(t, "--admin-secret", testSecret, "--pprof")
	for _, secret := range []string{"", "wrong", testSecret + "x"} {
		if code, _ := p.call(t, "GET", "/v1/admin/stats", secret, ""); code != http.StatusUnauthorized {
			t.Errorf("secret %q: %d, want 401", secret, code)
		}
		if code, _ := p.call(t, "GET", "/debug/pprof/", secret, ""); code != http.StatusUnauthorized {
			t.Errorf("pprof with secret %q: %d, want 401", secret, code)
		}
	}
	code, body := p.call(t, "GET", "/v1/admin/stats", testSecret, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"handshakes"`)) {
		t.Fatalf("stats: %d %s", code, body)
	}
	if code, _ := p.call(t, "GET", "/debug/pprof/goroutine?debug=1", testSecret, ""); code != http.StatusOK {
		t.Fatalf("pprof: %d", code)
	}
	// The refusals are in the admin stats' recent errors, behind the
	// secret; the status JSON, which wants none, holds no log lines.
	code, body = p.call(t, "GET", "/v1/admin/stats", testSecret, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte("admin call refused")) || bytes.Contains(body, []byte(testSecret)) {
		t.Fatalf("admin stats: %d %s", code, body)
	}
	code, body = p.call(t, "GET", "/v1/status", "", "")
	if code != http.StatusOK || bytes.Contains(body, []byte("admin call refused")) || bytes.Contains(body, []byte("recent_errors")) {
		t.Fatalf("status: %d %s", code, body)
	}
	// --pprof without a secret is a configuration error.
	if err := exec.Command(binPath, "--pprof", "--data-dir", t.TempDir()).Run(); err == nil {
		t.Fatal("--pprof without --admin-secret accepted")
	} else if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("--pprof without secret: %v", err)
	}
}

func TestAdminUsersAndKick(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret)
	id := p.register(t, "kim", "password-kim")
	kim := p.connect(t, "kim", newDevice(t))
	code, body := p.call(t, "GET", fmt.Sprintf("/v1/admin/users/%d", id), testSecret, "")
	var u struct {
		Name     string `json:"name"`
		Online   bool   `json:"online"`
		Sessions []struct {
			Endpoint, Center uint32
			Session          uint64
			Remote           string
		} `json:"sessions"`
	}
	if code != http.StatusOK || sonic.Unmarshal(body, &u) != nil || u.Name != "kim" || !u.Online ||
		len(u.Sessions) != 1 || u.Sessions[0].Endpoint != 1 || u.Sessions[0].Center != 1 || u.Sessions[0].Remote == "" {
		t.Fatalf("user: %d %s", code, body)
	}
	code, body = p.call(t, "GET", "/v1/admin/users/online", testSecret, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(fmt.Sprintf(`"user":%d`, id))) ||
		!bytes.Contains(body, []byte(`"total":1`)) {
		t.Fatalf("online: %d %s", code, body)
	}
	if code, _ := p.call(t, "GET", "/v1/admin/users/999", testSecret, ""); code != http.StatusNotFound {
		t.Fatalf("unknown user: %d", code)
	}
	code, body = p.call(t, "POST", fmt.Sprintf("/v1/admin/users/%d/kick", id), testSecret, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"kicked":1`)) {
		t.Fatalf("kick: %d %s", code, body)
	}
	select {
	case <-kim.conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("kicked session still open")
	}
	testenv.WaitFor(t, 5*time.Second, "user offline", func() bool {
		_, body := p.call(t, "GET", fmt.Sprintf("/v1/admin/users/%d", id), testSecret, "")
		return bytes.Contains(body, []byte(`"online":false`))
	})
	if got := p.metric(t, `myim_closed_total{listener="endpoint",reason="kicked"}`); got != 1 {
		t.Fatalf("kicked closes %v", got)
	}
}

// TestAdminBulkUsersAndTokens provisions users and tokens as the load
// generator does, and dials the endpoint with an issued token.
func TestAdminBulkUsersAndTokens(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret)
	type bulk struct {
		Users []struct {
			Name string `json:"name"`
			ID   uint64 `json:"id"`
		} `json:"users"`
		Created int `json:"created"`
	}
	run := func(first, count int) bulk {
		code, body := p.call(t, "POST", "/v1/admin/users/bulk", testSecret,
			fmt.Sprintf(`{"prefix":"bench","first":%d,"count":%d,"password":"bench-password"}`, first, count))
		var b bulk
		if code != http.StatusOK || sonic.Unmarshal(body, &b) != nil || len(b.Users) != count {
			t.Fatalf("bulk %d+%d: %d %s", first, count, code, body)
		}
		return b
	}
	a := run(1, 20)
	if a.Created != 20 || a.Users[0].Name != "bench1" || a.Users[19].Name != "bench20" {
		t.Fatalf("first batch: %+v", a)
	}
	b := run(11, 20) // 10 exist, 10 are new
	if b.Created != 10 || b.Users[0].ID != a.Users[10].ID || b.Users[19].Name != "bench30" {
		t.Fatalf("overlapping batch: %+v", b)
	}
	for _, body := range []string{
		`{"prefix":"bench","first":1,"count":100001,"password":"bench-password"}`,
		`{"prefix":"bad name","first":1,"count":1,"password":"bench-password"}`,
		`{"prefix":"bench","first":1,"count":1,"password":"short"}`,
	} {
		if code, _ := p.call(t, "POST", "/v1/admin/users/bulk", testSecret, body); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", body, code)
		}
	}
	// A user made in bulk logs in with the shared password.
	if _, err := client.Login(context.Background(), p.cfg(t, newDevice(t)), p.addrs["login"], "bench1",
		[]byte("bench-password")); err != nil {
		t.Fatalf("login as a bulk user: %v", err)
	}

	dev := newDevice(t)
	ids := []uint64{a.Users[0].ID, a.Users[1].ID}
	req, _ := sonic.Marshal(map[string]any{"users": ids,
		"device_key": base64.StdEncoding.EncodeToString(dev.PublicKey().Bytes()), "ttl": "1h"})
	code, body := p.call(t, "POST", "/v1/admin/tokens", testSecret, string(req))
	var toks struct {
		Tokens []string `json:"tokens"`
		Srv    []struct {
			Addr string `json:"addr"`
			Key  []byte `json:"key"`
		} `json:"servers"`
	}
	if code != http.StatusOK || sonic.Unmarshal(body, &toks) != nil || len(toks.Tokens) != 2 || len(toks.Srv) != 1 {
		t.Fatalf("tokens: %d %s", code, body)
	}
	ctx := context.Background()
	var conns []*client.Conn
	for i, tok := range toks.Tokens {
		c, err := client.Dial(ctx, p.cfg(t, dev), p.addrs["endpoint"], toks.Srv[0].Key, tok)
		if err != nil {
			t.Fatalf("dial with issued token: %v", err)
		}
		defer c.Close()
		if c.UserID() != ids[i] {
			t.Fatalf("session user %d, want %d", c.UserID(), ids[i])
		}
		conns = append(conns, c)
	}
	if _, err := conns[0].SendMsg(ids[1], frame.QoS1, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m := frame.Msg(recvCmd(t, conns[1], frame.CmdMsg).Body); string(m.Content()) != "hi" {
		t.Fatalf("got %q", m.Content())
	}
	for _, body := range []string{
		`{"users":[1],"device_key":"AAAA","ttl":"1h"}`,
		`{"users":[],"device_key":"` + base64.StdEncoding.EncodeToString(dev.PublicKey().Bytes()) + `"}`,
		`{"users":[1],"device_key":"` + base64.StdEncoding.EncodeToString(dev.PublicKey().Bytes()) + `","ttl":"1000h"}`,
	} {
		if code, _ := p.call(t, "POST", "/v1/admin/tokens", testSecret, body); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", body, code)
		}
	}
}

// TestAdminDrain asks connected clients to move and refuses new sessions.
func TestAdminDrain(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret)
	p.register(t, "dan", "password-dan")
	p.register(t, "dot", "password-dot")
	dan := p.connect(t, "dan", newDevice(t))
	dot := p.connect(t, "dot", newDevice(t))
	code, body := p.call(t, "POST", "/v1/admin/drain", testSecret, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"notified":2`)) {
		t.Fatalf("drain: %d %s", code, body)
	}
	for _, u := range []*user{dan, dot} {
		n := frame.Notice(recvCmd(t, u.conn, frame.CmdNotice).Body)
		if n.Code() != frame.NoticeMove {
			t.Fatalf("notice code %d, want move", n.Code())
		}
	}
	s := dan.login.Servers[0]
	_, err := client.Dial(context.Background(), p.cfg(t, dan.dev), dan.login.EndpointAddr(s), s.Key, dan.login.Token)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != frame.ErrCodeRetry {
		t.Fatalf("new session while draining: %v", err)
	}
	if code, _ := p.call(t, "GET", "/readyz", "", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %d", code)
	}
	if st := p.status(t); !st.Draining || st.Sessions != 2 {
		t.Fatalf("status while draining: %+v", st)
	}
	// Sessions already here keep working until their clients move.
	if _, err := dan.conn.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// chromium returns the browser's path, skipping the test without it
// (failing under CI=true, where it must be installed).
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "chromium not installed (apt-get install chromium)")
	return ""
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return out
}

var figureRe = regexp.MustCompile(`id="(connections|sessions|delivered)">([^<]*)<`)

// TestStatusPageInChromium loads the status page in headless Chromium and
// checks that it rendered the server's real figures. With
// MYIM_STATUS_SCREENSHOT set, it also keeps traffic flowing for a while and
// saves a screenshot there (docs/status.png is made this way).
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	p := startMyimd(t)
	p.register(t, "sue", "password-sue")
	p.register(t, "sam", "password-sam")
	sue := p.connect(t, "sue", newDevice(t))
	sam := p.connect(t, "sam", newDevice(t))
	// A session is routed once the center has taken its announcement,
	// which may come after Connect returns: QoS 0 probes until one lands.
	testenv.WaitFor(t, 10*time.Second, "sam routed", func() bool {
		_, _ = sue.conn.SendMsg(sam.id, frame.QoS0, []byte("probe"))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := sam.conn.Recv(ctx, func(f client.Frame) bool { return f.Cmd == frame.CmdMsg })
		return err == nil
	})
	const n = 7
	for i := 0; i < n; i++ {
		_, _ = sue.conn.SendMsg(sam.id, frame.QoS0, []byte("x"))
	}
	for i := 0; i < n; i++ {
		recvCmd(t, sam.conn, frame.CmdMsg)
	}
	// Login connections close after their answer; wait for the two
	// sessions alone.
	testenv.WaitFor(t, 10*time.Second, "two connections", func() bool { return p.status(t).conns() == 2 })
	url := "http://" + p.addrs["admin"] + "/"
	if shot := os.Getenv("MYIM_STATUS_SCREENSHOT"); shot != "" {
		abs, _ := filepath.Abs(shot)
		stop := make(chan struct{})
		go func() { // a varying trickle of QoS 1 messages, so that the chart has a shape
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(4+i/40%12) * time.Millisecond):
					_, _ = sue.conn.SendMsg(sam.id, frame.QoS1, []byte("x"))
				}
			}
		}()
		go func() { // sam acks, so that delivery latency is measured
			for {
				f, err := sam.conn.Recv(context.Background(), func(f client.Frame) bool { return f.Cmd == frame.CmdMsg })
				if err != nil {
					return
				}
				m := frame.Msg(f.Body)
				_ = sam.conn.Ack(m.MID(), m.From())
			}
		}()
		time.Sleep(20 * time.Second)
		runChromium(t, bin, "--screenshot="+abs, "--window-size=1000,700", url)
		close(stop)
		time.Sleep(500 * time.Millisecond)
		t.Logf("screenshot saved to %s", abs)
	}
	dom := runChromium(t, bin, "--dump-dom", url)
	figs := map[string]string{}
	for _, m := range figureRe.FindAllSubmatch(dom, -1) {
		figs[string(m[1])] = strings.ReplaceAll(string(m[2]), ",", "") // thousands separators
	}
	st := p.status(t)
	want := map[string]string{"connections": strconv.Itoa(st.conns()), "sessions": strconv.Itoa(st.Sessions),
		"delivered": strconv.FormatUint(st.Delivered, 10)}
	if st.Sessions != 2 || st.Delivered < n {
		t.Fatalf("status %+v", st)
	}
	for k, v := range want {
		if figs[k] != v {
			t.Errorf("page shows %s = %q, /v1/status says %s", k, figs[k], v)
		}
	}
	if !bytes.Contains(dom, []byte(">live<")) || !bytes.Contains(dom, []byte("(this)")) {
		t.Errorf("page state or node list missing:\n%s", dom)
	}
}
