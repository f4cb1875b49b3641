package ws

import (
	"bytes"
	"testing"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// upgradeSeeds are valid and malformed upgrade requests, the fuzz corpus's
// start.
var upgradeSeeds = []string{
	"GET /endpoint HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	"GET /login?x=1 HTTP/1.1\r\nhost: a:1\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nOrigin: http://a:1\r\nSec-WebSocket-Protocol: myim\r\n\r\n",
	"POST / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET /endpoint HTTP/1.1\r\nHost : a\r\n\r\n",
	"GET /endpoint HTTP/1.1\r\nSec-WebSocket-Key: short\r\n\r\n",
	"\r\n\r\n",
}

// FuzzUpgrade checks that the upgrade parser never panics, that what it
// accepts is answered with a well-formed 101, and that every field it
// returns lies inside the request.
func FuzzUpgrade(f *testing.F) {
	for _, s := range upgradeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headerEnd(b)
		if end == 0 {
			return
		}
		r, err := ParseRequest(b[:end])
		if err != nil {
			code, _ := statusFor(err)
			if code < 400 || code > 499 {
				t.Fatalf("status %d for %v", code, err)
			}
			return
		}
		for _, field := range [][]byte{r.Path, r.Host, r.Key, r.Origin, r.Protocol} {
			if len(field) > 0 && !bytes.Contains(b[:end], field) {
				t.Fatalf("field %q not from the request", field)
			}
		}
		resp := AppendResponse(nil, &r)
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) || !bytes.HasSuffix(resp, []byte("\r\n\r\n")) {
			t.Fatalf("response %q", resp)
		}
	})
}

// stub stands for the engine's connection in the framing fuzz.
type stub struct {
	user uint64
	raw  []byte
}

func (s *stub) User() uint64      { return s.user }
func (s *stub) WriteRaw(b []byte) { s.raw = append(s.raw, b...) }

// framingSeeds are client streams: valid messages, fragments, control
// frames and violations.
func framingSeeds() [][]byte {
	key := [4]byte{1, 2, 3, 4}
	msg := func(op byte, fin bool, p []byte) []byte {
		b := wswire.AppendMaskedHeader(nil, op, len(p), key)
		if !fin {
			b[0] &^= 0x80
		}
		h := len(b)
		b = append(b, p...)
		wswire.Cipher(b[h:], key, 0)
		return b
	}
	big := make([]byte, 300) // a 16-bit length
	return [][]byte{
		msg(wswire.OpBinary, true, frame.Ping),
		append(msg(wswire.OpBinary, false, frame.Ping[:1]), msg(wswire.OpContinuation, true, frame.Ping[1:])...),
		append(msg(wswire.OpPing, true, []byte("x")), msg(wswire.OpPong, true, nil)...),
		msg(wswire.OpClose, true, []byte{3, 0xe8, 'b', 'y', 'e'}),
		msg(wswire.OpBinary, true, big),
		msg(wswire.OpText, true, []byte("hi")),
		append(wswire.AppendHeader(nil, wswire.OpBinary, 3), frame.Ping...),
		{0xff, 0xff},
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0},
	}
}

// FuzzFraming feeds a client stream to the server's message parser in
// chunks whose sizes the input's first byte chooses, as reads would
// deliver it, and checks the parser's contract: it consumes only what it
// was given, asks for more only when it needs more, keeps its size limits
// and stops at the first error.
func FuzzFraming(f *testing.F) {
	for _, s := range framingSeeds() {
		f.Add(byte(7), s)
	}
	t := New(Config{MaxMessage: 1 << 17, PreAuthMaxMessage: 1 << 17})
	f.Fuzz(func(tt *testing.T, chunk byte, stream []byte) {
		w := &conn{t: t, state: stateOpen}
		defer w.Release()
		c := &stub{user: 1}
		step := int(chunk)*4 + 1
		var buf []byte
		for len(stream) > 0 || len(buf) > 0 {
			if len(stream) > 0 {
				k := min(step, len(stream))
				buf, stream = append(buf, stream[:k]...), stream[k:]
			}
			for len(buf) > 0 {
				n, payload, need, err := w.unwrapOpen(c, buf)
				if err != nil {
					return
				}
				if n == 0 {
					if need <= len(buf) {
						tt.Fatalf("need %d with %d buffered", need, len(buf))
					}
					break
				}
				if n > len(buf) || len(payload) > t.cfg.MaxMessage {
					tt.Fatalf("consumed %d of %d, payload %d", n, len(buf), len(payload))
				}
				buf = buf[n:]
			}
			if len(stream) == 0 {
				return // what is left is an incomplete frame
			}
		}
	})
}
