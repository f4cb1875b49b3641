package login_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/myim/myim/engine"
)

// startServer runs a reactor with handler h on a loopback port, stopped when
// the test ends.
func startServer(t testing.TB, h engine.Handler, opts ...engine.Option) *engine.Server {
	t.Helper()
	opts = append([]engine.Option{engine.WithAddr("tcp://127.0.0.1:0"), engine.WithLoops(2)}, opts...)
	s := engine.New(h, opts...)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// dial opens a TCP connection to s, closed when the test ends.
func dial(t testing.TB, s *engine.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
