package client

import (
	"context"
	"errors"
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
