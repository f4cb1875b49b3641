package endpoint

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// Config wires the endpoint role.
type Config struct {
	ID       uint32
	Identity *clusterca.Identity
	Session  *session.Config
	Center   im.Center
	// HandshakeTimeout closes connections not authenticated in time.
	HandshakeTimeout time.Duration
	// MaxSession caps a session's life even when its token lives longer:
	// the client must run a new handshake with a fresh token. Default 24 h.
	MaxSession time.Duration
	// HandshakeRate and HandshakeBurst are each client address's budget of
	// handshakes a second and in a burst. Defaults DefaultHandshakeRate and
	// DefaultHandshakeBurst; a negative rate turns the budget off.
	HandshakeRate  float64
	HandshakeBurst int
	// HandshakeWorkers bounds the goroutines running handshakes. Default
	// GOMAXPROCS.
	HandshakeWorkers int
	// Revocations is the cluster's list of revoked tokens, shared with the
	// HTTP API; nil: a list of this endpoint's own.
	Revocations *clusterca.RevocationList
	Logger      *slog.Logger
}

// Handler holds client sessions: the IK handshake with a token
// checked offline, then sealed frames both ways. It forwards every request
// to its center and delivers what the center sends. Safe for concurrent use.
type Handler struct {
	cfg       Config
	sessions  sessionTable
	nsess     atomic.Int64
	cooling   atomic.Bool // a cooler goroutine runs (endpoint_cool.go)
	draining  atomic.Bool
	drainGen  atomic.Uint64 // bumped by every Drain and Undrain: a spread drain stops when it moves
	hs        im.HandshakeStats
	delivery  engine.LatencyHistogram
	revoked   *clusterca.RevocationList
	limiter   *hsLimiter
	replays   replayCache
	pool      *hsPool
	framesIn  [256]atomic.Uint64 // opened client frames by command
	framesOut [256]atomic.Uint64 // sealed frames to clients by command
}

// Errors an endpoint reports.
var (
	errForbidden = errors.New("endpoint: sender is not the session's user")
)

// epConn is a connection's endpoint state: loop-only, but for es, which is
// written once before the session table publishes it and only read after.
// One allocation holds both: an idle session's memory is mostly a handful
// of small objects like these.
type epConn struct {
	keys *session.Keys
	user uint64
	es   epSession
	// pending: a worker runs the handshake; pend is its result.
	pending bool
	pend    hsResult
	// claims are the token's until the first sealed frame opens; live once
	// it has (the session is in the table and the center knows it).
	claims *session.TokenClaims
	live   bool
	// warm: a frame was opened or sealed since the last cooling round
	// (endpoint_cool.go).
	warm bool
}

// ref is the center's name for the session on c. It is made when asked,
// not kept in epConn: it is the connection's id and this endpoint's.
func (e *Handler) ref(c *engine.Conn) im.SessionRef {
	return im.SessionRef{Endpoint: e.cfg.ID, Session: c.ID()}
}

