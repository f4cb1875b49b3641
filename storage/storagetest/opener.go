package storagetest

import (
	"sync"
	"testing"

	"github.com/myim/myim/storage"
)

// Opener opens a driver's stores for tests and remembers the config of
// each, so that a test can close one and open the same data again (Run's
// reopen). Stores are closed when their test ends. Safe for concurrent use.
type Opener[C any] struct {
	open   func(C) (storage.Store, error)
	opened sync.Map // storage.Store -> C
}

// NewOpener returns an Opener over a driver's open function.
func NewOpener[C any](open func(C) (storage.Store, error)) *Opener[C] {
	return &Opener[C]{open: open}
}

// Open opens a store with cfg, failing tb on an error.
func (o *Opener[C]) Open(tb testing.TB, cfg C) storage.Store {
	tb.Helper()
	s, err := o.open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	o.opened.Store(s, cfg)
	tb.Cleanup(func() { o.Close(tb, s) })
	return s
}

// Close closes s unless it was closed already.
func (o *Opener[C]) Close(tb testing.TB, s storage.Store) {
	if _, ok := o.opened.LoadAndDelete(s); ok {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	}
}

// Config returns the config s was opened with.
func (o *Opener[C]) Config(tb testing.TB, s storage.Store) C {
	tb.Helper()
	v, ok := o.opened.Load(s)
	if !ok {
		tb.Fatal("storagetest: a store this Opener did not open")
	}
	return v.(C)
}

// Reopen closes s and opens the same data again.
func (o *Opener[C]) Reopen(t *testing.T, s storage.Store) storage.Store {
	t.Helper()
	cfg := o.Config(t, s)
	o.Close(t, s)
	return o.Open(t, cfg)
}
