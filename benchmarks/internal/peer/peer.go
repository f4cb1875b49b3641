// Package peer holds what the peer servers of the benchmarks share: the
// length-prefixed frame the forwarders relay, and how a peer announces
// where it listens.
//
// The frame is the one cmd/myim-bench speaks with --proto fwd (wire.go
// there): Length (4 bytes, big-endian, the bytes after it), Type (1), Peer
// (8), CID (8), payload. HELLO's Peer is the sender's own id and the server
// answers with the same HELLO; MSG and RCPT carry the destination, which
// the server replaces by the source before relaying; PING comes back as
// PONG with its payload. Type's top bit on MSG asks for a receipt.
package peer

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// Frame layout and types.
const (
	Header   = 4 + 1 + 8 + 8
	MaxFrame = 1 << 20

	Hello byte = 1
	Msg   byte = 2
	Rcpt  byte = 3
	Ping  byte = 4
	Pong  byte = 5
	QoS1  byte = 0x80
)

// Size returns the size of the frame at the start of b, 0 while its
// length is incomplete, or an error for a length out of bounds.
func Size(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	n := 4 + int(binary.BigEndian.Uint32(b))
	if n < Header || n > MaxFrame {
		return 0, fmt.Errorf("peer: frame length %d out of bounds", n)
	}
	return n, nil
}

// PeerOf returns the frame's Peer field.
func PeerOf(f []byte) uint64 { return binary.BigEndian.Uint64(f[5:]) }

// SetPeer overwrites the frame's Peer field.
func SetPeer(f []byte, id uint64) { binary.BigEndian.PutUint64(f[5:], id) }

// Announce prints the line the compare command waits for.
func Announce(w io.Writer, name string, a net.Addr) {
	fmt.Fprintf(w, "%s listening on %s\n", name, a)
}