// New returns the endpoint handler and attaches it to its center.
func New(cfg Config) *Handler {
	if cfg.ID == 0 {
		cfg.ID = 1
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxSession <= 0 || cfg.MaxSession > 24*time.Hour {
		cfg.MaxSession = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HandshakeRate == 0 {
		cfg.HandshakeRate = DefaultHandshakeRate
	}
	if cfg.HandshakeBurst <= 0 {
		cfg.HandshakeBurst = DefaultHandshakeBurst
	}
	if cfg.HandshakeWorkers <= 0 {
		cfg.HandshakeWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.Revocations == nil {
		cfg.Revocations = clusterca.NewRevocationList(nil, cfg.Logger)
	}
	e := &Handler{cfg: cfg, revoked: cfg.Revocations}
	// A token revoked on another node: close its sessions here too.
	e.revoked.Subscribe(func(sid string) { e.kickWhere(func(es *epSession) bool { return es.sid == sid }) })
	if cfg.HandshakeRate > 0 {
		e.limiter = newHSLimiter(cfg.HandshakeRate, cfg.HandshakeBurst)
	}
	e.pool = newHSPool(cfg.HandshakeWorkers, hsQueueLen, e.runHandshake)
	cfg.Center.Attach(e)
	return e
}

// ID returns the endpoint's server id.
func (e *Handler) ID() uint32 { return e.cfg.ID }

// epSession is what the endpoint's session table holds: the connection and
// what its token said, fixed at the handshake, so that operators can close
// sessions by token or by device from any goroutine.
type epSession struct {
	conn *engine.Conn
	sid  string   // the token's session id
	dev  [32]byte // hash of the device key
}

// sessionTable maps session ids to the endpoint's authenticated sessions:
// a fixed array of locked maps sharded by a hash of the id, as the route
// table is. A session costs its map slot (about 20-40 bytes) where a
// sync.Map cost about 200 bytes of trie nodes, which on a server holding
// millions of idle sessions was a tenth of each one's memory. Safe for
// concurrent use; a lookup takes one shard's read lock.
type sessionTable struct {
	shards [sessionShards]sessionShard
}

// sessionShards: 64, as route's shardCount, for the same reason (few
// collisions among a few dozen cores' loops, a small fixed array).
const sessionShards = 64

type sessionShard struct {
	mu sync.RWMutex
	m  map[uint64]*epSession
}

func (t *sessionTable) shard(id uint64) *sessionShard {
	return &t.shards[(id*0x9E3779B97F4A7C15)>>58]
}

func (t *sessionTable) load(id uint64) *epSession {
	sh := t.shard(id)
	sh.mu.RLock()
	es := sh.m[id]
	sh.mu.RUnlock()
	return es
}

func (t *sessionTable) store(id uint64, es *epSession) {
	sh := t.shard(id)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[uint64]*epSession)
	}
	sh.m[id] = es
	sh.mu.Unlock()
}

// remove deletes id and reports whether it was there.
func (t *sessionTable) remove(id uint64) bool {
	sh := t.shard(id)
	sh.mu.Lock()
	_, ok := sh.m[id]
	delete(sh.m, id)
	sh.mu.Unlock()
	return ok
}

// each calls fn for every session until it returns false. fn runs with no
// lock held (it may close the session, which removes it): a shard's
// sessions are copied out first, so sessions opening or closing meanwhile
// may or may not be seen.
func (t *sessionTable) each(fn func(*epSession) bool) {
	var batch []*epSession
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		batch = batch[:0]
		for _, es := range sh.m {
			batch = append(batch, es)
		}
		sh.mu.RUnlock()
		for _, es := range batch {
			if !fn(es) {
				return
			}
		}
	}
}

// Deliver queues a plaintext frame for a session; see Endpoint.
func (e *Handler) Deliver(s im.SessionRef, buf *bytebufferpool.ByteBuffer) error {
	es := e.sessions.load(s.Session)
	if es == nil {
		return im.ErrUnknownSession
	}
	switch err := es.conn.Post(buf); err {
	case nil:
		return nil
	case engine.ErrSlowReader:
		return im.ErrSlowReader
	case engine.ErrClosed:
		return im.ErrClosed
	default:
		return err
	}
}

// kickWhere closes the sessions match selects and returns how many.
func (e *Handler) kickWhere(match func(*epSession) bool) int {
	n := 0
	e.sessions.each(func(es *epSession) bool {
		if match(es) {
			es.conn.Close(engine.ReasonKicked)
			n++
		}
		return true
	})
	return n
}

// Kick closes every session of user (an operator's action).
func (e *Handler) Kick(user uint64) int {
	return e.kickWhere(func(es *epSession) bool { return es.conn.User() == user })
}

// KickDevice closes the sessions of user on the device whose key hash is dev.
func (e *Handler) KickDevice(user uint64, dev [32]byte) int {
	return e.kickWhere(func(es *epSession) bool { return es.conn.User() == user && es.dev == dev })
}

// Revoke refuses the token session sid on this endpoint from now until
// until (a token's expiry bounds it) and closes its live sessions; the
// Revocations list's Revoke also tells the rest of the cluster. Safe for
// concurrent use.
func (e *Handler) Revoke(sid string, until time.Time) int {
	e.revoked.Add(sid, until)
	return e.kickWhere(func(es *epSession) bool { return es.sid == sid })
}

