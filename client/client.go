// Package client is MyIM's Go SDK: it logs in through the login service
// (Noise XX, password inside the handshake), connects to an endpoint with
// the token (Noise IK), and sends and receives sealed frames. Tests and the
// load generator use it; applications embed it.
//
// It must not import the server's packages (engine, storage): it speaks only
// the wire protocol, defined by frame and session.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// Config is what a device needs to talk to a MyIM cluster.
type Config struct {
	// Roots are the pinned cluster root keys (the server prints its own and
	// writes it to root.pub in its data directory).
	Roots []session.VerifyKey
	// Device is the device's static key (LoadOrCreateDeviceKey keeps it in a
	// 0600 file).
	Device *ecdh.PrivateKey
	// Fingerprint is a risk signal sent at login (session.Fingerprint).
	Fingerprint string
	DeviceName  string
	// Session tunes the crypto layer; nil means the defaults.
	Session *session.Config
	// DialTimeout bounds connecting and each handshake; default 10 s.
	DialTimeout time.Duration
	// AutoAck acks every pushed MSG as soon as it is read, and a group's
	// messages cumulatively, once every message below has arrived: a
	// tracked group's messages (Dedupe.TrackGroup) reach Frames in
	// sequence order, each once, whatever order they arrive in.
	AutoAck bool
	// AutoFetch asks for the offline messages (p2p and group) right after
	// connecting, and for the next page whenever an answer says more
	// remain. The FETCH answers still reach Frames.
	AutoFetch bool
	// FollowMoves ends the connection (Err: ErrMoved) when the server
	// asks the client to move to another server (NOTICE code 2, a drain),
	// after the NOTICE is delivered. Session always sets it.
	FollowMoves bool
	// Dedupe, when set, drops pushed messages (MSG and GROUP_MSG) whose
	// (sender, client id) it has seen, so that a message resent after a
	// reconnect is shown once, and keeps where each group's sequence
	// stands. Share one across a user's reconnects.
	Dedupe *Dedupe
	// SendTimeout is the deadline SendWait gives a send whose context has
	// none. Default 30 s.
	SendTimeout time.Duration
	// Now is the device's clock, which stamps the Time of messages sent
	// (data for the recipient: the server orders by its own ids); nil is
	// time.Now. A skewed clock changes nothing in delivery.
	Now func() time.Time
	// LoginRetry is how long Login keeps trying again when the login
	// service answers RETRY with a hint (its queue is full, or the account
	// backs off): it waits the hint, plus up to half of it at random so
	// that refused clients spread out, and tries again, within ctx. 0
	// means a minute; negative means never: the RETRY is returned as a
	// *ServerError.
	LoginRetry time.Duration
	// DialContext, when set, opens the TCP connections (for example to
	// pick the local address or go through a proxy); nil means a
	// net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// WebSocket, when set, connects over WebSocket instead of raw TCP.
	WebSocket *WebSocketConfig
}

func (c *Config) loginRetry() time.Duration {
	if c.LoginRetry == 0 {
		return time.Minute
	}
	return c.LoginRetry
}

// Dedupe remembers recent (sender, client id) pairs, a bounded number.
// Safe for concurrent use.
type Dedupe struct {
	mu     sync.Mutex
	seen   map[[2]uint64]struct{}
	ring   [][2]uint64
	next   int
	groups groupTracker
}

// NewDedupe remembers the last n pairs (n <= 0 means 65,536).
func NewDedupe(n int) *Dedupe {
	if n <= 0 {
		n = 1 << 16
	}
	return &Dedupe{seen: make(map[[2]uint64]struct{}, n), ring: make([][2]uint64, n)}
}

// Seen records (from, cid) and reports whether it was already there.
// A zero cid is never a duplicate.
func (d *Dedupe) Seen(from, cid uint64) bool {
	if cid == 0 {
		return false
	}
	k := [2]uint64{from, cid}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[k]; ok {
		return true
	}
	if old := d.ring[d.next]; old != ([2]uint64{}) {
		delete(d.seen, old)
	}
	d.ring[d.next] = k
	d.next = (d.next + 1) % len(d.ring)
	d.seen[k] = struct{}{}
	return false
}

func (c *Config) timeout() time.Duration {
	if c.DialTimeout <= 0 {
		return 10 * time.Second
	}
	return c.DialTimeout
}

// Server is one entry of the server list the login service returns.
type Server = session.ServerInfo

// LoginResult is the login service's answer.
type LoginResult struct {
	session.LoginReply
	// LoginHost is the host the login service was reached at; server
	// addresses with an empty host mean this host.
	LoginHost string `json:"-"`
}

