package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// A device that was pushed messages and lost its connection before its
// receipts reached the server gets them again on the next connection
// (stored, fetched): the Dedupe it shares across connections drops them,
// and what comes after is shown.
func TestDedupeP2PAcrossReconnect(t *testing.T) {
	r := startRig(t)
	r.addUser("amy")
	ben := r.addUser("ben")
	a := r.connect(r.cfg(), "amy")
	bcfg := r.cfg()
	bcfg.Dedupe = client.NewDedupe(0)
	b1 := r.connect(bcfg, "ben") // no AutoAck: its receipts are never sent
	for i := 1; i <= 3; i++ {
		if _, err := a.SendMsg(ben, frame.QoS1, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		if got := string(frame.Msg(recv(t, b1, frame.CmdMsg).Body).Content()); got != fmt.Sprintf("m%d", i) {
			t.Fatalf("push %d: %q", i, got)
		}
	}
	b1.Close()
	for i := 0; i < 3; i++ { // the session left unacked: stored for the next one
		if s := frame.Ack(recv(t, a, frame.CmdAck).Body).Status(); s != frame.AckStored {
			t.Fatalf("ack status %d, want stored", s)
		}
	}
	bcfg.AutoAck, bcfg.AutoFetch = true, true
	b2 := r.connect(bcfg, "ben")
	testenv.WaitFor(t, 20*time.Second, "the stored copies dropped as seen", func() bool { return b2.Duplicates() == 3 })
	if _, err := a.SendMsg(ben, frame.QoS1, []byte("m4")); err != nil {
		t.Fatal(err)
	}
	if got := string(frame.Msg(recv(t, b2, frame.CmdMsg).Body).Content()); got != "m4" {
		t.Fatalf("first message shown after the reconnect: %q, want m4", got)
	}
}

// The same for a group: the messages a device was pushed and never
// acknowledged come again from the group fetch of its next connection and
// are dropped; the next one is shown in sequence.
func TestDedupeGroupAcrossReconnect(t *testing.T) {
	r := startRig(t)
	ctx := context.Background()
	gia := r.addUser("gia")
	gus := r.addUser("gus")
	group, err := r.store.CreateGroup(ctx, gia, "g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.JoinGroup(ctx, group, gus); err != nil {
		t.Fatal(err)
	}
	a := r.connect(r.cfg(), "gia")
	bcfg := r.cfg()
	bcfg.Dedupe = client.NewDedupe(0)
	b1 := r.connect(bcfg, "gus")
	send := func(text string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := a.SendWait(ctx, frame.CmdGroupMsg, group, 0, []byte(text)); err != nil {
			t.Fatalf("send %s: %v", text, err)
		}
	}
	for i := 1; i <= 3; i++ {
		send(fmt.Sprintf("g%d", i))
	}
	for i := 1; i <= 3; i++ {
		if got := string(frame.Msg(recv(t, b1, frame.CmdGroupMsg).Body).Content()); got != fmt.Sprintf("g%d", i) {
			t.Fatalf("push %d: %q", i, got)
		}
	}
	b1.Close()
	bcfg.AutoAck, bcfg.AutoFetch = true, true
	b2 := r.connect(bcfg, "gus")
	testenv.WaitFor(t, 20*time.Second, "the fetched copies dropped as seen", func() bool { return b2.Duplicates() == 3 })
	send("g4")
	if got := string(frame.Msg(recv(t, b2, frame.CmdGroupMsg).Body).Content()); got != "g4" {
		t.Fatalf("first group message shown after the reconnect: %q, want g4", got)
	}
}

// Two sessions whose connections the network drops twice while one sends
// to the other: every message the sender had acknowledged is shown once.
func TestSessionsShowEachMessageOnceAcrossCuts(t *testing.T) {
	r := startRig(t)
	r.addUser("sam")
	tia := r.addUser("tia")
	sa := r.runSession(r.cfg(), "sam")
	bcfg := r.cfg()
	bcfg.AutoAck, bcfg.AutoFetch, bcfg.Dedupe = true, true, client.NewDedupe(0)
	sb := r.runSession(bcfg, "tia")
	waitConn(t, sa, nil)
	waitConn(t, sb, nil)

	var mu sync.Mutex
	shown := map[string]int{}
	var dups uint64
	ctx, cancel := context.WithCancel(context.Background())
	collected := make(chan struct{})
	go func() { // every frame of every connection of tia's session
		defer close(collected)
		var last *client.Conn
		for {
			c, changed := sb.Conn()
			if c == last {
				select {
				case <-changed:
					continue
				case <-ctx.Done():
					return
				}
			}
			last = c
			for f := range frames(ctx, c) {
				if f.Cmd == frame.CmdMsg {
					mu.Lock()
					shown[string(frame.Msg(f.Body).Content())]++
					mu.Unlock()
				}
			}
			mu.Lock()
			dups += c.Duplicates()
			mu.Unlock()
			if ctx.Err() != nil {
				return
			}
		}
	}()
	defer func() { cancel(); <-collected }()

	// Senders keep messages in flight while the test cuts the network, so
	// that pushes and ACKs are lost on the way.
	const senders, each = 4, 15
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(shown)
	}
	errs := make(chan error, senders)
	for g := 0; g < senders; g++ {
		go func() {
			for i := 0; i < each; i++ {
				sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
				_, err := sa.Send(sctx, frame.CmdMsg, tia, fmt.Appendf(nil, "m%d-%02d", g, i))
				scancel()
				if err != nil {
					errs <- fmt.Errorf("send %d-%d: %w", g, i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for _, at := range []int{senders * each / 4, senders * each * 2 / 3} {
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d messages shown", at), func() bool { return count() >= at })
		r.cut()
		r.restore()
	}
	for g := 0; g < senders; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// A last message, sent after the others were acknowledged, comes after
	// them (per-sender order): once it is shown, the rest are counted.
	sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
	defer scancel()
	if _, err := sa.Send(sctx, frame.CmdMsg, tia, []byte("end")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the last message shown", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return shown["end"] > 0
	})
	mu.Lock()
	defer mu.Unlock()
	for g := 0; g < senders; g++ {
		for i := 0; i < each; i++ {
			if k := fmt.Sprintf("m%d-%02d", g, i); shown[k] != 1 {
				t.Errorf("%s shown %d times", k, shown[k])
			}
		}
	}
	if shown["end"] != 1 {
		t.Errorf("end shown %d times", shown["end"])
	}
	t.Logf("copies dropped by the dedupe before the last connection: %d", dups)
}

// frames yields c's frames until it ends or ctx does.
func frames(ctx context.Context, c *client.Conn) func(yield func(client.Frame) bool) {
	return func(yield func(client.Frame) bool) {
		for {
			select {
			case f, ok := <-c.Frames():
				if !ok || !yield(f) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
}