// FramesByCommand returns the frames the endpoint opened (in) and sealed
// (out), by command code.
func (e *Handler) FramesByCommand() (in, out *[256]atomic.Uint64) {
	return &e.framesIn, &e.framesOut
}

// Handshakes returns the endpoint's handshake counters.
func (e *Handler) Handshakes() *im.HandshakeStats { return &e.hs }

// DeliveryLatency is the time from the center accepting a message to the
// recipient's receipt arriving here, read from the message id, which carries
// the center's clock in milliseconds (see LocalCenter.nextMID). Receipts of
// messages older than the center's receipt timeout were stored and fetched,
// and are left out.
func (e *Handler) DeliveryLatency() *engine.LatencyHistogram { return &e.delivery }

// maxReceiptAge bounds the receipts DeliveryLatency counts: the center's
// default receipt timeout, past which a push was stored offline.
const maxReceiptAge = 10 * time.Second

// Sessions returns how many authenticated sessions the endpoint holds.
func (e *Handler) Sessions() int { return int(e.nsess.Load()) }

// SessionInfo describes one session for the admin API.
type SessionInfo struct {
	User     uint64    `json:"user"`
	Endpoint uint32    `json:"endpoint"`
	Session  uint64    `json:"session"`
	Remote   string    `json:"remote"`
	Since    time.Time `json:"since"`
	// TokenSession is the token's "sid" (what Revoke takes); Device the
	// hex hash of the device key (what KickDevice takes).
	TokenSession string `json:"sid"`
	Device       string `json:"device"`
}

// RangeSessions calls fn for each authenticated session until it returns
// false. Safe for concurrent use; sessions opening or closing meanwhile may
// or may not be seen.
func (e *Handler) RangeSessions(fn func(SessionInfo) bool) {
	e.sessions.each(func(es *epSession) bool {
		c := es.conn
		return fn(SessionInfo{User: c.User(), Endpoint: e.cfg.ID, Session: c.ID(), Remote: c.RemoteAddr(),
			Since: c.OpenedAt(), TokenSession: es.sid, Device: hex.EncodeToString(es.dev[:])})
	})
}

// Draining reports whether the endpoint drains (Drain or DrainOver called,
// Undrain not since).
func (e *Handler) Draining() bool { return e.draining.Load() }

// Drain makes the endpoint refuse new connections (an ERROR with code
// ErrCodeRetry, "draining") and sends every session a NOTICE with code
// frame.NoticeMove, so that clients move to the next server on their list.
// It returns how many sessions were told. Calling it again tells the
// sessions still here again. Safe for concurrent use.
func (e *Handler) Drain() int { return e.DrainOver(0) }

// drainStep bounds how late a spread drain notices an Undrain.
const drainStep = 100 * time.Millisecond

// DrainOver is Drain with the move notices spread over spread: each
// session is told at a random moment within it, so that a large endpoint's
// clients do not all log in again in the same instant (as NATS's lame-duck
// mode). It returns how many sessions are to be told; the notices go out
// from a goroutine, which Undrain stops. Safe for concurrent use.
func (e *Handler) DrainOver(spread time.Duration) int {
	e.draining.Store(true)
	gen := e.drainGen.Add(1)
	var list []*epSession
	e.sessions.each(func(es *epSession) bool {
		list = append(list, es)
		return true
	})
	notice, _ := frame.AppendNotice(nil, frame.NoticeMove, []byte(`{"event":"move","reason":"drain"}`))
	tell := func(es *epSession) bool {
		b := bytebufferpool.Get()
		b.B = append(b.B, notice...)
		if es.conn.Post(b) != nil {
			bytebufferpool.Put(b)
			return false
		}
		return true
	}
	if spread <= 0 {
		n := 0
		for _, es := range list {
			if tell(es) {
				n++
			}
		}
		e.cfg.Logger.Info("draining", "sessions", n)
		return n
	}
	// Random moments in order, given to the sessions in a random order.
	at := make([]time.Duration, len(list))
	for i := range at {
		at[i] = rand.N(spread)
	}
	slices.Sort(at)
	rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	e.cfg.Logger.Info("draining", "sessions", len(list), "spread", spread)
	go func() {
		start := time.Now()
		for i, es := range list {
			for {
				if e.drainGen.Load() != gen {
					return
				}
				wait := at[i] - time.Since(start)
				if wait <= 0 {
					break
				}
				time.Sleep(min(wait, drainStep))
			}
			tell(es)
		}
	}()
	return len(list)
}

