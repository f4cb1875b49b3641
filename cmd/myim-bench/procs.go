package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bytedance/sonic"
)

// --procs: the parent re-executes this binary as N children, each with its
// own share of --n, its own user range (--first) and its own slice of the
// source addresses. The children talk to the parent over two pipes:
//
//	child -> parent, fd 3: one JSON childMsg per line: ready (provisioned),
//	    ramped (sessions open), held (every session answered a ping and is
//	    still held), stormed (with --storm: every session dropped, opened
//	    again and answered a ping), done (the child's report; last line)
//	parent -> child, stdin: one word per line: ramp, storm (--storm), release
//
// The parent waits for every child at each step, so that it reads the
// server processes once for all the sessions: before the first opens
// (after provisioning, which the ramp's CPU figures must not include),
// once all are open, and while all are held. A child whose stdin ends (the
// parent went away) cancels its run and closes its sessions.

// childEnv marks a child of --procs; the parent sets it.
const childEnv = "MYIM_BENCH_CHILD"

// maxProcs bounds --procs: 64 children of 20,000 sessions is far past what
// one machine's ports and memory hold.
const maxProcs = 64

// phaseLimit is the longest the parent waits for its children at one step.
// The children bound their own work (dial and handshake timeouts, --hold,
// a 20-second ping check); this only guards against a child that hangs.
// Provisioning 20,000 users or ramping as many on a loaded machine takes
// minutes, not tens of them.
const phaseLimit = 15 * time.Minute

// Phases a child reports, in order; done is always last.
const (
	phaseReady   = "ready"
	phaseRamped  = "ramped"
	phaseHeld    = "held"
	phaseStormed = "stormed"
	phaseDone    = "done"
)

var phaseRank = map[string]int{phaseReady: 1, phaseRamped: 2, phaseHeld: 3, phaseStormed: 4, phaseDone: 5}

// Words the parent sends.
const (
	wordRamp    = "ramp"
	wordRelease = "release"
)

// childMsg is one line a child writes to its parent.
type childMsg struct {
	Phase       string         `json:"phase"`
	Conns       int            `json:"conns,omitempty"`
	RampSeconds float64        `json:"ramp_s,omitempty"`
	ByEndpoint  map[string]int `json:"by_endpoint,omitempty"`
	LimitHit    string         `json:"limit_hit,omitempty"`
	Storm       *StormFigures  `json:"storm,omitempty"`
	Report      *Report        `json:"report,omitempty"`
	Err         string         `json:"error,omitempty"`
}

// childLink is a child's end of the pipes. send is safe for concurrent
// use; wait is called by one goroutine at a time.
type childLink struct {
	mu    sync.Mutex
	out   *os.File
	words chan string // lines from stdin; closed at its end
}

// newChildLink opens the pipes a parent gave this process and returns a
// context that ends when the parent goes away.
func newChildLink(ctx context.Context) (context.Context, *childLink, context.CancelFunc, error) {
	out := os.NewFile(3, "parent")
	if out == nil {
		return ctx, nil, nil, errors.New("no pipe to the parent on fd 3 (" + childEnv + " is set by --procs)")
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &childLink{out: out, words: make(chan string, 4)}
	go func() {
		defer cancel()
		defer close(l.words)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			l.words <- strings.TrimSpace(sc.Text())
		}
	}()
	return ctx, l, cancel, nil
}

func (l *childLink) send(m childMsg) error {
	b, err := sonic.ConfigStd.Marshal(m)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.out.Write(append(b, '\n'))
	return err
}

