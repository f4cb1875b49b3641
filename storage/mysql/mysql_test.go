package mysql

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t) }, stores.Reopen)
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
// stores opens the tests' stores and reopens them on the same data.
var stores = storagetest.NewOpener(func(cfg Config) (storage.Store, error) { return Open(cfg) })

// newStore opens a store on a database of the test's own on the test
// MySQL server, dropped when the test ends.
func newStore(tb testing.TB) storage.Store {
	tb.Helper()
	return stores.Open(tb, Config{DSN: testenv.MySQLDatabase(tb)})
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
