package endpoint

// The endpoint's handshake, off the event loops.
//
// A client's IK first message costs the server two X25519 operations, a
// token signature check and a reply with two more: several times what a
// flood of such messages costs whoever sends it. So the loop only checks
// three cheap things and hands the rest to a bounded pool of workers, whose
// answer comes back through the connection's mailbox (Post, then OnMail on
// the loop):
//
//   - a per-address budget of handshakes (hsLimiter): past it the
//     connection gets ERROR retry and is closed before any crypto runs;
//   - the replay cache (replayCache): the first message's ephemeral key,
//     which the token inside is encrypted under, is remembered until the
//     token expires, so a recorded first message is refused, unread;
//   - the pool's queue: when it is full, ERROR retry.
//
// The session is announced to the center (presence, routes) only once the
// client has sent a first sealed frame that opens: proof that it holds the
// keys, which a replayed or forged first message never yields.

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// hsJob is a handshake for the pool: the first message, copied off the
// loop's buffer.
type hsJob struct {
	c   *engine.Conn
	ec  *epConn
	msg []byte
}

// hsResult is what a worker hands back to the loop, in epConn.pend; the
// mailbox's lock orders the worker's writes before the loop's reads.
type hsResult struct {
	keys   *session.Keys
	claims *session.TokenClaims
}

// hsPool runs handshakes on at most workers goroutines, with a queue of
// queueLen; workers exit after a second without work, so an idle endpoint
// holds none. Safe for concurrent use.
type hsPool struct {
	jobs    chan hsJob
	running atomic.Int32
	max     int32
	run     func(hsJob)
}

func newHSPool(workers, queueLen int, run func(hsJob)) *hsPool {
	return &hsPool{jobs: make(chan hsJob, queueLen), max: int32(workers), run: run}
}

// submit queues j; false when the queue is full.
func (p *hsPool) submit(j hsJob) bool {
	select {
	case p.jobs <- j:
	default:
		return false
	}
	for {
		n := p.running.Load()
		if n >= p.max {
			return true
		}
		if p.running.CompareAndSwap(n, n+1) {
			go p.work()
			return true
		}
	}
}

func (p *hsPool) work() {
	idle := time.NewTimer(time.Second)
	defer idle.Stop()
	for {
		select {
		case j := <-p.jobs:
			p.run(j)
			idle.Reset(time.Second)
		case <-idle.C:
			p.running.Add(-1)
			// A job queued between the timeout and the decrement would
			// wait for the next submit: take it if one is there.
			select {
			case j := <-p.jobs:
				p.running.Add(1)
				p.run(j)
				idle.Reset(time.Second)
				continue
			default:
			}
			return
		}
	}
}

// hsLimiter is a per-address budget of handshakes: rate a second, bursts of
// burst, kept as each address's theoretical arrival time (GCRA). Entries
// idle longer than a burst's worth are dropped at the sweep. Safe for
// concurrent use.
type hsLimiter struct {
	mu        sync.Mutex
	m         map[string]time.Time
	interval  time.Duration // between handshakes at the steady rate
	burst     time.Duration // interval * burst
	lastSweep time.Time
}

func newHSLimiter(rate float64, burst int) *hsLimiter {
	iv := time.Duration(float64(time.Second) / rate)
	return &hsLimiter{m: make(map[string]time.Time), interval: iv, burst: iv * time.Duration(burst)}
}

// allow takes one handshake from host's budget.
func (l *hsLimiter) allow(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		for k, t := range l.m {
			if t.Before(now) {
				delete(l.m, k)
			}
		}
		l.lastSweep = now
	}
	tat := l.m[host]
	if tat.Before(now) {
		tat = now
	}
	if tat.Sub(now) >= l.burst {
		return false
	}
	l.m[host] = tat.Add(l.interval)
	return true
}

// replayCache remembers IK first messages by their ephemeral key until the
// token they carried expires. Safe for concurrent use.
//
// It keys by the first replayKeyLen bytes of the ephemeral key: a replay
// carries the whole key and so its prefix, and two honest (random) keys
// share 128 bits with no practical chance, while an entry, held for every
// session for its token's life, takes a 24-byte map slot where the whole
// key took 40.
type replayCache struct {
	mu        sync.Mutex
	m         map[replayKey]int64 // ephemeral key prefix -> forget after, unix seconds
	lastSweep int64
}

const replayKeyLen = 16

type replayKey [replayKeyLen]byte

// claim records e until until and reports whether it was new.
func (r *replayCache) claim(e []byte, until time.Time) bool {
	var k replayKey
	copy(k[:], e)
	now := time.Now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[replayKey]int64)
	}
	if now-r.lastSweep > 60 {
		for k, t := range r.m {
			if t < now {
				delete(r.m, k)
			}
		}
		r.lastSweep = now
	}
	if t, ok := r.m[k]; ok && t >= now {
		return false
	}
	r.m[k] = until.Unix()
	return true
}

// extend keeps e until until (the token's expiry, known once it is read).
func (r *replayCache) extend(e []byte, until time.Time) {
	var k replayKey
	copy(k[:], e)
	r.mu.Lock()
	r.m[k] = until.Unix()
	r.mu.Unlock()
}

// Endpoint handshake defaults.
const (
	// DefaultHandshakeRate and DefaultHandshakeBurst are one address's
	// handshake budget: enough for a NAT (or a load generator) of many
	// clients reconnecting at once, a small share of one core's handshakes
	// for a flood from one address.
	DefaultHandshakeRate  = 100
	DefaultHandshakeBurst = 1000
	// hsQueueLen bounds the handshakes waiting for a worker.
	hsQueueLen = 4096
)

