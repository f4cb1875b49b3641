package link

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/myim/myim/frame"
)

// TestReaderRejects feeds malformed link frames to the reader.
func TestReaderRejects(t *testing.T) {
	good := NewOnline(1, 2, 0)
	cases := map[string][]byte{
		"client command": frame.Ping,
		"unknown op":     {0x04, byte(Cmd), 0, 0x7f},
		"short fixed":    append([]byte{0x05, byte(Cmd), 0, byte(OpOnline)}, 1, 2),
		"tail on ONLINE": append(append([]byte{byte(good.n + 1)}, good.head[1:good.n]...), 9),
		"huge length":    {0xff, 0xff, 0xff, 0x7f},
	}
	for name, b := range cases {
		r, w := net.Pipe()
		go func() { _, _ = w.Write(b); w.Close() }()
		lr := NewReader(bufio.NewReader(r), 1<<20)
		if _, _, _, err := lr.Next(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		r.Close()
	}
	lr := NewReader(bufio.NewReader(&sliceReader{b: good.AppendTo(nil)}), 64)
	if op, fixed, tail, err := lr.Next(); err != nil || op != OpOnline || tail != 0 || binary.BigEndian.Uint64(fixed[8:]) != 2 {
		t.Fatalf("valid ONLINE: op %d tail %d err %v", op, tail, err)
	}
}

// A HELLO must come first, of this version; what follows it is counted
// for PONG, and a STORED whose count disagrees with its tail is refused.
func TestReaderHelloAndCounts(t *testing.T) {
	var b []byte
	for _, it := range []Item{NewHello(3, HelloCenter), NewPing(1), NewStored([]uint64{5, 6})} {
		b = it.AppendTo(b)
		it.Release()
	}
	lr := NewReader(bufio.NewReader(&sliceReader{b: b}), 1<<10)
	h, err := lr.Hello()
	if err != nil || h != (Hello{ID: 3, Flags: HelloCenter}) || lr.Count() != 0 {
		t.Fatalf("hello %+v count %d: %v", h, lr.Count(), err)
	}
	if op, _, _, err := lr.Next(); err != nil || op != OpPing || lr.Count() != 1 {
		t.Fatalf("ping: op %d count %d: %v", op, lr.Count(), err)
	}
	op, fixed, tail, err := lr.Next()
	if err != nil || op != OpStored {
		t.Fatalf("stored: op %d: %v", op, err)
	}
	ids, err := lr.ReadIDs("STORED", int(binary.BigEndian.Uint32(fixed)), tail, nil)
	if err != nil || len(ids) != 2 || ids[0] != 5 || ids[1] != 6 {
		t.Fatalf("stored ids %v: %v", ids, err)
	}
	if _, err := lr.ReadIDs("STORED", 3, 16, nil); !errors.Is(err, ErrProtocol) {
		t.Fatalf("3 ids in 16 bytes: %v", err)
	}

	ping := NewPing(1)
	lr = NewReader(bufio.NewReader(&sliceReader{b: ping.AppendTo(nil)}), 64)
	if _, err := lr.Hello(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a PING taken for HELLO: %v", err)
	}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}
