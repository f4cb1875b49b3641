package center

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
)

// benchDrain is how many frames a link benchmark queues before it empties
// the queue (inside the timed loop, the same for every benchmark).
const benchDrain = 4096

// BenchmarkLinkProducers measures what the producers of a link's queue
// pay per frame: an endpoint's Handle, the center's Deliver to a linked
// endpoint, and a push to a peer center.
func BenchmarkLinkProducers(b *testing.B) {
	var lc link.Config
	lc.FillDefaults()
	ref := im.SessionRef{Endpoint: 1, Session: 2}
	b.Run("op=handle", func(b *testing.B) {
		rc := &RemoteCenter{q: link.NewQueue(&lc), r: link.NewRedialer(time.Second, time.Second),
			sessions: map[uint64]*remoteSess{2: {user: 1}}}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			buf := bytebufferpool.Get()
			buf.B = append(buf.B[:0], frame.Ping...)
			rc.Handle(1, ref, buf)
			if i%benchDrain == benchDrain-1 {
				rc.q.Clear()
			}
		}
	})
	b.Run("op=handle-qos1", func(b *testing.B) {
		rc := &RemoteCenter{q: link.NewQueue(&lc), r: link.NewRedialer(time.Second, time.Second),
			sessions: map[uint64]*remoteSess{2: {user: 1}}}
		msg, _ := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 1, To: 3, CID: 9}, []byte("hi"))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			buf := bytebufferpool.Get()
			buf.B = append(buf.B[:0], msg...)
			rc.Handle(1, ref, buf)
			if i%benchDrain == benchDrain-1 {
				rc.q.Clear()
			}
		}
	})
	b.Run("op=deliver", func(b *testing.B) {
		re := &remoteEndpoint{id: 1, q: link.NewQueue(&lc)}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			buf := bytebufferpool.Get()
			buf.B = append(buf.B[:0], frame.Ping...)
			if re.Deliver(ref, buf) != nil {
				b.Fatal("deliver refused")
			}
			if i%benchDrain == benchDrain-1 {
				re.q.Clear()
			}
		}
	})
	b.Run("op=peer", func(b *testing.B) {
		p := &peerLink{q: link.NewQueue(&lc), r: link.NewRedialer(time.Second, time.Second), rerouting: true}
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		p.r.Up(c1)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if !p.push(link.NewResult(1, uint64(i), 0)) {
				b.Fatal("push refused")
			}
			if i%benchDrain == benchDrain-1 {
				p.q.Clear()
			}
		}
	})
}

// BenchmarkLinkHandleParallel is Handle from every core at once, as the
// endpoint's event loops call it, with a writer draining the queue.
func BenchmarkLinkHandleParallel(b *testing.B) {
	var lc link.Config
	lc.FillDefaults()
	rc := &RemoteCenter{q: link.NewQueue(&lc), r: link.NewRedialer(time.Second, time.Second),
		sessions: map[uint64]*remoteSess{2: {user: 1}}}
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-stop:
				return
			default:
				rc.q.Clear()
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ref := im.SessionRef{Endpoint: 1, Session: 2}
		for pb.Next() {
			buf := bytebufferpool.Get()
			buf.B = append(buf.B[:0], frame.Ping...)
			rc.Handle(1, ref, buf)
		}
	})
	close(stop)
	<-drained
}
