package node_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/nodetest"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// processCPU returns this process's user and system CPU time in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// pushNode is an all-in-one node (embedded store, center, endpoint) with
// sessions for users 1..n, each one client.Conn that acks what it gets.
type pushNode struct {
	srv   *engine.Server
	ep    *endpoint.Handler
	st    storage.Store
	conns []*client.Conn
	raw   []*sinkConn // each session's socket, as the client reads it
}

// sinkConn is a client's socket that counts what it reads and, once
// sunk, reads on for itself and gives the client nothing more: a member
// that only drains its socket, so that the benchmark's allocations and
// CPU are the server's, not those of many clients opening frames.
type sinkConn struct {
	net.Conn
	sunk  atomic.Bool
	bytes atomic.Int64
}

func (s *sinkConn) Read(p []byte) (int, error) {
	for {
		n, err := s.Conn.Read(p)
		s.bytes.Add(int64(n))
		if err != nil || !s.sunk.Load() {
			return n, err
		}
	}
}

func startPushNode(b testing.TB, loops, n int, autoAck bool) *pushNode {
	b.Helper()
	nd := nodetest.New(b, nodetest.Options{})
	st, id, _, ep := nd.Store, nd.Identity, nd.Center, nd.Endpoint
	p := &pushNode{srv: startServer(b, ep, engine.WithLoops(loops), engine.WithIdleTimeout(10*time.Minute)), ep: ep, st: st}
	dev, _ := session.NewStaticKey()
	var raw *sinkConn
	cfg := client.Config{Device: dev, AutoAck: autoAck, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		raw = &sinkConn{Conn: nc}
		return raw, nil
	}}
	ctx := context.Background()
	for u := uint64(1); u <= uint64(n); u++ {
		if _, err := st.CreateUser(ctx, storage.User{Name: fmt.Sprintf("u%d", u), PassHash: "unused"}); err != nil {
			b.Fatal(err)
		}
		tok, err := session.IssueToken(id.TokenKey, session.TokenRequest{UserID: u, Audience: id.Audience,
			DeviceKey: dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		c, err := client.Dial(ctx, cfg, p.srv.Addr().String(), id.Static.PublicKey().Bytes(), tok)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		p.conns = append(p.conns, c)
		p.raw = append(p.raw, raw)
	}
	// Each session's route is registered by its first sealed frame.
	for _, c := range p.conns {
		if _, err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// BenchmarkPush measures one p2p QoS 1 message through a running node,
// over loopback TCP: the sender's MSG, the push to the recipient, its
// receipt and the sender's ack, with 16 messages in flight. With one event
// loop both sessions share it (a same-loop push); with two, gnet gives
// them one loop each and every push and ack crosses loops, the baseline.
// Allocations and cpu-ns/msg (the process's user and system CPU time, which
// other processes on a busy machine do not inflate as they do ns/op) count
// the whole process: the two clients' (which open each frame into a new
// slice) as well as the server's. writes/msg are the server's write calls.
func BenchmarkPush(b *testing.B) {
	const window = 16
	for _, loops := range []int{1, 2} {
		name := "same-loop"
		if loops == 2 {
			name = "cross-loop"
		}
		b.Run(name+"/payload=256B", func(b *testing.B) {
			p := startPushNode(b, loops, 2, true)
			sender, recipient := p.conns[0], p.conns[1]
			go func() { // the recipient's client acks (AutoAck); drop what it shows
				for range recipient.Frames() {
				}
			}()
			content := make([]byte, 256)
			writes0, cpu0 := p.srv.Stats().Writes.Load(), processCPU()
			b.ReportAllocs()
			b.SetBytes(int64(len(content)))
			b.ResetTimer()
			inFlight, acked := 0, 0
			for sent := 0; acked < b.N; {
				for inFlight < window && sent < b.N {
					sent++
					inFlight++
					if err := sender.SendMsgCID(frame.CmdMsg, recipient.UserID(), frame.QoS1, uint64(sent), content); err != nil {
						b.Fatal(err)
					}
				}
				f, ok := <-sender.Frames()
				if !ok {
					b.Fatal(sender.Err())
				}
				if f.Cmd == frame.CmdAck && frame.Ack(f.Body).Status() == frame.AckDelivered {
					inFlight--
					acked++
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/msg")
			b.ReportMetric(float64(p.srv.Stats().Writes.Load()-writes0)/float64(b.N), "writes/msg")
		})
	}
}

// BenchmarkGroupPush measures one group message (QoS 1, 256 bytes) pushed
// to every online member of a 200-member group on a running node, 8
// messages in flight: the store's append, the fan-out and one seal per
// member. ns/op and cpu-ns/op are per message; cpu-ns/delivery and
// writes/delivery divide by the deliveries (messages times members). The
// members but the sender only drain their sockets (sinkConn) and do not
// ack, so that allocations are the server's (and the sender's client's);
// CPU counts the members' read calls too, which share the process.
func BenchmarkGroupPush(b *testing.B) {
	const members, window = 200, 8
	for _, loops := range []int{1, 2} {
		b.Run(fmt.Sprintf("loops=%d/members=%d", loops, members), func(b *testing.B) {
			p := startPushNode(b, loops, members, false)
			ctx := context.Background()
			group, err := p.st.CreateGroup(ctx, 1, "bench")
			if err != nil {
				b.Fatal(err)
			}
			for u := uint64(2); u <= members; u++ {
				if _, err := p.st.JoinGroup(ctx, group, u); err != nil {
					b.Fatal(err)
				}
			}
			for _, r := range p.raw[1:] {
				r.sunk.Store(true)
			}
			sinks := p.raw[1:]
			received := func() int64 {
				var n int64
				for _, r := range sinks {
					n += r.bytes.Load()
				}
				return n
			}
			sender := p.conns[0]
			var senderGot atomic.Int64
			acks := make(chan struct{}, window)
			go func() {
				for f := range sender.Frames() {
					switch {
					case f.Cmd == frame.CmdGroupMsg:
						senderGot.Add(1)
					case f.Cmd == frame.CmdAck && frame.Ack(f.Body).Status() == frame.AckStored:
						acks <- struct{}{}
					}
				}
			}()
			content := make([]byte, 256)
			_, out := p.ep.FramesByCommand()
			writes0, sealed0, bytes0, cpu0 := p.srv.Stats().Writes.Load(), out[frame.CmdGroupMsg].Load(), received(), processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			inFlight := 0
			for i := 1; i <= b.N; i++ {
				for inFlight >= window {
					<-acks
					inFlight--
				}
				if err := sender.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, uint64(i), content); err != nil {
					b.Fatal(err)
				}
				inFlight++
			}
			// Every member's socket has every sealed copy: each is the
			// same size, the sender's copy (which its client reads) one.
			sealed, _ := frame.Append(nil, frame.CmdGroupMsg, frame.QoS1, make([]byte, frame.MsgHeaderLen+len(content)+16))
			size := int64(len(sealed))
			want := int64(b.N) * (members - 1) * size
			deadline := time.Now().Add(time.Minute)
			for (received()-bytes0 < want || senderGot.Load() < int64(b.N)) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			if n := received() - bytes0; n < want || senderGot.Load() < int64(b.N) {
				b.Fatalf("members read %d of %d bytes; sender got %d of %d", n, want, senderGot.Load(), b.N)
			}
			deliveries := float64(out[frame.CmdGroupMsg].Load() - sealed0)
			cpu := float64(processCPU() - cpu0)
			b.ReportMetric(cpu/float64(b.N), "cpu-ns/op")
			b.ReportMetric(cpu/deliveries, "cpu-ns/delivery")
			b.ReportMetric(float64(p.srv.Stats().Writes.Load()-writes0)/deliveries, "writes/delivery")
		})
	}
}
