package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// TestSIGTERMDrainsEndpoint sends SIGTERM to an endpoint process under a
// QoS 1 stream: readiness turns 503 at once, new sessions are refused, the
// clients are told to move, the SDK session lands on the other endpoint,
// every message acked to the sender is shown exactly once, and the process
// exits 0 once the grace is over (one client here ignores the notice).
func TestSIGTERMDrainsEndpoint(t *testing.T) {
	const secret = "sigterm-secret"
	// The first node's endpoint comes second in the server list, so that
	// xia starts on the endpoint process that is stopped.
	first, second := startCluster(t, "--admin-secret", secret, "--priority", "10")
	if !strings.Contains(second.data, "an endpoint keeps no store") || !strings.Contains(first.data, "embedded store") {
		t.Errorf("data lines: first %q, endpoint %q", first.data, second.data)
	}
	for _, name := range []string{"wes", "xia", "yan"} {
		first.register(t, name, "password-"+name)
	}
	wes := &user{dev: newDevice(t)}
	connectTo(t, first, wes, loginBoth(t, first, "wes", wes), 1)
	// yan holds a bare connection that does not follow the move notice.
	yan := &user{dev: newDevice(t)}
	connectTo(t, first, yan, loginBoth(t, first, "yan", yan), 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xia, sess, shown := followingUser(t, ctx, first, "xia", 2)

	const total = 200
	texts := map[uint64]string{}
	ackCh := ackedCIDs(wes.conn, total)
	var signalled time.Time
	for i := 0; i < total; i++ {
		text := fmt.Sprintf("m%03d", i)
		cid, err := wes.conn.SendMsg(xia.id, frame.QoS1, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		texts[cid] = text
		if i == total/4 {
			if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			signalled = time.Now()
			testenv.WaitFor(t, 3*time.Second, "readyz 503 after SIGTERM", func() bool {
				code, _ := second.call(t, "GET", "/readyz", "", "")
				return code == http.StatusServiceUnavailable
			})
			s := yan.login.Servers[0]
			for _, srv := range yan.login.Servers {
				if srv.ID == 2 {
					s = srv
				}
			}
			_, err := client.Dial(context.Background(), first.cfg(t, newDevice(t)), yan.login.EndpointAddr(s), s.Key, yan.login.Token)
			var se *client.ServerError
			if !errors.As(err, &se) || se.Code != frame.ErrCodeRetry {
				t.Fatalf("new session on the stopping endpoint: %v", err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := frame.Notice(recvCmd(t, yan.conn, frame.CmdNotice).Body); n.Code() != frame.NoticeMove {
		t.Fatalf("yan got notice %d, want move", n.Code())
	}
	acked := waitAcked(t, ackCh, texts, second)
	testenv.WaitFor(t, 30*time.Second, "every acked message shown", func() bool {
		shown.mu.Lock()
		defer shown.mu.Unlock()
		return len(shown.seen) >= total
	})
	shown.mu.Lock()
	for _, text := range acked {
		if shown.seen[text] != 1 {
			t.Errorf("%s shown %d times", text, shown.seen[text])
		}
	}
	shown.mu.Unlock()
	select {
	case <-second.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the endpoint did not exit after its grace")
	}
	if code := second.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0\n%s", code, second.out)
	}
	took := time.Since(signalled)
	t.Logf("endpoint exited %v after SIGTERM (grace 5s, one client staying to the end)", took.Round(time.Millisecond))
	if sess.Renewals() < 1 {
		t.Fatal("xia never moved")
	}
	testenv.WaitFor(t, 10*time.Second, "xia's session on endpoint 1", func() bool {
		code, body := first.call(t, "GET", fmt.Sprintf("/v1/admin/users/%d", xia.id), secret, "")
		var u struct {
			Sessions []struct {
				Endpoint uint32 `json:"endpoint"`
			} `json:"sessions"`
		}
		return code == http.StatusOK && sonic.Unmarshal(body, &u) == nil && len(u.Sessions) == 1 && u.Sessions[0].Endpoint == 1
	})
}

// TestDrainUndone drains an endpoint through the admin API and undoes it:
// readiness and new sessions come back, and the drain state says so.
func TestDrainUndone(t *testing.T) {
	p := startMyimd(t, "--admin-secret", testSecret)
	p.register(t, "una", "password-una")
	una := &user{dev: newDevice(t)}
	if code, body := p.call(t, "POST", "/v1/admin/drain", testSecret, `{"draining":true}`); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if code, _ := p.call(t, "GET", "/readyz", "", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %d", code)
	}
	cfg := p.cfg(t, una.dev)
	res, err := client.Login(context.Background(), cfg, p.addrs["login"], "una", []byte("password-una"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Connect(context.Background(), cfg, res, res.Servers[0]); err == nil {
		t.Fatal("session accepted while draining")
	}
	code, body := p.call(t, "POST", "/v1/admin/drain", testSecret, `{"draining":false}`)
	if code != 200 || string(body) == "" || !contains(body, `"draining":false`) {
		t.Fatalf("undrain: %d %s", code, body)
	}
	if code, body := p.call(t, "GET", "/v1/admin/drain", testSecret, ""); code != 200 || !contains(body, `"draining":false`) {
		t.Fatalf("drain state after undrain: %d %s", code, body)
	}
	if code, _ := p.call(t, "GET", "/readyz", "", ""); code != http.StatusOK {
		t.Fatalf("readyz after undrain: %d", code)
	}
	c, err := client.Connect(context.Background(), cfg, res, res.Servers[0])
	if err != nil {
		t.Fatalf("session after undrain: %v", err)
	}
	c.Close()
	if code, _ := p.call(t, "POST", "/v1/admin/drain", testSecret, `{"draining":"maybe"}`); code != http.StatusBadRequest {
		t.Fatalf("bad drain body: %d", code)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// A second SIGTERM during the drain stops the process at once, long before
// its grace would: exit status 1 and "stopped at once" in its log. A
// connected client that never moves keeps the drain waiting until then.
func TestSecondSIGTERMStopsAtOnce(t *testing.T) {
	p := startMyimd(t, "--shutdown-grace", "10m")
	p.register(t, "sam", "password-sam")
	sam := p.connect(t, "sam", newDevice(t))
	defer sam.conn.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the drain started", func() bool { return strings.Contains(p.out.String(), "draining") })
	select {
	case <-p.done:
		t.Fatalf("myimd stopped on the first SIGTERM with a session still connected: %s", p.out.String())
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The grace is 10 minutes: ending within this bound can only be the
	// second signal's doing.
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("myimd still running after the second SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d after a forced stop, want 1", code)
	}
	if !strings.Contains(p.out.String(), "stopped at once") {
		t.Errorf("the log does not say it stopped at once: %s", p.out.String())
	}
}
