package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myim/myim/frame"
)

type loadKind uint8

const (
	loadNone loadKind = iota // idle: only keepalives
	loadPing
	loadP2P
	loadGroup
)

// runner holds one run's sessions and counters.
type runner struct {
	ctx     context.Context
	cfg     *Config
	fl      *fleet
	d       *dialer
	targets []target // endpoints; session i dials target(i)
	srv     *serverProcs

	conns  []*bconn // by index; nil where a session failed to open
	live   []int    // indices of open sessions
	byUser map[uint64]*bconn
	hist   *shardedHist

	kind               loadKind
	qos                frame.QoS
	group              uint64
	cidBase            uint64
	track              bool // reconnect-storm: exactly-once bookkeeping
	completeOnDelivery bool // the window slot frees on delivery, not on the sender's ack

	stopping atomic.Bool // no new messages
	// ended counts sessions the server ended (not the bench): an idle
	// hold stops at the first, since the figures it would report are
	// no longer of held sessions.
	ended   atomic.Int64
	closing atomic.Bool // sessions are being closed on purpose
	budget  atomic.Int64
	limited bool
	readers sync.WaitGroup
	// slabHeld is the kernel's slab memory while every idle session is
	// held (before a storm).
	slabHeld int64

	sent, delivered, acked, stored, errs, dups atomic.Int64
	resent, reconnects, keepalives, skipped    atomic.Int64

	errMu   sync.Mutex
	lastErr error
}

// lastError returns the last error noted, or nil.
func (r *runner) lastError() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.lastErr
}

func (r *runner) noteErr(err error) {
	r.errMu.Lock()
	r.lastErr = err
	r.errMu.Unlock()
}

func (r *runner) fail(err error) {
	r.errs.Add(1)
	r.noteErr(err)
}

func (r *runner) writeErr(_ *bconn, err error) {
	if r.track || r.closing.Load() {
		return
	}
	r.fail(fmt.Errorf("write: %w", err))
}

func (r *runner) connErr(_ *bconn, err error) {
	r.ended.Add(1)
	r.fail(fmt.Errorf("session ended: %w", err))
}

// take claims one message of the run's budget.
func (r *runner) take() bool {
	if r.stopping.Load() {
		return false
	}
	if !r.limited {
		return true
	}
	if r.budget.Add(-1) >= 0 {
		return true
	}
	return false
}

// pickPeer returns the user id of a random session other than b; wmu held.
func (r *runner) pickPeer(b *bconn) uint64 {
	if len(r.live) < 2 {
		return b.user
	}
	j := r.live[b.rng.IntN(len(r.live)-1)]
	if j == b.idx {
		j = r.live[len(r.live)-1]
	}
	return r.conns[j].user
}

// target is the endpoint of session i: with --spread, the server list's
// entry at bench user number First+i (counted from 0) modulo its length,
// so that the sessions of several bench processes spread evenly too.
func (r *runner) target(i int) target {
	if len(r.targets) == 1 {
		return r.targets[0]
	}
	return r.targets[(r.cfg.First-1+i)%len(r.targets)]
}

