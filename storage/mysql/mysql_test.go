package mysql

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t) }, reopenStore)
}

func BenchmarkStoreOffline(b *testing.B) { storagetest.BenchStoreOffline(b, newStore) }

func BenchmarkFetchDelete(b *testing.B) { storagetest.BenchFetchDelete(b, newStore) }

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"refused", "127.0.0.1:1"},
		{"unroutable", "10.255.255.1:3306"}, // TEST-NET-ish: the dial times out
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := Open(Config{DSN: "root@tcp(" + tc.addr + ")/myim", DialTimeout: 300 * time.Millisecond})
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("error %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	t.Run("badDSN", func(t *testing.T) {
		_, err := Open(Config{DSN: "root:secret@tcp(127.0.0.1:3306"})
		if err == nil || errors.Is(err, storage.ErrUnavailable) || strings.Contains(err.Error(), "secret") {
			t.Fatalf("bad DSN: %v", err)
		}
	})
}

// opened remembers the Config each test store was opened with, so that
// reopenStore can open the same data again.
var opened sync.Map // storage.Store -> Config

// newStore opens a store on a database of the test's own on the test
// MySQL server, dropped when the test ends.
func newStore(tb testing.TB) storage.Store {
	tb.Helper()
	return openTestStore(tb, Config{DSN: testenv.MySQLDatabase(tb)})
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

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
