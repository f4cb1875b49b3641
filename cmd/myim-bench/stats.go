package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 60 s, to 3
// significant digits.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
	histShards = 16 // readers record into idx % histShards: no global lock
)

// shardedHist is a set of HDR histograms that readers record into without
// contending; merged at the end. Safe for concurrent use.
type shardedHist struct {
	sh [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.sh {
		s.sh[i].h = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return s
}

func (s *shardedHist) record(idx int, ns int64) {
	us := max(ns/1000, histMin)
	us = min(us, histMax)
	sh := &s.sh[idx%histShards]
	sh.mu.Lock()
	_ = sh.h.RecordValue(us)
	sh.mu.Unlock()
}

func (s *shardedHist) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range s.sh {
		s.sh[i].mu.Lock()
		out.Merge(s.sh[i].h)
		s.sh[i].mu.Unlock()
	}
	return out
}

// procStat is what /proc says about a process.
type procStat struct {
	RSSKB    int64
	CPUTicks int64 // utime + stime, in clock ticks
	// Reads and Writes count the read and write system calls
	// (/proc/PID/io syscr and syscw; readable by the same user or root).
	Reads, Writes int64
}

// clockTick is USER_HZ: 100 on every Linux architecture Go supports.
const clockTick = 100

func readProc(pid int) (procStat, error) {
	var ps procStat
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is the first, utime the 12th, stime the 13th.
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return ps, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	ps.CPUTicks = ut + stt
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				ps.RSSKB, _ = strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, l := range strings.Split(string(io), "\n") {
			k, v, _ := strings.Cut(l, ":")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "syscr":
				ps.Reads = n
			case "syscw":
				ps.Writes = n
			}
		}
	}
	return ps, nil
}

// slabKB returns the kernel's slab memory (/proc/meminfo Slab), where
// socket structures live.
func slabKB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Slab:"); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// progress prints a line every interval until stopped: what fn, called
// from its own goroutine, returns.
type progress struct {
	fn   func() string
	done chan struct{}
	wg   sync.WaitGroup
}

func newProgress(cfg *Config, label string, fn func() string) *progress {
	p := &progress{fn: fn, done: make(chan struct{})}
	if cfg.Quiet {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				if p.fn != nil {
					fmt.Fprintf(cfg.Out, "%-16s %5.1fs  %s\n", label, time.Since(start).Seconds(), p.fn())
				}
			}
		}
	}()
	return p
}

func (p *progress) stop() {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
}

// Latency is a latency summary in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	return Latency{Count: h.TotalCount(), Mean: h.Mean(), P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90),
		P99: h.ValueAtQuantile(99), P999: h.ValueAtQuantile(99.9), Max: h.Max()}
}

