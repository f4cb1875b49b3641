//go:build !race

package frame_test

import (
	"testing"

	"github.com/myim/myim/frame"
)

// allocSink keeps results alive inside the measured functions.
var allocSink uint64

// TestZeroAllocs holds the hot path to its budget: decoding, reading a
// message, and encoding into a buffer with room allocate nothing.
func TestZeroAllocs(t *testing.T) {
	content := make([]byte, 256)
	msg, err := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, hopSU, content)
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte{0x83, 0x00, 0x01, 0x01}
	buf := make([]byte, 0, 1024)
	pooled := frame.AcquireBuffer()
	defer frame.ReleaseBuffer(pooled)
	pooled.B = append(pooled.B[:0], make([]byte, 1024)...)

	cases := []struct {
		name string
		fn   func()
	}{
		{"Decode", func() {
			f, n, err := frame.Decode(msg, frame.DefaultMaxFrame)
			if err != nil {
				panic(err)
			}
			allocSink += uint64(n + len(f.Body()))
		}},
		{"Decode malformed", func() {
			if _, _, err := frame.Decode(bad, frame.DefaultMaxFrame); err == nil {
				panic("accepted")
			}
		}},
		{"Split and Check", func() {
			size, _ := frame.Split(msg, frame.DefaultMaxFrame)
			if frame.Check(frame.Frame(msg[:size])) != nil {
				panic("check")
			}
		}},
		{"Msg accessors", func() {
			m := frame.Msg(frame.Frame(msg).Body())
			h := m.Header()
			allocSink += m.From() + m.To() + uint64(m.Time()) + m.CID() + uint64(m.Srv()) + m.MID() +
				uint64(m.DSrv()) + uint64(len(m.Content())) + h.MID
		}},
		{"Msg setters", func() {
			m := frame.Msg(frame.Frame(msg).Body())
			m.SetSrv(epA)
			m.SetMID(1000)
			m.SetDSrv(epB)
		}},
		{"AppendMsg", func() { buf, _ = frame.AppendMsg(buf[:0], frame.CmdMsg, frame.QoS1, hopSU, content) }},
		{"AppendMsg pooled", func() {
			pooled.B, _ = frame.AppendMsg(pooled.B[:0], frame.CmdMsg, frame.QoS1, hopSU, content)
		}},
		{"AppendAck", func() { buf, _ = frame.AppendAck(buf[:0], 1, 1000, bob, frame.AckStored) }},
		{"Append", func() { buf, _ = frame.Append(buf[:0], frame.CmdPong, frame.QoS0, nil) }},
		{"AppendFile", func() {
			buf, _ = frame.AppendFile(buf[:0], frame.QoS0, hopUS, frame.FileChunk, 9, 4096, content)
		}},
		{"AppendPresence", func() {
			buf, _ = frame.AppendPresence(buf[:0], frame.CmdPresence, alice, newYear, frame.StatusAway, content[:5])
		}},
		{"AppendFetch", func() { buf, _ = frame.AppendFetch(buf[:0], 5, frame.FetchP2P, 0, 0, 50) }},
		{"AppendError", func() { buf, _ = frame.AppendError(buf[:0], frame.ErrCodeForbidden, 1, "sender mismatch") }},
		{"command table", func() {
			f := frame.Frame(msg)
			c := f.Cmd()
			if c.Route() == frame.RouteCenter && c.Message() && !c.Pooled() && c.Ref() == frame.RefCID {
				allocSink += frame.RequestRef(c, f.Body()) + uint64(c.Info().MinBody)
			}
		}},
	}
	for _, c := range cases {
		if a := testing.AllocsPerRun(100, c.fn); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", c.name, a)
		}
	}
}
