package engine

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// LoginReply and ServerInfo are the login answer's JSON, shared with the SDK.
type (
	LoginReply = session.LoginReply
	ServerInfo = session.ServerInfo
)

// LoginConfig wires the login role.
type LoginConfig struct {
	Store    storage.Store
	Identity *Identity
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
}

// Login is the login center's handler: Noise XX, then a password check off
// the event loop, then a token and the server list in a sealed AUTH frame.
// It never holds messaging sessions.
type Login struct {
	cfg     LoginConfig
	wg      sync.WaitGroup
	hs      HandshakeStats
	failLog *logLimit // the "login failed" WARN lines
}

// Handshakes returns the login service's counters: a login counts as OK
// once its token is issued.
func (l *Login) Handshakes() *HandshakeStats { return &l.hs }

// NewLogin returns the login handler.
func NewLogin(cfg LoginConfig) *Login {
	if cfg.TokenTTL <= 0 || cfg.TokenTTL > session.MaxTokenTTL {
		cfg.TokenTTL = session.MaxTokenTTL
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(LimiterConfig{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Login{cfg: cfg, failLog: newLogLimit()}
}

type loginConn struct {
	hs   *session.Handshake
	keys *session.Keys
	busy bool // a password check is running
}

// errLoginFailed is the one message every failed login gets.
var errLoginFailed = errors.New("wrong name or password")

// OnOpen starts the server side of the XX handshake.
func (l *Login) OnOpen(c *Conn) error {
	hs, err := session.NewLoginServer(l.cfg.Session, l.cfg.Identity.Static, l.cfg.Identity.LoginCert)
	if err != nil {
		return err
	}
	c.SetContext(&loginConn{hs: hs})
	return nil
}

// OnFrame drives the handshake; after it only the password check's answer
// is awaited, and any frame is an error.
func (l *Login) OnFrame(c *Conn, f frame.Frame) error {
	lc := c.Context().(*loginConn)
	if f.Cmd() != frame.CmdHandshake || lc.busy || lc.keys != nil {
		l.hs.fail(HandshakeNoHandshake)
		l.logFailure(c.RemoteAddr, "", HandshakeNoHandshake, "frame before the handshake")
		l.refuse(c, lc, frame.ErrCodeUnauthorized, "handshake expected")
		return CloseWith(ReasonAuth, errNotAuthenticated)
	}
	payload, err := lc.hs.ReadFrame(nil, f)
	if err != nil {
		l.hs.fail(HandshakeCrypto)
		l.logFailure(c.RemoteAddr, "", HandshakeCrypto, err.Error())
		l.refuse(c, lc, frame.ErrCodeAuthFailed, "handshake failed")
		return CloseWith(ReasonCrypto, err)
	}
	if lc.hs.WantsWrite() {
		out := c.Out()
		if out.B, err = lc.hs.WriteFrame(out.B, nil); err != nil {
			return CloseWith(ReasonCrypto, err)
		}
		return nil
	}
	if !lc.hs.Done() {
		return nil
	}
	if lc.keys, err = lc.hs.Keys(); err != nil {
		return CloseWith(ReasonCrypto, err)
	}
	req, err := session.ParseLoginRequest(payload)
	clear(payload)
	if err != nil {
		l.hs.fail(HandshakeBadRequest)
		l.logFailure(c.RemoteAddr, "", HandshakeBadRequest, err.Error())
		l.refuse(c, lc, frame.ErrCodeBadRequest, "malformed login request")
		return CloseWith(ReasonAuth, err)
	}
	lc.busy = true
	device := lc.hs.PeerStatic()
	addr := c.RemoteAddr()
	l.wg.Add(1)
	go func() { // argon2id and storage leave the loop
		defer l.wg.Done()
		reply, code, err := l.check(req, device, addr)
		clear(req.Password)
		// The answer to post: 1 + reply JSON, or 0 + an ERROR frame.
		b := bytebufferpool.Get()
		if err != nil {
			b.B = append(b.B, 0)
			b.B, _ = frame.AppendError(b.B, code, 0, err.Error())
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
func (l *Login) OnMail(c *Conn, b []byte) error {
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
		return CloseWith(ReasonCrypto, err)
	}
	if b[0] == 1 {
		c.closeOnLoop(ReasonDone)
	} else {
		c.closeOnLoop(ReasonAuth)
	}
	return nil
}

// OnClose wipes the session keys.
func (l *Login) OnClose(c *Conn, _ CloseReason) {
	if lc, ok := c.Context().(*loginConn); ok && lc.keys != nil {
		lc.keys.Wipe()
	}
}

// refuse sends an ERROR, sealed when keys exist.
func (l *Login) refuse(c *Conn, lc *loginConn, code uint16, text string) {
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
func (l *Login) Wait() { l.wg.Wait() }

// check runs the password check and, on success, records the device and
// issues the token. It runs on its own goroutine.
func (l *Login) check(req *session.LoginRequest, device []byte, addr string) (*LoginReply, uint16, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host := hostOf(addr)
	remote := func() string { return addr }
	if wait := l.cfg.Limiter.Blocked(req.Name, host); wait > 0 {
		l.hs.fail(HandshakeRateLimited)
		l.logFailure(remote, req.Name, HandshakeRateLimited, "too many failures")
		return nil, frame.ErrCodeRetry, errors.New("too many failed logins; retry later")
	}
	u, err := l.cfg.Store.UserByName(ctx, req.Name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		_ = l.cfg.Hasher.VerifyUnknown(ctx, req.Password) // same cost, same answer
		l.cfg.Limiter.Fail(req.Name, host)
		l.hs.fail(HandshakePassword)
		l.logFailure(remote, req.Name, HandshakePassword, "no such user")
		return nil, frame.ErrCodeAuthFailed, errLoginFailed
	case err != nil:
		l.hs.fail(HandshakeUnavailable)
		l.logFailure(remote, req.Name, HandshakeUnavailable, err.Error())
		return nil, frame.ErrCodeRetry, errors.New("store unavailable; retry later")
	}
	if err := l.cfg.Hasher.Verify(ctx, req.Password, u.PassHash); err != nil {
		if errors.Is(err, session.ErrPasswordMismatch) {
			l.cfg.Limiter.Fail(req.Name, host)
			l.hs.fail(HandshakePassword)
			l.logFailure(remote, req.Name, HandshakePassword, "wrong password")
			return nil, frame.ErrCodeAuthFailed, errLoginFailed
		}
		l.hs.fail(HandshakeUnavailable)
		return nil, frame.ErrCodeRetry, errors.New("login busy; retry later")
	}
	l.cfg.Limiter.Succeed(req.Name, host)
	now := time.Now()
	isNew, err := l.cfg.Store.TouchDevice(ctx, storage.Device{User: u.ID, KeyHash: session.DeviceKeyHash(device),
		Fingerprint: req.Fingerprint, FirstSeen: now.UnixMilli(), LastSeen: now.UnixMilli(), Addr: addr})
	if err != nil {
		l.hs.fail(HandshakeUnavailable)
		return nil, frame.ErrCodeRetry, errors.New("store unavailable; retry later")
	}
	tok, err := session.IssueToken(l.cfg.Identity.TokenKey, session.TokenRequest{UserID: u.ID,
		Audience: l.cfg.Identity.Audience, DeviceKey: device, TTL: l.cfg.TokenTTL}, now)
	if err != nil {
		return nil, frame.ErrCodeInternal, errors.New("token issue failed")
	}
	reply := &LoginReply{UserID: u.ID, Token: tok, ExpiresAt: now.Add(l.cfg.TokenTTL).UnixMilli(), NewDevice: isNew}
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
	return reply, 0, nil
}

// logFailure logs a failed login at WARN, with the client's address and
// the reason, for operators and fail2ban, at most logLimitBurst a
// logLimitInterval (a password-guessing storm must not flood the log).
// Safe for concurrent use, and on the event loop.
func (l *Login) logFailure(addr func() string, name string, f HandshakeFailure, detail string) {
	ok, suppressed := l.failLog.allow()
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

// constantTimeEqual compares secrets (admin tokens) in constant time.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
