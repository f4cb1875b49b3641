package frame_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/myim/myim/frame"
)

// benchSizes are the payload sizes every benchmark runs at: an empty
// message, a typical chat message, and a large one.
var benchSizes = []int{0, 256, 4 << 10}

func payloadName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("payload=%dKiB", n>>10)
	}
	return fmt.Sprintf("payload=%dB", n)
}

// benchSink keeps results alive so the compiler cannot drop the work.
var benchSink uint64

// BenchmarkDecode is the per-frame work of the read loop on a MSG: Split,
// Check, then every header accessor and the content.
func BenchmarkDecode(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(payloadName(n), func(b *testing.B) {
			buf, err := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, hopSU, make([]byte, n))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			var s uint64
			for b.Loop() {
				size, err := frame.Split(buf, frame.DefaultMaxFrame)
				if err != nil || size == 0 || size > len(buf) {
					b.Fatalf("Split = %d, %v", size, err)
				}
				f := frame.Frame(buf[:size])
				if err := frame.Check(f); err != nil {
					b.Fatal(err)
				}
				m := frame.Msg(f.Body())
				s += m.From() + m.To() + uint64(m.Time()) + m.CID() + uint64(m.Srv()) + m.MID() +
					uint64(m.DSrv()) + uint64(len(m.Content()))
			}
			benchSink = s
		})
	}
}

// BenchmarkDecodeRead takes every frame out of one 64 KiB read full of MSG
// frames, as the read loop does when a socket read returns many frames,
// and reports the cost per frame.
func BenchmarkDecodeRead(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(payloadName(n), func(b *testing.B) {
			one, _ := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, hopSU, make([]byte, n))
			read := bytes.Repeat(one, (64<<10)/len(one))
			frames := len(read) / len(one)
			b.ReportAllocs()
			b.SetBytes(int64(len(read)))
			var s uint64
			for b.Loop() {
				for p := read; len(p) > 0; {
					f, size, err := frame.Decode(p, frame.DefaultMaxFrame)
					if err != nil {
						b.Fatal(err)
					}
					s += frame.Msg(f.Body()).MID()
					p = p[size:]
				}
			}
			benchSink = s
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
		})
	}
}

// BenchmarkDecodeBaseline is the usual first cut the frame package
// replaces, for comparison: a 4-byte big-endian length, encoding/binary
// reading the header into a struct, and the content copied out.
func BenchmarkDecodeBaseline(b *testing.B) {
	type header struct {
		Cmd, QoS uint8
		From, To uint64
		Time     int64
		CID      uint64
		Srv      uint32
		MID      uint64
		DSrv     uint32
	}
	for _, n := range benchSizes {
		b.Run(payloadName(n), func(b *testing.B) {
			var w bytes.Buffer
			h := header{Cmd: byte(frame.CmdMsg), QoS: 1, From: alice, To: bob, Time: newYear, CID: 1,
				Srv: epA, MID: 1000, DSrv: epB}
			binary.Write(&w, binary.BigEndian, uint32(2+frame.MsgHeaderLen+n))
			binary.Write(&w, binary.BigEndian, h)
			w.Write(make([]byte, n))
			buf := w.Bytes()
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			var s uint64
			for b.Loop() {
				r := bytes.NewReader(buf)
				var length uint32
				var got header
				if err := binary.Read(r, binary.BigEndian, &length); err != nil {
					b.Fatal(err)
				}
				if err := binary.Read(r, binary.BigEndian, &got); err != nil {
					b.Fatal(err)
				}
				content := make([]byte, int(length)-2-frame.MsgHeaderLen)
				if _, err := io.ReadFull(r, content); err != nil {
					b.Fatal(err)
				}
				s += got.From + got.MID + uint64(len(content))
			}
			benchSink = s
		})
	}
}

// BenchmarkEncode builds a MSG in a pooled buffer reused across frames,
// as the write path does.
func BenchmarkEncode(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(payloadName(n), func(b *testing.B) {
			content := make([]byte, n)
			buf := frame.AcquireBuffer()
			defer frame.ReleaseBuffer(buf)
			var err error
			buf.B, err = frame.AppendMsg(buf.B[:0], frame.CmdMsg, frame.QoS1, hopSU, content)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(buf.B)))
			for b.Loop() {
				buf.B, err = frame.AppendMsg(buf.B[:0], frame.CmdMsg, frame.QoS1, hopSU, content)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPingPong decodes a PING whose body is the payload and builds
// the PONG that echoes it in a pooled buffer: the server's whole keepalive
// work outside the socket calls.
func BenchmarkPingPong(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(payloadName(n), func(b *testing.B) {
			ping, _ := frame.Append(nil, frame.CmdPing, frame.QoS1, make([]byte, n))
			out := frame.AcquireBuffer()
			defer frame.ReleaseBuffer(out)
			b.ReportAllocs()
			b.SetBytes(int64(2 * len(ping)))
			for b.Loop() {
				f, _, err := frame.Decode(ping, frame.DefaultMaxFrame)
				if err != nil || f.Cmd() != frame.CmdPing {
					b.Fatalf("Decode: %v", err)
				}
				out.B, err = frame.Append(out.B[:0], frame.CmdPong, frame.QoS0, f.Body())
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCommandTable is the endpoint's classification of each frame a
// client sent (who takes it; a message's sender; a receipt), over a mix of
// commands: through the command table, and through the switch it
// replaced, the baseline.
func BenchmarkCommandTable(b *testing.B) {
	var frames []frame.Frame
	for _, c := range []frame.Cmd{frame.CmdMsg, frame.CmdAck, frame.CmdMsg, frame.CmdGroupMsg,
		frame.CmdFetch, frame.CmdMsg, frame.CmdAck, frame.CmdPresence} {
		l := layoutOf(c)
		f, err := l.random(rand.New(rand.NewPCG(1, uint64(c))), 16).appendFrame(nil, c, frame.QoS1)
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, f)
	}
	b.Run("table", func(b *testing.B) {
		b.ReportAllocs()
		var s uint64
		for i := 0; b.Loop(); i++ {
			f := frames[i&7]
			switch c := f.Cmd(); c.Route() {
			case frame.RouteCenter:
				if c.Message() {
					s += frame.Msg(f.Body()).From()
				} else if c == frame.CmdAck {
					s += uint64(frame.Ack(f.Body()).Status())
				}
			case frame.RouteEndpoint:
				s += 2
			default:
				s++
			}
		}
		benchSink = s
	})
	b.Run("switch", func(b *testing.B) {
		b.ReportAllocs()
		var s uint64
		for i := 0; b.Loop(); i++ {
			f := frames[i&7]
			switch f.Cmd() {
			case frame.CmdMsg, frame.CmdGroupMsg, frame.CmdFile:
				s += frame.Msg(f.Body()).From()
			case frame.CmdBye, frame.CmdPong:
				s += 2
			case frame.CmdAck:
				s += uint64(frame.Ack(f.Body()).Status())
			case frame.CmdHandshake, frame.CmdAuth, frame.CmdNotice, frame.CmdFriendNotify, frame.CmdError:
				s++
			}
		}
		benchSink = s
	})
}
