package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
)

// Issue 11, attack 3: with the endpoint and login listeners together
// allowed more connections than the process may open, a flood ran the
// process out of file descriptors; gnet then stopped the listener for good
// while /healthz said OK. Now the listeners' caps share RLIMIT_NOFILE
// minus a reserve, the HTTP API has a connection cap and timeouts, and a
// failed accept is retried. myimd runs under `ulimit -n 256` and is
// flooded from the login, endpoint and HTTP sides at once; once the flood
// stops, a new client logs in and messages.
func TestFileDescriptorFloodIsSurvived(t *testing.T) {
	p := startMyimdVia(t, t.TempDir(), []string{"sh", "-c", `ulimit -n 256 && exec "$0" "$@"`})
	p.register(t, "alice", "password-alice")
	p.register(t, "bob", "password-bob")

	// The flood: each side keeps opening connections that never
	// authenticate (HTTP ones send half a request) for three seconds, and
	// holds them, up to 1,500 a side (six times the server's file limit).
	const flood, perSide = 3 * time.Second, 1500
	var mu sync.Mutex
	var held []net.Conn
	counts := map[string]int{}
	var wg sync.WaitGroup
	for _, side := range []string{"login", "endpoint", "http"} {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(side string) {
				defer wg.Done()
				end := time.Now().Add(flood)
				for time.Now().Before(end) {
					mu.Lock()
					enough := counts[side] >= perSide
					mu.Unlock()
					if enough {
						return
					}
					c, err := net.DialTimeout("tcp", p.addrs[side], time.Second)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					if side == "http" {
						_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
					}
					mu.Lock()
					held = append(held, c)
					counts[side]++
					mu.Unlock()
				}
			}(side)
		}
	}
	wg.Wait()
	t.Logf("flood held %d connections (login %d, endpoint %d, http %d) against a limit of 256 files",
		len(held), counts["login"], counts["endpoint"], counts["http"])
	for _, c := range held {
		c.Close()
	}

	// After the flood: alive, ready, and serving a new client.
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no login and message within 60 s after the flood: %v\nlog:\n%s", lastErr, p.out.String())
		}
		if lastErr = loginAndMessage(t, p); lastErr == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := http.Get("http://" + p.addrs["http"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz %d after the flood", resp.StatusCode)
	}
	if p.cmd.ProcessState != nil {
		t.Fatal("myimd exited")
	}
}

// loginAndMessage logs alice and bob in, and alice sends bob a QoS 1
// message that bob must receive.
func loginAndMessage(t *testing.T, p *proc) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns := make([]*client.Conn, 2)
	for i, name := range []string{"alice", "bob"} {
		cfg := p.cfg(t, newDevice(t))
		cfg.DialTimeout = 5 * time.Second
		res, err := client.Login(ctx, cfg, p.addrs["login"], name, []byte("password-"+name))
		if err != nil {
			return fmt.Errorf("login %s: %w", name, err)
		}
		c, err := client.Connect(ctx, cfg, res, res.Servers[0])
		if err != nil {
			return fmt.Errorf("connect %s: %w", name, err)
		}
		defer c.Close()
		conns[i] = c
	}
	if _, err := conns[0].SendMsg(conns[1].UserID(), frame.QoS1, []byte("after the flood")); err != nil {
		return err
	}
	_, err := conns[1].Recv(ctx, func(f client.Frame) bool {
		return f.Cmd == frame.CmdMsg && string(frame.Msg(f.Body).Content()) == "after the flood"
	})
	return err
}
