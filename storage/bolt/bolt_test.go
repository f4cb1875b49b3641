package bolt

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, false) }, stores.Reopen)
}

func BenchmarkStoreOffline(b *testing.B) {
	storagetest.BenchStoreOffline(b, func(tb testing.TB) storage.Store { return newStore(tb, false) })
}

func BenchmarkFetchDelete(b *testing.B) {
	storagetest.BenchFetchDelete(b, func(tb testing.TB) storage.Store { return newStore(tb, false) })
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	stores.Open(t, Config{Dir: dir})
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
// stores opens the tests' stores and reopens them on the same data.
var stores = storagetest.NewOpener(func(cfg Config) (storage.Store, error) { return Open(cfg) })

// newStore opens a store in a fresh temporary directory.
func newStore(tb testing.TB, noSync bool) storage.Store {
	tb.Helper()
	return stores.Open(tb, Config{Dir: tb.TempDir(), NoSync: noSync})
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
