package center

import (
	"bufio"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
)

type nopEndpoint struct{ id uint32 }

func (e nopEndpoint) ID() uint32 { return e.id }
func (e nopEndpoint) Deliver(im.SessionRef, *bytebufferpool.ByteBuffer) error {
	return im.ErrUnknownSession
}

// fakeCenter accepts one link connection and answers HELLO.
func fakeCenter(t *testing.T, ln net.Listener) (net.Conn, *link.Reader) {
	t.Helper()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := link.AuthAccept(nc, testLink.Secret); err != nil {
		t.Fatal(err)
	}
	lr := link.NewReader(bufio.NewReader(nc), 1<<20)
	if h, err := lr.Hello(); err != nil || h.ID != 5 {
		t.Fatalf("hello: id %d, %v", h.ID, err)
	}
	if err := link.WriteHello(nc, link.Hello{ID: 1}, time.Second); err != nil {
		t.Fatal(err)
	}
	return nc, lr
}

// expect reads frames until one with op, skipping heartbeats.
func expect(t *testing.T, lr *link.Reader, op link.Op) ([]byte, []byte) {
	t.Helper()
	for {
		got, fixed, tail, err := lr.Next()
		if err != nil {
			t.Fatalf("waiting for op %d: %v", op, err)
		}
		fixed = append([]byte(nil), fixed...)
		var body []byte
		if tail > 0 {
			b, err := lr.ReadTail(tail)
			if err != nil {
				t.Fatal(err)
			}
			body = append(body, b.B...)
		}
		if got == op {
			return fixed, body
		}
		if got != link.OpPing && got != link.OpPong {
			t.Fatalf("op %d while waiting for %d", got, op)
		}
	}
}

// TestLinkResendsUnconfirmed: a QoS 1 message written to a link that then
// broke, before the center confirmed reading it, is written again first on
// the next connection, after the session is announced as resumed.
func TestLinkResendsUnconfirmed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := NewRemoteCenter(RemoteCenterConfig{Addr: ln.Addr().String(),
		Link:       link.Config{Plaintext: true, Secret: []byte("test link secret, 32 bytes long!"), HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rc.Attach(nopEndpoint{id: 5})
	ref := im.SessionRef{Endpoint: 5, Session: 10}
	rc.Online(7, ref)

	nc, lr := fakeCenter(t, ln)
	if fixed, _ := expect(t, lr, link.OpOnline); binary.BigEndian.Uint64(fixed) != 7 || fixed[16] != 0 {
		t.Fatalf("first ONLINE % x", fixed)
	}
	msg := bytebufferpool.Get()
	msg.B, _ = frame.AppendMsg(msg.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 7, To: 8, CID: 42}, []byte("hi"))
	rc.Handle(7, ref, msg)
	if _, inner := expect(t, lr, link.OpHandle); frame.Msg(frame.Frame(inner).Body()).CID() != 42 {
		t.Fatal("wrong HANDLE")
	}
	nc.Close() // broke before any PONG confirmed it

	nc, lr = fakeCenter(t, ln)
	defer nc.Close()
	if fixed, _ := expect(t, lr, link.OpOnline); fixed[16] != link.Resumed {
		t.Fatalf("re-announced ONLINE flags %d, want resumed", fixed[16])
	}
	if _, inner := expect(t, lr, link.OpHandle); frame.Msg(frame.Frame(inner).Body()).CID() != 42 {
		t.Fatal("the unconfirmed message was not written again")
	}
	if rc.Queued() != 1 || rc.Resent.Load() != 1 {
		t.Fatalf("queued %d resent %d", rc.Queued(), rc.Resent.Load())
	}
	// A PONG covering it releases it.
	pong := link.NewPong(0, lr.Count())
	if _, err := nc.Write(pong.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rc.Queued() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("confirmed message still held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
