package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a backend, so
// that a test can take a service (Redis, MySQL) away from a live client
// and give it back without stopping the service.
//
// Addr and Cut are safe for concurrent use; Restore must be called from
// the test's goroutine, and not while a Cut is under way.
type Proxy struct {
	t       testing.TB
	backend string
	wg      sync.WaitGroup // the accept loop and the copies

	mu    sync.Mutex
	addr  string
	ln    net.Listener // nil while cut
	conns []net.Conn   // both ends of every forwarded connection
}

// StartProxy listens on a free loopback port and forwards every connection
// to backend. The proxy is cut when the test ends.
func StartProxy(t testing.TB, backend string) *Proxy {
	t.Helper()
	p := &Proxy{t: t, backend: backend}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.Cut)
	return p
}

// Addr is the address clients dial; Restore keeps it.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Cut closes the listener and every forwarded connection, and returns once
// the proxy's goroutines are gone: clients see their connections reset and
// new ones refused. Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// Restore listens again, on the same address, after Cut. On a proxy that
// is not cut it does nothing.
func (p *Proxy) Restore() {
	p.t.Helper()
	p.mu.Lock()
	up, addr := p.ln != nil, p.addr
	p.mu.Unlock()
	if !up {
		p.listen(addr)
	}
}

func (p *Proxy) listen(addr string) {
	p.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatalf("proxy to %s: %v", p.backend, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() { p.accept(ln) })
}

// accept forwards the connections ln accepts until ln is closed.
func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln { // cut while dialling: Cut did not see this pair
			p.mu.Unlock()
			c.Close()
			b.Close()
			return
		}
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(b, c); b.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, b); c.Close() })
	}
}
