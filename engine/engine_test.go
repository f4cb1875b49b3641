package engine_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/internal/enginetest"
	"github.com/myim/myim/frame"
)

// echo answers every frame with itself; a test handler for the engine.
type echo struct{}

func (echo) OnOpen(*engine.Conn) error { return nil }
func (echo) OnFrame(c *engine.Conn, f frame.Frame) error {
	if err := frame.Check(f); err != nil {
		return err
	}
	c.Write(f)
	return nil
}
func (echo) OnClose(*engine.Conn, engine.CloseReason) {}

// The reactor on a loopback port, a connection to it, and a bounded wait
// come from enginetest, shared with the other engine packages' tests.
var (
	startServer = enginetest.StartServer
	dial        = enginetest.Dial
	eventually  = enginetest.Eventually
)

func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// readClosed reads until EOF and returns what came before it.
func readClosed(t testing.TB, c net.Conn, within time.Duration) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection not closed within %v (got %x)", within, b)
		}
	}
	return b
}

func TestPingPong(t *testing.T) {
	s := startServer(t, echo{})
	c := dial(t, s)
	if _, err := c.Write([]byte{0x03, 0x01, 0x01}); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c, 3); !bytes.Equal(got, []byte{0x03, 0x02, 0x00}) {
		t.Fatalf("got % x, want 03 02 00", got)
	}
}

func TestPingOneByteAtATime(t *testing.T) {
	s := startServer(t, echo{})
	c := dial(t, s)
	for _, b := range []byte{0x03, 0x01, 0x01} {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readN(t, c, 3); !bytes.Equal(got, frame.Pong) {
		t.Fatalf("got % x", got)
	}
}

func TestManyPingsInOneWrite(t *testing.T) {
	s := startServer(t, echo{})
	c := dial(t, s)
	const n = 10000
	go func() { _, _ = c.Write(bytes.Repeat(frame.Ping, n)) }()
	got := readN(t, c, 3*n)
	if !bytes.Equal(got, bytes.Repeat(frame.Pong, n)) {
		t.Fatal("pongs differ")
	}
}

func TestPingWithBodyEchoes(t *testing.T) {
	s := startServer(t, echo{})
	c := dial(t, s)
	ping, _ := frame.Append(nil, frame.CmdPing, frame.QoS1, []byte("stamp"))
	want, _ := frame.Append(nil, frame.CmdPong, frame.QoS0, []byte("stamp"))
	_, _ = c.Write(ping)
	if got := readN(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("got % x want % x", got, want)
	}
}

func TestBadInputClosesOnlyItsConnection(t *testing.T) {
	s := startServer(t, echo{}, engine.WithMaxFrame(1024), engine.WithIdleTimeout(time.Second),
		engine.WithFirstFrameTimeout(time.Second))
	cases := []struct {
		name string
		in   []byte
		code uint16
	}{
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, frame.ErrCodeMalformed},
		{"oversize", []byte{0x80, 0x80, 0x40, 0x03}, frame.ErrCodeTooLarge},
		{"non-minimal", []byte{0x83, 0x00, 0x01, 0x01}, frame.ErrCodeMalformed},
		{"unknown-cmd", []byte{0x03, 0x7f, 0x00}, frame.ErrCodeMalformed},
		{"bad-qos", []byte{0x03, 0x01, 0x05}, frame.ErrCodeMalformed},
		{"half-frame-stalls", []byte{0x40, 0x03, 0x00}, frame.ErrCodeIdle},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good := dial(t, s)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // keeps the good connection busy meanwhile
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
						_, _ = good.Write(frame.Ping)
					}
				}
			}()
			c := dial(t, s)
			if _, err := c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			out := readClosed(t, c, 5*time.Second)
			f, _, err := frame.Decode(out, 0)
			if err != nil || f.Cmd() != frame.CmdError {
				t.Fatalf("want an ERROR frame before close, got % x (%v)", out, err)
			}
			if code := frame.Error(f.Body()).Code(); code != tc.code {
				t.Fatalf("error code %d, want %d", code, tc.code)
			}
			// The other connection still works: every ping got its pong.
			close(stop)
			<-done
			_, _ = good.Write(frame.Ping)
			_ = good.SetReadDeadline(time.Now().Add(5 * time.Second))
			var got []byte
			buf := make([]byte, 1024)
			for len(got) == 0 || len(got)%3 != 0 || !bytes.Equal(got, bytes.Repeat(frame.Pong, len(got)/3)) {
				n, err := good.Read(buf)
				if err != nil {
					t.Fatalf("good connection: %v after % x", err, got)
				}
				got = append(got, buf[:n]...)
				if len(got) >= 3 && !bytes.Equal(got[:3], frame.Pong) {
					t.Fatalf("good connection got % x", got)
				}
			}
		})
	}
}

