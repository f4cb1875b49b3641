package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/myim/myim/internal/wswire"
)

// fdReserve is what a bench process keeps for itself beyond its
// connections: stdio, the HTTP client, /proc reads, the Go runtime's epoll
// and pipes.
const fdReserve = 64

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit and returns
// how many connections the result allows.
func raiseFileLimit() (allowed int, lim syscall.Rlimit, err error) {
	if err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, lim, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, lim, err
		}
	}
	return int(lim.Cur) - fdReserve, lim, nil
}

func ipRange(a, b string) ([]string, error) {
	lo, err := netip.ParseAddr(a)
	if err != nil {
		return nil, fmt.Errorf("source range: %w", err)
	}
	hi, err := netip.ParseAddr(b)
	if err != nil {
		return nil, fmt.Errorf("source range: %w", err)
	}
	var out []string
	for ip := lo; ip.Compare(hi) <= 0 && len(out) < 4096; ip = ip.Next() {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty source range %s-%s", a, b)
	}
	return out, nil
}

// checkTarget refuses a target outside the loopback range unless allowed
// explicitly: the bench is for servers one runs.
func checkTarget(addr string, allow bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("address %q: give an IP address", addr)
	}
	if !ip.IsLoopback() && !allow {
		return fmt.Errorf("%s is not a loopback address; pass --allow-remote for a host you run", addr)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	ip, err := netip.ParseAddr(host)
	return host == "localhost" || (err == nil && ip.IsLoopback())
}

// dialer spreads connections over source addresses.
type dialer struct {
	srcs []*net.TCPAddr
	next atomic.Uint64
	to   time.Duration
	ws   bool // upgrade to WebSocket at /endpoint
}

func newDialer(sources []string, target string) (*dialer, error) {
	d := &dialer{to: 10 * time.Second}
	if len(sources) == 1 && sources[0] == "auto" {
		sources = nil
		if isLoopback(target) {
			sources, _ = ipRange("127.0.0.2", "127.0.0.9")
		}
	}
	for _, s := range sources {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("source address %q", s)
		}
		d.srcs = append(d.srcs, &net.TCPAddr{IP: ip})
	}
	return d, nil
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.ws {
		ctx, cancel := context.WithTimeout(ctx, d.to)
		defer cancel()
		return wswire.Dial(ctx, "ws://"+addr+"/endpoint", wswire.DialConfig{Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return d.dialTCP(ctx, addr)
		}})
	}
	return d.dialTCP(ctx, addr)
}

func (d *dialer) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.to}
	if len(d.srcs) > 0 {
		nd.LocalAddr = d.srcs[d.next.Add(1)%uint64(len(d.srcs))]
	}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// limitName says which limit a dial error stands for, or "" for others.
func limitName(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "the open-file limit (RLIMIT_NOFILE of this process, or fs.file-max): run more bench processes with --procs, or raise the hard limit"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "the ephemeral ports of the source addresses (net.ipv4.ip_local_port_range): add source addresses with --src"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return "the server refusing connections (its --max-conns, its listen backlog, or its own open-file limit)"
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM):
		return "the kernel memory for sockets (net.ipv4.tcp_mem, net.core.*mem)"
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded):
		return "a dial timeout: the server's accept queue (net.core.somaxconn) or a saturated server"
	}
	return ""
}

// ramp opens n sessions with open(i) on a pool of dialers, at most rate per
// second, printing progress, and stops at the first limit it meets. It
// returns the sessions opened (nil where one failed) and why it stopped
// early, if it did.
func ramp[T any](ctx context.Context, cfg *Config, n int, what string, open func(ctx context.Context, i int) (T, error)) ([]T, int, error) {
	out := make([]T, n)
	ok := make([]bool, n)
	var next, done, failed atomic.Int64
	var stopErr error
	var mu sync.Mutex
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func(err error) {
		mu.Lock()
		if stopErr == nil {
			stopErr = err
		}
		mu.Unlock()
		stopOnce.Do(func() { close(stop) })
	}
	var tick <-chan time.Time
	if cfg.DialRate > 0 {
		t := time.NewTicker(time.Second / time.Duration(cfg.DialRate))
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	prog := newProgress(cfg, "ramp "+what, func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("%d/%d %s (%.0f/s), %d failed", done.Load(), n, what, float64(done.Load())/el, failed.Load())
	})
	defer prog.stop()
	var wg sync.WaitGroup
	for w := 0; w < min(cfg.Dialers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if tick != nil {
					select {
					case <-tick:
					case <-stop:
						return
					case <-ctx.Done():
						return
					}
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				v, err := open(ctx, i)
				if err != nil {
					failed.Add(1)
					if lim := limitName(err); lim != "" {
						halt(fmt.Errorf("stopped at %d %s by %s: %w", done.Load(), what, lim, err))
					} else if failed.Load() > int64(max(10, n/100)) {
						halt(fmt.Errorf("too many failures opening %s, last: %w", what, err))
					}
					continue
				}
				out[i], ok[i] = v, true
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	got := 0
	for i := range ok {
		if ok[i] {
			got++
		}
	}
	if stopErr == nil && ctx.Err() != nil {
		stopErr = ctx.Err()
	}
	return out, got, stopErr
}
