package route

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestMemorySweep(t *testing.T) {
	m := NewMemory()
	defer m.Close()
	ctx := context.Background()
	start := time.Now()
	for u := range uint64(100) {
		if err := m.Set(ctx, u, Addr{Session: u}, ttlShort); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, 1, Addr{Session: 999}, ttlLong); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterServer(ctx, Server{ID: 1, Role: "center"}, ttlShort); err != nil {
		t.Fatal(err)
	}
	// A loaded machine may take longer than ttlShort to get here; only a
	// sweep that certainly ran before the first expiry must remove nothing.
	early := m.Sweep()
	if early != 0 && time.Since(start) < ttlShort {
		t.Fatalf("Sweep before expiry removed %d", early)
	}
	// The server was registered last, so once it is gone every short entry is.
	eventually(t, 3*time.Second, func() error {
		if ss, _ := m.Servers(ctx, "center"); len(ss) != 0 {
			return fmt.Errorf("server still listed")
		}
		return nil
	})
	if n := early + m.Sweep(); n != 101 {
		t.Fatalf("Sweep removed %d entries, want 100 routes + 1 server", n)
	}
	users := 0
	for i := range m.shards {
		users += len(m.shards[i].users)
	}
	if users != 1 {
		t.Fatalf("%d users left after Sweep, want 1", users)
	}
	if err := sameAddrs(mustGet(t, m, 1), []Addr{{Session: 999}}); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryServersAreCopies(t *testing.T) {
	m := NewMemory()
	defer m.Close()
	ctx := context.Background()
	key := []byte{1, 2, 3}
	if err := m.RegisterServer(ctx, Server{ID: 1, Role: "endpoint", StaticKey: key}, ttlLong); err != nil {
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
	m := NewMemory()
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Set(ctx, 1, Addr{}, ttlLong); err != context.Canceled {
		t.Fatalf("Set with a done context = %v", err)
	}
}