// Report is a run's result; --json writes it as is.
type Report struct {
	Scenario string `json:"scenario"`
	Proto    string `json:"proto"`
	// Transport is tcp or ws (MyIM over WebSocket).
	Transport string  `json:"transport,omitempty"`
	Conns     int     `json:"conns"`
	Wanted    int     `json:"conns_wanted"`
	QoS       int     `json:"qos"`
	Size      int     `json:"size"`
	Window    int     `json:"window"`
	Rate      float64 `json:"offered_rate,omitempty"`
	Seconds   float64 `json:"seconds"`

	Sent       int64   `json:"sent"`
	Delivered  int64   `json:"delivered"`
	Acked      int64   `json:"acked"`
	Stored     int64   `json:"stored_offline,omitempty"`
	Lost       int64   `json:"lost"`
	Duplicates int64   `json:"duplicates,omitempty"`
	Resent     int64   `json:"resent,omitempty"`
	Reconnects int64   `json:"reconnects,omitempty"`
	Errors     int64   `json:"errors"`
	LastError  string  `json:"last_error,omitempty"`
	Unit       string  `json:"unit"` // what Throughput counts
	Throughput float64 `json:"throughput_per_s"`
	Latency    Latency `json:"latency"`

	ServerPID       int     `json:"server_pid,omitempty"`
	ServerRSSKB     int64   `json:"server_rss_kb,omitempty"`
	ServerRSSBaseKB int64   `json:"server_rss_base_kb,omitempty"`
	RSSPerSessionKB float64 `json:"server_rss_per_session_kb,omitempty"`
	// RSSPerSessionGCKB is RSSPerSessionKB read again after a forced
	// collection (--gc-signal): what the sessions keep live, without the
	// collector's headroom.
	RSSPerSessionGCKB float64 `json:"server_rss_per_session_gc_kb,omitempty"`
	ServerCPUSeconds  float64 `json:"server_cpu_s,omitempty"`
	CPUPerMillion     float64 `json:"server_cpu_s_per_million,omitempty"`
	// KernelSlabPerConnKB is the growth of the kernel's slab memory per
	// connection while the sessions opened: both ends of each connection
	// when the server runs on this machine, and whatever else the machine
	// did meanwhile.
	KernelSlabPerConnKB float64 `json:"kernel_slab_per_conn_kb,omitempty"`
	// ReadsPerMsg and WritesPerMsg are the server's read and write system
	// calls over the measured window per message (or round trip, or
	// delivery).
	ReadsPerMsg  float64 `json:"server_reads_per_msg,omitempty"`
	WritesPerMsg float64 `json:"server_writes_per_msg,omitempty"`

	LimitHit string  `json:"limit_hit,omitempty"`
	RampRate float64 `json:"ramp_per_s,omitempty"`
	// RampCPUPerSessionUS is the server processes' CPU time while the
	// sessions opened, per session: mostly the endpoint's half of the
	// Noise IK handshake, then accepts and route registration.
	RampCPUPerSessionUS float64 `json:"server_ramp_cpu_us_per_session,omitempty"`

	// ByEndpoint counts the sessions opened on each endpoint address
	// (--spread).
	ByEndpoint map[string]int `json:"sessions_by_endpoint,omitempty"`
	// Servers are the figures of each --server-pid process.
	Servers []ServerFigures `json:"servers,omitempty"`
	// Storm is the reconnect storm of --storm.
	Storm *StormFigures `json:"storm,omitempty"`
	// Procs and Children describe a --procs run: its bench processes.
	Procs    int            `json:"procs,omitempty"`
	Children []ChildFigures `json:"children,omitempty"`

	hist interface {
		ValueAtQuantile(float64) int64
		TotalCount() int64
		Max() int64
	}
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) {
	row := func(k, v string) { fmt.Fprintf(w, "| %-28s | %s |\n", k, v) }
	fmt.Fprintf(w, "\n| %-28s | %s |\n|%s|%s|\n", "myim-bench "+r.Scenario, r.Proto, strings.Repeat("-", 30), "---")
	row("sessions", fmt.Sprintf("%d of %d", r.Conns, r.Wanted))
	if r.LimitHit != "" {
		row("stopped by", r.LimitHit)
	}
	if r.RampRate > 0 {
		row("ramp", fmt.Sprintf("%.0f sessions/s", r.RampRate))
	}
	for _, c := range r.Children {
		v := fmt.Sprintf("users %d-%d: %d sessions, ramp %.0f/s, %d errors", c.First, c.First+c.Wanted-1, c.Conns, c.RampRate, c.Errors)
		if c.Error != "" {
			v += ", " + c.Error
		}
		row(fmt.Sprintf("bench process %d", c.Process), v)
	}
	addrs := make([]string, 0, len(r.ByEndpoint))
	for a := range r.ByEndpoint {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		row("sessions on "+a, strconv.Itoa(r.ByEndpoint[a]))
	}
	if r.Scenario == "p2p" || r.Scenario == "group" || r.Scenario == "reconnect-storm" {
		row("load", fmt.Sprintf("QoS %d, %d-byte payload, window %d%s", r.QoS, r.Size, r.Window, rateNote(r.Rate)))
	}
	row("measured", fmt.Sprintf("%.1f s", r.Seconds))
	if r.Unit != "" {
		row("throughput", fmt.Sprintf("%.0f %s/s", r.Throughput, r.Unit))
	}
	if r.Sent > 0 {
		row("sent / delivered / acked", fmt.Sprintf("%d / %d / %d", r.Sent, r.Delivered, r.Acked))
	}
	if r.Stored > 0 {
		row("acked as stored offline", strconv.FormatInt(r.Stored, 10))
	}
	if r.Scenario == "reconnect-storm" {
		row("reconnects / resent", fmt.Sprintf("%d / %d", r.Reconnects, r.Resent))
		row("acked but never received", strconv.FormatInt(r.Lost, 10))
		row("duplicates (deduplicated)", strconv.FormatInt(r.Duplicates, 10))
	} else if r.Sent > 0 {
		row("lost (not completed)", strconv.FormatInt(r.Lost, 10))
	}
	if r.Latency.Count > 0 {
		l := r.Latency
		row("latency p50/p90/p99", fmt.Sprintf("%s / %s / %s", fmtUS(l.P50), fmtUS(l.P90), fmtUS(l.P99)))
		row("latency p99.9/max", fmt.Sprintf("%s / %s", fmtUS(l.P999), fmtUS(l.Max)))
	}
	if st := r.Storm; st != nil {
		row("storm: sessions back", fmt.Sprintf("%d of %d dropped, %d failed, %d attempts retried", st.Back, st.Dropped, st.Failed, st.Retries))
		row("storm: time to settle", fmt.Sprintf("%.1f s (%.0f sessions/s)", st.Seconds, st.SessionsPerSecond))
		if st.ServerCPUSeconds > 0 {
			row("storm: server CPU", fmt.Sprintf("%.1f s (%.0f µs per session back); RSS after %.1f MiB",
				st.ServerCPUSeconds, st.CPUPerSessionUS, float64(st.ServerRSSKB)/1024))
		}
		if st.Stopped != "" {
			row("storm: stopped by", st.Stopped)
		}
		if st.LastError != "" {
			row("storm: last error", st.LastError)
		}
	}
	row("errors", strconv.FormatInt(r.Errors, 10))
	if r.LastError != "" {
		row("last error", r.LastError)
	}
	if r.ServerPID != 0 {
		row("server RSS", fmt.Sprintf("%.1f MiB (%.1f MiB before the sessions)", float64(r.ServerRSSKB)/1024, float64(r.ServerRSSBaseKB)/1024))
		if r.RSSPerSessionKB > 0 {
			row("server RSS per session", fmt.Sprintf("%.2f KiB", r.RSSPerSessionKB))
		}
		if r.RSSPerSessionGCKB > 0 {
			row("server RSS per session after a forced collection", fmt.Sprintf("%.2f KiB", r.RSSPerSessionGCKB))
		}
		if r.KernelSlabPerConnKB > 0 {
			row("kernel slab per connection", fmt.Sprintf("%.2f KiB (both ends, machine-wide)", r.KernelSlabPerConnKB))
		}
		if r.RampCPUPerSessionUS > 0 {
			row("server CPU per new session", fmt.Sprintf("%.0f µs (handshake, accept, route)", r.RampCPUPerSessionUS))
		}
		if r.ServerCPUSeconds > 0 {
			row("server CPU", fmt.Sprintf("%.2f s", r.ServerCPUSeconds))
		}
		if r.CPUPerMillion > 0 {
			row("server CPU per million "+r.Unit, fmt.Sprintf("%.1f s (%.1f µs each)", r.CPUPerMillion, r.CPUPerMillion))
		}
		if r.WritesPerMsg > 0 {
			row("server syscalls per "+strings.TrimSuffix(r.Unit, "s"), fmt.Sprintf("%.2f writes, %.2f reads", r.WritesPerMsg, r.ReadsPerMsg))
		}
		if len(r.Servers) > 1 {
			for _, s := range r.Servers {
				row(fmt.Sprintf("server PID %d", s.PID), s.String())
			}
		}
	}
	fmt.Fprintln(w)
}

