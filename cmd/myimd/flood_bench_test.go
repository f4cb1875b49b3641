package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// procCPU is a process's user and system CPU so far, from /proc.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: utime is
	// the 12th, stime the 13th, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandshakeFlood measures what an unauthenticated flood of IK
// first messages from one address costs a real myimd, in server CPU per
// attacker CPU second: "replay" sends one recorded first message over and
// over (the cheapest flood there is), "fresh" makes a new one each time
// with a valid token of the attacker's own account (a user flooding). Each
// runs 4 attackers for 5 s. MYIMD_BIN picks another build to compare (the
// figures in docs/security.md are this build against the one before the
// handshake pool). Run with -benchtime=1x.
func BenchmarkHandshakeFlood(b *testing.B) {
	if bin := os.Getenv("MYIMD_BIN"); bin != "" {
		old := binPath
		binPath = bin
		defer func() { binPath = old }()
	}
	p := startMyimd(b)
	p.register(b, "mallory", "password-mallory")
	dev := newDevice(b)
	res, err := client.Login(context.Background(), p.cfg(b, dev), p.addrs["login"], "mallory", []byte("password-mallory"))
	if err != nil {
		b.Fatal(err)
	}
	srv := res.Servers[0]
	addr := p.addrs["endpoint"]
	first := func() []byte {
		hs, err := session.NewEndpointClient(nil, dev, srv.Key, res.Token)
		if err != nil {
			b.Fatal(err)
		}
		m, err := hs.WriteFrame(nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	recorded := first()
	for _, mode := range []string{"replay", "fresh"} {
		b.Run(mode, func(b *testing.B) {
			var sent, answered, refused atomic.Int64
			const attackers, length = 4, 5 * time.Second
			srvBefore, selfBefore := procCPU(b, p.cmd.Process.Pid), selfCPU()
			stop := time.Now().Add(length)
			var wg sync.WaitGroup
			for range attackers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stop) {
						m := recorded
						if mode == "fresh" {
							m = first()
						}
						nc, err := net.Dial("tcp", addr)
						if err != nil {
							continue
						}
						_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
						if _, err := nc.Write(m); err == nil {
							sent.Add(1)
							if f, err := frame.Read(bufio.NewReader(nc), frame.MaxEncodable); err == nil {
								if f.Cmd() == frame.CmdHandshake {
									answered.Add(1)
								} else {
									refused.Add(1)
								}
							}
						}
						nc.Close()
					}
				}()
			}
			wg.Wait()
			srvCPU, selfUsed := procCPU(b, p.cmd.Process.Pid)-srvBefore, selfCPU()-selfBefore
			b.ReportMetric(srvCPU.Seconds()/selfUsed.Seconds(), "server-cpu/attacker-cpu")
			b.ReportMetric(float64(sent.Load())/length.Seconds(), "first-msgs/s")
			b.ReportMetric(float64(answered.Load())/length.Seconds(), "answered/s")
			b.ReportMetric(float64(refused.Load())/length.Seconds(), "refused/s")
		})
	}
}
