package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// --storm: once every session of the idle scenario is held and has
// answered a PING, every one of them drops at once (its socket closed, no
// BYE), as a fleet of clients does when a network path fails, and each
// opens again with the same token: dial, Noise IK handshake, token check,
// route. The storm has settled when every session is open again and has
// answered a PING; its time runs from the drop to then.
//
// The reopening goes through the same pool of dialers as the ramp
// (--dialers per bench process, --dial-rate in total), so the clients queue
// on their side rather than in the servers' accept queues; a failed attempt
// is retried after a short randomised pause, up to stormAttempts times.

// stormAttempts bounds the attempts to reopen one session.
const stormAttempts = 5

// stormAnswerWait bounds the wait for every reopened session's PING answer.
const stormAnswerWait = 30 * time.Second

// wordStorm is what the parent of --procs sends to start the storm, once
// every child holds its sessions.
const wordStorm = "storm"

// StormFigures are a reconnect storm's result (--storm).
type StormFigures struct {
	Dropped int `json:"dropped"`
	// Back counts the sessions that opened again and answered a PING.
	Back int `json:"back"`
	// Seconds runs from the drop to the last PING answer of the last
	// session back (with --procs: of the last bench process).
	Seconds float64 `json:"seconds"`
	// Retries are failed attempts that a later attempt made good; Failed
	// are sessions that never came back (every attempt failed, or no
	// answer to the PING).
	Retries int64  `json:"retries"`
	Failed  int    `json:"failed"`
	Stopped string `json:"stopped_by,omitempty"`
	// ServerCPUSeconds is the server processes' CPU time over the storm:
	// closing the old sessions and opening the new ones.
	// ServerRSSKB is their RSS once the storm has settled.
	ServerCPUSeconds  float64 `json:"server_cpu_s,omitempty"`
	CPUPerSessionUS   float64 `json:"server_cpu_us_per_session,omitempty"`
	ServerRSSKB       int64   `json:"server_rss_kb,omitempty"`
	SessionsPerSecond float64 `json:"sessions_per_s,omitempty"`
	LastError         string  `json:"last_error,omitempty"`
}

// serverFigures fills the server processes' part of st from their sums
// before and after the storm.
func (st *StormFigures) serverFigures(before, after procStat) {
	st.ServerCPUSeconds = float64(after.CPUTicks-before.CPUTicks) / clockTick
	st.ServerRSSKB = after.RSSKB
	if st.Back > 0 {
		st.CPUPerSessionUS = st.ServerCPUSeconds / float64(st.Back) * 1e6
	}
}

// storm drops every live session and opens each again; see --storm.
func (r *runner) storm(ctx context.Context) *StormFigures {
	live := r.live
	st := &StormFigures{Dropped: len(live)}
	t0 := time.Now()
	r.closing.Store(true)
	for _, i := range live {
		b := r.conns[i]
		b.wmu.Lock()
		_ = b.nc.Close()
		b.wmu.Unlock()
	}
	done := make(chan struct{})
	go func() { r.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	r.closing.Store(false)

	var retries atomic.Int64
	conns, _, stopErr := ramp(ctx, r.cfg, len(live), "storm sessions", func(ctx context.Context, k int) (*bconn, error) {
		i := live[k]
		var err error
		for attempt := 0; attempt < stormAttempts; attempt++ {
			if attempt > 0 {
				retries.Add(1)
				pause := time.Duration(attempt)*100*time.Millisecond + rand.N(100*time.Millisecond)
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			nc, c, oerr := r.open(ctx, i)
			if oerr == nil {
				return newBconn(r, i, r.userID(i), nc, c), nil
			}
			err = oerr
			r.noteErr(fmt.Errorf("storm: session %d: %w", i, err))
		}
		return nil, err
	})
	r.live = make([]int, 0, len(live))
	for k, b := range conns {
		i := live[k]
		r.conns[i] = b
		if b == nil {
			continue
		}
		r.byUser[b.user] = b
		r.live = append(r.live, i)
		r.readers.Add(1)
		go b.readLoop()
	}
	before := r.keepalives.Load()
	r.pingAll()
	deadline := time.Now().Add(stormAnswerWait)
	for r.keepalives.Load()-before < int64(len(r.live)) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	st.Seconds = time.Since(t0).Seconds()
	st.Back = int(min(r.keepalives.Load()-before, int64(len(r.live))))
	st.Failed = st.Dropped - st.Back
	st.Retries = retries.Load()
	if stopErr != nil {
		st.Stopped = stopErr.Error()
	}
	if err := r.lastError(); err != nil && (st.Failed > 0 || st.Retries > 0) {
		st.LastError = err.Error()
	}
	if st.Failed > 0 {
		r.fail(fmt.Errorf("storm: %d of %d sessions did not come back", st.Failed, st.Dropped))
	}
	if st.Seconds > 0 {
		st.SessionsPerSecond = float64(st.Back) / st.Seconds
	}
	return st
}