// open dials session i and runs its protocol's opening exchange.
func (r *runner) open(ctx context.Context, i int) (net.Conn, codec, error) {
	t := r.target(i)
	nc, err := r.d.dial(ctx, t.addr)
	if err != nil {
		return nil, nil, err
	}
	var c codec
	switch r.cfg.Proto {
	case "myim":
		var mc *myimCodec
		var sc net.Conn
		if sc, mc, err = myimOpen(nc, r.fl.dev, t.key, r.fl.users[i].token); err == nil {
			nc, c = sc, mc
		}
	case "fwd":
		c, err = fwdHandshake(nc, uint64(r.cfg.First+i))
	case "mqtt":
		c, err = mqttHandshake(nc, i, uint64(r.cfg.First+i))
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, c, nil
}

func (r *runner) userID(i int) uint64 {
	if r.cfg.Proto == "myim" {
		return r.fl.users[i].ID
	}
	return uint64(r.cfg.First + i)
}

// serverStat reads the server processes, summed.
func (r *runner) serverStat() (procStat, bool) {
	if !r.srv.enabled() {
		return procStat{}, false
	}
	ps, _, err := r.srv.read()
	if err != nil {
		r.noteErr(fmt.Errorf("server /proc: %w", err))
		return procStat{}, false
	}
	return ps, true
}

// markServers reads the server processes at moment m; see serverProcs.
func (r *runner) markServers(m int) (procStat, bool) {
	ps, ok, err := r.srv.mark(m)
	if err != nil {
		r.noteErr(err)
	}
	return ps, ok
}

// Run runs cfg's scenario and returns its report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.fillDefaults()
	rep := &Report{Scenario: cfg.Scenario, Proto: cfg.Proto, Transport: cfg.Transport, Wanted: cfg.Conns, QoS: cfg.QoS, Size: cfg.Size,
		Window: cfg.Window, Rate: cfg.Rate}
	if len(cfg.ServerPIDs) > 0 {
		rep.ServerPID = cfg.ServerPIDs[0]
	}
	if err := fitFileLimit(&cfg, rep); err != nil {
		return nil, err
	}
	for _, a := range []string{cfg.Endpoint, cfg.Login, cfg.HTTP, cfg.AdminAPI} {
		if a == "" || (cfg.Proto != "myim" && a != cfg.Endpoint) {
			continue
		}
		if err := checkTarget(a, cfg.AllowWider); err != nil {
			return nil, err
		}
	}
	r := &runner{ctx: ctx, cfg: &cfg, hist: newShardedHist(), qos: frame.QoS(cfg.QoS),
		cidBase: uint64(time.Now().UnixNano()), srv: newServerProcs(cfg.ServerPIDs)}
	if cfg.Scenario == "login-storm" {
		return rep, loginStorm(ctx, r, rep)
	}
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}

	if l := cfg.link; l != nil {
		// A child of --procs: the parent starts every ramp at once, after
		// all the children have provisioned.
		if err := l.send(childMsg{Phase: phaseReady}); err != nil {
			return nil, err
		}
		if err := l.wait(ctx, wordRamp); err != nil {
			return nil, err
		}
	}
	if cfg.Settle {
		if err := settle(ctx, &cfg, r.srv); err != nil {
			return nil, err
		}
	}
	base, haveProc := r.markServers(momentBase)
	rep.ServerRSSBaseKB = base.RSSKB
	slab0 := slabKB()
	t0 := time.Now()
	conns, got, stopErr := ramp(ctx, &cfg, cfg.Conns, "sessions", func(ctx context.Context, i int) (*bconn, error) {
		nc, c, err := r.open(ctx, i)
		if err != nil {
			return nil, err
		}
		return newBconn(r, i, r.userID(i), nc, c), nil
	})
	rampSecs := time.Since(t0).Seconds()
	rep.RampRate = float64(got) / rampSecs
	if ps, ok := r.markServers(momentRamped); ok && haveProc && got > 0 {
		rep.RampCPUPerSessionUS = float64(ps.CPUTicks-base.CPUTicks) / clockTick / float64(got) * 1e6
	}
	byEndpoint := r.adopt(conns, got)
	rep.Conns = got
	if len(r.targets) > 1 {
		rep.ByEndpoint = byEndpoint
	}
	if stopErr != nil {
		if rep.LimitHit == "" {
			rep.LimitHit = stopErr.Error()
		}
		fmt.Fprintf(cfg.Out, "myim-bench: %v\n", stopErr)
	}
	if l := cfg.link; l != nil {
		if err := l.send(childMsg{Phase: phaseRamped, Conns: got, RampSeconds: rampSecs, ByEndpoint: byEndpoint,
			LimitHit: rep.LimitHit}); err != nil {
			return rep, err
		}
	}
	defer r.closeAll()
	if got == 0 {
		return rep, errors.New("no session opened")
	}
	for _, i := range r.live {
		r.readers.Add(1)
		go conns[i].readLoop()
	}

	err := r.scenario(ctx, rep, slab0)
	if ps, ok := r.serverStat(); ok && haveProc {
		rep.ServerRSSKB = ps.RSSKB
	}
	if haveProc {
		if !r.srv.marked(momentHeld) {
			r.markServers(momentHeld)
		}
		rep.Servers = r.srv.figures(byEndpoint, got)
	}
	rep.Errors = r.errs.Load()
	if last := r.lastError(); last != nil {
		rep.LastError = last.Error()
	}
	return rep, err
}

// fitFileLimit raises the open-file limit as far as it goes and, when it
// still allows fewer sessions than cfg asks for, lowers cfg.Conns (and
// cfg.GroupSize) to fit and says so in rep.
func fitFileLimit(cfg *Config, rep *Report) error {
	allowed, lim, err := raiseFileLimit()
	if err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if cfg.Scenario != "login-storm" && cfg.Conns > allowed {
		rep.LimitHit = fmt.Sprintf("open-file limit: the hard RLIMIT_NOFILE of %d allows %d sessions per process; run them in several bench processes with --procs (see docs/scaling.md)", lim.Max, allowed)
		fmt.Fprintf(cfg.Out, "myim-bench: %s\n", rep.LimitHit)
		cfg.Conns = allowed
		if cfg.GroupSize > cfg.Conns {
			cfg.GroupSize = cfg.Conns
		}
	}
	return nil
}

