package login

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/internal/lograte"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// Reply and ServerInfo are the login answer's JSON, shared with the SDK.
type (
	Reply      = session.LoginReply
	ServerInfo = session.ServerInfo
)

// Config wires the login role.
type Config struct {
	Store    storage.Users
	Identity *clusterca.Identity
	Hasher   *session.Hasher
	Session  *session.Config
	// Servers returns the current server list; called off the event loop.
	Servers func(ctx context.Context) []ServerInfo
	// Notify tells a user's online sessions about a login from a new device;
	// may be nil.
	Notify   func(user uint64, code uint16, json []byte)
	TokenTTL time.Duration // default 24 h, the most a token may live
	Limiter  *Limiter
	Logger   *slog.Logger
	// HandshakeTimeout closes a connection that has not had its answer
	// this long after connecting, as on the endpoint; PING does not extend
	// it. It also bounds a login's wait in the queue. Default 10 s.
	HandshakeTimeout time.Duration
	// Queue caps the logins admitted and not answered (waiting for the
	// hasher or being checked). Past it, or when the queue's expected wait
	// exceeds a quarter of HandshakeTimeout, a login is answered RETRY with
	// a hint. Default 1,024.
	Queue int
}

// Handler is the login center's handler: Noise XX, then a password check off
// the event loop, then a token and the server list in a sealed AUTH frame.
// It never holds messaging sessions.
type Handler struct {
	cfg     Config
	wg      sync.WaitGroup
	hs      im.HandshakeStats
	failLog *lograte.Limit // the "login failed" WARN lines
	// queued counts admitted logins not yet answered; Refused counts
	// logins turned away by admission control, Dropped those whose client
	// left before their password was checked.
	queued           atomic.Int64
	refused, dropped atomic.Uint64
	// lastDone (Unix ns) and gap (ns, a moving average) time the
	// completions of password checks while the queue is busy: the
	// throughput actually reached, which admit trusts over the hasher's
	// own figure when the machine is busier than the hasher sees.
	lastDone, gap atomic.Int64
}

// QueueStats is a snapshot of the login queue's counters.
type QueueStats struct {
	Queued  int64  // admitted, not answered yet
	Refused uint64 // answered RETRY by admission control
	Dropped uint64 // client gone before its password was checked
	Hashes  int64  // passwords that reached the hasher
}

// QueueStats returns the login queue's counters. Safe for concurrent use.
func (l *Handler) QueueStats() QueueStats {
	return QueueStats{Queued: l.queued.Load(), Refused: l.refused.Load(), Dropped: l.dropped.Load(),
		Hashes: l.cfg.Hasher.Runs()}
}

// Handshakes returns the login service's counters: a login counts as OK
// once its token is issued.
func (l *Handler) Handshakes() *im.HandshakeStats { return &l.hs }

