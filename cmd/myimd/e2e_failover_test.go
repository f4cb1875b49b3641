package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// TestEndpointMovesToAnotherCenter runs two centers and an endpoint process
// linked to the first with the second as its fallback. The first center is
// killed: the endpoint links to the second, announces its sessions there,
// and its users go on exchanging messages with users of the second center.
func TestEndpointMovesToAnotherCenter(t *testing.T) {
	first, second, _ := startCenters(t)
	redisArgs := second.flags("--redis-addr", "--redis-prefix")
	startMyimdDir(t, t.TempDir(), append([]string{"--role", "endpoint", "--server-id", "3",
		"--join-file", joinFile(t, first.dir, "endpoint", 3), "--join-url", "https://" + first.addrs["join"],
		"--center-link", first.addrs["center"] + "," + second.addrs["center"]}, redisArgs...)...)

	first.register(t, "yan", "password-yan")
	first.register(t, "zed", "password-zed")
	yan, zed := &user{dev: newDevice(t)}, &user{dev: newDevice(t)}
	// yan on the endpoint process, zed on the second center's own endpoint.
	var res *client.LoginResult
	testenv.WaitFor(t, 20*time.Second, "three endpoints listed", func() bool {
		res = loginAt(t, first, second, "yan", yan)
		return len(res.Servers) == 3
	})
	connectTo(t, first, yan, res, 3)
	connectTo(t, first, zed, loginAt(t, first, second, "zed", zed), 2)

	// exchange sends one QoS 1 message each way and reports whether both
	// were received and acked as delivered within a few seconds.
	exchange := func(round string) bool {
		t.Helper()
		for _, pair := range [][2]*user{{yan, zed}, {zed, yan}} {
			from, to := pair[0], pair[1]
			text := fmt.Sprintf("%s from %d", round, from.id)
			cid, err := from.conn.SendMsg(to.id, frame.QoS1, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			f, err := to.conn.Recv(ctx, func(f client.Frame) bool {
				return f.Cmd == frame.CmdMsg && string(frame.Msg(f.Body).Content()) == text
			})
			if err != nil {
				cancel()
				return false
			}
			m := frame.Msg(f.Body)
			_ = to.conn.Ack(m.MID(), m.From())
			_, err = from.conn.Recv(ctx, func(f client.Frame) bool {
				return f.Cmd == frame.CmdAck && frame.Ack(f.Body).CID() == cid
			})
			cancel()
			if err != nil {
				return false
			}
		}
		return true
	}
	if !exchange("before") {
		t.Fatal("no exchange before the kill")
	}
	first.kill()
	// The endpoint notices the dead link within its heartbeat timeout and
	// links to the second center; until then a send waits in its queue.
	round := 0
	testenv.WaitFor(t, 40*time.Second, "messages across the moved endpoint", func() bool {
		round++
		return exchange(fmt.Sprintf("after %d", round))
	})
}

// loginAt logs a user in at p's login listener, pinning the root of the
// cluster's first node, root (whose data dir keeps root.pub).
func loginAt(t *testing.T, root, p *proc, name string, u *user) *client.LoginResult {
	t.Helper()
	res, err := client.Login(context.Background(), root.cfg(t, u.dev), p.addrs["login"], name, []byte("password-"+name))
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return res
}
