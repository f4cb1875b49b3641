package main

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// dialUser logs in and connects with extra SDK options.
func (p *proc) dialUser(t testing.TB, name string, u *user, opt func(*client.Config)) *client.Conn {
	t.Helper()
	ctx := context.Background()
	cfg := p.cfg(t, u.dev)
	opt(&cfg)
	res, err := client.Login(ctx, cfg, p.addrs["login"], name, []byte("password-"+name))
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	s := res.Servers[0]
	c, err := client.Dial(ctx, cfg, res.EndpointAddr(s), s.Key, res.Token)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	u.id, u.login, u.conn = res.UserID, res, c
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCrashLosesNothingAcked kills myimd with SIGKILL in the middle of a
// QoS 1 stream and restarts it on the same data: every message the server
// had acked to the sender reaches the recipient exactly once, in send order.
func TestCrashLosesNothingAcked(t *testing.T) {
	dir := t.TempDir()
	p := startMyimdDir(t, dir)
	p.register(t, "sam", "password-sam")
	p.register(t, "rob", "password-rob")
	sam := &user{dev: newDevice(t)}
	rob := &user{dev: newDevice(t)}
	dedupe := client.NewDedupe(0)
	robOpts := func(c *client.Config) { c.AutoAck = true; c.Dedupe = dedupe }
	p.dialUser(t, "sam", sam, func(*client.Config) {})
	p.dialUser(t, "rob", rob, robOpts)

	var mu sync.Mutex
	arrivals := map[uint64]int{} // cid -> times shown to rob
	var order []uint64           // cids in the order rob saw them first
	fetched := make(chan frame.Fetch, 16)
	collect := func(c *client.Conn) {
		for f := range c.Frames() {
			if f.Cmd == frame.CmdFetch {
				fetched <- frame.Fetch(f.Body)
			}
			if f.Cmd != frame.CmdMsg {
				continue
			}
			m := frame.Msg(f.Body)
			mu.Lock()
			if arrivals[m.CID()] == 0 {
				order = append(order, m.CID())
			}
			arrivals[m.CID()]++
			mu.Unlock()
		}
	}
	go collect(rob.conn)

	// sam streams with a window of 32 unacked; the content is the index.
	const total, window = 3000, 32
	cids := make([]uint64, total)
	acked := make(map[uint64]bool)
	sent := 0
	ackCh := make(chan uint64, total)
	go func() {
		for f := range sam.conn.Frames() {
			if f.Cmd == frame.CmdAck {
				a := frame.Ack(f.Body)
				if s := a.Status(); s == frame.AckDelivered || s == frame.AckStored || s == frame.AckDuplicate {
					ackCh <- a.CID()
				}
			}
		}
		close(ackCh)
	}()
	killAt := total / 3
	for len(acked) < killAt {
		for sent < total && sent-len(acked) < window {
			cids[sent] = sam.conn.NewCID()
			var body [8]byte
			binary.BigEndian.PutUint64(body[:], uint64(sent))
			if err := sam.conn.SendMsgCID(frame.CmdMsg, rob.id, frame.QoS1, cids[sent], body[:]); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		select {
		case cid := <-ackCh:
			acked[cid] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("no ack after %d", len(acked))
		}
	}
	p.kill() // mid-stream: up to `window` messages are in flight
	for cid := range ackCh {
		acked[cid] = true // acks that were already on the wire count too
	}
	t.Logf("killed after %d sent, %d acked", sent, len(acked))

	p = startMyimdDir(t, dir)
	p.dialUser(t, "sam", sam, func(*client.Config) {})
	p.dialUser(t, "rob", rob, robOpts)
	go collect(rob.conn)
	// rob fetches what was stored for it until the store is empty.
	for {
		req, _ := rob.conn.Fetch(frame.FetchP2P, 1, 500)
		var more bool
	wait:
		for {
			select {
			case fe := <-fetched:
				if fe.Req() == req {
					more = fe.Flags()&frame.FetchMore != 0
					break wait
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no FETCH answer")
			}
		}
		if !more {
			break
		}
	}
	// sam resends everything not acked, with the original ids, then the
	// rest of the stream.
	resend := 0
	ackCh = make(chan uint64, total)
	go func() {
		for f := range sam.conn.Frames() {
			if f.Cmd == frame.CmdAck {
				ackCh <- frame.Ack(f.Body).CID()
			}
		}
	}()
	for i := 0; i < total; i++ {
		if i < sent && acked[cids[i]] {
			continue
		}
		if i >= sent {
			cids[i] = sam.conn.NewCID()
		}
		var body [8]byte
		binary.BigEndian.PutUint64(body[:], uint64(i))
		if err := sam.conn.SendMsgCID(frame.CmdMsg, rob.id, frame.QoS1, cids[i], body[:]); err != nil {
			t.Fatal(err)
		}
		resend++
	}
	deadline := time.After(60 * time.Second)
	for got := 0; got < resend; got++ {
		select {
		case <-ackCh:
		case <-deadline:
			t.Fatalf("only %d of %d resends acked", got, resend)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "every message shown", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrivals) == total
	})
	mu.Lock()
	defer mu.Unlock()
	for i, cid := range cids {
		if acked[cid] && arrivals[cid] != 1 {
			t.Errorf("message %d was acked before the crash but shown %d times", i, arrivals[cid])
		}
	}
	// Per sender, in send order: the acked messages appear in the order
	// sent.
	last := -1
	index := make(map[uint64]int, total)
	for i, cid := range cids {
		index[cid] = i
	}
	for _, cid := range order {
		if !acked[cid] {
			continue
		}
		if i := index[cid]; i < last {
			t.Fatalf("acked message %d shown after %d", i, last)
		} else {
			last = i
		}
	}
}
