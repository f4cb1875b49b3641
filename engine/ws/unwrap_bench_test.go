package ws

import (
	"fmt"
	"testing"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// maskedMessage is one client binary message holding one MyIM frame of
// size bytes of body.
func maskedMessage(size int) (msg []byte, hdr int, key [4]byte) {
	key = [4]byte{9, 8, 7, 6}
	f, _ := frame.Append(nil, frame.CmdMsg, frame.QoS1, make([]byte, size))
	msg = wswire.AppendMaskedHeader(nil, wswire.OpBinary, len(f), key)
	hdr = len(msg)
	msg = append(msg, f...)
	wswire.Cipher(msg[hdr:], key, 0)
	return msg, hdr, key
}

// BenchmarkUnwrap is the server's cost of one inbound message: the header
// parsed in place and the payload unmasked in place. Cipher restores the
// mask between iterations (it is its own inverse), as a fresh read would.
func BenchmarkUnwrap(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("payload=%dB", size), func(b *testing.B) {
			msg, hdr, key := maskedMessage(size)
			w := &conn{t: New(Config{}), state: stateOpen}
			c := &stub{user: 1}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				n, p, _, err := w.unwrapOpen(c, msg)
				if err != nil || n != len(msg) || len(p) != len(msg)-hdr {
					b.Fatalf("n=%d p=%d err=%v", n, len(p), err)
				}
				wswire.Cipher(msg[hdr:], key, 0)
			}
		})
	}
}
