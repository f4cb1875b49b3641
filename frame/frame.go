// Package frame owns MyIM's wire envelope: Length + Content, where Content is
// Cmd (1 byte) + QoS (1 byte) + body, and the fixed layouts of every command's
// body.
//
// Length is an unsigned LEB128 varint of 1 to 4 bytes whose value is the size
// of the whole frame, the Length field itself included, written in the fewest
// bytes that can hold it. The design note's PING is therefore literally
// 03 01 01 and its answer 03 02 00.
//
// Decoding never copies and never allocates: a Frame is a view over bytes the
// caller owns (in the server, gnet's Peek slice), valid only as long as those
// bytes are. Encoding appends to a caller's slice, normally a pooled buffer
// from AcquireBuffer.
//
// This package must not do I/O, hold state, or know about sessions, crypto or
// routing: it is pure functions over byte slices, safe for concurrent use.
package frame

import (
	"errors"
	"fmt"
	"io"
)

// Sentinel errors. Every malformed input maps to exactly one of them, so that
// callers can classify with errors.Is and close the connection with a typed
// reason.
var (
	// ErrTruncated: the buffer ends before the frame its Length announces.
	// Streaming callers see it as "need more bytes" (Split returns 0, nil
	// while the Length field is incomplete, then a size above len(b));
	// Decode, which is given one complete frame, reports it.
	ErrTruncated = errors.New("frame: truncated frame")
	// ErrNonMinimal: the Length varint has a redundant trailing zero group,
	// or the frame could have used a shorter Length field.
	ErrNonMinimal = errors.New("frame: non-minimal length encoding")
	// ErrLengthOverflow: the Length varint runs past 4 bytes.
	ErrLengthOverflow = errors.New("frame: length varint longer than 4 bytes")
	// ErrTooLarge: Length exceeds the configured maximum frame size.
	ErrTooLarge = errors.New("frame: length exceeds maximum")
	// ErrTooSmall: Length cannot hold its own field plus Cmd and QoS.
	ErrTooSmall = errors.New("frame: length too small for cmd and qos")
	// ErrUnknownCmd: Cmd is not a command this version knows.
	ErrUnknownCmd = errors.New("frame: unknown command")
	// ErrBadQoS: QoS is neither 0 nor 1.
	ErrBadQoS = errors.New("frame: qos must be 0 or 1")
	// ErrShortBody: the body is shorter than its command's fixed fields.
	ErrShortBody = errors.New("frame: body too short for command")
	// ErrContentTooLarge: an encoder was asked for a frame above MaxEncodable.
	ErrContentTooLarge = errors.New("frame: content too large to encode")
)

const (
	// MaxLengthBytes is the widest Length field: 4 LEB128 groups of 7 bits.
	MaxLengthBytes = 4
	// MaxEncodable is the largest frame a 4-byte Length can describe.
	MaxEncodable = 1<<28 - 1
	// DefaultMaxFrame is the default cap on a frame's size (Length value).
	// 1 MiB bounds what one connection can make the server buffer before
	// the frame is complete; file chunks and messages stay well under it.
	DefaultMaxFrame = 1 << 20
	// MinFrame is the smallest valid frame: Length + Cmd + QoS.
	MinFrame = 3
)

// QoS is the note's quality level: 0 fire-and-forget, 1 receipt required.
type QoS byte

// The two quality levels.
const (
	QoS0 QoS = 0
	QoS1 QoS = 1
)

// Cmd is a command code, the first byte of Content.
type Cmd byte

