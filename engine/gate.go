package engine

import "sync/atomic"

// ConnGate caps the connections of several servers together. Listeners
// that carry the same sessions (an endpoint's TCP and WebSocket listeners)
// draw on one budget through it, instead of each holding a fixed share of
// the process's files: files a listener nobody uses would keep stay
// available to the other. Safe for concurrent use.
type ConnGate struct {
	max int64
	n   atomic.Int64
}

// NewConnGate returns a gate admitting at most n connections (at least 1).
func NewConnGate(n int) *ConnGate { return &ConnGate{max: int64(max(n, 1))} }

// Max returns the gate's cap.
func (g *ConnGate) Max() int { return int(g.max) }

// Conns returns the connections held through the gate, refused ones
// included until they are closed.
func (g *ConnGate) Conns() int64 { return g.n.Load() }

// enter counts a connection and reports whether it fits; every enter is
// matched by one leave, whatever it reported.
func (g *ConnGate) enter() bool { return g.n.Add(1) <= g.max }

func (g *ConnGate) leave() { g.n.Add(-1) }