// budgetKey is what a client address's handshake budget is kept under:
// the IPv4 address, or the IPv6 /64 (one subscriber's prefix, which holds
// more addresses than anyone could count one by one).
func budgetKey(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		h = addr
	}
	ip := net.ParseIP(h)
	if ip == nil || ip.To4() != nil {
		return h
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Handshake refusals.
var (
	errHandshakeRate   = errors.New("endpoint: too many handshakes from this address")
	errHandshakeReplay = errors.New("endpoint: handshake replayed")
	errHandshakeBusy   = errors.New("endpoint: handshake queue full")
	errHandshakeEarly  = errors.New("endpoint: frame before the handshake's answer")
)

// startHandshake runs on the loop for the first HANDSHAKE frame.
func (e *Handler) startHandshake(c *engine.Conn, ec *epConn, f frame.Frame) error {
	refuse := func(why im.HandshakeFailure, code uint16, text string, err error) error {
		e.hs.Fail(why)
		out := c.Out()
		out.B, _ = frame.AppendError(out.B, code, 0, text)
		return engine.CloseWith(engine.ReasonAuth, err)
	}
	if e.limiter != nil && !e.limiter.allow(budgetKey(c.RemoteAddr()), time.Now()) {
		return refuse(im.HandshakeRateLimited, frame.ErrCodeRetry, "too many handshakes from this address; retry later", errHandshakeRate)
	}
	body := f.Body()
	if len(body) < 32 {
		return refuse(im.HandshakeCrypto, frame.ErrCodeAuthFailed, "handshake failed", session.ErrHandshakeMessage)
	}
	// Held until the handshake's deadline; the token's expiry replaces it
	// once the worker has read the token.
	if !e.replays.claim(body[:32], time.Now().Add(e.cfg.HandshakeTimeout+time.Minute)) {
		return refuse(im.HandshakeReplayed, frame.ErrCodeAuthFailed, "handshake replayed", errHandshakeReplay)
	}
	ec.pending = true
	if !e.pool.submit(hsJob{c: c, ec: ec, msg: append([]byte(nil), f...)}) {
		return refuse(im.HandshakeUnavailable, frame.ErrCodeRetry, "endpoint busy; retry later", errHandshakeBusy)
	}
	return nil
}

// runHandshake is a worker's part: read the first message, check the
// token, write the answer, and post it to the loop as 1 + the answer frame,
// or 0 + an ERROR frame.
func (e *Handler) runHandshake(j hsJob) {
	b := bytebufferpool.Get()
	fail := func(why im.HandshakeFailure, text string) {
		e.hs.Fail(why)
		b.B = append(b.B[:0], 0)
		b.B, _ = frame.AppendError(b.B, frame.ErrCodeAuthFailed, 0, text)
	}
	hs, err := session.NewEndpointServer(e.cfg.Session, e.cfg.Identity.Static, e.cfg.Identity.TokenKeys(), e.cfg.Identity.Audience)
	if err == nil {
		_, err = hs.ReadFrame(nil, frame.Frame(j.msg))
	}
	var res hsResult
	switch {
	case err != nil:
		fail(handshakeFailureOf(err), authText(err))
	case e.revoked.Has(hs.TokenClaims().SessionID):
		fail(im.HandshakeTokenRevoked, "token revoked")
	default:
		res.claims = hs.TokenClaims()
		e.replays.extend(frame.Frame(j.msg).Body()[:32], res.claims.ExpiresAt)
		acc := session.Accepted{UserID: res.claims.UserID, ServerTime: time.Now()}
		payload, _ := acc.AppendBinary(nil)
		b.B = append(b.B[:0], 1)
		if b.B, err = hs.WriteFrame(b.B, payload); err == nil {
			res.keys, err = hs.Keys()
		}
		if err != nil {
			fail(im.HandshakeCrypto, "handshake failed")
			res = hsResult{}
		}
	}
	j.ec.pend = res
	if j.c.Post(b) != nil {
		bytebufferpool.Put(b)
		if res.keys != nil {
			res.keys.Wipe()
		}
	}
}

// finishHandshake runs on the loop with the worker's answer.
func (e *Handler) finishHandshake(c *engine.Conn, ec *epConn, b []byte) error {
	ec.pending = false
	res := ec.pend
	ec.pend = hsResult{}
	if b[0] == 0 {
		c.Write(b[1:])
		return engine.CloseWith(engine.ReasonAuth, engine.ErrNotAuthenticated)
	}
	c.Write(b[1:])
	ec.keys, ec.claims = res.keys, res.claims
	ec.user = res.claims.UserID
	c.SetUser(ec.user)
	// The handshake deadline stands until the first sealed frame proves the
	// client holds the keys (establish).
	return nil
}

// establish runs once the first sealed frame of a session has opened: the
// session goes into the table and to the center.
func (e *Handler) establish(c *engine.Conn, ec *epConn) {
	claims := ec.claims
	ec.claims = nil
	now := time.Now()
	// The session ends when its token does, and within MaxSession anyway:
	// the client then runs a fresh handshake with a fresh token.
	life := min(claims.ExpiresAt.Sub(now), e.cfg.MaxSession)
	c.SetDeadline(max(life, time.Second))
	ec.es = epSession{conn: c, sid: claims.SessionID, dev: claims.DeviceKeyHash}
	e.sessions.store(c.ID(), &ec.es)
	e.nsess.Add(1)
	e.startCooler()
	e.hs.OK.Add(1)
	ec.live = true
	e.cfg.Center.Online(ec.user, e.ref(c))
}
