//go:build !race

package session

import (
	"testing"

	"github.com/myim/myim/frame"
)

// Seal and Open into buffers with room must not allocate: they run for
// every frame on the event loop.
func TestSealOpenAllocs(t *testing.T) {
	c, s := keyPair(t, nil)
	for _, size := range []int{0, 64, 4096} {
		msg := make([]byte, size)
		buf := make([]byte, 0, size+64)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := c.Seal(buf[:0], frame.CmdMsg, frame.QoS1, msg); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Seal %dB: %v allocs/op", size, n)
		}

		sealed := frame.Frame(must(c.Seal(nil, frame.CmdMsg, frame.QoS1, msg))(t))
		n0 := c.send.n - 1
		out := make([]byte, 0, size)
		if n := testing.AllocsPerRun(100, func() {
			s.recv.n = n0 // open the same frame again: the counter is all that changes
			if _, err := s.Open(out[:0], sealed); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Open %dB: %v allocs/op", size, n)
		}
		s.recv.n = c.send.n
	}
}
