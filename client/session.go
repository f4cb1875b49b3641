package client

import (
	"context"
	"errors"
	"github.com/myim/myim/frame"
	"math/rand/v2"
	"sync"
	"time"
)

// Session keeps a user connected: it logs in, connects to the first server
// of the list that answers, and when the connection ends (the server ends a
// session at its token's expiry, at most 24 h; a restart; the network) it
// logs in again, which runs a full new handshake with a fresh token, and
// reconnects, with jittered backoff. Safe for concurrent use.
type Session struct {
	cfg       Config
	loginAddr string
	name      string
	password  []byte

	mu      sync.Mutex
	conn    *Conn
	login   *LoginResult
	changed chan struct{} // closed and replaced on every new connection
	renews  int
}

// NewSession prepares a session; Run connects it.
func NewSession(cfg Config, loginAddr, name string, password []byte) *Session {
	cfg.FollowMoves = true
	return &Session{cfg: cfg, loginAddr: loginAddr, name: name, password: append([]byte(nil), password...),
		changed: make(chan struct{})}
}

// Conn returns the current connection (nil before the first) and a channel
// closed when a newer one replaces it.
func (s *Session) Conn() (*Conn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.changed
}

// Renewals returns how many times the session reconnected.
func (s *Session) Renewals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renews
}

// Login returns the latest login result.
func (s *Session) Login() *LoginResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.login
}

// Run connects and keeps reconnecting until ctx ends. A wrong password
// (an authentication failure at login) ends it with that error.
func (s *Session) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		c, err := s.connect(ctx)
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) && se.Code == 13 { // ErrCodeAuthFailed: retrying cannot help
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Full jitter, so that many clients do not come back at once.
			wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
			backoff = min(backoff*2, 30*time.Second)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		backoff = 100 * time.Millisecond
		s.mu.Lock()
		s.conn = c
		if !first {
			s.renews++
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		select {
		case <-c.Done():
		case <-ctx.Done():
			c.Close()
			return ctx.Err()
		}
	}
}

func (s *Session) connect(ctx context.Context) (*Conn, error) {
	res, err := Login(ctx, s.cfg, s.loginAddr, s.name, s.password)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.login = res
	s.mu.Unlock()
	var last error = errors.New("client: empty server list")
	for _, srv := range res.Servers {
		c, err := Connect(ctx, s.cfg, res, srv)
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// Send sends a QoS 1 MSG or GROUP_MSG and waits for its ACK, sending it
// again with the same CID, on the next connection when the current one
// ends, after a retry ERROR, or when an attempt has no answer within
// Config.SendTimeout, until ctx ends: the server shows it once whatever
// the number of attempts. It returns the ACK, or the last attempt's
// *SendError once ctx ends or the refusal is final (not retryable).
func (s *Session) Send(ctx context.Context, cmd frame.Cmd, to uint64, content []byte) (Acked, error) {
	var cid uint64
	var last error
	for {
		c, changed := s.Conn()
		if c != nil {
			if cid == 0 {
				cid = c.NewCID()
			}
			a, err := c.SendWait(ctx, cmd, to, cid, content)
			if err == nil {
				return a, nil
			}
			last = err
			if !Retryable(err) || ctx.Err() != nil {
				return Acked{}, err
			}
			wait := time.After(100 * time.Millisecond) // a retry ERROR: the server is busy
			select {
			case <-c.Done():
				wait = nil // the connection ended: wait for the next one
			default:
			}
			select {
			case <-wait:
			case <-changed:
			case <-ctx.Done():
				return Acked{}, last
			}
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if last == nil {
				last = &SendError{CID: cid, Err: errors.Join(ErrSendTimeout, ctx.Err())}
			}
			return Acked{}, last
		}
	}
}