func TestIdleAndFirstFrameTimeouts(t *testing.T) {
	s := startServer(t, echo{}, engine.WithIdleTimeout(600*time.Millisecond),
		engine.WithFirstFrameTimeout(300*time.Millisecond))
	silent := dial(t, s)
	start := time.Now()
	readClosed(t, silent, 5*time.Second)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the first-frame deadline", el)
	}
	if got := s.Stats().Closed[engine.ReasonFirstFrame].Load(); got != 1 {
		t.Fatalf("first-frame closes = %d", got)
	}
	// A client that keeps pinging stays open past the idle timeout.
	live := dial(t, s)
	for i := 0; i < 8; i++ {
		_, _ = live.Write(frame.Ping)
		readN(t, live, 3)
		time.Sleep(200 * time.Millisecond)
	}
	_ = live.SetReadDeadline(time.Now().Add(3 * time.Second))
	readClosed(t, live, 5*time.Second)
	if s.Stats().Closed[engine.ReasonIdle].Load() != 1 {
		t.Fatal("idle close not counted")
	}
}

// flood answers one frame with a burst, so a reader that does not read
// overflows its outbound cap.
type flood struct{ echo }

func (flood) OnFrame(c *engine.Conn, f frame.Frame) error {
	big := make([]byte, 64<<10)
	for i := 0; i < 64; i++ {
		b, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, big[:frame.MsgHeaderLen+60000])
		c.Write(b)
	}
	return nil
}

func TestSlowReaderIsDisconnected(t *testing.T) {
	s := startServer(t, flood{}, engine.WithMaxOutbound(256<<10))
	c := dial(t, s).(*net.TCPConn)
	_ = c.SetReadBuffer(4096)
	hdr := frame.MsgHeader{From: 1, To: 2}
	m, _ := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS0, hdr, nil)
	// Two frames: each answer alone is fifteen times the cap. Twenty made
	// one callback build 77 MB before its flush, which the race detector
	// on a busy machine did not finish in time.
	for i := 0; i < 2; i++ {
		if _, err := c.Write(m); err != nil {
			break
		}
	}
	eventually(t, 30*time.Second, func() bool {
		return s.Stats().Closed[engine.ReasonSlowReader].Load() == 1
	})
}

func TestMaxConns(t *testing.T) {
	s := startServer(t, echo{}, engine.WithMaxConns(2))
	a, b := dial(t, s), dial(t, s)
	for _, c := range []net.Conn{a, b} {
		_, _ = c.Write(frame.Ping)
		readN(t, c, 3)
	}
	third := dial(t, s)
	out := readClosed(t, third, 5*time.Second)
	f, _, err := frame.Decode(out, 0)
	if err != nil || frame.Error(f.Body()).Code() != frame.ErrCodeRetry {
		t.Fatalf("want a retry error, got % x", out)
	}
}

// TestConnGate has two servers share one cap of two connections: with one
// held on each, a third on either is refused, and once one closes, a new
// one fits.
func TestConnGate(t *testing.T) {
	g := engine.NewConnGate(2)
	gate := engine.Option(func(c *engine.Config) { c.Gate = g })
	s1, s2 := startServer(t, echo{}, gate), startServer(t, echo{}, gate)
	a, b := dial(t, s1), dial(t, s2)
	for _, c := range []net.Conn{a, b} {
		_, _ = c.Write(frame.Ping)
		readN(t, c, 3)
	}
	refused := func(s *engine.Server) {
		t.Helper()
		out := readClosed(t, dial(t, s), 5*time.Second)
		f, _, err := frame.Decode(out, 0)
		if err != nil || frame.Error(f.Body()).Code() != frame.ErrCodeRetry {
			t.Fatalf("want a retry error, got % x", out)
		}
	}
	refused(s1)
	refused(s2)
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for g.Conns() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c := dial(t, s2)
	_, _ = c.Write(frame.Ping)
	readN(t, c, 3)
}

// poster forwards every MSG it receives to the connection named by its To
// field, through Post, as another goroutine would.
type poster struct {
	echo
	conns chan *engine.Conn
}

func (p poster) OnOpen(c *engine.Conn) error { p.conns <- c; return nil }

func TestPostFromAnotherGoroutine(t *testing.T) {
	p := poster{conns: make(chan *engine.Conn, 1)}
	s := startServer(t, p)
	c := dial(t, s)
	sc := <-p.conns
	const n = 1000
	go func() {
		for i := 0; i < n; i++ {
			b := frame.AcquireBuffer()
			b.B = append(b.B, frame.Pong...)
			for sc.Post(b) != nil {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	if got := readN(t, c, 3*n); !bytes.Equal(got, bytes.Repeat(frame.Pong, n)) {
		t.Fatal("posted bytes differ")
	}
}
