package center

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

// linkReader reads link frames from a buffered connection.
type linkReader struct {
	r     *bufio.Reader
	max   int
	fixed [17]byte
	// count is how many frames were read after HELLO: what PONG reports.
	count uint64
}

// next reads the next frame's envelope, op and fixed fields (valid until
// the following call) and returns how many tail bytes follow; the caller
// reads or discards exactly that many before calling next again.
func (lr *linkReader) next() (op byte, fixed []byte, tail int, err error) {
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
		return 0, nil, 0, errors.Join(ErrLinkProtocol, err)
	}
	var env [3]byte
	if size-n < len(env) {
		return 0, nil, 0, ErrLinkProtocol
	}
	if _, err := io.ReadFull(lr.r, env[:]); err != nil {
		return 0, nil, 0, err
	}
	op = env[2]
	if frame.Cmd(env[0]) != cmdLink || op == 0 || op >= linkOpLimit {
		return 0, nil, 0, ErrLinkProtocol
	}
	rest := size - n - len(env)
	fl := linkFixed[op]
	if rest < fl || (rest > fl && !linkTail[op]) {
		return 0, nil, 0, ErrLinkProtocol
	}
	if _, err := io.ReadFull(lr.r, lr.fixed[:fl]); err != nil {
		return 0, nil, 0, err
	}
	lr.count++
	return op, lr.fixed[:fl], rest - fl, nil
}

// readTail reads n tail bytes into a pooled buffer the caller owns.
func (lr *linkReader) readTail(n int) (*bytebufferpool.ByteBuffer, error) {
	b := bytebufferpool.Get()
	b.B = slices.Grow(b.B[:0], n)[:n]
	if _, err := io.ReadFull(lr.r, b.B); err != nil {
		bytebufferpool.Put(b)
		return nil, err
	}
	return b, nil
}

// readClientFrame reads a tail that must be exactly one valid client frame.
func (lr *linkReader) readClientFrame(n int) (*bytebufferpool.ByteBuffer, error) {
	b, err := lr.readTail(n)
	if err != nil {
		return nil, err
	}
	if f, size, err := frame.Decode(b.B, frame.MaxEncodable); err != nil || size != len(b.B) || len(f) == 0 {
		bytebufferpool.Put(b)
		return nil, errors.Join(ErrLinkProtocol, err)
	}
	return b, nil
}

// readIDsFrame reads the tail of an op that carries n ids (u64 each) and
// then one whole client frame (FANOUT, DELIVER_MANY): it appends the ids to
// ids and returns them with the tail's buffer, whose bytes from 8*n on are
// the frame. what names the op in errors.
func (lr *linkReader) readIDsFrame(what string, n, tail int, ids []uint64) ([]uint64, *bytebufferpool.ByteBuffer, error) {
	if n > tail/8 {
		return ids, nil, fmt.Errorf("%w: %s of %d ids in %d bytes", ErrLinkProtocol, what, n, tail)
	}
	buf, err := lr.readTail(tail)
	if err != nil {
		return ids, nil, err
	}
	b := buf.B[8*n:]
	if f, size, err := frame.Decode(b, frame.MaxEncodable); err != nil || size != len(b) || len(f) == 0 {
		bytebufferpool.Put(buf)
		return ids, nil, errors.Join(ErrLinkProtocol, err)
	}
	return appendUsers(ids, buf.B, n), buf, nil
}

// readHello reads the first frame of a connection, which must be HELLO,
// and returns the peer's id and HELLO flags.
func readHello(lr *linkReader) (uint32, byte, error) {
	op, fixed, tail, err := lr.next()
	if err != nil {
		return 0, 0, err
	}
	if op != linkHello || tail != 0 || fixed[0] != linkVersion {
		return 0, 0, ErrLinkProtocol
	}
	lr.count = 0 // PONG counts what follows HELLO
	return binary.BigEndian.Uint32(fixed[2:]), fixed[1], nil
}

// writeHello writes a HELLO straight to the connection, before the writer
// goroutine starts.
func writeHello(nc net.Conn, id uint32, flags byte, timeout time.Duration) error {
	it := helloItem(id, flags)
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := nc.Write(it.head[:it.n])
	_ = nc.SetWriteDeadline(time.Time{})
	return err
}
