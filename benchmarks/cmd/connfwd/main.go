// Command connfwd is the benchmarks' naive baseline: the forwarder most Go
// programmers would write first, a goroutine per connection over net.Conn
// with a buffered reader, relaying the length-prefixed frames of package
// peer. Writes to a destination go straight to its net.Conn, which
// serialises concurrent writers itself.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/myim/myim/benchmarks/internal/peer"
)

type server struct {
	mu  sync.RWMutex
	tab map[uint64]net.Conn
}

func (s *server) serve(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReader(nc)
	var id uint64
	defer func() {
		if id != 0 {
			s.mu.Lock()
			if s.tab[id] == nc {
				delete(s.tab, id)
			}
			s.mu.Unlock()
		}
	}()
	for {
		hdr, err := r.Peek(4)
		if err != nil {
			return
		}
		size, err := peer.Size(hdr)
		if err != nil {
			return
		}
		f := make([]byte, size)
		if _, err := io.ReadFull(r, f); err != nil {
			return
		}
		switch f[4] &^ peer.QoS1 {
		case peer.Hello:
			id = peer.PeerOf(f)
			s.mu.Lock()
			s.tab[id] = nc
			s.mu.Unlock()
			_, _ = nc.Write(f)
		case peer.Msg, peer.Rcpt:
			to := peer.PeerOf(f)
			s.mu.RLock()
			dst := s.tab[to]
			s.mu.RUnlock()
			if dst != nil {
				peer.SetPeer(f, id)
				_, _ = dst.Write(f)
			}
		case peer.Ping:
			f[4] = peer.Pong
			_, _ = nc.Write(f)
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:5301", "listen address")
	flag.Parse()
	peer.CollectOnSignal()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connfwd:", err)
		os.Exit(1)
	}
	peer.Announce(os.Stdout, "connfwd", ln.Addr())
	s := &server{tab: make(map[uint64]net.Conn)}
	for {
		nc, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "connfwd:", err)
			os.Exit(1)
		}
		go s.serve(nc)
	}
}
