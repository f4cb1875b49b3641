package ws_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/myim/myim/engine/ws"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// wsVectors reads the "WS-Vector: name" blocks (```ws-hex) of
// docs/protocol.md.
func wsVectors(t *testing.T) map[string][]byte {
	t.Helper()
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	var name string
	var in bool
	var text strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case in && line == "```":
			b, err := hex.DecodeString(strings.Join(strings.Fields(text.String()), ""))
			if err != nil {
				t.Fatalf("WS-Vector %s: %v", name, err)
			}
			out[name], in, name = b, false, ""
		case in:
			text.WriteString(line + " ")
		case line == "```ws-hex":
			if name == "" {
				t.Fatal("ws-hex block without a WS-Vector: line")
			}
			in = true
			text.Reset()
		case strings.HasPrefix(line, "WS-Vector:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "WS-Vector:"))
		}
	}
	return out
}

// TestProtocolVectors decodes the WebSocket vectors of docs/protocol.md and
// plays them against a live listener.
func TestProtocolVectors(t *testing.T) {
	v := wsVectors(t)
	ping, pong := v["ws-ping"], v["ws-pong"]
	if ping == nil || pong == nil {
		t.Fatalf("vectors ws-ping and ws-pong missing: %v", v)
	}
	h, _, ok, err := wswire.ParseHeader(ping)
	if err != nil || !ok || !h.Fin || h.Op != wswire.OpBinary || !h.Masked || int(h.Length) != len(ping)-h.Size {
		t.Fatalf("ws-ping header %+v ok=%v err=%v", h, ok, err)
	}
	p := bytes.Clone(ping[h.Size:])
	wswire.Cipher(p, h.Mask, 0)
	if !bytes.Equal(p, frame.Ping) {
		t.Fatalf("ws-ping unmasks to %x, want PING %x", p, frame.Ping)
	}
	s := startServer(t, ws.Config{})
	c := dialTCP(t, s)
	br, resp := upgrade(t, c, "")
	if resp.StatusCode != 101 {
		t.Fatal(resp.Status)
	}
	if _, err := c.Write(ping); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(pong))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pong) {
		t.Fatalf("answer %x, want ws-pong %x", got, pong)
	}
}
