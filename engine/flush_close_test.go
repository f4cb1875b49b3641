package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

// startLoopServer starts a server for h on one event loop, so that every
// connection shares it and handlers may write to each other directly.
func startLoopServer(t testing.TB, h Handler) *Server {
	t.Helper()
	s := New(h, WithAddr("tcp://127.0.0.1:0"), WithLoops(1))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

func dialServer(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v (got %x)", n, err, b)
	}
	return b
}

// readToEOF reads until the server closes c and returns what came first.
func readToEOF(t testing.TB, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed (got %d bytes)", len(b))
	}
	return b
}

// closeRelay breaks its victim's socket and writes to it when the trigger
// connection sends a frame; its OnClose for the victim writes a PONG to the
// witness.
type closeRelay struct {
	conns   chan *Conn
	victim  atomic.Pointer[Conn]
	witness atomic.Pointer[Conn]
	reason  atomic.Uint32
}

func (h *closeRelay) OnOpen(c *Conn) error { h.conns <- c; return nil }

func (h *closeRelay) OnFrame(c *Conn, f frame.Frame) error {
	v := h.victim.Load()
	// Shut the socket for writing: the flush's write fails with EPIPE and
	// gnet closes the victim from inside the flush.
	if err := syscall.Shutdown(v.gc.Fd(), syscall.SHUT_WR); err != nil {
		return err
	}
	v.Write(frame.Pong)
	return nil
}

func (h *closeRelay) OnClose(c *Conn, r CloseReason) {
	if c == h.victim.Load() {
		h.reason.Store(uint32(r))
		h.witness.Load().Write(frame.Pong)
	}
}

// A failed write closes its connection inside the flush; what the handler's
// OnClose writes to another connection there is written too, and that
// connection keeps flushing afterwards.
func TestFlushSurvivesCloseFromFailedWrite(t *testing.T) {
	h := &closeRelay{conns: make(chan *Conn, 3)}
	s := startLoopServer(t, h)
	dialServer(t, s)
	h.victim.Store(<-h.conns)
	witness := dialServer(t, s)
	h.witness.Store(<-h.conns)
	trigger := dialServer(t, s)
	<-h.conns

	msg, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, []byte("go"))
	if _, err := trigger.Write(msg); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, witness, len(frame.Pong)); !bytes.Equal(got, frame.Pong) {
		t.Fatalf("witness got %x, want the PONG written by OnClose", got)
	}
	if r := CloseReason(h.reason.Load()); r != ReasonPeer {
		t.Fatalf("victim closed with %v, want %v", r, ReasonPeer)
	}
	// The witness is not left marked dirty outside the list: its next
	// batch is written.
	if _, err := witness.Write(frame.Ping); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, witness, len(frame.Pong)); !bytes.Equal(got, frame.Pong) {
		t.Fatalf("witness got %x to its PING, want PONG", got)
	}
}

// closer hands its connections out and, for a frame, writes a PONG and
// closes the connection from inside the callback.
type closer struct{ conns chan *Conn }

func (h closer) OnOpen(c *Conn) error { h.conns <- c; return nil }
func (h closer) OnFrame(c *Conn, f frame.Frame) error {
	c.Write(frame.Pong)
	c.Close(ReasonKicked)
	return nil
}
func (h closer) OnClose(*Conn, CloseReason) {}

// Conn.Close from another goroutine writes every buffer posted before it,
// then closes; a Post after it fails.
func TestCloseWritesPostedMail(t *testing.T) {
	h := closer{conns: make(chan *Conn, 1)}
	s := startLoopServer(t, h)
	c := dialServer(t, s)
	sc := <-h.conns
	const n = 200
	for i := 0; i < n; i++ {
		b := frame.AcquireBuffer()
		b.B = append(b.B, frame.Pong...)
		if err := sc.Post(b); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	sc.Close(ReasonKicked)
	b := frame.AcquireBuffer()
	if err := sc.Post(b); !errors.Is(err, ErrClosed) {
		t.Fatalf("post after Close: %v, want ErrClosed", err)
	}
	frame.ReleaseBuffer(b)
	if got := readToEOF(t, c); !bytes.Equal(got, bytes.Repeat(frame.Pong, n)) {
		t.Fatalf("got %d bytes before the close, want the %d posted", len(got), n*len(frame.Pong))
	}
	if r := sc.Reason(); r != ReasonKicked {
		t.Fatalf("reason %v, want %v", r, ReasonKicked)
	}
}

// Conn.Close inside a callback writes what the callback wrote first.
func TestCloseOnLoopWritesBatch(t *testing.T) {
	h := closer{conns: make(chan *Conn, 1)}
	s := startLoopServer(t, h)
	c := dialServer(t, s)
	<-h.conns
	msg, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, []byte("bye"))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if got := readToEOF(t, c); !bytes.Equal(got, frame.Pong) {
		t.Fatalf("got %x before the close, want PONG", got)
	}
}