// ServerError is an ERROR frame from the server.
type ServerError struct {
	Code uint16
	Ref  uint64
	Text string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("myim: server error %d: %s", e.Code, e.Text)
}

// Errors of the SDK.
var (
	ErrClosed   = errors.New("client: connection closed")
	ErrProtocol = errors.New("client: unexpected frame from server")
	ErrMoved    = errors.New("client: the server asked to move to another server")
)

// Login runs the login exchange with the login service at addr. A RETRY
// answer with a hint is tried again after the hint (see
// Config.LoginRetry); each try is bounded by Config.DialTimeout.
func Login(ctx context.Context, cfg Config, addr, name string, password []byte) (*LoginResult, error) {
	until := time.Now().Add(cfg.loginRetry())
	for {
		res, err := loginOnce(ctx, cfg, addr, name, password)
		wait, ok := retryHint(err)
		if !ok || cfg.LoginRetry < 0 {
			return res, err
		}
		wait += time.Duration(rand.Int64N(int64(wait)/2 + 1))
		if time.Now().Add(wait).After(until) {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// RetryHint reports whether err is a RETRY answer that says when to try
// again, and how long to wait: the login service puts the wait in
// milliseconds in the ERROR's Ref.
func RetryHint(err error) (time.Duration, bool) { return retryHint(err) }

func retryHint(err error) (time.Duration, bool) {
	var se *ServerError
	if !errors.As(err, &se) || se.Code != frame.ErrCodeRetry || se.Ref == 0 {
		return 0, false
	}
	return time.Duration(min(se.Ref, 3_600_000)) * time.Millisecond, true
}

func loginOnce(ctx context.Context, cfg Config, addr, name string, password []byte) (*LoginResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	nc, err := cfg.dial(ctx, addr, "/login")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	hs, err := session.NewLoginClient(cfg.Session, cfg.Device, cfg.Roots)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(nc)
	msg1, err := hs.WriteFrame(nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(msg1); err != nil {
		return nil, err
	}
	f, err := frame.Read(r, frame.DefaultMaxFrame)
	if err != nil {
		return nil, err
	}
	if f.Cmd() == frame.CmdError { // refused before keys exist: plaintext
		return nil, errorFrom(f.Body())
	}
	if _, err := hs.ReadFrame(nil, f); err != nil {
		return nil, err
	}
	req := session.LoginRequest{Name: name, Password: password, Fingerprint: cfg.Fingerprint, DeviceName: cfg.DeviceName}
	payload, err := req.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	msg3, err := hs.WriteFrame(nil, payload)
	clear(payload)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(msg3); err != nil {
		return nil, err
	}
	keys, err := hs.Keys()
	if err != nil {
		return nil, err
	}
	defer keys.Wipe()
	if f, err = frame.Read(r, frame.DefaultMaxFrame); err != nil {
		return nil, err
	}
	body, err := keys.Open(nil, f)
	if err != nil {
		if f.Cmd() == frame.CmdError { // the server could not open message 3
			return nil, errorFrom(f.Body())
		}
		return nil, err
	}
	switch f.Cmd() {
	case frame.CmdError:
		return nil, errorFrom(body)
	case frame.CmdAuth:
	default:
		return nil, ErrProtocol
	}
	res := &LoginResult{}
	if err := sonic.Unmarshal(body, &res.LoginReply); err != nil {
		return nil, fmt.Errorf("client: login reply: %w", err)
	}
	res.LoginHost, _, _ = net.SplitHostPort(addr)
	return res, nil
}

// Connect checks the endpoint's certificate from the server list against
// the pinned roots (and that it certifies the key the list gives), then
// dials it with the login's token: the way to reach an endpoint.
func Connect(ctx context.Context, cfg Config, res *LoginResult, s Server) (*Conn, error) {
	cert, err := session.VerifyCert(cfg.Roots, s.Cert, time.Now(), session.RoleEndpoint)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cert.StaticKey[:], s.Key) {
		return nil, session.ErrCertStaticKey
	}
	return Dial(ctx, cfg, res.EndpointAddr(s), s.Key, res.Token)
}

// EndpointAddr returns the address to dial for s.
func (r *LoginResult) EndpointAddr(s Server) string {
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil || (host != "" && host != "::" && host != "0.0.0.0") {
		return s.Addr
	}
	return net.JoinHostPort(r.LoginHost, port)
}

func errorFrom(body []byte) error {
	if len(body) < frame.ErrorLen {
		return ErrProtocol
	}
	e := frame.Error(body)
	return &ServerError{Code: e.Code(), Ref: e.Ref(), Text: string(e.Text())}
}

// Frame is one frame received on a session, opened: Body is plaintext.
type Frame struct {
	Cmd  frame.Cmd
	QoS  frame.QoS
	Body []byte
}

// Conn is an authenticated session with an endpoint. Send methods are safe
// for concurrent use; frames arrive on the channel Frames returns.
type Conn struct {
	nc          net.Conn
	keys        *session.Keys
	user        uint64
	wmu         sync.Mutex
	in          chan Frame
	done        chan struct{}
	errMu       sync.Mutex
	err         error
	nextCID     atomic.Uint64
	nextReq     atomic.Uint32
	closed      atomic.Bool
	pongs       chan []byte
	autoAck     bool
	autoFet     bool
	follow      bool
	dedupe      *Dedupe
	groups      *groupTracker // the Dedupe's, or the connection's own
	waits       waiters       // sends waiting for their answer (SendWait)
	gapMu       sync.Mutex
	gapFetch    time.Time   // start of a group fetch filling gaps; zero when none runs
	seeded      atomic.Bool // a complete group fetch ended on this connection
	sendTimeout time.Duration
	now         func() time.Time
	received    atomic.Uint64
	dups        atomic.Uint64
	files       fileMux // transfers and file server requests in progress
}

// Dial connects to an endpoint and runs the IK handshake with token.
// serverKey is the endpoint's static key from the server list.
func Dial(ctx context.Context, cfg Config, addr string, serverKey []byte, token string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	nc, err := cfg.dial(ctx, addr, "/endpoint")
	if err != nil {
		return nil, err
	}
	c, err := handshake(ctx, cfg, nc, serverKey, token)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, cfg Config, nc net.Conn, serverKey []byte, token string) (*Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	hs, err := session.NewEndpointClient(cfg.Session, cfg.Device, serverKey, token)
	if err != nil {
		return nil, err
	}
	msg1, err := hs.WriteFrame(nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(msg1); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(nc, 64<<10)
	f, err := frame.Read(r, frame.MaxEncodable)
	if err != nil {
		return nil, err
	}
	if f.Cmd() == frame.CmdError {
		return nil, errorFrom(f.Body())
	}
	acc, keys, err := hs.ReadAccepted(f)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	c := &Conn{nc: nc, keys: keys, user: acc.UserID, in: make(chan Frame, 4096),
		done: make(chan struct{}), pongs: make(chan []byte, 16), autoAck: cfg.AutoAck, autoFet: cfg.AutoFetch, follow: cfg.FollowMoves, dedupe: cfg.Dedupe}
	c.nextCID.Store(uint64(time.Now().UnixNano()))
	c.groups = &groupTracker{}
	if c.dedupe != nil {
		c.groups = &c.dedupe.groups
	}
	c.now = cfg.Now
	if c.now == nil {
		c.now = time.Now
	}
	c.sendTimeout = cfg.SendTimeout
	if c.sendTimeout <= 0 {
		c.sendTimeout = 30 * time.Second
	}
	go c.readLoop(r)
	go c.gapWatch()
	// The first sealed frame proves to the endpoint that this side holds
	// the session keys: only then does it announce the session (a replayed
	// first message gets this far and no further). The PING after it
	// returns once the endpoint has handled it, so that the session is
	// online when Dial returns.
	if err := c.Send(frame.CmdPong, frame.QoS0, nil); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if c.autoFet {
		if _, err := c.Fetch(frame.FetchP2P, 0, 100); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := c.Fetch(frame.FetchGroup, 0, 100); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// UserID returns the session's user.
func (c *Conn) UserID() uint64 { return c.user }

// Frames returns the channel of received frames; it is closed when the
// connection ends (Err then says why).
func (c *Conn) Frames() <-chan Frame { return c.in }

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

func (c *Conn) readLoop(r *bufio.Reader) {
	defer close(c.in)
	defer close(c.done)
	defer c.waits.closeAll(ErrNotAcked)
	for {
		f, err := frame.Read(r, frame.MaxEncodable)
		if err != nil {
			c.fail(err)
			return
		}
		switch f.Cmd() {
		case frame.CmdPong:
			select {
			case c.pongs <- append([]byte(nil), f.Body()...):
			default:
			}
			continue
		case frame.CmdPing:
			c.write(frame.Pong)
			continue
		case frame.CmdRekey:
			if err := c.keys.RecvRekey(f); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		body, err := c.keys.Open(nil, f)
		if err != nil {
			if f.Cmd() == frame.CmdError && len(f.Body()) >= frame.ErrorLen {
				c.fail(errorFrom(f.Body())) // sent before sealing: a plaintext error
			} else {
				c.fail(err)
			}
			return
		}
		if err := frame.CheckBody(f.Cmd(), body); err != nil {
			c.fail(err)
			return
		}
		if (f.Cmd() == frame.CmdFile || f.Cmd() == frame.CmdFileServer || f.Cmd() == frame.CmdError) &&
			c.routeFile(f.Cmd(), f.QoS(), body) {
			continue // a transfer or file server request took it (files.go)
		}
		switch f.Cmd() {
		case frame.CmdAck, frame.CmdError:
			c.answer(f.Cmd(), body)
		case frame.CmdGroup:
			c.groupAnswer(body)
		case frame.CmdGroupMsg:
			c.groupIn(Frame{Cmd: f.Cmd(), QoS: f.QoS(), Body: body})
			continue
		}
		if c.autoAck {
			c.ack(f.Cmd(), body)
		}
		if f.Cmd() == frame.CmdFetch {
			fe := frame.Fetch(body)
			c.gapMu.Lock()
			gapping := !c.gapFetch.IsZero()
			c.gapMu.Unlock()
			if fe.Flags()&frame.FetchMore != 0 && (c.autoFet || gapping && fe.Kind() == frame.FetchGroup) {
				go func(kind byte, cursor uint64) { _, _ = c.Fetch(kind, cursor, 100) }(fe.Kind(), max(fe.Cursor(), 1))
			}
			c.fetchAnswer(fe)
		}
		if c.dedupe != nil && f.Cmd() == frame.CmdMsg {
			if m := frame.Msg(body); c.dedupe.Seen(m.From(), m.CID()) {
				c.dups.Add(1)
				continue
			}
		}
		c.received.Add(1)
		c.in <- Frame{Cmd: f.Cmd(), QoS: f.QoS(), Body: body}
		if c.follow && f.Cmd() == frame.CmdNotice && frame.Notice(body).Code() == frame.NoticeMove {
			c.fail(ErrMoved)
			return
		}
	}
}

// Duplicates returns how many pushed messages Dedupe dropped.
func (c *Conn) Duplicates() uint64 { return c.dups.Load() }

func (c *Conn) ack(cmd frame.Cmd, body []byte) {
	switch cmd {
	case frame.CmdMsg:
		m := frame.Msg(body)
		_ = c.Ack(m.MID(), m.From())
	}
}

func (c *Conn) fail(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
	c.closed.Store(true)
	c.nc.Close()
}

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	_, err := c.nc.Write(b)
	return err
}

// Send seals and sends one frame.
func (c *Conn) Send(cmd frame.Cmd, q frame.QoS, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	out, err := c.keys.Seal(nil, cmd, q, body)
	if err != nil {
		return err
	}
	if now := time.Now(); c.keys.NeedRekey(now) {
		if out, err = c.keys.SendRekey(out, now); err != nil {
			return err
		}
	}
	_, err = c.nc.Write(out)
	return err
}

// NewCID returns a fresh client message id.
func (c *Conn) NewCID() uint64 { return c.nextCID.Add(1) }

// SendMsg sends a point-to-point message and returns its client id, which
// the server's ACK (or a retry ERROR) carries back.
func (c *Conn) SendMsg(to uint64, q frame.QoS, content []byte) (uint64, error) {
	cid := c.NewCID()
	return cid, c.SendMsgCID(frame.CmdMsg, to, q, cid, content)
}

// SendMsgCID sends a MSG or GROUP_MSG with a given client id (a resend
// after reconnect uses the original one, so that it is shown once).
func (c *Conn) SendMsgCID(cmd frame.Cmd, to uint64, q frame.QoS, cid uint64, content []byte) error {
	body := frame.AppendMsgHeader(make([]byte, 0, frame.MsgHeaderLen+len(content)),
		frame.MsgHeader{From: c.user, To: to, Time: c.now().UnixMilli(), CID: cid})
	return c.Send(cmd, q, append(body, content...))
}

// Ack confirms receipt of a pushed p2p message.
func (c *Conn) Ack(mid, from uint64) error {
	b := make([]byte, 0, frame.AckLen)
	b = appendAckBody(b, 0, mid, from, frame.AckReceived)
	return c.Send(frame.CmdAck, frame.QoS0, b)
}

// AckGroup confirms receipt of a group's messages up to seq.
func (c *Conn) AckGroup(group, seq uint64) error {
	b := appendAckBody(make([]byte, 0, frame.AckLen), 0, seq, group, frame.AckGroupRead)
	return c.Send(frame.CmdAck, frame.QoS0, b)
}

func appendAckBody(b []byte, cid, mid, peer uint64, status byte) []byte {
	f, _ := frame.AppendAck(nil, cid, mid, peer, status)
	return append(b, frame.Frame(f).Body()...)
}

// Ping sends the note's PING and waits for the PONG.
func (c *Conn) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := c.write(frame.Ping); err != nil {
		return 0, err
	}
	select {
	case <-c.pongs:
		return time.Since(start), nil
	case <-c.done:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// NextReq returns a fresh request id for lookups, fetches and group
// operations.
func (c *Conn) NextReq() uint32 { return c.nextReq.Add(1) }

// Lookup sends a SIGNATURE, FRIEND_INFO, FRIENDS_ONLINE or SERVER_LIST
// request and returns its request id.
func (c *Conn) Lookup(cmd frame.Cmd, target uint64) (uint32, error) {
	req := c.NextReq()
	f, _ := frame.AppendLookup(nil, cmd, req, target, nil)
	return req, c.Send(cmd, frame.QoS0, frame.Frame(f).Body())
}

// SetProfile sends a PROFILE request that sets the user's own signature
// and profile (JSON {"signature": ..., "profile": {...}}; a field left out
// keeps its value) and returns its request id. The answer is a PROFILE
// frame with the updated user, or an ERROR.
func (c *Conn) SetProfile(json []byte) (uint32, error) {
	req := c.NextReq()
	f, _ := frame.AppendLookup(nil, frame.CmdProfile, req, 0, json)
	return req, c.Send(frame.CmdProfile, frame.QoS0, frame.Frame(f).Body())
}

// LookupName sends a SIGNATURE request that finds a user by exact name;
// the answer's Target is the user's id (docs/protocol.md, "Finding a
// user"). It returns the request id.
func (c *Conn) LookupName(name string) (uint32, error) {
	js, err := sonic.Marshal(struct {
		Name string `json:"name"`
	}{name})
	if err != nil {
		return 0, err
	}
	req := c.NextReq()
	f, _ := frame.AppendLookup(nil, frame.CmdSignature, req, 0, js)
	return req, c.Send(frame.CmdSignature, frame.QoS0, frame.Frame(f).Body())
}

// Fetch asks for a page of offline messages; cursor 0 starts over.
func (c *Conn) Fetch(kind byte, cursor uint64, count uint16) (uint32, error) {
	req := c.NextReq()
	f, _ := frame.AppendFetch(nil, req, kind, 0, cursor, count)
	return req, c.Send(frame.CmdFetch, frame.QoS0, frame.Frame(f).Body())
}

// Group sends a group operation and returns its request id.
func (c *Conn) Group(op byte, group uint64, json []byte) (uint32, error) {
	req := c.NextReq()
	f, _ := frame.AppendGroup(nil, req, op, group, json)
	return req, c.Send(frame.CmdGroup, frame.QoS0, frame.Frame(f).Body())
}

// SetPresence sets this session's status.
func (c *Conn) SetPresence(status byte, text string) error {
	f, _ := frame.AppendPresence(nil, frame.CmdPresence, c.user, time.Now().UnixMilli(), status, []byte(text))
	return c.Send(frame.CmdPresence, frame.QoS0, frame.Frame(f).Body())
}

// Bye sends the terminal offline confirmation; the server closes the
// session.
func (c *Conn) Bye() error { return c.Send(frame.CmdBye, frame.QoS0, nil) }

// Close closes the connection.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Recv waits for the next frame matching want (nil matches any), dropping
// others, until ctx ends.
func (c *Conn) Recv(ctx context.Context, want func(Frame) bool) (Frame, error) {
	for {
		select {
		case f, ok := <-c.in:
			if !ok {
				if err := c.Err(); err != nil {
					return Frame{}, err
				}
				return Frame{}, ErrClosed
			}
			if want == nil || want(f) {
				return f, nil
			}
		case <-ctx.Done():
			return Frame{}, ctx.Err()
		}
	}
}

// ParseServerError returns the ServerError in an ERROR frame.
func ParseServerError(f Frame) error {
	if f.Cmd != frame.CmdError {
		return nil
	}
	return errorFrom(f.Body)
}
