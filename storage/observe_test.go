package storage_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// TestObserveNamesEveryMethod checks that the Method table names every
// Store method but Close, once, in any order.
func TestObserveNamesEveryMethod(t *testing.T) {
	want := map[string]bool{}
	st := reflect.TypeFor[storage.Store]()
	for i := range st.NumMethod() {
		if name := st.Method(i).Name; name != "Close" {
			want[name] = true
		}
	}
	for m := range storage.MethodCount {
		if !want[m.String()] {
			t.Errorf("method %d: %q is not a Store method, or named twice", m, m.String())
		}
		delete(want, m.String())
	}
	for name := range want {
		t.Errorf("Store.%s has no Method", name)
	}
	if got := storage.MethodCount.String(); got != "unknown" {
		t.Errorf("MethodCount.String() = %q", got)
	}
}

type call struct {
	m   storage.Method
	err error
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) observe(m storage.Method, d time.Duration, err error) {
	if d < 0 {
		panic("negative duration")
	}
	r.mu.Lock()
	r.calls = append(r.calls, call{m, err})
	r.mu.Unlock()
}

func TestObserveReportsCalls(t *testing.T) {
	raw, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	s := storage.Observe(raw, rec.observe)
	defer s.Close()
	ctx := context.Background()
	id, err := s.CreateUser(ctx, storage.User{Name: "ann", PassHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.UserByID(ctx, id); err != nil || u.Name != "ann" {
		t.Fatalf("UserByID = %+v, %v", u, err)
	}
	if _, err := s.UserByName(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("UserByName(nobody) = %v", err)
	}
	if _, _, err := s.DeleteFile(ctx, id, 99); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteFile = %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	want := []storage.Method{storage.MethodCreateUser, storage.MethodUserByID, storage.MethodUserByName,
		storage.MethodDeleteFile, storage.MethodPing}
	if len(rec.calls) != len(want) {
		t.Fatalf("observed %v, want %v", rec.calls, want)
	}
	for i, c := range rec.calls {
		if c.m != want[i] {
			t.Errorf("call %d: %v, want %v", i, c.m, want[i])
		}
		if failed := c.err != nil; failed != (i == 2 || i == 3) {
			t.Errorf("call %d (%v): error %v", i, c.m, c.err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Ping after Close = %v", err)
	}
	if n := len(rec.calls); n != len(want)+1 {
		t.Fatalf("%d calls observed, want Close unobserved and Ping observed", n)
	}
}

// TestObserveForwardsEachMethod calls every Store method of an observed
// (closed) store through reflection and checks that the call reached the
// store and was reported under its own name.
func TestObserveForwardsEachMethod(t *testing.T) {
	raw, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	s := storage.Observe(raw, rec.observe)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(s)
	ctx := reflect.ValueOf(context.Background())
	st := reflect.TypeFor[storage.Store]()
	for i := range st.NumMethod() {
		name := st.Method(i).Name
		if name == "Close" {
			continue
		}
		m := v.MethodByName(name)
		args := []reflect.Value{ctx}
		for j := 1; j < m.Type().NumIn(); j++ {
			args = append(args, reflect.Zero(m.Type().In(j)))
		}
		out := m.Call(args)
		err, _ := out[len(out)-1].Interface().(error)
		if err == nil {
			t.Errorf("%s on a closed store succeeded", name)
		}
		rec.mu.Lock()
		last := rec.calls[len(rec.calls)-1]
		rec.mu.Unlock()
		if last.m.String() != name || !errors.Is(last.err, err) {
			t.Errorf("%s reported as %v with %v, returned %v", name, last.m, last.err, err)
		}
	}
	if n := len(rec.calls); n != int(storage.MethodCount) {
		t.Errorf("%d calls reported, want %d", n, storage.MethodCount)
	}
}
