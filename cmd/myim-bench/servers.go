package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Moments of a run at which the server processes are read.
const (
	momentBase   = iota // before the first session opens
	momentRamped        // once every session is open
	momentHeld          // idle: while every session is held and has answered a ping; others: at the end
	moments
)

// serverProcs follows the server processes of --server-pid through a run:
// their /proc figures at each moment and the TCP ports each listens on,
// which tell the endpoint processes (whose ports the sessions dialed) from
// the others (a center, whose figures are divided by all the sessions).
//
// A nil *serverProcs, or one without processes, reads nothing. Not safe for
// concurrent use, except read, which only reads /proc.
type serverProcs struct {
	pids  []int
	ports []map[int]bool // listening TCP ports by process, read at start
	snap  [moments][]procStat
}

// newServerProcs starts following pids. It reads their listening ports now,
// before the sessions exist, when /proc/PID/fd is short.
func newServerProcs(pids []int) *serverProcs {
	s := &serverProcs{pids: pids, ports: make([]map[int]bool, len(pids))}
	for k, pid := range pids {
		s.ports[k], _ = listenPorts(pid) // none known: counted as a center
	}
	return s
}

func (s *serverProcs) enabled() bool { return s != nil && len(s.pids) > 0 }

// read returns the processes' figures, summed and one by one.
func (s *serverProcs) read() (sum procStat, per []procStat, err error) {
	if !s.enabled() {
		return sum, nil, nil
	}
	per = make([]procStat, len(s.pids))
	for k, pid := range s.pids {
		if per[k], err = readProc(pid); err != nil {
			return sum, nil, err
		}
		sum.RSSKB += per[k].RSSKB
		sum.CPUTicks += per[k].CPUTicks
		sum.Reads += per[k].Reads
		sum.Writes += per[k].Writes
	}
	return sum, per, nil
}

// mark reads the processes at moment m and keeps the figures; it returns
// their sum and whether they could be read.
func (s *serverProcs) mark(m int) (procStat, bool, error) {
	if !s.enabled() {
		return procStat{}, false, nil
	}
	sum, per, err := s.read()
	if err != nil {
		return procStat{}, false, fmt.Errorf("server /proc: %w", err)
	}
	s.snap[m] = per
	return sum, true, nil
}

func (s *serverProcs) marked(m int) bool { return s.enabled() && s.snap[m] != nil }

// ServerFigures are one server process's figures over a run.
type ServerFigures struct {
	PID int `json:"pid"`
	// Endpoints are the endpoint addresses of the run this process
	// listens on; none for a center.
	Endpoints []string `json:"endpoints,omitempty"`
	// Sessions is what the per-session figures divide by: the sessions on
	// this process's endpoints, or all the run's sessions when it has none
	// of them (a center, which holds every session's route).
	Sessions        int     `json:"sessions"`
	RSSBaseKB       int64   `json:"rss_base_kb"`
	RSSKB           int64   `json:"rss_kb,omitempty"`
	RSSPerSessionKB float64 `json:"rss_per_session_kb,omitempty"`
	// RampCPUSeconds is the process's CPU time (user and system) while the
	// sessions opened: handshakes, route registration, accepts.
	RampCPUSeconds      float64 `json:"ramp_cpu_s"`
	RampCPUPerSessionUS float64 `json:"ramp_cpu_us_per_session,omitempty"`
}

// figures returns each process's figures, given how many sessions each
// endpoint address holds and how many there are in all.
func (s *serverProcs) figures(byEndpoint map[string]int, total int) []ServerFigures {
	if !s.marked(momentBase) {
		return nil
	}
	out := make([]ServerFigures, len(s.pids))
	for k, pid := range s.pids {
		f := ServerFigures{PID: pid, RSSBaseKB: s.snap[momentBase][k].RSSKB}
		for addr, n := range byEndpoint {
			if _, p, err := net.SplitHostPort(addr); err == nil {
				if port, err := strconv.Atoi(p); err == nil && s.ports[k][port] {
					f.Endpoints = append(f.Endpoints, addr)
					f.Sessions += n
				}
			}
		}
		slices.Sort(f.Endpoints)
		if f.Sessions == 0 {
			f.Sessions = total
		}
		if s.marked(momentRamped) {
			f.RampCPUSeconds = float64(s.snap[momentRamped][k].CPUTicks-s.snap[momentBase][k].CPUTicks) / clockTick
			if f.Sessions > 0 {
				f.RampCPUPerSessionUS = f.RampCPUSeconds / float64(f.Sessions) * 1e6
			}
		}
		if s.marked(momentHeld) {
			f.RSSKB = s.snap[momentHeld][k].RSSKB
			if f.Sessions > 0 {
				f.RSSPerSessionKB = float64(f.RSSKB-f.RSSBaseKB) / float64(f.Sessions)
			}
		}
		out[k] = f
	}
	return out
}

