package engine

import (
	"errors"
	"time"

	"github.com/myim/myim/frame"
)

// errNotAuthenticated closes connections that send anything but PING before
// their handshake completes.
var errNotAuthenticated = errors.New("engine: frame before handshake")

// preAuth is the handler of a listener whose peers have not authenticated:
// the engine answers PING (the note's health check), everything else is
// refused with an ERROR frame and the connection closed. A handshake
// deadline closes connections that never authenticate.
type preAuth struct{ timeout time.Duration }

func (p *preAuth) OnOpen(c *Conn) error {
	c.SetDeadline(p.timeout)
	return nil
}

func (p *preAuth) OnFrame(c *Conn, f frame.Frame) error {
	out := c.Out()
	out.B, _ = frame.AppendError(out.B, frame.ErrCodeUnauthorized, 0, "handshake required")
	return CloseWith(ReasonAuth, errNotAuthenticated)
}

func (p *preAuth) OnClose(*Conn, CloseReason) {}
