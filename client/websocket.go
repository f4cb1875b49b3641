package client

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/myim/myim/internal/wswire"
)

// WebSocketConfig carries a client's connections over WebSocket, as a
// browser's are: one binary message per frame written, the same frames
// and handshakes as over TCP.
type WebSocketConfig struct {
	// Addr is the host:port of a node's --ws-addr listener. Login dials
	// its /login path and Dial its /endpoint path there, in place of the
	// TCP addresses they are given (the server list names TCP
	// listeners). Empty: the address given, with the path.
	Addr string
	// TLS, when set, connects with wss:// under this configuration.
	TLS *tls.Config
	// Origin, when set, is sent as the Origin header, as a browser would.
	Origin string
}

// dial opens a connection to addr, over WebSocket at path when the
// configuration asks for it.
func (c *Config) dial(ctx context.Context, addr, path string) (net.Conn, error) {
	if w := c.WebSocket; w != nil {
		scheme := "ws://"
		if w.TLS != nil {
			scheme = "wss://"
		}
		if w.Addr != "" {
			addr = w.Addr
		}
		return wswire.Dial(ctx, scheme+addr+path, wswire.DialConfig{TLS: w.TLS, Origin: w.Origin,
			Protocol: "myim", Dial: c.DialContext})
	}
	if c.DialContext != nil {
		return c.DialContext(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
