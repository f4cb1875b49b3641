// Package enginetest holds what the reactor's tests and the tests of the
// roles built on it share: a reactor on a loopback port and a connection
// to it, both closed when the test ends.
package enginetest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/myim/myim/engine"
)

// StartServer runs a reactor with handler h on a loopback port (two loops
// unless opts say otherwise), stopped when the test ends.
func StartServer(t testing.TB, h engine.Handler, opts ...engine.Option) *engine.Server {
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

// Dial opens a TCP connection to s, closed when the test ends.
func Dial(t testing.TB, s *engine.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Eventually waits up to within for cond to hold, failing the test if it
// does not.
func Eventually(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
