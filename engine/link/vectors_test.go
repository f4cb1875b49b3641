package link

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// linkDoc is the document whose link frame vectors this file checks.
const linkDoc = "../../docs/operations.md"

// linkVector is one link frame: how it is built, and what a reader makes
// of it (its op, fixed fields and tail, in hex).
type linkVector struct {
	name  string
	item  func() Item
	op    Op
	fixed string
	tail  string
}

// testPing and testMsg are the client frames the vectors carry.
var (
	testPing = frame.Ping
	testMsg  = func() []byte {
		b, err := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 1, To: 2, CID: 3}, []byte("hi"))
		if err != nil {
			panic(err)
		}
		return b
	}()
)

func pooled(b []byte) *bytebufferpool.ByteBuffer {
	buf := bytebufferpool.Get()
	buf.B = append(buf.B[:0], b...)
	return buf
}

// linkVectors is one frame of each op; docs/operations.md shows each under
// "Vector: link <name>", and the fuzz target starts from them.
var linkVectors = []linkVector{
	{name: "HELLO of endpoint 7, takes DELIVER_MANY", item: func() Item { return NewHello(7, HelloMany) },
		op: OpHello, fixed: "010200000007"},
	{name: "ONLINE of user 1, session 2", item: func() Item { return NewOnline(1, 2, 0) },
		op: OpOnline, fixed: "0000000000000001000000000000000200"},
	{name: "OFFLINE of user 1, session 2, bye", item: func() Item { return NewOffline(1, 2, true) },
		op: OpOffline, fixed: "0000000000000001000000000000000201"},
	{name: "HANDLE of a PING from user 1, session 2", item: func() Item { return NewHandle(1, 2, pooled(testPing)) },
		op: OpHandle, fixed: "00000000000000010000000000000002", tail: hex.EncodeToString(testPing)},
	{name: "DELIVER of a QoS 1 MSG to session 2", item: func() Item { return NewDeliver(2, pooled(testMsg)) },
		op: OpDeliver, fixed: "0000000000000002", tail: hex.EncodeToString(testMsg)},
	{name: "NOTIFY user 1, code 5, {}", item: func() Item { return NewNotify(1, 5, pooled([]byte("{}"))) },
		op: OpNotify, fixed: "00000000000000010005", tail: "7b7d"},
	{name: "PING nonce 9", item: func() Item { return NewPing(9) },
		op: OpPing, fixed: "0000000000000009"},
	{name: "PONG nonce 9, 4 frames received", item: func() Item { return NewPong(9, 4) },
		op: OpPong, fixed: "00000000000000090000000000000004"},
	{name: "DELIVER_MANY of a PING to sessions 2 and 3",
		item: func() Item { return NewDeliverMany([]uint64{2, 3}, testPing) },
		op:   OpDeliverMany, fixed: "00000002", tail: "00000000000000020000000000000003" + hex.EncodeToString(testPing)},
	{name: "HELLO of center 1, takes rerouting",
		item: func() Item { return NewHello(1, HelloCenter|HelloRerouting) },
		op:   OpHello, fixed: "010500000001"},
	{name: "FORWARD of a QoS 1 MSG for user 2, point-to-point",
		item: func() Item { return NewForward(2, ForwardP2P, pooled(testMsg)) },
		op:   OpForward, fixed: "000000000000000201", tail: hex.EncodeToString(testMsg)},
	{name: "RESULT to user 2, mid 9, moved", item: func() Item { return NewResult(2, 9, ResultMoved) },
		op: OpResult, fixed: "00000000000000020000000000000009fe"},
	{name: "FANOUT of a PING to users 2 and 3", item: func() Item { return NewFanout([]uint64{2, 3}, testPing) },
		op: OpFanout, fixed: "00000002", tail: "00000000000000020000000000000003" + hex.EncodeToString(testPing)},
	{name: "STORED for users 2 and 3", item: func() Item { return NewStored([]uint64{2, 3}) },
		op: OpStored, fixed: "00000002", tail: "00000000000000020000000000000003"},
}

// bytes returns the vector's encoding and releases the item's buffer.
func (v linkVector) bytes() []byte {
	it := v.item()
	b := it.AppendTo(nil)
	it.Release()
	return b
}