// Command codes. 0x01 to 0x03 are the design note's; the others are MyIM's.
// docs/protocol.md gives the body layout of each with a hex test vector;
// the command table (commands.go) says who sends each and who takes it.
const (
	CmdPing          Cmd = 0x01 // keepalive; answered by PONG, never sealed
	CmdPong          Cmd = 0x02 // answer to PING, echoes its body
	CmdMsg           Cmd = 0x03 // point-to-point message (MsgHeader + content)
	CmdGroupMsg      Cmd = 0x04 // group message (MsgHeader + content)
	CmdBye           Cmd = 0x05 // terminal offline confirmation
	CmdPresence      Cmd = 0x06 // set own status (Presence body)
	CmdFile          Cmd = 0x07 // user-to-user file transfer (MsgHeader + FileHeader + data)
	CmdFileServer    Cmd = 0x08 // private file server request/response
	CmdFetch         Cmd = 0x09 // fetch offline messages
	CmdSignature     Cmd = 0x0A // signature lookup (Lookup body)
	CmdFriendInfo    Cmd = 0x0B // friend info lookup (Lookup body)
	CmdFriendsOnline Cmd = 0x0C // friends-online lookup (Lookup body)
	CmdFriendNotify  Cmd = 0x0D // friend online/offline notification (Presence body)
	CmdServerList    Cmd = 0x0E // server list with priorities (Lookup body)
	CmdAck           Cmd = 0x0F // receipt (Ack body)
	CmdError         Cmd = 0x10 // error (Error body)
	CmdHandshake     Cmd = 0x11 // Noise handshake message (opaque)
	CmdAuth          Cmd = 0x12 // login result / session accepted (JSON)
	CmdRekey         Cmd = 0x13 // in-band rekey marker (empty, sealed)
	CmdNotice        Cmd = 0x14 // server notice, e.g. new device (code + JSON)
	CmdGroup         Cmd = 0x15 // group management (Lookup-like body + JSON)
	CmdProfile       Cmd = 0x16 // set own signature and profile (Lookup body)

	cmdLimit = 0x17
)

// String returns the command's name, or CMD(0xNN) for unknown codes.
func (c Cmd) String() string {
	if c.Known() {
		return commands[c].Name
	}
	return fmt.Sprintf("CMD(0x%02x)", byte(c))
}

// Known reports whether c is a command this version defines.
func (c Cmd) Known() bool { return c != 0 && c < cmdLimit }

// MinBody returns the length of c's fixed body fields, or -1 if c is unknown.
func (c Cmd) MinBody() int {
	if !c.Known() {
		return -1
	}
	return commands[c].MinBody
}

// Frame is a view of one whole frame, Length field included. It aliases the
// bytes it was decoded from and is valid only while they are: in the server,
// until the gnet callback that peeked them returns or discards them.
type Frame []byte

// lenBytes returns how many bytes the Length field takes; f must be valid.
func (f Frame) lenBytes() int {
	n := 1
	for f[n-1]&0x80 != 0 {
		n++
	}
	return n
}

// Cmd returns the command code.
func (f Frame) Cmd() Cmd { return Cmd(f[f.lenBytes()]) }

// QoS returns the quality level.
func (f Frame) QoS() QoS { return QoS(f[f.lenBytes()+1]) }

// Header returns Length + Cmd + QoS: the additional data of a sealed frame.
func (f Frame) Header() []byte { return f[:f.lenBytes()+2] }

// Body returns the bytes after QoS.
func (f Frame) Body() []byte { return f[f.lenBytes()+2:] }

// SizeFor returns the total size of a frame whose body is bodyLen bytes, and
// how many bytes its Length field takes. It reports ErrContentTooLarge past
// MaxEncodable.
func SizeFor(bodyLen int) (total, lenBytes int, err error) {
	// Bounding bodyLen first also keeps c+n below from overflowing int.
	if bodyLen < 0 || bodyLen > MaxEncodable {
		return 0, 0, ErrContentTooLarge
	}
	c := bodyLen + 2
	for n, limit := 1, 1<<7; n <= MaxLengthBytes; n, limit = n+1, limit<<7 {
		if c+n < limit {
			return c + n, n, nil
		}
	}
	return 0, 0, ErrContentTooLarge
}

