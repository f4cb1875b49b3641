package engine

import (
	"errors"
	"time"

	"github.com/myim/myim/frame"
)

// ErrNotAuthenticated closes connections that send anything but PING before
// their handshake completes. Handlers that authenticate their peers close
// with it (and ReasonAuth) too.
var ErrNotAuthenticated = errors.New("engine: frame before handshake")

// preAuth is the handler of a listener whose peers have not authenticated:
// the engine answers PING (the note's health check), everything else is
// refused with an ERROR frame and the connection closed. A handshake
// deadline closes connections that never authenticate.
type preAuth struct{ timeout time.Duration }

// PreAuthHandler returns the handler of a listener that serves no role yet:
// it answers PING, refuses every other frame with an ERROR frame
// (unauthorized) and closes the connection, and closes connections still
// open after timeout.
func PreAuthHandler(timeout time.Duration) Handler { return &preAuth{timeout: timeout} }

func (p *preAuth) OnOpen(c *Conn) error {
	c.SetDeadline(p.timeout)
	return nil
}

func (p *preAuth) OnFrame(c *Conn, f frame.Frame) error {
	out := c.Out()
	out.B, _ = frame.AppendError(out.B, frame.ErrCodeUnauthorized, 0, "handshake required")
	return CloseWith(ReasonAuth, ErrNotAuthenticated)
}

func (p *preAuth) OnClose(*Conn, CloseReason) {}
