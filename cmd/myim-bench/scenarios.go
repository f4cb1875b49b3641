package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
)

// ctlWait waits for b's next FETCH or GROUP answer.
func ctlWait(ctx context.Context, b *bconn, kind evKind, req uint32, within time.Duration) (event, error) {
	t := time.NewTimer(within)
	defer t.Stop()
	for {
		select {
		case ev := <-b.ctl:
			if ev.kind == kind && (req == 0 || ev.req == req) {
				return ev, nil
			}
		case <-t.C:
			return event{}, fmt.Errorf("session %d: no answer in %s", b.idx, within)
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}

// setupGroup creates one group from the first session and has the first
// GroupSize sessions join it, through GROUP frames.
func setupGroup(ctx context.Context, r *runner) error {
	owner := r.conns[r.live[0]]
	mc := func(b *bconn) *myimCodec { return b.c.(*myimCodec) }
	if err := owner.send(func(d []byte) ([]byte, error) {
		return mc(owner).appendGroupOp(d, 1, frame.GroupCreate, 0, []byte(`{"name":"bench","open":true}`))
	}); err != nil {
		return err
	}
	ev, err := ctlWait(ctx, owner, evGroup, 1, 30*time.Second)
	if err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	r.group = ev.to
	members := r.live[1:min(r.cfg.GroupSize, len(r.live))]
	r.cfg.GroupSize = len(members) + 1
	start := time.Now()
	var joined atomic.Int64
	prog := newProgress(r.cfg, "group join", func() string { return fmt.Sprintf("%d/%d members", joined.Load()+1, r.cfg.GroupSize) })
	defer prog.stop()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, i := range members {
		b := r.conns[i]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := b.send(func(d []byte) ([]byte, error) { return mc(b).appendGroupOp(d, 2, frame.GroupJoin, r.group, nil) })
			if err == nil {
				_, err = ctlWait(ctx, b, evGroup, 2, 60*time.Second)
			}
			if err != nil {
				mu.Lock()
				first = cmp(first, fmt.Errorf("join group: %w", err))
				mu.Unlock()
				return
			}
			joined.Add(1)
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if !r.cfg.Quiet {
		fmt.Fprintf(r.cfg.Out, "group %d: %d members joined in %.1fs\n", r.group, r.cfg.GroupSize, time.Since(start).Seconds())
	}
	return nil
}

// loginStorm runs real logins (argon2id and all) for the bench users, with
// LoginConc at a time, for the duration or count.
func loginStorm(ctx context.Context, r *runner, rep *Report) error {
	cfg := r.cfg
	roots, err := loadRoot(cfg.Root)
	if err != nil {
		return err
	}
	if err := checkTarget(cfg.Login, cfg.AllowWider); err != nil {
		return err
	}
	n := cfg.Conns
	if r.fl, err = provision(ctx, cfg, n, false); err != nil {
		return err
	}
	ccfg := client.Config{Roots: roots, Device: r.fl.dev.key, WebSocket: cfg.webSocket()}
	cpu0, haveProc := r.serverStat()
	rep.ServerRSSBaseKB = cpu0.RSSKB
	var next, ok atomic.Int64
	if cfg.Count > 0 {
		r.limited = true
		r.budget.Store(cfg.Count)
	}
	t0 := time.Now()
	prog := newProgress(cfg, "login-storm", func() string {
		return fmt.Sprintf("%d logins (%.0f/s), errors %d", ok.Load(), float64(ok.Load())/time.Since(t0).Seconds(), r.errs.Load())
	})
	end := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	for w := 0; w < cfg.LoginConc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil && r.take() {
				i := int(next.Add(1)-1) % n
				s := time.Now()
				_, err := client.Login(ctx, ccfg, cfg.Login, cfg.userName(i), []byte(cfg.Password))
				if err != nil {
					r.fail(fmt.Errorf("login %s: %w", cfg.userName(i), err))
					continue
				}
				r.hist.record(w, time.Since(s).Nanoseconds())
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	prog.stop()
	rep.Seconds = time.Since(t0).Seconds()
	rep.Conns = n
	rep.Unit = "logins"
	rep.Delivered = ok.Load()
	rep.Throughput = float64(rep.Delivered) / rep.Seconds
	h := r.hist.merged()
	rep.hist = h
	rep.Latency = summarize(h)
	if cpu1, ok2 := r.serverStat(); ok2 && haveProc {
		rep.ServerRSSKB = cpu1.RSSKB
		rep.ServerCPUSeconds = float64(cpu1.CPUTicks-cpu0.CPUTicks) / clockTick
		if rep.Delivered > 0 {
			rep.CPUPerMillion = rep.ServerCPUSeconds / float64(rep.Delivered) * 1e6
		}
	}
	rep.Errors = r.errs.Load()
	r.errMu.Lock()
	if r.lastErr != nil {
		rep.LastError = r.lastErr.Error()
	}
	r.errMu.Unlock()
	return ctx.Err()
}

// dropper closes a share of the sessions abruptly every DropEvery.
func (r *runner) dropper(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(r.cfg.DropEvery)
	defer t.Stop()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	k := max(1, int(float64(len(r.live))*r.cfg.DropFrac))
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, j := range rng.Perm(len(r.live))[:k] {
			r.conns[r.live[j]].drop(r.cfg.DropAbrupt)
		}
	}
}

func (r *runner) unackedCount() int {
	n := 0
	for _, i := range r.live {
		b := r.conns[i]
		b.wmu.Lock()
		n += len(b.unacked)
		b.wmu.Unlock()
	}
	return n
}

// finalFetch has every session fetch what was stored for it while it was
// away, and waits for the answers.
func (r *runner) finalFetch(ctx context.Context) {
	for _, i := range r.live {
		b := r.conns[i]
	drain:
		for {
			select {
			case <-b.ctl:
			default:
				break drain
			}
		}
		_ = b.send(func(d []byte) ([]byte, error) { return b.c.(*myimCodec).appendFetch(d, 7, 0, 256) })
	}
	var wg sync.WaitGroup
	for _, i := range r.live {
		b := r.conns[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ev, err := ctlWait(ctx, b, evFetch, 0, 15*time.Second)
				if err != nil {
					r.fail(fmt.Errorf("final fetch: %w", err))
					return
				}
				if ev.flags&frame.FetchMore == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // receipts of the last page
}

// verify checks that every message acked to a sender reached its recipient
// and counts those that arrived more than once.
func (r *runner) verify() (lost, dups int64) {
	for _, i := range r.live {
		s := r.conns[i]
		for _, m := range s.acked {
			rc := r.byUser[m.to]
			if rc == nil || rc.got[[2]uint64{s.user, m.cid}] == 0 {
				lost++
			}
		}
	}
	return lost, r.dups.Load()
}
