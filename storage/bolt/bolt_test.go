package bolt

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, false) }, reopenStore)
}

func BenchmarkStoreOffline(b *testing.B) {
	storagetest.BenchStoreOffline(b, func(tb testing.TB) storage.Store { return newStore(tb, false) })
}

func BenchmarkFetchDelete(b *testing.B) {
	storagetest.BenchFetchDelete(b, func(tb testing.TB) storage.Store { return newStore(tb, false) })
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openTestStore(t, Config{Dir: dir})
	start := time.Now()
	_, err := Open(Config{Dir: dir, LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("second open: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

// opened remembers the Config each test store was opened with, so that
// reopenStore can open the same data again.
var opened sync.Map // storage.Store -> Config

// newStore opens a store in a fresh temporary directory.
func newStore(tb testing.TB, noSync bool) storage.Store {
	tb.Helper()
	return openTestStore(tb, Config{Dir: tb.TempDir(), NoSync: noSync})
}

func openTestStore(tb testing.TB, cfg Config) storage.Store {
	tb.Helper()
	s, err := Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	opened.Store(s, cfg)
	tb.Cleanup(func() { closeStore(tb, s) })
	return s
}

func closeStore(tb testing.TB, s storage.Store) {
	if _, ok := opened.LoadAndDelete(s); ok {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	}
}

// reopenStore closes s and opens the same data again.
func reopenStore(t *testing.T, s storage.Store) storage.Store {
	t.Helper()
	v, ok := opened.Load(s)
	if !ok {
		t.Fatal("reopen: unknown store")
	}
	closeStore(t, s)
	return openTestStore(t, v.(Config))
}

// must(f()).of(t) returns f's value, failing t if f returned an error.
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) of(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}
