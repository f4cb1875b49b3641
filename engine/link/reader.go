package link

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// Reader reads link frames from a buffered connection. It belongs to the
// one goroutine that reads the connection; the slices it returns are valid
// until its next call.
type Reader struct {
	r     *bufio.Reader
	max   int
	fixed [17]byte
	// count is how many frames were read after HELLO: what PONG reports.
	count uint64
}

// NewReader returns a reader of r that refuses frames over max bytes, for
// the one goroutine that reads r.
func NewReader(r *bufio.Reader, max int) *Reader { return &Reader{r: r, max: max} }

// SetMax changes the frame size limit (a link takes a small HELLO first,
// then frames up to Config.MaxFrame). Reader's goroutine only.
func (lr *Reader) SetMax(max int) { lr.max = max }

// Count returns how many frames were read after HELLO: what a PONG
// reports. Reader's goroutine only.
func (lr *Reader) Count() uint64 { return lr.count }

// Next reads the next frame's envelope, op and fixed fields (valid until
// the following call) and returns how many tail bytes follow; the caller
// reads (ReadTail, ReadClientFrame, ReadIDsFrame, ReadIDs) or discards
// exactly that many before calling Next again. A frame that is not a valid
// link frame fails with ErrProtocol. Reader's goroutine only.
func (lr *Reader) Next() (op Op, fixed []byte, tail int, err error) {
	var lb [frame.MaxLengthBytes]byte
	n := 0
	for n < len(lb) {
		c, err := lr.r.ReadByte()
		if err != nil {
			return 0, nil, 0, err
		}
		lb[n] = c
		n++
		if c&0x80 == 0 {
			break
		}
	}
	size, err := frame.Split(lb[:n], lr.max)
	if err != nil {
		return 0, nil, 0, errors.Join(ErrProtocol, err)
	}
	var env [3]byte
	if size-n < len(env) {
		return 0, nil, 0, ErrProtocol
	}
	if _, err := io.ReadFull(lr.r, env[:]); err != nil {
		return 0, nil, 0, err
	}
	op = Op(env[2])
	if frame.Cmd(env[0]) != Cmd || op == 0 || op >= opLimit {
		return 0, nil, 0, ErrProtocol
	}
	rest := size - n - len(env)
	fl := fixedLen[op]
	if rest < fl || (rest > fl && !hasTail[op]) {
		return 0, nil, 0, ErrProtocol
	}
	if _, err := io.ReadFull(lr.r, lr.fixed[:fl]); err != nil {
		return 0, nil, 0, err
	}
	lr.count++
	return op, lr.fixed[:fl], rest - fl, nil
}

// ReadTail reads n tail bytes into a pooled buffer the caller owns.
// Reader's goroutine only.
func (lr *Reader) ReadTail(n int) (*bytebufferpool.ByteBuffer, error) {
	b := bytebufferpool.Get()
	b.B = slices.Grow(b.B[:0], n)[:n]
	if _, err := io.ReadFull(lr.r, b.B); err != nil {
		bytebufferpool.Put(b)
		return nil, err
	}
	return b, nil
}

// ReadClientFrame reads a tail that must be exactly one valid client
// frame, into a pooled buffer the caller owns. Reader's goroutine only.
func (lr *Reader) ReadClientFrame(n int) (*bytebufferpool.ByteBuffer, error) {
	b, err := lr.ReadTail(n)
	if err != nil {
		return nil, err
	}
	if f, size, err := frame.Decode(b.B, frame.MaxEncodable); err != nil || size != len(b.B) || len(f) == 0 {
		bytebufferpool.Put(b)
		return nil, errors.Join(ErrProtocol, err)
	}
	return b, nil
}

// ReadIDsFrame reads the tail of an op that carries n ids (u64 each) and
// then one whole client frame (FANOUT, DELIVER_MANY): it appends the ids to
// ids and returns them with the tail's buffer, which the caller owns and
// whose bytes from 8*n on are the frame. what names the op in errors.
// Reader's goroutine only.
func (lr *Reader) ReadIDsFrame(what string, n, tail int, ids []uint64) ([]uint64, *bytebufferpool.ByteBuffer, error) {
	if n > tail/8 {
		return ids, nil, fmt.Errorf("%w: %s of %d ids in %d bytes", ErrProtocol, what, n, tail)
	}
	buf, err := lr.ReadTail(tail)
	if err != nil {
		return ids, nil, err
	}
	b := buf.B[8*n:]
	if f, size, err := frame.Decode(b, frame.MaxEncodable); err != nil || size != len(b) || len(f) == 0 {
		bytebufferpool.Put(buf)
		return ids, nil, errors.Join(ErrProtocol, err)
	}
	return appendIDs(ids, buf.B, n), buf, nil
}

// ReadIDs reads the tail of an op that carries exactly n ids (STORED) and
// appends them to ids. what names the op in errors. Reader's goroutine
// only.
func (lr *Reader) ReadIDs(what string, n, tail int, ids []uint64) ([]uint64, error) {
	if n != tail/8 || tail%8 != 0 {
		return ids, fmt.Errorf("%w: %s of %d ids in %d bytes", ErrProtocol, what, n, tail)
	}
	buf, err := lr.ReadTail(tail)
	if err != nil {
		return ids, err
	}
	ids = appendIDs(ids, buf.B, n)
	bytebufferpool.Put(buf)
	return ids, nil
}

// appendIDs appends the n big-endian ids at the start of b.
func appendIDs(ids []uint64, b []byte, n int) []uint64 {
	for i := 0; i < n; i++ {
		ids = append(ids, binary.BigEndian.Uint64(b[8*i:]))
	}
	return ids
}

// Hello reads the first frame of a connection, which must be a HELLO of
// this Version, and returns what it announces. The frames after it are
// what Count counts. Reader's goroutine only.
func (lr *Reader) Hello() (Hello, error) {
	op, fixed, tail, err := lr.Next()
	if err != nil {
		return Hello{}, err
	}
	if op != OpHello || tail != 0 || fixed[0] != Version {
		return Hello{}, ErrProtocol
	}
	lr.count = 0 // PONG counts what follows HELLO
	return Hello{ID: binary.BigEndian.Uint32(fixed[2:]), Flags: fixed[1]}, nil
}

// WriteHello writes a HELLO straight to the connection, within timeout,
// before a Queue's writer takes the connection over: the caller must be
// the only writer of nc.
func WriteHello(nc net.Conn, h Hello, timeout time.Duration) error {
	it := NewHello(h.ID, h.Flags)
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := nc.Write(it.head[:it.n])
	_ = nc.SetWriteDeadline(time.Time{})
	return err
}