// wait waits for the parent to say word.
func (l *childLink) wait(ctx context.Context, word string) error {
	t := time.NewTimer(phaseLimit)
	defer t.Stop()
	for {
		select {
		case w, ok := <-l.words:
			if !ok {
				return errors.New("the parent process went away")
			}
			if w == word {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no %q from the parent in %v", word, phaseLimit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runChild runs cfg as a child of --procs and sends its report to the
// parent instead of printing it.
func runChild(ctx context.Context, cfg Config, stderr io.Writer) int {
	ctx, l, cancel, err := newChildLink(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "myim-bench: %v\n", err)
		return 2
	}
	defer cancel()
	cfg.link = l
	rep, err := Run(ctx, cfg)
	m := childMsg{Phase: phaseDone, Report: rep}
	if err != nil {
		m.Err = err.Error()
	}
	if serr := l.send(m); serr != nil {
		fmt.Fprintf(stderr, "myim-bench: report to the parent: %v\n", serr)
		return 1
	}
	if err != nil {
		return 1
	}
	return 0
}

// ChildFigures are one bench process's part of a --procs run.
type ChildFigures struct {
	Process  int     `json:"process"`
	PID      int     `json:"pid"`
	First    int     `json:"first"`
	Wanted   int     `json:"conns_wanted"`
	Conns    int     `json:"conns"`
	RampRate float64 `json:"ramp_per_s,omitempty"`
	Errors   int64   `json:"errors"`
	Sources  string  `json:"sources,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// child is the parent's view of one child process.
type child struct {
	k          int
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	first, n   int
	src        string
	rank       int // highest phase reported; phaseRank
	ramped     childMsg
	storm      *StormFigures
	rep        *Report
	err        string
	exited     chan struct{} // closed when the process has been waited for
	forwarders sync.WaitGroup
}

type childEvent struct {
	k   int
	msg childMsg
	eof bool // the control pipe ended: no more messages
}

// childSources splits the source addresses over n children: each its own
// addresses when there are at least n, all of them shared otherwise (the
// kernel then shares each address's ports among the children).
func childSources(c *Config, n int) []string {
	srcs := c.Sources
	if len(srcs) == 1 && srcs[0] == "auto" {
		srcs = nil
		target := c.Endpoint
		if target == "" {
			target = c.HTTP
		}
		if isLoopback(target) {
			srcs, _ = ipRange("127.0.0.2", "127.0.0.9")
		}
	}
	out := make([]string, n)
	for k := range out {
		switch {
		case len(srcs) == 0:
			out[k] = "none"
		case len(srcs) < n:
			out[k] = strings.Join(srcs, ",")
		default:
			var mine []string
			for j := k; j < len(srcs); j += n {
				mine = append(mine, srcs[j])
			}
			out[k] = strings.Join(mine, ",")
		}
	}
	return out
}

// RunProcs runs the idle scenario of cfg in cfg.Procs child processes and
// returns one report for all of them, with the server figures read once
// for all the sessions.
func RunProcs(ctx context.Context, cfg Config) (*Report, error) {
	cfg.fillDefaults()
	if cfg.args == nil {
		return nil, errors.New("--procs: children need the command line (run through the flags)")
	}
	if cfg.Scenario != "idle" {
		return nil, errors.New("--procs runs the idle scenario only")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--procs: %w", err)
	}
	start := time.Now()
	// The children's lines and the parent's own share the output.
	cfg.Out = &lockedWriter{w: cfg.Out}
	rep := &Report{Scenario: cfg.Scenario, Proto: cfg.Proto, Transport: cfg.Transport, Wanted: cfg.Conns, Procs: cfg.Procs}
	if len(cfg.ServerPIDs) > 0 {
		rep.ServerPID = cfg.ServerPIDs[0]
	}
	srv := newServerProcs(cfg.ServerPIDs)
	// A child sends at most four messages and its end: the readers of the
	// control pipes never block, even once the parent stops listening.
	f := &children{ctx: ctx, events: make(chan childEvent, 8*cfg.Procs)}
	defer func() { stopChildren(f.kids) }()
	if err := f.start(exe, &cfg); err != nil {
		return nil, err
	}

	if err := f.await(phaseReady); err != nil {
		return nil, err
	}
	if cfg.Settle {
		if err := settle(ctx, &cfg, srv); err != nil {
			return nil, err
		}
	}
	base, haveProc, err := srv.mark(momentBase)
	if err != nil {
		return nil, err
	}
	rep.ServerRSSBaseKB = base.RSSKB
	slab0 := slabKB()
	t0 := time.Now()
	f.tell(wordRamp)
	if err := f.await(phaseRamped); err != nil {
		return nil, err
	}
	rampSecs := time.Since(t0).Seconds()
	ramped, _, err := srv.mark(momentRamped)
	opened := 0
	for _, c := range f.kids {
		opened += c.ramped.Conns
	}
	fmt.Fprintf(cfg.Out, "ramp: %d of %d sessions open in %.1f s\n", opened, cfg.Conns, rampSecs)
	if err != nil {
		return nil, err
	}
	byEndpoint := addRamped(rep, f.kids)
	rep.RampRate = float64(rep.Conns) / rampSecs
	if err := f.await(phaseHeld); err != nil {
		return nil, err
	}
	held, _, err := srv.mark(momentHeld)
	if err != nil {
		return nil, err
	}
	slab1 := slabKB()
	if cfg.Storm {
		if rep.Storm, err = procsStorm(&cfg, rep.Conns, srv, f.kids, f.tell, f.await); err != nil {
			return nil, err
		}
	}
	f.tell(wordRelease)
	if err := f.await(phaseDone); err != nil {
		return nil, err
	}

	firstErr := addChildren(rep, f.kids)
	if len(byEndpoint) > 0 {
		rep.ByEndpoint = byEndpoint
	}
	if haveProc && rep.Conns > 0 {
		rep.ServerRSSKB = held.RSSKB
		rep.RSSPerSessionKB = float64(held.RSSKB-base.RSSKB) / float64(rep.Conns)
		rep.RampCPUPerSessionUS = float64(ramped.CPUTicks-base.CPUTicks) / clockTick / float64(rep.Conns) * 1e6
		rep.Servers = srv.figures(byEndpoint, rep.Conns)
	}
	if slab0 > 0 && slab1 > slab0 && rep.Conns > 0 {
		rep.KernelSlabPerConnKB = float64(slab1-slab0) / float64(rep.Conns)
	}
	if rep.Seconds == 0 {
		rep.Seconds = time.Since(start).Seconds()
	}
	if rep.Conns == 0 && firstErr == nil {
		firstErr = errors.New("no session opened")
	}
	return rep, firstErr
}

// children is the parent's view of its bench processes: the children and the
// events their control pipes send. Used by RunProcs's goroutine only.
type children struct {
	ctx    context.Context
	kids   []*child
	events chan childEvent
}

// start runs cfg.Procs children, each with its share of cfg.Conns users
// and its source addresses. The children started before an error stay in
// f.kids, for the caller to stop.
func (f *children) start(exe string, cfg *Config) error {
	srcs := childSources(cfg, cfg.Procs)
	f.kids = make([]*child, 0, cfg.Procs)
	first := cfg.First
	for k := 0; k < cfg.Procs; k++ {
		n := cfg.Conns / cfg.Procs
		if k < cfg.Conns%cfg.Procs {
			n++
		}
		if n == 0 {
			break
		}
		c := &child{k: k, first: first, n: n, src: srcs[k], exited: make(chan struct{})}
		first += n
		if err := c.start(exe, cfg, f.events); err != nil {
			return fmt.Errorf("process %d: %w", k+1, err)
		}
		f.kids = append(f.kids, c)
	}
	return nil
}

// await waits until every child has reported phase or ended. A child
// that ends before it is ready fails the run: its users are missing from
// every figure.
func (f *children) await(phase string) error {
	t := time.NewTimer(phaseLimit)
	defer t.Stop()
	for {
		all := true
		for _, c := range f.kids {
			if c.rank < phaseRank[phase] {
				all = false
			}
			if phase == phaseReady && c.rank == phaseRank[phaseDone] && c.err != "" {
				return fmt.Errorf("process %d: %s", c.k+1, c.err)
			}
		}
		if all {
			return nil
		}
		select {
		case ev := <-f.events:
			f.kids[ev.k].note(ev)
		case <-t.C:
			return fmt.Errorf("the bench processes did not all reach %q in %v", phase, phaseLimit)
		case <-f.ctx.Done():
			return f.ctx.Err()
		}
	}
}

// note records what the child's control pipe said: a phase reached, its
// figures, or its end.
func (c *child) note(ev childEvent) {
	if ev.eof {
		if c.rank < phaseRank[phaseDone] && c.err == "" {
			c.err = "ended without a report"
		}
		c.rank = phaseRank[phaseDone]
		return
	}
	c.rank = max(c.rank, phaseRank[ev.msg.Phase])
	switch ev.msg.Phase {
	case phaseRamped:
		c.ramped = ev.msg
	case phaseStormed:
		c.storm = ev.msg.Storm
	case phaseDone:
		c.rep, c.err = ev.msg.Report, ev.msg.Err
	}
}

// tell sends word to every child still running.
func (f *children) tell(word string) {
	for _, c := range f.kids {
		if c.rank < phaseRank[phaseDone] {
			_, _ = io.WriteString(c.stdin, word+"\n")
		}
	}
}

// addRamped adds the children's ramp figures to rep and returns the
// sessions per endpoint, summed over the children.
func addRamped(rep *Report, kids []*child) map[string]int {
	byEndpoint := make(map[string]int)
	for _, c := range kids {
		rep.Conns += c.ramped.Conns
		for a, n := range c.ramped.ByEndpoint {
			byEndpoint[a] += n
		}
		if c.ramped.LimitHit != "" && rep.LimitHit == "" {
			rep.LimitHit = fmt.Sprintf("process %d: %s", c.k+1, c.ramped.LimitHit)
		}
	}
	return byEndpoint
}

// addChildren adds each child's final figures to rep and returns the
// first child's error.
func addChildren(rep *Report, kids []*child) error {
	var firstErr error
	for _, c := range kids {
		f := ChildFigures{Process: c.k + 1, First: c.first, Wanted: c.n, Conns: c.ramped.Conns, Sources: c.src, Error: c.err}
		if c.cmd.Process != nil {
			f.PID = c.cmd.Process.Pid
		}
		if c.ramped.RampSeconds > 0 {
			f.RampRate = float64(c.ramped.Conns) / c.ramped.RampSeconds
		}
		if r := c.rep; r != nil {
			f.Errors = r.Errors
			rep.Errors += r.Errors
			rep.Seconds = max(rep.Seconds, r.Seconds)
			if r.LastError != "" {
				rep.LastError = fmt.Sprintf("process %d: %s", c.k+1, r.LastError)
			}
		}
		if c.err != "" && firstErr == nil {
			firstErr = fmt.Errorf("process %d: %s", c.k+1, c.err)
		}
		rep.Children = append(rep.Children, f)
	}
	return firstErr
}

// start runs the child process: its control pipe feeds events, its output
// goes to cfg.Out line by line, prefixed with its number.
func (c *child) start(exe string, cfg *Config, events chan<- childEvent) error {
	// Later flags win: the parent's command line, then this child's part.
	args := append(slices.Clone(cfg.args), "--procs", "1", "--n", strconv.Itoa(c.n),
		"--first", strconv.Itoa(c.first), "--src", c.src, "--server-pid", "", "--settle=false", "--json", "", "--plot", "")
	if cfg.DialRate > 0 {
		// --dial-rate is the total: each child dials its share of it.
		args = append(args, "--dial-rate", strconv.Itoa(max(1, (cfg.DialRate*c.n+cfg.Conns-1)/cfg.Conns)))
	}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return err
	}
	c.cmd.ExtraFiles = []*os.File{ctlW}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		ctlR.Close()
		ctlW.Close()
		return err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return err
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return err
	}
	if err := c.cmd.Start(); err != nil {
		ctlR.Close()
		ctlW.Close()
		return err
	}
	ctlW.Close() // the child's copy keeps the pipe open until it exits
	go func() {
		defer ctlR.Close()
		sc := bufio.NewScanner(ctlR)
		sc.Buffer(make([]byte, 64<<10), 16<<20) // the done line carries the report
		for sc.Scan() {
			var m childMsg
			if err := sonic.Unmarshal(sc.Bytes(), &m); err != nil || phaseRank[m.Phase] == 0 {
				continue
			}
			events <- childEvent{k: c.k, msg: m}
		}
		events <- childEvent{k: c.k, eof: true}
	}()
	forward := func(r io.Reader) {
		defer c.forwarders.Done()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Fprintf(cfg.Out, "[%d] %s\n", c.k+1, sc.Text())
		}
	}
	c.forwarders.Add(2)
	go forward(stdout)
	go forward(stderr)
	go func() {
		c.forwarders.Wait() // Wait closes the pipes: read them to the end first
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	return nil
}

// lockedWriter serialises writes to w. Safe for concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// stopChildren closes the children's stdin, which ends their runs, waits
// for them a while and kills, by PID, those still running.
func stopChildren(kids []*child) {
	for _, c := range kids {
		_ = c.stdin.Close()
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for _, c := range kids {
		select {
		case <-c.exited:
			continue
		case <-deadline.C:
		}
		for _, c := range kids {
			select {
			case <-c.exited:
			default:
				_ = c.cmd.Process.Kill()
			}
		}
		for _, c := range kids {
			<-c.exited
		}
		return
	}
}

// procsStorm starts the storm in every child at once and waits until all
// have settled; the storm's time is the parent's, from the word to the
// last child's answer.
func procsStorm(cfg *Config, conns int, srv *serverProcs, kids []*child, tell func(string), await func(string) error) (*StormFigures, error) {
	before, _, err := srv.read()
	if err != nil {
		return nil, fmt.Errorf("server /proc: %w", err)
	}
	fmt.Fprintf(cfg.Out, "storm: all %d sessions drop now and reconnect\n", conns)
	t0 := time.Now()
	tell(wordStorm)
	if err := await(phaseStormed); err != nil {
		return nil, err
	}
	st := &StormFigures{Seconds: time.Since(t0).Seconds()}
	for _, c := range kids {
		if c.storm == nil {
			continue
		}
		st.Dropped += c.storm.Dropped
		st.Back += c.storm.Back
		st.Failed += c.storm.Failed
		st.Retries += c.storm.Retries
		if st.Stopped == "" && c.storm.Stopped != "" {
			st.Stopped = fmt.Sprintf("process %d: %s", c.k+1, c.storm.Stopped)
		}
		if st.LastError == "" && c.storm.LastError != "" {
			st.LastError = fmt.Sprintf("process %d: %s", c.k+1, c.storm.LastError)
		}
	}
	if st.Seconds > 0 {
		st.SessionsPerSecond = float64(st.Back) / st.Seconds
	}
	if after, _, err := srv.read(); err == nil && srv.enabled() {
		st.serverFigures(before, after)
	}
	fmt.Fprintf(cfg.Out, "storm: settled in %.1f s, %d of %d sessions back\n", st.Seconds, st.Back, st.Dropped)
	return st, nil
}