// String is the figures in a table cell.
func (s ServerFigures) String() string {
	what := "all sessions (no endpoint of the run)"
	if len(s.Endpoints) > 0 {
		what = "on " + strings.Join(s.Endpoints, ", ")
	}
	v := fmt.Sprintf("%d sessions %s; ramp CPU %.2f s (%.0f µs each)", s.Sessions, what, s.RampCPUSeconds, s.RampCPUPerSessionUS)
	if s.RSSKB > 0 {
		v += fmt.Sprintf("; RSS %.1f MiB (%.1f before), %.2f KiB per session", float64(s.RSSKB)/1024, float64(s.RSSBaseKB)/1024, s.RSSPerSessionKB)
	}
	return v
}

func rateNote(r float64) string {
	if r > 0 {
		return fmt.Sprintf(", offered %.0f/s", r)
	}
	return ", closed loop"
}

func fmtUS(us int64) string {
	switch {
	case us >= 10_000_000:
		return fmt.Sprintf("%.1f s", float64(us)/1e6)
	case us >= 10_000:
		return fmt.Sprintf("%.0f ms", float64(us)/1e3)
	case us >= 1000:
		return fmt.Sprintf("%.2f ms", float64(us)/1e3)
	}
	return fmt.Sprintf("%d µs", us)
}