// New returns the login handler.
func New(cfg Config) *Handler {
	if cfg.TokenTTL <= 0 || cfg.TokenTTL > session.MaxTokenTTL {
		cfg.TokenTTL = session.MaxTokenTTL
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(LimiterConfig{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	return &Handler{cfg: cfg, failLog: lograte.New()}
}

type loginConn struct {
	hs     *session.Handshake
	keys   *session.Keys
	busy   bool               // a password check is admitted
	cancel context.CancelFunc // ends the check when the client leaves
}

// errLoginFailed is the one message every failed login gets.
var errLoginFailed = errors.New("wrong name or password")

// OnOpen starts the server side of the XX handshake.
func (l *Handler) OnOpen(c *engine.Conn) error {
	hs, err := session.NewLoginServer(l.cfg.Session, l.cfg.Identity.Static, l.cfg.Identity.LoginCert)
	if err != nil {
		return err
	}
	c.SetContext(&loginConn{hs: hs})
	c.SetDeadline(l.cfg.HandshakeTimeout)
	return nil
}

// OnFrame drives the handshake; after it only the password check's answer
// is awaited, and any frame is an error.
func (l *Handler) OnFrame(c *engine.Conn, f frame.Frame) error {
	lc := c.Context().(*loginConn)
	if f.Cmd() != frame.CmdHandshake || lc.busy || lc.keys != nil {
		l.hs.Fail(im.HandshakeNoHandshake)
		l.logFailure(c.RemoteAddr, "", im.HandshakeNoHandshake, "frame before the handshake")
		l.refuse(c, lc, frame.ErrCodeUnauthorized, "handshake expected")
		return engine.CloseWith(engine.ReasonAuth, engine.ErrNotAuthenticated)
	}
	payload, err := lc.hs.ReadFrame(nil, f)
	if err != nil {
		l.hs.Fail(im.HandshakeCrypto)
		l.logFailure(c.RemoteAddr, "", im.HandshakeCrypto, err.Error())
		l.refuse(c, lc, frame.ErrCodeAuthFailed, "handshake failed")
		return engine.CloseWith(engine.ReasonCrypto, err)
	}
	if lc.hs.WantsWrite() {
		out := c.Out()
		if out.B, err = lc.hs.WriteFrame(out.B, nil); err != nil {
			return engine.CloseWith(engine.ReasonCrypto, err)
		}
		return nil
	}
	if !lc.hs.Done() {
		return nil
	}
	if lc.keys, err = lc.hs.Keys(); err != nil {
		return engine.CloseWith(engine.ReasonCrypto, err)
	}
	req, err := session.ParseLoginRequest(payload)
	clear(payload)
	if err != nil {
		l.hs.Fail(im.HandshakeBadRequest)
		l.logFailure(c.RemoteAddr, "", im.HandshakeBadRequest, err.Error())
		l.refuse(c, lc, frame.ErrCodeBadRequest, "malformed login request")
		return engine.CloseWith(engine.ReasonAuth, err)
	}
	lc.busy = true
	if hint, ok := l.admit(); !ok {
		clear(req.Password)
		l.refused.Add(1)
		l.hs.Fail(im.HandshakeUnavailable)
		l.refuseRetry(c, lc, hint, "login queue full; retry later")
		return engine.CloseWith(engine.ReasonAuth, errLoginQueueFull)
	}
	device := lc.hs.PeerStatic()
	addr := c.RemoteAddr()
	// The check ends when its client does (OnClose cancels it), so no
	// password is hashed for a client that left; the handshake deadline
	// closes the connection, so that also bounds the wait in the queue.
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.HandshakeTimeout)
	lc.cancel = cancel
	l.wg.Add(1)
	go func() { // argon2id and storage leave the loop
		defer l.wg.Done()
		defer l.done()
		defer cancel()
		reply, code, hint, err := l.check(ctx, req, device, addr)
		clear(req.Password)
		if ctx.Err() != nil && err != nil {
			return // the client is gone: nobody to answer
		}
		// The answer to post: 1 + reply JSON, or 0 + an ERROR frame.
		b := bytebufferpool.Get()
		if err != nil {
			b.B = append(b.B, 0)
			b.B, _ = frame.AppendError(b.B, code, uint64(hint.Milliseconds()), err.Error())
		} else {
			j, _ := sonic.Marshal(reply)
			b.B = append(append(b.B, 1), j...)
		}
		if c.Post(b) != nil {
			bytebufferpool.Put(b)
		}
	}()
	return nil
}

// OnMail seals the password check's answer and closes: a login connection
// does nothing else.
func (l *Handler) OnMail(c *engine.Conn, b []byte) error {
	lc := c.Context().(*loginConn)
	out := c.Out()
	var err error
	if b[0] == 1 {
		out.B, err = lc.keys.Seal(out.B, frame.CmdAuth, frame.QoS0, b[1:])
	} else {
		f, _, derr := frame.Decode(b[1:], 0)
		if derr != nil {
			return derr
		}
		out.B, err = lc.keys.Seal(out.B, frame.CmdError, frame.QoS0, f.Body())
	}
	if err != nil {
		return engine.CloseWith(engine.ReasonCrypto, err)
	}
	if b[0] == 1 {
		c.CloseOnLoop(engine.ReasonDone)
	} else {
		c.CloseOnLoop(engine.ReasonAuth)
	}
	return nil
}

// OnClose ends a password check still queued or running for the
// connection, and wipes the session keys.
func (l *Handler) OnClose(c *engine.Conn, _ engine.CloseReason) {
	lc, ok := c.Context().(*loginConn)
	if !ok {
		return
	}
	if lc.cancel != nil {
		lc.cancel()
	}
	if lc.keys != nil {
		lc.keys.Wipe()
	}
}

// errLoginQueueFull closes a login refused by admission control.
var errLoginQueueFull = errors.New("login: login queue full")

// Retry hints: never less than minRetryHint, so that refused clients do
// not come back at once, and never more than maxRetryHint.
const (
	minRetryHint = 100 * time.Millisecond
	maxRetryHint = 30 * time.Second
	// defaultHashTime stands in for the hasher's average before its first
	// computation: about one OWASP-baseline argon2id on a server core.
	defaultHashTime = 50 * time.Millisecond
)

// admit takes a place in the login queue, or returns the hint of a RETRY:
// the queue is full, or what it holds already takes more than a quarter of
// the handshake deadline to check (the rest is slack for a machine busier
// than the hasher's average says, and for the client's own handshake).
// The hint is the time the hasher needs to check what is queued: refused
// clients come back (the SDK adds up to half of the hint at random, so
// that they spread out) as the queue empties. Called on the event loop; it
// only touches atomics.
func (l *Handler) admit() (time.Duration, bool) {
	per := l.cfg.Hasher.AvgDuration()
	if per <= 0 {
		per = defaultHashTime
	}
	slot := per / time.Duration(max(l.cfg.Hasher.Concurrency(), 1))
	slot = max(slot, time.Duration(l.gap.Load())) // the throughput reached
	q := l.queued.Load()
	wait := time.Duration(q+1) * slot
	if q < int64(l.cfg.Queue) && wait <= l.cfg.HandshakeTimeout/4 {
		l.queued.Add(1)
		return 0, true
	}
	return clampHint(wait), false
}

// done leaves the queue and times the completion: the gap since the
// previous one counts when that one left work queued behind it.
func (l *Handler) done() {
	now := time.Now().UnixNano()
	prev := l.lastDone.Swap(now)
	if d := now - prev; prev != 0 && d < int64(time.Minute) {
		for {
			old := l.gap.Load()
			next := d
			if old != 0 {
				next = old + (d-old)/16
			}
			if l.gap.CompareAndSwap(old, next) {
				break
			}
		}
	}
	if l.queued.Add(-1) == 0 {
		l.lastDone.Store(0) // idle from here: the next gap does not count
	}
}

// busyHint is the RETRY hint for an account or address with an attempt in
// flight: about one password check.
func (l *Handler) busyHint() time.Duration {
	return clampHint(2 * l.cfg.Hasher.AvgDuration())
}

func clampHint(d time.Duration) time.Duration { return min(max(d, minRetryHint), maxRetryHint) }

// refuseRetry answers RETRY with a hint in milliseconds in Ref, sealed
// when keys exist.
func (l *Handler) refuseRetry(c *engine.Conn, lc *loginConn, hint time.Duration, text string) {
	body, _ := frame.AppendError(nil, frame.ErrCodeRetry, uint64(hint.Milliseconds()), text)
	out := c.Out()
	if lc.keys != nil {
		f, _, _ := frame.Decode(body, 0)
		out.B, _ = lc.keys.Seal(out.B, frame.CmdError, frame.QoS0, f.Body())
		return
	}
	out.B = append(out.B, body...)
}

// refuse sends an ERROR, sealed when keys exist.
func (l *Handler) refuse(c *engine.Conn, lc *loginConn, code uint16, text string) {
	out := c.Out()
	if lc.keys != nil {
		body, _ := frame.AppendError(nil, code, 0, text)
		f, _, _ := frame.Decode(body, 0)
		out.B, _ = lc.keys.Seal(out.B, frame.CmdError, frame.QoS0, f.Body())
		return
	}
	out.B, _ = frame.AppendError(out.B, code, 0, text)
}

// Wait blocks until running password checks end (for shutdown and tests).
func (l *Handler) Wait() { l.wg.Wait() }

// check runs the password check and, on success, records the device and
// issues the token. It runs on its own goroutine; ctx ends when the
// client leaves. On failure it returns the ERROR code and, for RETRY, the
// hint.
func (l *Handler) check(ctx context.Context, req *session.LoginRequest, device []byte, addr string) (*Reply, uint16, time.Duration, error) {
	host := hostOf(addr)
	remote := func() string { return addr }
	// The attempt is counted before anything is hashed: concurrent
	// guesses see each other's reservations.
	att, wait, err := l.cfg.Limiter.Reserve(req.Name, host)
	if err != nil {
		l.logFailure(remote, req.Name, im.HandshakeRateLimited, err.Error())
		return nil, frame.ErrCodeRetry, l.limitHint(wait, err), l.limitErr(err)
	}
	u, err := l.cfg.Store.UserByName(ctx, req.Name)
	found := err == nil
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		att.Cancel()
		if ctx.Err() != nil {
			l.dropped.Add(1)
			return nil, 0, 0, ctx.Err()
		}
		l.hs.Fail(im.HandshakeUnavailable)
		l.logFailure(remote, req.Name, im.HandshakeUnavailable, err.Error())
		return nil, frame.ErrCodeRetry, time.Second, errors.New("store unavailable; retry later")
	}
	dk := session.DeviceKeyHash(device)
	known := func() bool {
		if !found {
			return false
		}
		devs, err := l.cfg.Store.Devices(ctx, u.ID)
		if err != nil {
			return false
		}
		for _, d := range devs {
			if d.KeyHash == dk {
				return true
			}
		}
		return false
	}
	if wait, err := att.Account(known); err != nil {
		att.Cancel()
		l.logFailure(remote, req.Name, im.HandshakeRateLimited, err.Error())
		return nil, frame.ErrCodeRetry, l.limitHint(wait, err), l.limitErr(err)
	}
	if !found {
		err = l.cfg.Hasher.VerifyUnknown(ctx, req.Password) // same cost, same answer
	} else {
		err = l.cfg.Hasher.Verify(ctx, req.Password, u.PassHash)
	}
	if err != nil {
		if errors.Is(err, session.ErrPasswordMismatch) {
			att.Failed()
			l.hs.Fail(im.HandshakePassword)
			detail := "wrong password"
			if !found {
				detail = "no such user"
			}
			l.logFailure(remote, req.Name, im.HandshakePassword, detail)
			return nil, frame.ErrCodeAuthFailed, 0, errLoginFailed
		}
		att.Cancel()
		if ctx.Err() != nil {
			l.dropped.Add(1)
			return nil, 0, 0, ctx.Err()
		}
		l.hs.Fail(im.HandshakeUnavailable)
		return nil, frame.ErrCodeRetry, l.busyHint(), errors.New("login busy; retry later")
	}
	att.Succeeded()
	now := time.Now()
	isNew, err := l.cfg.Store.TouchDevice(ctx, storage.Device{User: u.ID, KeyHash: dk,
		Fingerprint: req.Fingerprint, FirstSeen: now.UnixMilli(), LastSeen: now.UnixMilli(), Addr: addr})
	if err != nil {
		l.hs.Fail(im.HandshakeUnavailable)
		return nil, frame.ErrCodeRetry, time.Second, errors.New("store unavailable; retry later")
	}
	tok, err := session.IssueToken(l.cfg.Identity.TokenKey, session.TokenRequest{UserID: u.ID,
		Audience: l.cfg.Identity.Audience, DeviceKey: device, TTL: l.cfg.TokenTTL}, now)
	if err != nil {
		return nil, frame.ErrCodeInternal, 0, errors.New("token issue failed")
	}
	reply := &Reply{UserID: u.ID, Token: tok, ExpiresAt: now.Add(l.cfg.TokenTTL).UnixMilli(), NewDevice: isNew}
	if l.cfg.Servers != nil {
		reply.Servers = l.cfg.Servers(ctx)
	}
	if isNew && l.cfg.Notify != nil {
		j, _ := sonic.Marshal(map[string]any{"event": "new_device", "fingerprint": req.Fingerprint,
			"device": req.DeviceName, "addr": host, "time": now.UnixMilli()})
		l.cfg.Notify(u.ID, frame.NoticeNewDevice, j)
	}
	l.hs.OK.Add(1) // myim_handshakes_total{role="login"}
	l.cfg.Logger.Debug("login", "user", u.ID, "new_device", isNew, "addr", host)
	return reply, 0, 0, nil
}

// limitHint and limitErr turn a limiter refusal into a RETRY's hint and
// text, and count it.
func (l *Handler) limitHint(wait time.Duration, err error) time.Duration {
	if errors.Is(err, ErrLoginBusy) {
		return l.busyHint()
	}
	return clampHint(wait)
}

func (l *Handler) limitErr(err error) error {
	l.hs.Fail(im.HandshakeRateLimited)
	if errors.Is(err, ErrLoginBusy) {
		return errors.New("a login for this account or address is in progress; retry later")
	}
	return errors.New("too many failed logins; retry later")
}

// logFailure logs a failed login at WARN, with the client's address and
// the reason, for operators and fail2ban, at most lograte.Burst a
// lograte.Interval (a password-guessing storm must not flood the log).
// Safe for concurrent use, and on the event loop.
func (l *Handler) logFailure(addr func() string, name string, f im.HandshakeFailure, detail string) {
	ok, suppressed := l.failLog.Allow()
	if !ok {
		return
	}
	attrs := []any{"addr", hostOf(addr()), "reason", f.String()}
	if name != "" {
		attrs = append(attrs, "user", name)
	}
	if detail != "" {
		attrs = append(attrs, "detail", detail)
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.cfg.Logger.Warn("login failed", attrs...)
}