// prepare finds the endpoints (provisioning the users for myim), checks
// they are loopback, makes the dialer and sets the load the scenario
// sends.
func (r *runner) prepare(ctx context.Context) error {
	cfg := r.cfg
	var err error
	if cfg.Proto == "myim" {
		if r.fl, err = provision(ctx, cfg, cfg.Conns, true); err != nil {
			return err
		}
		r.targets = r.fl.targets
		if len(r.targets) == 0 {
			return errors.New("no endpoint: the server list was empty")
		}
	} else {
		r.targets = []target{{addr: cfg.Endpoint}}
	}
	for _, t := range r.targets {
		if err := checkTarget(t.addr, cfg.AllowWider); err != nil {
			return err
		}
	}
	if cfg.Transport == "ws" {
		for i := range r.targets {
			r.targets[i].addr = cfg.WSAddr
		}
	}
	if r.d, err = newDialer(cfg.Sources, r.targets[0].addr); err != nil {
		return err
	}
	r.d.ws = cfg.Transport == "ws"
	switch cfg.Scenario {
	case "ping":
		r.kind = loadPing
	case "p2p":
		r.kind = loadP2P
		r.completeOnDelivery = r.qos == frame.QoS0 || cfg.Proto == "mqtt"
	case "group":
		r.kind, r.qos = loadGroup, frame.QoS1
	case "reconnect-storm":
		r.kind, r.qos, r.track = loadP2P, frame.QoS1, true
	}
	return nil
}

// adopt takes the ramped sessions (nil where one failed to open) and
// returns how many opened on each endpoint.
func (r *runner) adopt(conns []*bconn, got int) map[string]int {
	r.conns = conns
	r.byUser = make(map[uint64]*bconn, got)
	byEndpoint := make(map[string]int, len(r.targets))
	for i, b := range conns {
		if b != nil {
			byEndpoint[r.target(i).addr]++
			r.live = append(r.live, i)
			r.byUser[b.user] = b
			if r.track {
				b.unacked = make(map[uint64]sentMsg)
				b.got = make(map[[2]uint64]uint16)
			}
		}
	}
	return byEndpoint
}

// scenario runs the held part of the scenario over the open sessions;
// slab0 is the kernel's slab memory before the ramp.
func (r *runner) scenario(ctx context.Context, rep *Report, slab0 int64) error {
	switch r.cfg.Scenario {
	case "idle":
		err := idle(ctx, r, rep)
		if s := r.slabHeld; s > slab0 && slab0 > 0 {
			rep.KernelSlabPerConnKB = float64(s-slab0) / float64(len(r.live))
		}
		return err
	case "group":
		if err := setupGroup(ctx, r); err != nil {
			return err
		}
		return measure(ctx, r, rep)
	default:
		return measure(ctx, r, rep)
	}
}

