package center

import (
	"bufio"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
)

type nopEndpoint struct{ id uint32 }

func (e nopEndpoint) ID() uint32 { return e.id }
func (e nopEndpoint) Deliver(im.SessionRef, *bytebufferpool.ByteBuffer) error {
	return im.ErrUnknownSession
}

// fakeCenter accepts one link connection and answers HELLO.
func fakeCenter(t *testing.T, ln net.Listener) (net.Conn, *linkReader) {
	t.Helper()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := linkAuthAccept(nc, testLink.Secret); err != nil {
		t.Fatal(err)
	}
	lr := &linkReader{r: bufio.NewReader(nc), max: 1 << 20}
	if id, _, err := readHello(lr); err != nil || id != 5 {
		t.Fatalf("hello: id %d, %v", id, err)
	}
	if err := writeHello(nc, 1, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	return nc, lr
}

// expect reads frames until one with op, skipping heartbeats.
func expect(t *testing.T, lr *linkReader, op byte) ([]byte, []byte) {
	t.Helper()
	for {
		got, fixed, tail, err := lr.next()
		if err != nil {
			t.Fatalf("waiting for op %d: %v", op, err)
		}
		fixed = append([]byte(nil), fixed...)
		var body []byte
		if tail > 0 {
			b, err := lr.readTail(tail)
			if err != nil {
				t.Fatal(err)
			}
			body = append(body, b.B...)
		}
		if got == op {
			return fixed, body
		}
		if got != linkPing && got != linkPong {
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
		Link:       LinkConfig{Plaintext: true, Secret: []byte("test link secret, 32 bytes long!"), HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rc.Attach(nopEndpoint{id: 5})
	ref := im.SessionRef{Endpoint: 5, Session: 10}
	rc.Online(7, ref)

	nc, lr := fakeCenter(t, ln)
	if fixed, _ := expect(t, lr, linkOnline); binary.BigEndian.Uint64(fixed) != 7 || fixed[16] != 0 {
		t.Fatalf("first ONLINE % x", fixed)
	}
	msg := bytebufferpool.Get()
	msg.B, _ = frame.AppendMsg(msg.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 7, To: 8, CID: 42}, []byte("hi"))
	rc.Handle(7, ref, msg)
	if _, inner := expect(t, lr, linkHandle); frame.Msg(frame.Frame(inner).Body()).CID() != 42 {
		t.Fatal("wrong HANDLE")
	}
	nc.Close() // broke before any PONG confirmed it

	nc, lr = fakeCenter(t, ln)
	defer nc.Close()
	if fixed, _ := expect(t, lr, linkOnline); fixed[16] != linkResumed {
		t.Fatalf("re-announced ONLINE flags %d, want resumed", fixed[16])
	}
	if _, inner := expect(t, lr, linkHandle); frame.Msg(frame.Frame(inner).Body()).CID() != 42 {
		t.Fatal("the unconfirmed message was not written again")
	}
	if rc.Queued() != 1 || rc.Resent.Load() != 1 {
		t.Fatalf("queued %d resent %d", rc.Queued(), rc.Resent.Load())
	}
	// A PONG covering it releases it.
	pong := pingItem(linkPong, 0, lr.count)
	if _, err := nc.Write(pong.head[:pong.n]); err != nil {
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

// TestLinkReaderRejects feeds malformed link frames to the reader.
func TestLinkReaderRejects(t *testing.T) {
	good := sessItem(linkOnline, 1, 2, 0)
	cases := map[string][]byte{
		"client command": frame.Ping,
		"unknown op":     {0x04, byte(cmdLink), 0, 0x7f},
		"short fixed":    append([]byte{0x05, byte(cmdLink), 0, linkOnline}, 1, 2),
		"tail on ONLINE": append(append([]byte{byte(good.n + 1)}, good.head[1:good.n]...), 9),
		"huge length":    {0xff, 0xff, 0xff, 0x7f},
	}
	for name, b := range cases {
		r, w := net.Pipe()
		go func() { _, _ = w.Write(b); w.Close() }()
		lr := &linkReader{r: bufio.NewReader(r), max: 1 << 20}
		if _, _, _, err := lr.next(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		r.Close()
	}
	lr := &linkReader{r: bufio.NewReader(&sliceReader{b: good.head[:good.n]}), max: 64}
	if op, fixed, tail, err := lr.next(); err != nil || op != linkOnline || tail != 0 || binary.BigEndian.Uint64(fixed[8:]) != 2 {
		t.Fatalf("valid ONLINE: op %d tail %d err %v", op, tail, err)
	}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}
