package link

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/myim/myim/engine/clusterca"
)

// Plain-TCP link authentication, before HELLO, with the shared secret K:
//
//	dialer   -> listener  Nd (32 random bytes)
//	listener -> dialer    Nl (32 random bytes), HMAC-SHA256(K, "myim link listener" | Nd | Nl)
//	dialer   -> listener  HMAC-SHA256(K, "myim link dialer" | Nd | Nl)
//
// Each side checks the other's MAC in constant time and closes the
// connection on a mismatch; fresh nonces on both sides make a recorded
// exchange useless. It proves the peer holds K; it does not protect what
// follows from someone on the path, which is what TLS is for.
const nonceLen = 32

func mac(secret []byte, label string, nd, nl []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(nd)
	m.Write(nl)
	return m.Sum(nil)
}

// AuthDial runs the dialer's side of the plain-TCP authentication on nc,
// under nc's deadline; ErrRefused when the listener does not prove it holds
// secret. It uses nc alone, from the caller's goroutine.
func AuthDial(nc net.Conn, secret []byte) error {
	var nd [nonceLen]byte
	_, _ = rand.Read(nd[:])
	if _, err := nc.Write(nd[:]); err != nil {
		return err
	}
	var in [nonceLen + sha256.Size]byte
	if _, err := io.ReadFull(nc, in[:]); err != nil {
		return fmt.Errorf("%w: no proof of the link secret: %v", ErrRefused, err)
	}
	nl := in[:nonceLen]
	if !hmac.Equal(in[nonceLen:], mac(secret, "myim link listener", nd[:], nl)) {
		return fmt.Errorf("%w: the listener does not hold the link secret", ErrRefused)
	}
	_, err := nc.Write(mac(secret, "myim link dialer", nd[:], nl))
	return err
}

// AuthAccept runs the listener's side of the plain-TCP authentication on
// nc, under nc's deadline; ErrRefused when the dialer does not prove it
// holds secret. It uses nc alone, from the caller's goroutine.
func AuthAccept(nc net.Conn, secret []byte) error {
	var nd [nonceLen]byte
	if _, err := io.ReadFull(nc, nd[:]); err != nil {
		return fmt.Errorf("%w: no link authentication: %v", ErrRefused, err)
	}
	var nl [nonceLen]byte
	_, _ = rand.Read(nl[:])
	out := append(nl[:], mac(secret, "myim link listener", nd[:], nl[:])...)
	if _, err := nc.Write(out); err != nil {
		return err
	}
	var m [sha256.Size]byte
	if _, err := io.ReadFull(nc, m[:]); err != nil {
		return fmt.Errorf("%w: no proof of the link secret: %v", ErrRefused, err)
	}
	if !hmac.Equal(m[:], mac(secret, "myim link dialer", nd[:], nl[:])) {
		return fmt.Errorf("%w: the dialer does not hold the link secret", ErrRefused)
	}
	return nil
}

// PlainAllowed reports whether a plain-TCP peer address is loopback or
// private: plain links must not cross the internet. A pure function.
func PlainAllowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	return ta.IP.IsLoopback() || ta.IP.IsPrivate()
}

// watchedConn is a TLS link connection whose peer certificate is checked
// again every interval (the tls.Config's VerifyConnection, which reads the
// deny list); the connection is closed once it fails, or the watch ends
// when the connection is closed.
type watchedConn struct {
	*tls.Conn
	once sync.Once
	stop chan struct{}
}

func (w *watchedConn) Close() error {
	w.once.Do(func() { close(w.stop) })
	return w.Conn.Close()
}

// watchPeer returns tc wrapped so that it closes itself once its peer no
// longer verifies under cfg.
func watchPeer(tc *tls.Conn, cfg *tls.Config, every time.Duration, log *slog.Logger) net.Conn {
	if cfg.VerifyConnection == nil || every <= 0 {
		return tc
	}
	w := &watchedConn{Conn: tc, stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			if err := cfg.VerifyConnection(tc.ConnectionState()); err != nil {
				log.Warn("link peer no longer trusted: closing the link", "remote", tc.RemoteAddr().String(), "err", err)
				_ = w.Close()
				return
			}
		}
	}()
	return w
}

// Dial connects to the link listener at addr: TCP, then (unless cfg is
// plain text) mutual TLS with a peer whose certificate has role want, then
// HELLO both ways, ours being h. It returns the connection, a reader past
// the peer's HELLO, and the peer's HELLO. ctx bounds connecting, the
// handshake and the peer's HELLO; timeout bounds writing ours. cfg must
// have its defaults filled. Safe for concurrent use.
func Dial(ctx context.Context, addr string, cfg *Config, want string, h Hello,
	timeout time.Duration) (net.Conn, *bufio.Reader, Hello, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, Hello{}, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, Hello, error) {
		nc.Close()
		return nil, nil, Hello{}, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if cfg.TLS == nil {
		if !PlainAllowed(nc.RemoteAddr()) {
			return fail(fmt.Errorf("%w: plain TCP to public address %s", ErrRefused, nc.RemoteAddr()))
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = nc.SetDeadline(dl)
		}
		err := AuthDial(nc, cfg.Secret)
		_ = nc.SetDeadline(time.Time{})
		if err != nil {
			return fail(err)
		}
	} else {
		tc := tls.Client(nc, cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		peer, err := clusterca.PeerNode(tc.ConnectionState())
		if err != nil {
			return fail(err)
		}
		if peer.Role != want {
			return fail(fmt.Errorf("%w: peer is a %s, not a %s", ErrRefused, peer.Role, want))
		}
		nc = watchPeer(tc, cfg.TLS, cfg.RecheckInterval, cfg.Logger)
	}
	if err := WriteHello(nc, h, timeout); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetReadDeadline(dl)
	}
	peer, err := NewReader(br, helloMax).Hello()
	if err != nil {
		return fail(err)
	}
	return nc, br, peer, nil
}

// helloMax is the frame limit of a reader that takes only a HELLO.
const helloMax = 64

// Accept runs the listener's side of a new link on raw, before HELLO:
// with plain TCP, the peer must be on a loopback or private address and
// prove it holds the secret; with TLS, the handshake must end within
// timeout and the peer's certificate name a node of one of roles. It
// returns the connection to use, which for TLS closes itself once the
// peer's certificate no longer verifies (closing it ends that watch), and
// the peer's identity (nil for plain TCP). raw's deadline must be set by
// the caller; raw stays the caller's to close. Safe for concurrent use.
func Accept(raw net.Conn, cfg *Config, timeout time.Duration, roles ...string) (net.Conn, *clusterca.NodeIdentity, error) {
	if cfg.TLS == nil {
		if !PlainAllowed(raw.RemoteAddr()) {
			return nil, nil, fmt.Errorf("%w: plain TCP from a public address", ErrRefused)
		}
		if err := AuthAccept(raw, cfg.Secret); err != nil {
			return nil, nil, err
		}
		return raw, nil, nil
	}
	tc := tls.Server(raw, cfg.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	p, err := clusterca.PeerNode(tc.ConnectionState())
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(roles, p.Role) {
		return nil, nil, fmt.Errorf("%w: peer is a %s, not one of %v", ErrRefused, p.Role, roles)
	}
	return watchPeer(tc, cfg.TLS, cfg.RecheckInterval, cfg.Logger), &p, nil
}