// closeAll ends every session and waits for the readers.
func (r *runner) closeAll() {
	r.closing.Store(true)
	r.stopping.Store(true)
	for _, b := range r.conns {
		if b != nil {
			b.wmu.Lock()
			_ = b.nc.Close()
			b.wmu.Unlock()
		}
	}
	done := make(chan struct{})
	go func() { r.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// idle holds the sessions, pings each once to prove it live, and reports
// the server's memory per session.
func idle(ctx context.Context, r *runner, rep *Report) error {
	start := time.Now()
	prog := newProgress(r.cfg, "idle", func() string {
		s, ok := r.serverStat()
		if !ok {
			return fmt.Sprintf("holding %d sessions", len(r.live))
		}
		return fmt.Sprintf("holding %d sessions, server RSS %.1f MiB", len(r.live), float64(s.RSSKB)/1024)
	})
	ka := time.NewTicker(r.cfg.Keepalive)
	defer ka.Stop()
	hold := time.NewTimer(r.cfg.Hold)
	defer hold.Stop()
	watch := time.NewTicker(100 * time.Millisecond)
	defer watch.Stop()
wait:
	for {
		select {
		case <-ctx.Done():
			prog.stop()
			return ctx.Err()
		case <-ka.C:
			r.pingAll()
		case <-watch.C:
			if n := r.ended.Load(); n > 0 {
				prog.stop()
				return fmt.Errorf("%d of %d sessions ended by the server after %v of the %v hold (server gone?): %v",
					n, len(r.live), time.Since(start).Round(time.Millisecond), r.cfg.Hold, r.lastError())
			}
		case <-hold.C:
			break wait
		}
	}
	prog.stop()
	before := r.keepalives.Load()
	r.pingAll()
	deadline := time.Now().Add(20 * time.Second)
	for r.keepalives.Load()-before < int64(len(r.live)) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if n := r.keepalives.Load() - before; n < int64(len(r.live)) {
		r.fail(fmt.Errorf("only %d of %d sessions answered a ping", n, len(r.live)))
	}
	rep.Seconds = time.Since(start).Seconds()
	if ps, ok := r.markServers(momentHeld); ok {
		rep.ServerRSSKB = ps.RSSKB
		rep.RSSPerSessionKB = float64(ps.RSSKB-rep.ServerRSSBaseKB) / float64(len(r.live))
	}
	if r.cfg.GCSignal && r.cfg.link == nil {
		// The same sessions after a forced collection: the base was
		// read after one too (--settle).
		low, err := collect(ctx, r.cfg, r.srv)
		if err != nil {
			return err
		}
		rep.RSSPerSessionGCKB = float64(low-rep.ServerRSSBaseKB) / float64(len(r.live))
	}
	r.slabHeld = slabKB()
	if l := r.cfg.link; l != nil {
		// A child of --procs: the parent reads the servers while every
		// child holds its sessions, starts the storm in all at once, then
		// releases them all.
		if err := l.send(childMsg{Phase: phaseHeld, Conns: len(r.live)}); err != nil {
			return err
		}
		if r.cfg.Storm {
			if err := l.wait(ctx, wordStorm); err != nil {
				return err
			}
			if err := l.send(childMsg{Phase: phaseStormed, Storm: r.storm(ctx)}); err != nil {
				return err
			}
		}
		return l.wait(ctx, wordRelease)
	}
	if r.cfg.Storm {
		before, _ := r.serverStat()
		fmt.Fprintf(r.cfg.Out, "storm: all %d sessions drop now and reconnect\n", len(r.live))
		rep.Storm = r.storm(ctx)
		if after, ok := r.serverStat(); ok {
			rep.Storm.serverFigures(before, after)
		}
		fmt.Fprintf(r.cfg.Out, "storm: settled in %.1f s, %d of %d sessions back\n", rep.Storm.Seconds, rep.Storm.Back, rep.Storm.Dropped)
		return ctx.Err()
	}
	return nil
}

func (r *runner) pingAll() {
	var pl [payloadMin]byte
	for _, i := range r.live {
		b := r.conns[i]
		putPayload(pl[:], i, 0)
		_ = b.send(func(d []byte) ([]byte, error) {
			if r.cfg.Proto == "mqtt" {
				b.pings = append(b.pings, time.Now().UnixNano())
			}
			return b.c.appendPing(d, pl[:])
		})
	}
}

func (r *runner) senders() []*bconn {
	var out []*bconn
	for _, i := range r.live {
		if b := r.conns[i]; b.isSender() {
			out = append(out, b)
		}
	}
	return out
}

// inflight is what senders started and have not seen completed.
func (r *runner) inflight() int64 {
	var n int64
	for _, i := range r.live {
		b := r.conns[i]
		n += b.sent.Load() - b.done.Load()
	}
	return n
}

// measure runs the load for the configured duration or count, drains what
// is in flight and fills the report.
func measure(ctx context.Context, r *runner, rep *Report) error {
	cfg := r.cfg
	if cfg.Count > 0 {
		r.limited = true
		r.budget.Store(cfg.Count)
	}
	senders := r.senders()
	cpu0, _ := r.serverStat()
	t0 := time.Now()
	stopPace := make(chan struct{})
	var paceWG sync.WaitGroup
	if cfg.Rate > 0 {
		r.pace(senders, stopPace, &paceWG)
	} else {
		for _, b := range senders {
			b.pump(false)
		}
	}
	var dropWG sync.WaitGroup
	stopDrop := make(chan struct{})
	if r.track {
		dropWG.Add(1)
		go r.dropper(stopDrop, &dropWG)
	}
	unit := map[loadKind]string{loadPing: "round trips", loadP2P: "messages", loadGroup: "deliveries"}[r.kind]
	var lastN int64
	lastT := t0
	prog := newProgress(cfg, cfg.Scenario, func() string {
		n, now := r.delivered.Load(), time.Now()
		rate := float64(n-lastN) / now.Sub(lastT).Seconds()
		lastN, lastT = n, now
		return fmt.Sprintf("%d %s (%.0f/s), sent %d, in flight %d, errors %d", n, unit, rate, r.sent.Load(), r.inflight(), r.errs.Load())
	})
	tick := time.NewTicker(20 * time.Millisecond)
	r.awaitEnd(ctx, tick)
	r.stopping.Store(true)
	close(stopPace)
	paceWG.Wait()
	close(stopDrop)
	dropWG.Wait()
	// Drain: what is in flight completes or the drain time runs out.
	deadline := time.Now().Add(cfg.Drain)
	for !r.drained() && time.Now().Before(deadline) && ctx.Err() == nil {
		tick.Reset(10 * time.Millisecond)
		<-tick.C
	}
	tick.Stop()
	t1 := time.Now()
	prog.stop()
	cpu1, ok := r.serverStat()
	if r.track {
		r.finalFetch(ctx)
	}
	rep.Seconds = t1.Sub(t0).Seconds()
	rep.Unit = unit
	r.loadFigures(rep)
	if ok {
		rep.ServerCPUSeconds = float64(cpu1.CPUTicks-cpu0.CPUTicks) / clockTick
		if rep.Delivered > 0 {
			rep.CPUPerMillion = rep.ServerCPUSeconds / float64(rep.Delivered) * 1e6
			rep.ReadsPerMsg = float64(cpu1.Reads-cpu0.Reads) / float64(rep.Delivered)
			rep.WritesPerMsg = float64(cpu1.Writes-cpu0.Writes) / float64(rep.Delivered)
		}
	}
	if s := r.skipped.Load(); s > 0 {
		r.noteErr(fmt.Errorf("%d sends skipped: window full at the offered rate", s))
	}
	return ctx.Err()
}

// awaitEnd returns when ctx ends, the run's duration has passed, or a
// counted run has sent its budget and nothing is in flight; it checks the
// last on each tick.
func (r *runner) awaitEnd(ctx context.Context, tick *time.Ticker) {
	end := time.NewTimer(r.cfg.Duration)
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-tick.C:
			if r.limited && r.budget.Load() <= 0 && r.inflight() == 0 {
				return
			}
		}
	}
}

