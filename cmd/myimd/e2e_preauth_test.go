package main

import (
	"net"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

// Issue 11, attack 10: unauthenticated peers could make the server buffer
// full-size frames (1 MiB each before authentication). Before the
// handshake the cap is now a few KiB, so a connection that declares a
// 1 MiB frame is refused at its header. 2,000 such connections, half on the
// login listener and half on the endpoint, each sending 64 KiB of the
// declared body, must move the server's resident memory by less than
// 20 MiB (the old code buffered the 64 KiB of each: over 120 MiB).
func TestPreAuthBigFramesDoNotGrowMemory(t *testing.T) {
	const conns, sent = 2000, 64 << 10
	p := startMyimd(t)
	before := p.rssKB(t)
	hdr, err := frame.AppendHeader(nil, frame.CmdHandshake, frame.QoS0, 1<<20-8)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, sent)
	open := make([]net.Conn, 0, conns)
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	peak := before
	for i := 0; i < conns; i++ {
		addr := p.addrs["login"]
		if i%2 == 1 {
			addr = p.addrs["endpoint"]
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		// The server may close the connection at the header: write errors
		// are the defence working.
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(hdr)
		_, _ = c.Write(body)
		if i%200 == 199 {
			peak = max(peak, p.rssKB(t))
		}
	}
	// Let the server read what it was sent, then take its memory while
	// every connection is still open on this side.
	for i := 0; i < 20; i++ {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, p.rssKB(t))
	}
	grew := float64(peak-before) / 1024
	t.Logf("%d pre-auth connections declaring 1 MiB frames (%d KiB sent on each): RSS %d KiB before, peak %d KiB, +%.1f MiB",
		conns, sent>>10, before, peak, grew)
	if grew >= 20 {
		t.Fatalf("RSS grew by %.1f MiB, limit 20", grew)
	}
}
