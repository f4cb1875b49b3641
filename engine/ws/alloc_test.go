//go:build !race

package ws

import (
	"testing"

	"github.com/myim/myim/internal/wswire"
)

// TestUnwrapAllocs holds the inbound path to no allocation per message,
// and the outbound header and close message to none either.
func TestUnwrapAllocs(t *testing.T) {
	msg, hdr, key := maskedMessage(256)
	w := &conn{t: New(Config{}), state: stateOpen}
	c := &stub{user: 1}
	var dst [wswire.MaxHeader]byte
	if n := testing.AllocsPerRun(100, func() {
		if _, _, _, err := w.unwrapOpen(c, msg); err != nil {
			t.Fatal(err)
		}
		wswire.Cipher(msg[hdr:], key, 0)
		_ = w.AppendHeader(dst[:0], 300)
	}); n != 0 {
		t.Fatalf("%v allocations per message, want 0", n)
	}
}
