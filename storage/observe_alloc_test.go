//go:build !race

package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// TestObserveAllocs checks that observing a call allocates nothing beyond
// what the call itself allocates.
func TestObserveAllocs(t *testing.T) {
	raw, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	s := storage.Observe(raw, func(storage.Method, time.Duration, error) {})
	ctx := context.Background()
	id, err := s.CreateUser(ctx, storage.User{Name: "ann", PassHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	base := testing.AllocsPerRun(100, func() { _, _ = raw.UserByID(ctx, id) })
	got := testing.AllocsPerRun(100, func() { _, _ = s.UserByID(ctx, id) })
	if got != base {
		t.Errorf("observed UserByID: %v allocs, unobserved %v", got, base)
	}
	base = testing.AllocsPerRun(100, func() { _, _, _ = raw.DeleteFile(ctx, id, 1) })
	got = testing.AllocsPerRun(100, func() { _, _, _ = s.DeleteFile(ctx, id, 1) })
	if got != base {
		t.Errorf("observed DeleteFile: %v allocs, unobserved %v", got, base)
	}
}
