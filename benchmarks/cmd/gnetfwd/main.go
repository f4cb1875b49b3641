// Command gnetfwd is the benchmarks' ceiling for an event-loop design: a
// bare gnet v2 server that relays length-prefixed frames (see package peer)
// between registered connections and does nothing else: no crypto, no
// routing table beyond a map, no storage, no batching beyond what gnet does.
// How close MyIM comes to it shows what MyIM's own work costs.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"github.com/myim/myim/benchmarks/internal/peer"
)

// shards of the id -> connection table; a power of two.
const shards = 64

type entry struct {
	c    gnet.Conn
	loop gnet.EventLoop
}

type shard struct {
	mu sync.RWMutex
	m  map[uint64]entry
}

type conn struct {
	id   uint64
	loop gnet.EventLoop
}

type server struct {
	gnet.BuiltinEventEngine
	tab [shards]shard
}

func (s *server) shard(id uint64) *shard { return &s.tab[id&(shards-1)] }

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&conn{loop: c.EventLoop()})
	return nil, gnet.None
}

func (s *server) OnClose(c gnet.Conn, _ error) gnet.Action {
	cc := c.Context().(*conn)
	if cc.id != 0 {
		sh := s.shard(cc.id)
		sh.mu.Lock()
		if e, ok := sh.m[cc.id]; ok && e.c == c {
			delete(sh.m, cc.id)
		}
		sh.mu.Unlock()
	}
	return gnet.None
}

// OnTraffic relays every whole frame of the read. A destination on this
// loop is written directly; one on another loop gets a copy through
// AsyncWrite, gnet's only safe cross-loop path.
func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	cc := c.Context().(*conn)
	for {
		hdr, err := c.Peek(4)
		if err != nil {
			return gnet.None
		}
		size, err := peer.Size(hdr)
		if err != nil {
			return gnet.Close
		}
		if c.InboundBuffered() < size {
			return gnet.None
		}
		f, _ := c.Peek(size)
		switch f[4] &^ peer.QoS1 {
		case peer.Hello:
			cc.id = peer.PeerOf(f)
			sh := s.shard(cc.id)
			sh.mu.Lock()
			sh.m[cc.id] = entry{c: c, loop: cc.loop}
			sh.mu.Unlock()
			_, _ = c.Write(f)
		case peer.Msg, peer.Rcpt:
			to := peer.PeerOf(f)
			sh := s.shard(to)
			sh.mu.RLock()
			e, ok := sh.m[to]
			sh.mu.RUnlock()
			if ok {
				peer.SetPeer(f, cc.id)
				if e.loop == cc.loop {
					_, _ = e.c.Write(f)
				} else {
					_ = e.c.AsyncWrite(append([]byte(nil), f...), nil)
				}
			}
		case peer.Ping:
			f[4] = peer.Pong
			_, _ = c.Write(f)
		}
		_, _ = c.Discard(size)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:5300", "listen address")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	flag.Parse()
	peer.CollectOnSignal()
	s := &server{}
	for i := range s.tab {
		s.tab[i].m = make(map[uint64]entry)
	}
	fmt.Printf("gnetfwd listening on %s (%d loops)\n", *addr, *loops)
	err := gnet.Run(s, "tcp://"+*addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(*loops),
		gnet.WithReusePort(false), gnet.WithTCPNoDelay(gnet.TCPNoDelay))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gnetfwd:", err)
		os.Exit(1)
	}
}
