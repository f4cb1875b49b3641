package ws_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/ws"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// echo answers every frame with itself.
type echo struct{}

func (echo) OnOpen(*engine.Conn) error { return nil }
func (echo) OnFrame(c *engine.Conn, f frame.Frame) error {
	c.Write(f)
	return nil
}
func (echo) OnClose(*engine.Conn, engine.CloseReason) {}

func startServer(t testing.TB, cfg ws.Config, opts ...engine.Option) *engine.Server {
	t.Helper()
	if cfg.Paths == nil {
		cfg.Paths = []string{"/endpoint"}
	}
	opts = append([]engine.Option{engine.WithAddr("tcp://127.0.0.1:0"), engine.WithLoops(1),
		engine.WithTransport(ws.New(cfg))}, opts...)
	s := engine.New(echo{}, opts...)
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

func dialTCP(t testing.TB, s *engine.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// The key and accept value of RFC 6455 section 1.3.
const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

func upgradeRequest(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// upgrade sends the request and returns a reader past the response.
func upgrade(t testing.TB, c net.Conn, extra string) (*bufio.Reader, *http.Response) {
	t.Helper()
	if _, err := io.WriteString(c, upgradeRequest("/endpoint", extra)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return br, resp
}

// masked builds one client frame.
func masked(op byte, fin bool, payload []byte) []byte {
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	b := wswire.AppendMaskedHeader(nil, op, len(payload), key)
	if !fin {
		b[0] &^= 0x80
	}
	h := len(b)
	b = append(b, payload...)
	wswire.Cipher(b[h:], key, 0)
	return b
}

// readMessage reads one unmasked server frame.
func readMessage(t testing.TB, r *bufio.Reader) (op byte, payload []byte) {
	t.Helper()
	var hb [wswire.MaxHeader]byte
	if _, err := io.ReadFull(r, hb[:2]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	h, need, ok, err := wswire.ParseHeader(hb[:2])
	if err == nil && !ok {
		if _, err = io.ReadFull(r, hb[2:need]); err == nil {
			h, _, _, err = wswire.ParseHeader(hb[:need])
		}
	}
	if err != nil || h.Masked || !h.Fin {
		t.Fatalf("server header %+v: %v", h, err)
	}
	payload = make([]byte, h.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatal(err)
	}
	return h.Op, payload
}

func closeCode(t testing.TB, r *bufio.Reader) (uint16, string) {
	t.Helper()
	for {
		op, p := readMessage(t, r)
		if op == wswire.OpClose {
			if len(p) < 2 {
				t.Fatalf("close payload %x", p)
			}
			return binary.BigEndian.Uint16(p), string(p[2:])
		}
	}
}

func TestUpgradeAndPing(t *testing.T) {
	s := startServer(t, ws.Config{})
	c := dialTCP(t, s)
	br, resp := upgrade(t, c, "Sec-WebSocket-Protocol: chat, myim\r\n")
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != rfcAccept ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "myim" {
		t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
	}
	// Two PINGs in one message, then a WebSocket ping.
	if _, err := c.Write(masked(wswire.OpBinary, true, append(bytes.Clone(frame.Ping), frame.Ping...))); err != nil {
		t.Fatal(err)
	}
	op, p := readMessage(t, br)
	if op != wswire.OpBinary || !bytes.Equal(p, append(bytes.Clone(frame.Pong), frame.Pong...)) {
		t.Fatalf("got op %x %x, want two PONGs", op, p)
	}
	if _, err := c.Write(masked(wswire.OpPing, true, []byte("hi"))); err != nil {
		t.Fatal(err)
	}
	if op, p := readMessage(t, br); op != wswire.OpPong || string(p) != "hi" {
		t.Fatalf("got op %x %q, want pong hi", op, p)
	}
	// A fragmented message with a ping between its pieces.
	whole := append(bytes.Clone(frame.Ping), frame.Ping...)
	msg := append(masked(wswire.OpBinary, false, whole[:2]), masked(wswire.OpPing, true, nil)...)
	msg = append(msg, masked(wswire.OpContinuation, true, whole[2:])...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if op, _ := readMessage(t, br); op != wswire.OpPong {
		t.Fatalf("op %x, want the pong first", op)
	}
	if op, p := readMessage(t, br); op != wswire.OpBinary || len(p) != 2*len(frame.Pong) {
		t.Fatalf("got op %x %x", op, p)
	}
	// Close: the code is echoed.
	if _, err := c.Write(masked(wswire.OpClose, true, []byte{0x03, 0xe8})); err != nil {
		t.Fatal(err)
	}
	if code, _ := closeCode(t, br); code != 1000 {
		t.Fatalf("close %d, want 1000", code)
	}
}

func TestDialEcho(t *testing.T) {
	s := startServer(t, ws.Config{PreAuthMaxMessage: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := wswire.Dial(ctx, "ws://"+s.Addr().String()+"/endpoint", wswire.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	// A frame of 70,000 bytes takes a 64-bit length, after the first look.
	f, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, bytes.Repeat([]byte{7}, 70_000))
	for _, b := range [][]byte{frame.Ping, f} {
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(frame.Pong)+len(f))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(bytes.Clone(frame.Pong), f...)) {
		t.Fatal("echo differs")
	}
}

func TestRefusedUpgrades(t *testing.T) {
	s := startServer(t, ws.Config{Origins: []string{"https://chat.example"}})
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"bad origin", upgradeRequest("/endpoint", "Origin: https://evil.example\r\n"), 403},
		{"path", upgradeRequest("/nope", ""), 404},
		{"method", strings.Replace(upgradeRequest("/endpoint", ""), "GET", "POST", 1), 405},
		{"version", strings.Replace(upgradeRequest("/endpoint", ""), "Version: 13", "Version: 8", 1), 426},
		{"not upgrade", "GET /endpoint HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"too large", upgradeRequest("/endpoint", "X: "+strings.Repeat("a", 5000)+"\r\n"), 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialTCP(t, s)
			_, _ = io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	c := dialTCP(t, s)
	if _, resp := upgrade(t, c, "Origin: https://chat.example\r\n"); resp.StatusCode != 101 {
		t.Fatalf("allowed origin: %d", resp.StatusCode)
	}
	// Without a list: the request's own host, on any port.
	s = startServer(t, ws.Config{})
	for origin, status := range map[string]int{"http://127.0.0.1:5280": 101, "https://127.0.0.1": 101,
		"http://evil.example": 403, "null": 403} {
		c := dialTCP(t, s)
		if _, resp := upgrade(t, c, "Origin: "+origin+"\r\n"); resp.StatusCode != status {
			t.Errorf("origin %s: %d, want %d", origin, resp.StatusCode, status)
		}
	}
}

func TestSlowUpgrade(t *testing.T) {
	s := startServer(t, ws.Config{}, engine.WithFirstFrameTimeout(time.Second))
	c := dialTCP(t, s)
	req := upgradeRequest("/endpoint", "")
	_, _ = io.WriteString(c, req[:20])
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 408 {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	// Upgraded but no MyIM frame: closed by the first-frame deadline.
	c = dialTCP(t, s)
	br, _ := upgrade(t, c, "")
	if _, err := c.Write(masked(wswire.OpPing, true, nil)); err != nil {
		t.Fatal(err)
	}
	if code, text := closeCode(t, br); code != ws.CloseCode(engine.ReasonFirstFrame) || text != "first_frame_timeout" {
		t.Fatalf("close %d %q", code, text)
	}
}

func TestFramingViolations(t *testing.T) {
	s := startServer(t, ws.Config{PreAuthMaxMessage: 1000})
	unmasked := wswire.AppendHeader(nil, wswire.OpBinary, len(frame.Ping))
	unmasked = append(unmasked, frame.Ping...)
	split, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, []byte("hello"))
	for _, tc := range []struct {
		name string
		msg  []byte
		code uint16
	}{
		{"unmasked", unmasked, 1002},
		{"text", masked(wswire.OpText, true, []byte("hi")), 1003},
		{"oversize", masked(wswire.OpBinary, true, make([]byte, 1001)), 1009},
		{"oversize fragments", append(masked(wswire.OpBinary, false, make([]byte, 600)),
			masked(wswire.OpContinuation, true, make([]byte, 600))...), 1009},
		{"reserved bits", func() []byte { b := masked(wswire.OpBinary, true, frame.Ping); b[0] |= 0x40; return b }(), 1002},
		{"lone continuation", masked(wswire.OpContinuation, true, frame.Ping), 1002},
		{"frame split", masked(wswire.OpBinary, true, split[:4]), 1002},
		{"bad MyIM frame", masked(wswire.OpBinary, true, []byte{0x03, 0x7f, 0x00}), 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialTCP(t, s)
			br, _ := upgrade(t, c, "")
			if _, err := c.Write(tc.msg); err != nil {
				t.Fatal(err)
			}
			if code, text := closeCode(t, br); code != tc.code {
				t.Fatalf("close %d %q, want %d", code, text, tc.code)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the close: %v, want EOF", err)
			}
		})
	}
}

func TestFullServerAnswers503(t *testing.T) {
	s := startServer(t, ws.Config{}, engine.WithMaxConns(1))
	c := dialTCP(t, s)
	if _, resp := upgrade(t, c, ""); resp.StatusCode != 101 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	c2 := dialTCP(t, s)
	_, _ = io.WriteString(c2, upgradeRequest("/endpoint", ""))
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 {
		t.Fatalf("second: %d, want 503", resp.StatusCode)
	}
}
