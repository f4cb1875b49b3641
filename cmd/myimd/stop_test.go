package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/myim/myim/client"
	"github.com/myim/myim/internal/testenv"
)

// afterStop returns what a process logged once it began to stop.
func (p *proc) afterStop() string {
	log := p.out.String()
	if i := strings.Index(log, "msg=draining"); i >= 0 {
		return log[i:]
	}
	return log
}

// TestCleanStopIsQuiet stops two linked centers, each with a session, and
// an endpoint process cleanly: none of them warns while stopping (no "use
// of closed network connection"), and no registry or route key is left in
// Redis once all have stopped.
func TestCleanStopIsQuiet(t *testing.T) {
	first, second, _ := startCenters(t)
	redis := first.flags("--redis-addr")[1]
	prefix := first.flags("--redis-prefix")[1]
	ep := startMyimdDir(t, t.TempDir(), "--role", "endpoint", "--server-id", "3", "--join-file", joinFile(t, first.dir, "endpoint", 3),
		"--join-url", "https://"+first.addrs["join"], "--center-link", first.addrs["center"],
		"--redis-addr", redis, "--redis-prefix", prefix)
	first.register(t, "qin", "password-qin")
	first.register(t, "qiu", "password-qiu")
	qin := first.connect(t, "qin", newDevice(t))
	qiu := first.connect(t, "qiu", newDevice(t))
	qin.conn.Close()
	qiu.conn.Close()
	for _, p := range []*proc{ep, second, first} {
		if code := p.stop(t); code != 0 {
			t.Fatalf("exit %d:\n%s", code, p.out)
		}
	}
	for _, p := range []*proc{second, first} {
		for _, l := range strings.Split(p.afterStop(), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") ||
				strings.Contains(l, "use of closed network connection") {
				t.Errorf("logged while stopping cleanly: %s", l)
			}
		}
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redis}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := c.Do(ctx, c.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left in Redis after every node stopped: %v", keys)
	}
}

// TestLoginLogs wants failed logins at WARN with the source address and
// the reason, at most ten lines for a storm of thirty, and successful
// logins only at DEBUG, counted in myim_handshakes_total.
func TestLoginLogs(t *testing.T) {
	for _, level := range []string{"info", "debug"} {
		p := startMyimd(t, "--log-level", level)
		p.register(t, "lou", "password-lou")
		ctx := context.Background()
		dev := newDevice(t)
		// First a good login (the storm below blocks the address).
		p.connect(t, "lou", newDevice(t))
		testenv.WaitFor(t, 5*time.Second, "the login counted", func() bool {
			return p.metric(t, `myim_handshakes_total{role="login"}`) == 1
		})
		cfg := p.cfg(t, dev)
		cfg.LoginRetry = -1 // the refusals are what is logged, not waited out
		for i := 0; i < 30; i++ {
			if _, err := client.Login(ctx, cfg, p.addrs["login"], "lou", []byte("wrong-password")); err == nil {
				t.Fatal("wrong password accepted")
			}
		}
		log := p.out.String()
		failed := 0
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "msg=\"login failed\"") {
				failed++
				if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "addr=127.0.0.1") ||
					!strings.Contains(l, "reason=") || !strings.Contains(l, "user=lou") {
					t.Errorf("login failure line lacks level, address, reason or user: %s", l)
				}
			}
		}
		if failed == 0 || failed > 10 {
			t.Errorf("%s: %d lines for 30 failed logins, want 1 to 10 (rate-limited):\n%s", level, failed, log)
		}
		ok := strings.Contains(log, "msg=login ")
		if ok != (level == "debug") {
			t.Errorf("--log-level %s: successful login logged: %v\n%s", level, ok, log)
		}
	}
}
