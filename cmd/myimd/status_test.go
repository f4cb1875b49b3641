package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

var nodeRowRe = regexp.MustCompile(`<tr><td>(\d+)(?: \(this\))?</td><td>(\w+)</td><td[^>]*>(\w+)</td><td class="n">(\d+)</td><td class="n">\d+</td><td class="n">([^<]+)</td>`)

// TestStatusPageShowsCluster runs a three-process cluster (the first node,
// two endpoint processes) and loads the first node's status page in
// headless Chromium: it lists the three nodes from the registry with role,
// state, sessions and RSS, and its chart has both axes. With
// MYIM_STATUS_SCREENSHOT set it sends traffic for a while and saves a
// screenshot there (docs/status.png is made this way).
func TestStatusPageShowsCluster(t *testing.T) {
	bin := chromium(t)
	first, second := startCluster(t)
	third := startMyimdDir(t, t.TempDir(), "--role", "endpoint", "--server-id", "3",
		"--join-file", joinFile(t, first.dir, "endpoint", 3), "--join-url", "https://"+first.addrs["join"],
		"--center-link", first.addrs["center"], "--redis-addr", first.flags("--redis-addr")[1],
		"--redis-prefix", first.flags("--redis-prefix")[1])
	_ = third
	first.register(t, "sal", "password-sal")
	first.register(t, "sid", "password-sid")
	sal, sid := &user{dev: newDevice(t)}, &user{dev: newDevice(t)}
	connectTo(t, first, sal, loginBoth3(t, first, "sal", sal), 2)
	connectTo(t, first, sid, loginBoth3(t, first, "sid", sid), 3)
	url := "http://" + first.addrs["admin"] + "/"
	if shot := os.Getenv("MYIM_STATUS_SCREENSHOT"); shot != "" {
		abs, _ := filepath.Abs(shot)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { // sid acks, so that delivery latency is measured
			for {
				f, err := sid.conn.Recv(ctx, func(f client.Frame) bool { return f.Cmd == frame.CmdMsg })
				if err != nil {
					return
				}
				m := frame.Msg(f.Body)
				_ = sid.conn.Ack(m.MID(), m.From())
			}
		}()
		go func() { // a varying trickle of QoS 1 messages, so that the chart has a shape
			for i := 0; ctx.Err() == nil; i++ {
				time.Sleep(time.Duration(3+i/50%10) * time.Millisecond)
				_, _ = sal.conn.SendMsg(sid.id, frame.QoS1, []byte("x"))
			}
		}()
		time.Sleep(25 * time.Second)
		runChromium(t, bin, "--screenshot="+abs, "--window-size=1200,900", url)
		cancel()
		t.Logf("screenshot saved to %s", abs)
	}
	// Nodes publish their figures every 5 s: wait for the ones made after
	// the two sessions opened.
	var dom string
	testenv.WaitFor(t, 45*time.Second, "three nodes on the page, the endpoints with a session each", func() bool {
		dom = string(runChromium(t, bin, "--dump-dom", url))
		rows := nodeRowRe.FindAllStringSubmatch(dom, -1)
		with := 0
		for _, m := range rows {
			if (m[1] == "2" || m[1] == "3") && m[4] == "1" {
				with++
			}
		}
		return len(rows) == 3 && with == 2
	})
	want := map[string]string{"1": "all", "2": "endpoint", "3": "endpoint"}
	for _, m := range nodeRowRe.FindAllStringSubmatch(dom, -1) {
		id, role, state, sessions, rss := m[1], m[2], m[3], m[4], m[5]
		if want[id] != role || state != "serving" || !strings.HasSuffix(rss, "MiB") {
			t.Errorf("node %s: role %s, state %s, RSS %s", id, role, state, rss)
		}
		if (id == "2" || id == "3") && sessions != "1" {
			t.Errorf("node %s shows %s sessions, want 1", id, sessions)
		}
		delete(want, id)
	}
	if len(want) > 0 {
		t.Errorf("nodes missing from the page: %v\n%s", want, dom)
	}
	for _, axis := range []string{">messages/s<", ">seconds ago<", ">-60<", ">now<", ">0<"} {
		if !strings.Contains(dom, axis) {
			t.Errorf("chart has no %s", axis)
		}
	}
	_ = second
}

// loginBoth3 logs a user in and waits until the server list has the three
// endpoints.
func loginBoth3(t *testing.T, p *proc, name string, u *user) *client.LoginResult {
	t.Helper()
	var res *client.LoginResult
	testenv.WaitFor(t, 20*time.Second, "three endpoints in the server list", func() bool {
		var err error
		res, err = client.Login(context.Background(), p.cfg(t, u.dev), p.addrs["login"], name, []byte("password-"+name))
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		return len(res.Servers) == 3
	})
	return res
}
