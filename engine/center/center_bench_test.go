package center

import (
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage/bolt"
)

// sinkEndpoint stands for an endpoint's Deliver: it takes each frame and
// returns its buffer to the pool, as the endpoint does once it has sealed
// and written it. It measures the center's own forwarding cost.
type sinkEndpoint struct {
	id     uint32
	frames int
	acks   func(b []byte)
}

func (e *sinkEndpoint) ID() uint32 { return e.id }
func (e *sinkEndpoint) Deliver(s im.SessionRef, buf *bytebufferpool.ByteBuffer) error {
	e.frames++
	if e.acks != nil {
		e.acks(buf.B)
	}
	bytebufferpool.Put(buf)
	return nil
}

func benchCenter(b *testing.B) (*LocalCenter, *sinkEndpoint) {
	st, err := bolt.Open(bolt.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	c := NewLocalCenter(Config{ID: 1, Store: st, AckTimeout: time.Hour})
	b.Cleanup(c.Close)
	ep := &sinkEndpoint{id: 7}
	c.Attach(ep)
	c.Online(1, im.SessionRef{Endpoint: 7, Session: 100})
	c.Online(2, im.SessionRef{Endpoint: 7, Session: 200})
	// A session first drains the store (empty here), then takes live
	// pushes: measure those.
	for c.spilling.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	return c, ep
}

// BenchmarkForward measures one p2p message through the center: endpoint
// hands it in, the center assigns an id, routes it and hands it to the
// recipient's endpoint. With QoS 1 the recipient's receipt and the sender's
// ack are included.
func BenchmarkForward(b *testing.B) {
	for _, q := range []frame.QoS{frame.QoS0, frame.QoS1} {
		name := "qos=0"
		if q == frame.QoS1 {
			name = "qos=1"
		}
		b.Run(name+"/payload=256B", func(b *testing.B) {
			c, ep := benchCenter(b)
			content := make([]byte, 256)
			msg, _ := frame.AppendMsg(nil, frame.CmdMsg, q, frame.MsgHeader{From: 1, To: 2, Srv: 7}, content)
			var ackBuf []byte
			sender := im.SessionRef{Endpoint: 7, Session: 100}
			recipient := im.SessionRef{Endpoint: 7, Session: 200}
			if q == frame.QoS1 {
				// The recipient acks each push as it arrives.
				var mid uint64
				ep.acks = func(b []byte) {
					if f := frame.Frame(b); f.Cmd() == frame.CmdMsg {
						mid = frame.Msg(f.Body()).MID()
					}
				}
				defer func() { ep.acks = nil }()
				b.ReportAllocs()
				b.SetBytes(int64(len(msg)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					buf := bytebufferpool.Get()
					buf.B = append(buf.B, msg...)
					c.Handle(1, sender, buf)
					ackBuf, _ = frame.AppendAck(ackBuf[:0], 0, mid, 1, frame.AckReceived)
					ab := bytebufferpool.Get()
					ab.B = append(ab.B, ackBuf...)
					c.Handle(2, recipient, ab)
				}
				return
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				buf := bytebufferpool.Get()
				buf.B = append(buf.B, msg...)
				c.Handle(1, sender, buf)
			}
			b.StopTimer()
			if ep.frames < b.N {
				b.Fatalf("delivered %d of %d", ep.frames, b.N)
			}
		})
	}
}