// listenPorts returns the TCP ports process pid listens on: the socket
// inodes among its open files, looked up in the LISTEN rows of its network
// namespace's /proc tables.
func listenPorts(pid int) (map[int]bool, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := make(map[string]bool)
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	ports := make(map[int]bool)
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			if i < 0 {
				continue
			}
			if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil {
				ports[int(p)] = true
			}
		}
	}
	return ports, nil
}

// Bounds of settle: the runtime returns freed memory to the kernel within a
// second or two of a collection; a server whose RSS is still falling after
// settleLimit is measured as it is.
const (
	settleLimit = 15 * time.Second
	settleQuiet = 2 * time.Second // no new low for this long: settled
	settleStep  = 250 * time.Millisecond
	settleSlack = 64 // KiB: smaller drops are noise
)

// settle has the server at cfg.AdminAPI collect its garbage, through the pprof
// heap handler's gc parameter (myimd --pprof, behind the admin secret), and
// waits until the server processes' RSS stops falling. Provisioning leaves
// garbage in that server (argon2id's 19 MiB buffer per bulk call, the JSON
// of thousands of users and tokens) that would otherwise be freed during
// the ramp and taken off the sessions' growth.
//
// With --gc-signal it sends SIGUSR1 to every --server-pid process instead,
// which every system of benchmarks/compare takes as runtime.GC and
// debug.FreeOSMemory, so that all are measured alike.
func settle(ctx context.Context, cfg *Config, srv *serverProcs) error {
	ctx, cancel := context.WithTimeout(ctx, settleLimit)
	defer cancel()
	if cfg.GCSignal {
		_, err := collect(ctx, cfg, srv)
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.AdminAPI+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("--settle: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("--settle: GET /debug/pprof/heap: %s (the server needs --pprof and the admin secret)", resp.Status)
	}
	_, err = settleRSS(ctx, cfg, srv)
	return err
}

// collect sends SIGUSR1 (--gc-signal) to every server process, waits
// until their RSS stops falling, and returns the lowest sum it read (KiB).
func collect(ctx context.Context, cfg *Config, srv *serverProcs) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, settleLimit)
	defer cancel()
	for _, pid := range srv.pids {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			return 0, fmt.Errorf("--gc-signal: process %d: %w", pid, err)
		}
	}
	return settleRSS(ctx, cfg, srv)
}

// settleRSS waits until the server processes' RSS stops falling or ctx
// ends, and returns the lowest summed RSS it read (KiB).
func settleRSS(ctx context.Context, cfg *Config, srv *serverProcs) (int64, error) {
	start := time.Now()
	first, low, lowAt, least := int64(-1), int64(-1), start, int64(-1)
	defer func() {
		if !cfg.Quiet {
			fmt.Fprintf(cfg.Out, "settle: server RSS %.1f -> %.1f MiB in %.1fs\n", float64(first)/1024, float64(low)/1024, time.Since(start).Seconds())
		}
	}()
	t := time.NewTicker(settleStep)
	defer t.Stop()
	for time.Since(lowAt) < settleQuiet {
		sum, _, err := srv.read()
		if err != nil {
			return 0, err
		}
		if first < 0 {
			first = sum.RSSKB
		}
		if least < 0 || sum.RSSKB < least {
			least = sum.RSSKB
		}
		if low < 0 || sum.RSSKB < low-settleSlack {
			low, lowAt = sum.RSSKB, time.Now()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return least, nil // still falling: measured as it is
		}
	}
	return least, nil
}