// Undrain ends a drain: new sessions are accepted again and the move
// notices not yet sent are not sent. Clients already told have moved or are
// moving. Safe for concurrent use.
func (e *Handler) Undrain() {
	e.drainGen.Add(1)
	if e.draining.Swap(false) {
		e.cfg.Logger.Info("drain undone", "sessions", e.Sessions())
	}
}

// errDraining refuses connections while the endpoint drains.
var errDraining = errors.New("endpoint: endpoint draining")

// OnOpen starts the server side of the IK handshake.
func (e *Handler) OnOpen(c *engine.Conn) error {
	if e.draining.Load() {
		e.hs.Fail(im.HandshakeDraining)
		out := c.Out()
		out.B, _ = frame.AppendError(out.B, frame.ErrCodeRetry, 0, "draining; use another server")
		return engine.CloseWith(engine.ReasonShutdown, errDraining)
	}
	// The Noise state is made when the first HANDSHAKE frame arrives, not
	// here: a connection that only PINGs, or never speaks, costs no more
	// than its socket.
	c.SetContext(&epConn{})
	c.SetDeadline(e.cfg.HandshakeTimeout)
	return nil
}

// OnFrame runs the handshake, then opens each sealed frame and passes it to
// the center.
func (e *Handler) OnFrame(c *engine.Conn, f frame.Frame) error {
	ec := c.Context().(*epConn)
	if ec.pending {
		e.hs.Fail(im.HandshakeNoHandshake)
		return engine.CloseWith(engine.ReasonAuth, errHandshakeEarly)
	}
	if ec.keys == nil {
		if f.Cmd() != frame.CmdHandshake {
			e.hs.Fail(im.HandshakeNoHandshake)
			out := c.Out()
			out.B, _ = frame.AppendError(out.B, frame.ErrCodeUnauthorized, 0, "handshake required")
			return engine.CloseWith(engine.ReasonAuth, engine.ErrNotAuthenticated)
		}
		return e.startHandshake(c, ec, f)
	}
	if f.Cmd() == frame.CmdRekey {
		if err := ec.keys.RecvRekey(f); err != nil {
			return engine.CloseWith(engine.ReasonCrypto, err)
		}
		return nil
	}
	body := len(f.Body()) - 16
	if body < 0 {
		e.sealError(c, ec, frame.ErrCodeCrypto, 0, "frame failed to open")
		return engine.CloseWith(engine.ReasonCrypto, session.ErrDecrypt)
	}
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendHeader(buf.B, f.Cmd(), f.QoS(), body)
	var err error
	if buf.B, err = ec.keys.Open(buf.B, f); err != nil {
		bytebufferpool.Put(buf)
		e.sealError(c, ec, frame.ErrCodeCrypto, 0, "frame failed to open")
		return engine.CloseWith(engine.ReasonCrypto, err)
	}
	if !ec.live {
		e.establish(c, ec)
	}
	ec.warm = true
	pf := frame.Frame(buf.B)
	e.framesIn[pf.Cmd()].Add(1)
	if err := frame.Check(pf); err != nil {
		bytebufferpool.Put(buf)
		e.sealError(c, ec, frame.ErrCodeMalformed, 0, err.Error())
		return engine.CloseWith(engine.ReasonMalformed, err)
	}
	// Who takes what a client sends is the command table's (frame/commands.go).
	switch cmd := pf.Cmd(); cmd.Route() {
	case frame.RouteCenter:
		if cmd.Message() {
			m := frame.Msg(pf.Body())
			if m.From() != ec.user {
				e.sealError(c, ec, frame.ErrCodeForbidden, m.CID(), errForbidden.Error())
				bytebufferpool.Put(buf)
				return nil
			}
			m.SetSrv(e.cfg.ID)
		} else if cmd == frame.CmdAck {
			if a := frame.Ack(pf.Body()); a.Status() == frame.AckReceived {
				if age := time.Duration(time.Now().UnixMilli()-int64(a.MID()>>20)) * time.Millisecond; age < maxReceiptAge {
					e.delivery.Observe(age)
				}
			}
		}
	case frame.RouteEndpoint:
		// REKEY was read before opening; a PONG, the first sealed frame
		// of the SDK, only proved the keys.
		bytebufferpool.Put(buf)
		if cmd == frame.CmdBye {
			e.cfg.Center.Offline(ec.user, e.ref(c), true)
			ec.user = 0 // already offline
			c.CloseOnLoop(engine.ReasonDone)
		}
		return nil
	default: // a server's command, or a HANDSHAKE on an open session
		bytebufferpool.Put(buf)
		e.sealError(c, ec, frame.ErrCodeBadRequest, 0, "unexpected "+cmd.String())
		return nil
	}
	e.cfg.Center.Handle(ec.user, e.ref(c), buf)
	return nil
}

