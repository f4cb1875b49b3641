package route_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/route"
	"github.com/myim/myim/route/routetest"
)

func TestMemorySweep(t *testing.T) {
	m := route.NewMemory()
	defer m.Close()
	ctx := context.Background()
	start := time.Now()
	for u := range uint64(100) {
		if err := m.Set(ctx, u, route.Addr{Session: u}, routetest.TTLShort); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, 1, route.Addr{Session: 999}, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterServer(ctx, route.Server{ID: 1, Role: "center"}, routetest.TTLShort); err != nil {
		t.Fatal(err)
	}
	// A loaded machine may take longer than routetest.TTLShort to get here; only a
	// sweep that certainly ran before the first expiry must remove nothing.
	early := m.Sweep()
	if early != 0 && time.Since(start) < routetest.TTLShort {
		t.Fatalf("Sweep before expiry removed %d", early)
	}
	// The server was registered last, so once it is gone every short entry is.
	routetest.Eventually(t, 3*time.Second, func() error {
		if ss, _ := m.Servers(ctx, "center"); len(ss) != 0 {
			return fmt.Errorf("server still listed")
		}
		return nil
	})
	if n := early + m.Sweep(); n != 101 {
		t.Fatalf("Sweep removed %d entries, want 100 routes + 1 server", n)
	}
	if users := route.MemoryUsers(m); users != 1 {
		t.Fatalf("%d users left after Sweep, want 1", users)
	}
	if err := routetest.SameAddrs(routetest.MustGet(t, m, 1), []route.Addr{{Session: 999}}); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryServersAreCopies(t *testing.T) {
	m := route.NewMemory()
	defer m.Close()
	ctx := context.Background()
	key := []byte{1, 2, 3}
	if err := m.RegisterServer(ctx, route.Server{ID: 1, Role: "endpoint", StaticKey: key}, routetest.TTLLong); err != nil {
		t.Fatal(err)
	}
	key[0] = 9
	ss, _ := m.Servers(ctx, "endpoint")
	ss[0].StaticKey[1] = 9
	ss, _ = m.Servers(ctx, "endpoint")
	if string(ss[0].StaticKey) != "\x01\x02\x03" {
		t.Fatalf("stored key changed through an alias: %v", ss[0].StaticKey)
	}
}

func TestMemoryContextDone(t *testing.T) {
	m := route.NewMemory()
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Set(ctx, 1, route.Addr{}, routetest.TTLLong); err != context.Canceled {
		t.Fatalf("Set with a done context = %v", err)
	}
}
