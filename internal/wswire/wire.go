// Package wswire is the RFC 6455 frame codec shared by the server transport
// (engine/ws) and the client's dialer: header parsing without copies, masking
// in place, and the handshake's accept key. It imports nothing of the engine.
package wswire

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// MaxHeader is the longest frame header: 2 bytes, an 8-byte extended
// length and a 4-byte mask key.
const MaxHeader = 14

// maxControl is the largest control payload (RFC 6455 section 5.5).
const maxControl = 125

// Framing errors. Each closes the connection; the close code is in the
// comment.
var (
	ErrReservedBits    = errors.New("wswire: reserved bits set without an extension")     // 1002
	ErrUnmasked        = errors.New("wswire: client frame not masked")                    // 1002
	ErrBadOpcode       = errors.New("wswire: unknown opcode")                             // 1002
	ErrControlTooLong  = errors.New("wswire: control frame payload over 125 bytes")       // 1002
	ErrControlFragment = errors.New("wswire: fragmented control frame")                   // 1002
	ErrContinuation    = errors.New("wswire: continuation without a message to continue") // 1002
	ErrInterleaved     = errors.New("wswire: new message inside a fragmented one")        // 1002
	ErrLengthMSB       = errors.New("wswire: 64-bit length with its top bit set")         // 1002
	ErrText            = errors.New("wswire: text message (MyIM takes binary only)")      // 1003
	ErrTooLarge        = errors.New("wswire: message over the maximum size")              // 1009
	ErrBadClose        = errors.New("wswire: close payload of one byte")                  // 1002
)

// Header is a parsed frame header. It is a value: parsing keeps no
// reference to the buffer.
type Header struct {
	Fin    bool
	Op     byte
	Masked bool
	Mask   [4]byte
	Length int64
	Size   int // bytes the header takes
}

// ParseHeader parses the frame header at the start of b without copying
// it. It returns ok == false, and need > len(b), when b is too short to
// hold the whole header. Errors concern the header alone (reserved bits,
// opcode, control frame rules, the length's top bit); the caller checks
// masking and sizes, which depend on the side and the limits.
func ParseHeader(b []byte) (h Header, need int, ok bool, err error) {
	if len(b) < 2 {
		return h, 2, false, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return h, 0, false, ErrReservedBits
	}
	h.Fin = b0&0x80 != 0
	h.Op = b0 & 0x0f
	h.Masked = b1&0x80 != 0
	n := 2
	switch l := b1 & 0x7f; l {
	case 126:
		n += 2
	case 127:
		n += 8
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		n += 4
	}
	if len(b) < n {
		return h, n, false, nil
	}
	switch b1 & 0x7f {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, 0, false, ErrLengthMSB
		}
		h.Length = int64(v)
	}
	if h.Masked {
		copy(h.Mask[:], b[n-4:n])
	}
	h.Size = n
	switch h.Op {
	case OpContinuation, OpText, OpBinary:
	case OpClose, OpPing, OpPong:
		if !h.Fin {
			return h, 0, false, ErrControlFragment
		}
		if h.Length > maxControl {
			return h, 0, false, ErrControlTooLong
		}
	default:
		return h, 0, false, ErrBadOpcode
	}
	return h, n, true, nil
}

// AppendHeader appends a server frame header (final, unmasked) for a
// payload of n bytes.
func AppendHeader(dst []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, 0x80|op, byte(n))
	case n <= 0xffff:
		return append(dst, 0x80|op, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|op, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// AppendMaskedHeader appends a client frame header (final, masked with
// key) for a payload of n bytes; the caller masks the payload with Cipher.
func AppendMaskedHeader(dst []byte, op byte, n int, key [4]byte) []byte {
	i := len(dst)
	dst = AppendHeader(dst, op, n)
	dst[i+1] |= 0x80
	return append(dst, key[:]...)
}

// Cipher masks or unmasks p in place with key, p being at offset pos of
// its frame's payload (RFC 6455 section 5.3). It returns the offset after
// p, for a payload handled in pieces.
func Cipher(p []byte, key [4]byte, pos int) int {
	// Rotate the key so that it starts at pos, then work eight bytes at a
	// time.
	var k [4]byte
	for i := range k {
		k[i] = key[(pos+i)&3]
	}
	k32 := binary.LittleEndian.Uint32(k[:])
	k64 := uint64(k32)<<32 | uint64(k32)
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		binary.LittleEndian.PutUint64(p[i:], v^k64)
	}
	for ; i < len(p); i++ {
		p[i] ^= k[i&3]
	}
	return pos + len(p)
}

// acceptGUID is the constant RFC 6455 appends to the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AppendAccept appends the Sec-WebSocket-Accept value for key.
func AppendAccept(dst, key []byte) []byte {
	var buf [24 + len(acceptGUID)]byte
	n := copy(buf[:], key)
	n += copy(buf[n:], acceptGUID)
	sum := sha1.Sum(buf[:n])
	var enc [28]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	return append(dst, enc[:]...)
}
