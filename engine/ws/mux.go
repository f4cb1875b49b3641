package ws

import (
	"github.com/myim/myim/frame"

	"github.com/myim/myim/engine"
)

// Route pairs an upgrade path with the handler of the connections that
// ask for it.
type Route struct {
	Path    string
	Handler engine.Handler
}

// Mux is an engine.Handler that serves several roles on one WebSocket
// listener, chosen by the upgrade's path: MyIM's node serves /login and
// /endpoint on one port. Its transport must be made with Config.Paths set
// to Mux.Paths, since the route is the path's index there. Each call runs
// on the connection's event loop, as the engine makes it.
type Mux struct {
	routes []Route
}

// NewMux returns a mux over routes (at most 256).
func NewMux(routes ...Route) *Mux {
	return &Mux{routes: routes[:min(len(routes), 256)]}
}

// Paths returns the routes' paths, for Config.Paths.
func (m *Mux) Paths() []string {
	p := make([]string, len(m.routes))
	for i, r := range m.routes {
		p[i] = r.Path
	}
	return p
}

func (m *Mux) handler(c *engine.Conn) engine.Handler {
	s, _ := c.Transport().(interface{ wsConn() *conn })
	if s == nil {
		return nil
	}
	if w := s.wsConn(); int(w.route) < len(m.routes) {
		return m.routes[w.route].Handler
	}
	return nil
}

// OnOpen implements engine.Handler.
func (m *Mux) OnOpen(c *engine.Conn) error {
	h := m.handler(c)
	if h == nil {
		return engine.CloseWith(engine.ReasonMalformed, ErrPath)
	}
	return h.OnOpen(c)
}

// OnFrame implements engine.Handler.
func (m *Mux) OnFrame(c *engine.Conn, f frame.Frame) error { return m.handler(c).OnFrame(c, f) }

// OnClose implements engine.Handler.
func (m *Mux) OnClose(c *engine.Conn, r engine.CloseReason) { m.handler(c).OnClose(c, r) }

// OnMail implements engine.MailHandler for the routes' handlers that do;
// for the others, b is written as it is.
func (m *Mux) OnMail(c *engine.Conn, b []byte) error {
	if mh, ok := m.handler(c).(engine.MailHandler); ok {
		return mh.OnMail(c, b)
	}
	c.Write(b)
	return nil
}