// loadLinkDocVectors reads the "Vector: <name>" lines of linkDoc that are
// followed by a ```hex block, by name.
func loadLinkDocVectors(tb testing.TB) map[string][]byte {
	tb.Helper()
	doc, err := os.ReadFile(linkDoc)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	var name string
	var inHex bool
	var text strings.Builder
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case inHex && line == "```":
			b, err := hex.DecodeString(strings.Join(strings.Fields(text.String()), ""))
			if err != nil {
				tb.Fatalf("%s: vector %q: %v", linkDoc, name, err)
			}
			out[name], inHex, name = b, false, ""
		case inHex:
			text.WriteString(line + " ")
		case line == "```hex" && name != "":
			inHex = true
			text.Reset()
		case strings.HasPrefix(line, "Vector: link "):
			name = strings.TrimPrefix(line, "Vector: link ")
		}
	}
	return out
}

// TestLinkVectors checks that each vector encodes to the bytes the document
// shows and that the reader takes those bytes apart into the vector's op,
// fixed fields and tail.
func TestLinkVectors(t *testing.T) {
	doc := loadLinkDocVectors(t)
	if len(doc) != len(linkVectors) {
		t.Errorf("%s shows %d link vectors, the table has %d", linkDoc, len(doc), len(linkVectors))
	}
	for _, v := range linkVectors {
		b := v.bytes()
		if want, ok := doc[v.name]; !ok {
			t.Errorf("%q: not in %s; its bytes are\n%s", v.name, linkDoc, hex.EncodeToString(b))
		} else if !bytes.Equal(b, want) {
			t.Errorf("%q: encodes to\n%x\nthe document shows\n%x", v.name, b, want)
		}
		lr := NewReader(bufio.NewReader(bytes.NewReader(b)), frame.DefaultMaxFrame)
		op, fixed, tail, err := lr.Next()
		if err != nil {
			t.Fatalf("%q: %v", v.name, err)
		}
		if op != v.op || hex.EncodeToString(fixed) != v.fixed {
			t.Errorf("%q: read op %02x fixed %x, want %02x %s", v.name, op, fixed, v.op, v.fixed)
		}
		var got []byte
		if tail > 0 {
			buf, err := lr.ReadTail(tail)
			if err != nil {
				t.Fatalf("%q: tail: %v", v.name, err)
			}
			got = append(got, buf.B...)
			bytebufferpool.Put(buf)
		}
		if hex.EncodeToString(got) != v.tail {
			t.Errorf("%q: tail %x, want %s", v.name, got, v.tail)
		}
		if _, _, _, err := lr.Next(); !errors.Is(err, io.EOF) {
			t.Errorf("%q: bytes left after the frame (%v)", v.name, err)
		}
	}
}

// FuzzLinkReader feeds arbitrary bytes to the link reader, whole and one
// byte at a time, and reads every frame's tail as the link's readers do:
// no input may panic, a frame's fixed fields are as long as its op says,
// and the reader never reads past what it was given.
func FuzzLinkReader(f *testing.F) {
	var all []byte
	for _, v := range linkVectors {
		b := v.bytes()
		f.Add(b, false)
		all = append(all, b...)
	}
	f.Add(all, true)
	f.Add([]byte{0x05, 0x40, 0x00, 0x00, 0x00}, false) // op 0
	f.Fuzz(func(t *testing.T, data []byte, bytewise bool) {
		var src io.Reader = bytes.NewReader(data)
		if bytewise {
			src = iotest.OneByteReader(src)
		}
		counted := &countingReader{r: src}
		lr := NewReader(bufio.NewReaderSize(counted, 16), 1<<16)
		var ids []uint64
		for {
			op, fixed, tail, err := lr.Next()
			if err != nil {
				break
			}
			if op == 0 || op >= opLimit || len(fixed) != fixedLen[op] || tail < 0 || (tail > 0 && !hasTail[op]) {
				t.Fatalf("op %02x fixed %d tail %d accepted", op, len(fixed), tail)
			}
			var buf *bytebufferpool.ByteBuffer
			switch op {
			case OpHandle, OpDeliver, OpForward:
				buf, err = lr.ReadClientFrame(tail)
			case OpFanout, OpDeliverMany:
				ids, buf, err = lr.ReadIDsFrame("fuzz", int(binary.BigEndian.Uint32(fixed)), tail, ids[:0])
			case OpStored:
				ids, err = lr.ReadIDs("fuzz", int(binary.BigEndian.Uint32(fixed)), tail, ids[:0])
			default:
				if tail > 0 {
					buf, err = lr.ReadTail(tail)
				}
			}
			if buf != nil {
				bytebufferpool.Put(buf)
			}
			if err != nil {
				break
			}
		}
		if counted.n > len(data) {
			t.Fatalf("read %d bytes of %d", counted.n, len(data))
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