// handshakeFailureOf classifies a failed IK handshake for metrics.
func handshakeFailureOf(err error) im.HandshakeFailure {
	switch {
	case errors.Is(err, session.ErrTokenExpired):
		return im.HandshakeTokenExpired
	case errors.Is(err, session.ErrTokenAudience):
		return im.HandshakeTokenAudience
	case errors.Is(err, session.ErrTokenSignature):
		return im.HandshakeTokenSignature
	case errors.Is(err, session.ErrTokenDeviceKey):
		return im.HandshakeTokenDevice
	}
	return im.HandshakeCrypto
}

// authText names the token failure for the client; what it says is no
// secret, since the client holds the token.
func authText(err error) string {
	switch {
	case errors.Is(err, session.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, session.ErrTokenAudience):
		return "token for another cluster"
	case errors.Is(err, session.ErrTokenSignature):
		return "token signature invalid"
	case errors.Is(err, session.ErrTokenDeviceKey):
		return "token bound to another device"
	}
	return "handshake failed"
}

// OnMail seals a frame the center delivered.
func (e *Handler) OnMail(c *engine.Conn, b []byte) error {
	ec := c.Context().(*epConn)
	if ec.pending {
		return e.finishHandshake(c, ec, b)
	}
	if ec.keys == nil {
		return nil
	}
	f := frame.Frame(b)
	e.framesOut[f.Cmd()].Add(1)
	return e.seal(c, ec, f)
}

// seal seals plaintext frame f into c's write batch, with a rekey when
// one is due. Loop only.
func (e *Handler) seal(c *engine.Conn, ec *epConn, f frame.Frame) error {
	return e.sealAt(c, ec, f, time.Now())
}

// sealAt is seal with the clock read by the caller, which seals many
// frames at one instant. Loop only.
func (e *Handler) sealAt(c *engine.Conn, ec *epConn, f frame.Frame, now time.Time) error {
	ec.warm = true
	out := c.Out()
	var err error
	if out.B, err = ec.keys.Seal(out.B, f.Cmd(), f.QoS(), f.Body()); err != nil {
		return engine.CloseWith(engine.ReasonCrypto, err)
	}
	if ec.keys.NeedRekey(now) {
		if out.B, err = ec.keys.SendRekey(out.B, now); err != nil {
			return engine.CloseWith(engine.ReasonCrypto, err)
		}
	}
	return nil
}

func (e *Handler) sealError(c *engine.Conn, ec *epConn, code uint16, ref uint64, text string) {
	b, _ := frame.AppendError(nil, code, ref, text)
	out := c.Out()
	out.B, _ = ec.keys.Seal(out.B, frame.CmdError, frame.QoS0, frame.Frame(b).Body())
}

// OnClose reports the session gone and wipes its keys.
func (e *Handler) OnClose(c *engine.Conn, _ engine.CloseReason) {
	ec, ok := c.Context().(*epConn)
	if !ok {
		return
	}
	if ec.keys != nil {
		if ec.live {
			if e.sessions.remove(c.ID()) {
				e.nsess.Add(-1)
			}
			if ec.user != 0 {
				e.cfg.Center.Offline(ec.user, e.ref(c), false)
			}
		}
		ec.keys.Wipe()
	}
}