// drained reports whether what was sent has completed: acked and, for a
// group, delivered to every member.
func (r *runner) drained() bool {
	if r.track {
		return r.unackedCount() == 0
	}
	if r.kind == loadGroup {
		return r.inflight() == 0 && r.delivered.Load() >= r.acked.Load()*int64(r.cfg.GroupSize)
	}
	return r.inflight() == 0
}

// loadFigures fills rep's latency, counts, throughput and losses from the
// run's counters; rep.Seconds must be set. With exactly-once bookkeeping
// it closes the sessions first, to read their maps.
func (r *runner) loadFigures(rep *Report) {
	cfg := r.cfg
	hist := r.hist.merged()
	rep.hist = hist
	rep.Latency = summarize(hist)
	rep.Sent, rep.Delivered, rep.Acked, rep.Stored = r.sent.Load(), r.delivered.Load(), r.acked.Load(), r.stored.Load()
	rep.Throughput = float64(rep.Delivered) / rep.Seconds
	switch {
	case r.track:
		r.closeAll() // readers done: their maps are ours now
		rep.Lost, rep.Duplicates = r.verify()
		rep.Resent, rep.Reconnects = r.resent.Load(), r.reconnects.Load()
	case r.kind == loadGroup:
		rep.Lost = rep.Acked*int64(cfg.GroupSize) - rep.Delivered + r.inflight()*int64(cfg.GroupSize)
	default:
		rep.Lost = r.inflight()
	}
}

// pace offers cfg.Rate messages per second in total, open loop, spread
// over the senders; a send that finds its client's window full is skipped
// and counted.
func (r *runner) pace(senders []*bconn, stop <-chan struct{}, wg *sync.WaitGroup) {
	if len(senders) == 0 {
		return
	}
	p := min(4, len(senders))
	for k := 0; k < p; k++ {
		var mine []*bconn
		for i := k; i < len(senders); i += p {
			mine = append(mine, senders[i])
		}
		per := r.cfg.Rate / float64(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			start := time.Now()
			var issued int64
			next := 0
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				due := int64(per*time.Since(start).Seconds()) - issued
				for ; due > 0; due-- {
					if !r.take() {
						break
					}
					issued++
					b := mine[next%len(mine)]
					next++
					b.wmu.Lock()
					if b.sent.Load()-b.done.Load() < int64(r.cfg.Window) {
						if err := b.appendNextLocked(); err != nil {
							r.fail(err)
						}
						_ = b.flushLocked()
					} else {
						r.skipped.Add(1)
					}
					b.wmu.Unlock()
				}
			}
		}()
	}
}