// Split inspects the start of a stream buffer. It returns the size of the
// first frame when the buffer holds at least its Length field, or 0 and a nil
// error when more bytes are needed to know it. The size is checked against
// max (DefaultMaxFrame when max <= 0) before any body byte is needed, so a
// bogus length closes the connection at once instead of growing a buffer.
// Split does not require the frame to be complete: compare size to len(b).
func Split(b []byte, max int) (size int, err error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var v uint32
	for i := 0; i < MaxLengthBytes; i++ {
		if i >= len(b) {
			return 0, nil
		}
		c := b[i]
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 != 0 {
			continue
		}
		n := i + 1
		if n > 1 && c == 0 {
			return 0, ErrNonMinimal
		}
		if int(v) < n+2 {
			return 0, ErrTooSmall
		}
		if int(v) > max {
			return 0, ErrTooLarge
		}
		// The fewest bytes that can hold the frame: a frame whose content
		// fits with a shorter Length field must use it.
		if _, want, _ := SizeFor(int(v) - n - 2); want != n {
			return 0, ErrNonMinimal
		}
		return int(v), nil
	}
	return 0, ErrLengthOverflow
}

// Check validates Cmd, QoS and the body's fixed fields of a complete frame.
func Check(f Frame) error {
	n := f.lenBytes()
	c := Cmd(f[n])
	if !c.Known() {
		return ErrUnknownCmd
	}
	if q := f[n+1]; q > 1 {
		return ErrBadQoS
	}
	if len(f)-n-2 < commands[c].MinBody {
		return ErrShortBody
	}
	return nil
}

// CheckEnvelope validates Cmd and QoS only: for sealed frames, whose body
// layout can be checked only after it is opened (see CheckBody).
func CheckEnvelope(f Frame) error {
	n := f.lenBytes()
	if !Cmd(f[n]).Known() {
		return ErrUnknownCmd
	}
	if f[n+1] > 1 {
		return ErrBadQoS
	}
	return nil
}

// Read reads one whole frame from a blocking stream: the Length field a
// byte at a time (give it a buffered reader), checked against max as Split
// does before any body byte is read, then the rest, then the envelope
// (CheckEnvelope: a sealed body is checked once opened). The frame is a new
// allocation the caller owns. For clients and tools; the server parses its
// loops' buffers in place with Split instead. A stream that ends inside a
// frame gives io.ErrUnexpectedEOF, one that ends between frames io.EOF.
func Read(r io.Reader, max int) (Frame, error) {
	var hdr [MaxLengthBytes]byte
	for n := 1; n <= MaxLengthBytes; n++ {
		if _, err := io.ReadFull(r, hdr[n-1:n]); err != nil {
			if n > 1 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		size, err := Split(hdr[:n], max)
		if err != nil {
			return nil, err
		}
		if size == 0 {
			continue
		}
		f := make(Frame, size)
		copy(f, hdr[:n])
		if _, err := io.ReadFull(r, f[n:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if err := CheckEnvelope(f); err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, ErrLengthOverflow
}

// CheckBody validates a plaintext body against its command's fixed fields.
func CheckBody(c Cmd, body []byte) error {
	if !c.Known() {
		return ErrUnknownCmd
	}
	if len(body) < commands[c].MinBody {
		return ErrShortBody
	}
	return nil
}

// Decode parses exactly one complete frame at the start of b and returns it
// and its size. It fails with ErrTruncated when b is shorter than the frame.
// The returned Frame aliases b.
func Decode(b []byte, max int) (Frame, int, error) {
	size, err := Split(b, max)
	if err != nil {
		return nil, 0, err
	}
	if size == 0 || size > len(b) {
		return nil, 0, ErrTruncated
	}
	f := Frame(b[:size])
	if err := Check(f); err != nil {
		return nil, 0, err
	}
	return f, size, nil
}

// AppendHeader appends Length + Cmd + QoS for a body of bodyLen bytes.
// The caller appends exactly bodyLen bytes after it.
func AppendHeader(dst []byte, c Cmd, q QoS, bodyLen int) ([]byte, error) {
	total, _, err := SizeFor(bodyLen)
	if err != nil {
		return dst, err
	}
	v := uint32(total)
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v), byte(c), byte(q)), nil
}

// Append appends a whole frame with the given body.
func Append(dst []byte, c Cmd, q QoS, body []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, c, q, len(body))
	if err != nil {
		return dst, err
	}
	return append(dst, body...), nil
}

// Ping and Pong are the design note's bytes, byte for byte.
var (
	Ping = []byte{0x03, 0x01, 0x01}
	Pong = []byte{0x03, 0x02, 0x00}
)
