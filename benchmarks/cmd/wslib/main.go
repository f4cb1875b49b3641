// Command wslib compares WebSocket server libraries for MyIM's browser
// transport, each as an echo server in a child process: MyIM's engine/ws on
// the gnet reactor, lxzan/gws (a goroutine per connection, its own
// parser), coder/websocket on net/http, and the engine over plain TCP as
// the baseline. For each it reads the server's RSS per idle connection
// (after one message each, and after a forced collection) and its CPU per
// echoed message (a 64-byte MyIM frame, one in flight per connection).
// gnet-wss is engine/ws under its TLS layer (wss://).
//
//	go run ./cmd/wslib -n 2000 -duration 10s
//
// Every run is bounded by -n and -duration; it dials loopback only.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/lxzan/gws"

	"github.com/myim/myim/benchmarks/internal/peer"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/ws"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

func main() {
	serve := flag.String("serve", "", "run the echo server of this library (child mode)")
	n := flag.Int("n", 2000, "idle connections")
	busy := flag.Int("busy", 50, "connections sending during the CPU phase")
	dur := flag.Duration("duration", 10*time.Second, "CPU phase")
	libs := flag.String("libs", "tcp,gnet-ws,gws,coder", "libraries to compare")
	flag.Parse()
	if *serve != "" {
		if err := runServer(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	fmt.Println("| library | RSS per idle conn (KiB) | after a forced collection (KiB) | server CPU per message (µs) | messages/s |")
	fmt.Println("|---|---|---|---|---|")
	for _, lib := range strings.Split(*libs, ",") {
		r, err := measure(lib, *n, *busy, *dur)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", lib, err)
			os.Exit(1)
		}
		fmt.Printf("| %s | %.2f | %.2f | %.2f | %.0f |\n", lib, r.rss, r.rssGC, r.cpuUS, r.rate)
	}
}

type result struct{ rss, rssGC, cpuUS, rate float64 }

// echo answers each MyIM frame with itself.
type echo struct{}

func (echo) OnOpen(*engine.Conn) error { return nil }
func (echo) OnFrame(c *engine.Conn, f frame.Frame) error {
	c.Write(f)
	return nil
}
func (echo) OnClose(*engine.Conn, engine.CloseReason) {}

type gwsEcho struct{ gws.BuiltinEventHandler }

func (gwsEcho) OnMessage(c *gws.Conn, m *gws.Message) {
	_ = c.WriteMessage(gws.OpcodeBinary, m.Bytes())
	m.Close()
}

func runServer(lib string) error {
	peer.CollectOnSignal()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	switch lib {
	case "tcp", "gnet-ws", "gnet-wss":
		_ = ln.Close()
		opts := []engine.Option{engine.WithAddr(addr), engine.WithLoops(1), engine.WithMaxConns(100_000)}
		switch lib {
		case "gnet-ws":
			opts = append(opts, engine.WithTransport(ws.New(ws.Config{})))
		case "gnet-wss":
			cert, err := selfSigned()
			if err != nil {
				return err
			}
			wss := ws.NewTLS(ws.TLSConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
			opts = append(opts, engine.WithWrapListener(wss.Listener), engine.WithTransport(wss.Wrap(ws.New(ws.Config{}))))
		}
		s := engine.New(echo{}, opts...)
		if err := s.Start(); err != nil {
			return err
		}
		fmt.Println(addr)
		select {}
	case "gws":
		fmt.Println(addr)
		return gws.NewServer(gwsEcho{}, &gws.ServerOption{}).RunListener(ln)
	case "coder":
		fmt.Println(addr)
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			c.SetReadLimit(1 << 20)
			ctx := context.Background()
			for {
				typ, b, err := c.Read(ctx)
				if err != nil {
					return
				}
				if c.Write(ctx, typ, b) != nil {
					return
				}
			}
		}))
	}
	return fmt.Errorf("unknown library %q", lib)
}

// measure starts lib's server and drives it.
func measure(lib string, n, busy int, dur time.Duration) (result, error) {
	var r result
	cmd := exec.Command(os.Args[0], "-serve", lib)
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return r, err
	}
	addr = strings.TrimSpace(addr)
	pid := cmd.Process.Pid
	settle(pid)
	base, _ := rssKB(pid)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	msg, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, make([]byte, 60))
	got := make([]byte, len(msg))
	for i := 0; i < n; i++ {
		c, err := dial(lib, addr)
		if err != nil {
			return r, fmt.Errorf("dial %d: %w", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Write(msg); err != nil {
			return r, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return r, err
		}
	}
	time.Sleep(2 * time.Second)
	kb, _ := rssKB(pid)
	r.rss = float64(kb-base) / float64(n)
	settle(pid)
	kb, _ = rssKB(pid)
	r.rssGC = float64(kb-base) / float64(n)

	cpu0 := cpuTicks(pid)
	var msgs atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(dur)
	for _, c := range conns[:min(busy, len(conns))] {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			buf := make([]byte, len(msg))
			for time.Now().Before(stop) {
				if _, err := c.Write(msg); err != nil {
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				msgs.Add(1)
			}
		}(c)
	}
	wg.Wait()
	ticks := cpuTicks(pid) - cpu0
	if m := msgs.Load(); m > 0 {
		r.cpuUS = float64(ticks) * 1e6 / 100 / float64(m)
		r.rate = float64(m) / dur.Seconds()
	}
	return r, nil
}

func dial(lib, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch lib {
	case "tcp":
		return net.DialTimeout("tcp", addr, 10*time.Second)
	case "gnet-wss":
		return wswire.Dial(ctx, "wss://"+addr+"/", wswire.DialConfig{TLS: &tls.Config{InsecureSkipVerify: true}})
	}
	return wswire.Dial(ctx, "ws://"+addr+"/", wswire.DialConfig{})
}

// settle has the server collect its garbage and waits for it.
func settle(pid int) {
	_ = syscall.Kill(pid, syscall.SIGUSR1)
	time.Sleep(500 * time.Millisecond)
}

func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// cpuTicks is the process's user plus system time in clock ticks (100/s).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// selfSigned makes a throwaway certificate for the wss:// server.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
