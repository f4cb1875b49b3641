package wswire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// ErrHandshake is the cause of a failed client upgrade.
var ErrHandshake = errors.New("wswire: upgrade refused")

// DialConfig is a client dial's configuration.
type DialConfig struct {
	// TLS, when set, makes the connection wss:// with this configuration.
	TLS *tls.Config
	// Origin, when set, is sent as the Origin header (as a browser would).
	Origin string
	// Protocol, when set, is offered as Sec-WebSocket-Protocol.
	Protocol string
	// Dial opens the TCP connection; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial connects to rawURL (ws://host:port/path or wss://...) and returns a
// net.Conn whose Write sends one binary message per call and whose Read
// returns the payloads of the messages received, in order, as a stream.
func Dial(ctx context.Context, rawURL string, cfg DialConfig) (net.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("wswire: scheme %q is not ws or wss", u.Scheme)
	}
	dial := cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if u.Scheme == "wss" {
		tc := cfg.TLS.Clone()
		if tc == nil {
			tc = &tls.Config{}
		}
		if tc.ServerName == "" {
			tc.ServerName = u.Hostname()
		}
		tconn := tls.Client(nc, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tconn
	}
	c, err := clientHandshake(nc, u, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func clientHandshake(nc net.Conn, u *url.URL, cfg DialConfig) (*Conn, error) {
	var key [16]byte
	_, _ = rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	path := u.RequestURI()
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, u.Host, k)
	if cfg.Origin != "" {
		fmt.Fprintf(&req, "Origin: %s\r\n", cfg.Origin)
	}
	if cfg.Protocol != "" {
		fmt.Fprintf(&req, "Sec-WebSocket-Protocol: %s\r\n", cfg.Protocol)
	}
	req.WriteString("\r\n")
	if _, err := nc.Write(req.Bytes()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("%w: %s", ErrHandshake, resp.Status)
	}
	want := string(AppendAccept(nil, []byte(k)))
	if resp.Header.Get("Sec-WebSocket-Accept") != want {
		return nil, fmt.Errorf("%w: bad Sec-WebSocket-Accept", ErrHandshake)
	}
	return &Conn{Conn: nc, r: br}, nil
}

// Conn is a client WebSocket connection carrying a byte stream in binary
// messages. Read and Write may be called concurrently with each other; one
// reader at a time.
type Conn struct {
	net.Conn
	r *bufio.Reader

	left int64 // payload bytes of the current message not yet read
	eof  bool

	wmu  sync.Mutex
	wbuf []byte
}

// Read returns payload bytes of the binary messages received. A ping is
// answered, a pong ignored, a close answered and reported as io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.eof {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p[:min(int64(len(p)), c.left)])
	c.left -= int64(n)
	return n, err
}

// next reads frame headers until one that starts payload bytes to return.
func (c *Conn) next() error {
	var hb [MaxHeader]byte
	if _, err := io.ReadFull(c.r, hb[:2]); err != nil {
		return err
	}
	h, need, ok, err := ParseHeader(hb[:2])
	if err != nil {
		return err
	}
	if !ok {
		if _, err := io.ReadFull(c.r, hb[2:need]); err != nil {
			return err
		}
		if h, _, _, err = ParseHeader(hb[:need]); err != nil {
			return err
		}
	}
	if h.Masked {
		return errors.New("wswire: masked server frame")
	}
	switch h.Op {
	case OpBinary, OpContinuation:
		c.left = h.Length
		return nil
	case OpText:
		return ErrText
	}
	ctl := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, ctl); err != nil {
		return err
	}
	switch h.Op {
	case OpPing:
		return c.writeFrame(OpPong, ctl)
	case OpClose:
		c.eof = true
		code := ctl[:min(2, len(ctl))]
		_ = c.writeFrame(OpClose, code)
		if len(ctl) >= 2 {
			return &CloseError{Code: uint16(ctl[0])<<8 | uint16(ctl[1]), Text: string(ctl[2:])}
		}
		return io.EOF
	}
	return nil
}

// CloseError is the close message a server sent.
type CloseError struct {
	Code uint16
	Text string
}

func (e *CloseError) Error() string { return fmt.Sprintf("wswire: closed %d %s", e.Code, e.Text) }

// Write sends b as one masked binary message.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.writeFrame(OpBinary, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *Conn) writeFrame(op byte, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var key [4]byte
	_, _ = rand.Read(key[:])
	buf := AppendMaskedHeader(c.wbuf[:0], op, len(b), key)
	h := len(buf)
	buf = append(buf, b...)
	Cipher(buf[h:], key, 0)
	_, err := c.Conn.Write(buf)
	if cap(buf) <= 64<<10 {
		c.wbuf = buf[:0]
	}
	return err
}

// Close sends a close message (1000) and closes the connection.
func (c *Conn) Close() error {
	_ = c.writeFrame(OpClose, []byte{0x03, 0xe8})
	return c.Conn.Close()
}
