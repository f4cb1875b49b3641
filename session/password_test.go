package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testArgon2 is cheap, so that tests stay fast; one test uses the real
// parameters.
var testArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestPasswordHashVerify(t *testing.T) {
	h := must(HashPassword([]byte("hunter2"), testArgon2))(t)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") || len(strings.Split(h, "$")) != 6 {
		t.Fatalf("not a PHC string: %s", h)
	}
	if err := VerifyPassword([]byte("hunter2"), h); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := VerifyPassword([]byte("hunter3"), h); !errors.Is(err, ErrPasswordMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	if h2 := must(HashPassword([]byte("hunter2"), testArgon2))(t); h2 == h {
		t.Fatal("same salt twice")
	}
}

// The real OWASP parameters, once.
func TestPasswordDefaultParams(t *testing.T) {
	h := must(NewHasher(nil))(t)
	enc := must(h.Hash(context.Background(), []byte("correct horse battery staple")))(t)
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("PHC = %s", enc)
	}
	parts := strings.Split(enc, "$")
	if len(must(b64.DecodeString(parts[4]))(t)) != 16 || len(must(b64.DecodeString(parts[5]))(t)) != 32 {
		t.Fatal("salt or key length wrong")
	}
	if err := h.Verify(context.Background(), []byte("correct horse battery staple"), enc); err != nil {
		t.Fatal(err)
	}
	if h.NeedsRehash(enc) {
		t.Fatal("fresh hash needs rehash")
	}
}

func TestPasswordMalformed(t *testing.T) {
	good := must(HashPassword([]byte("x"), testArgon2))(t)
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for _, s := range []string{
		"", "$", "plain", with(1, "argon2i"), with(2, "v=16"),
		with(3, "m=64,t=1"), with(3, "m=64,t=1,p=1,x=2"), with(3, "m=64,t=0,p=1"),
		with(3, "m=4,t=1,p=1"), with(3, "m=4294967295,t=1,p=1"), with(3, "m=64,t=1000,p=1"),
		with(3, "m=64,t=1,p=0"), with(3, "m=64,t=1,p=300"), with(3, "m=-1,t=1,p=1"),
		with(4, "!!"), with(4, "AAAA"), with(5, "!!"), with(5, "AAAA"), good + "$",
	} {
		if err := VerifyPassword([]byte("x"), s); !errors.Is(err, ErrHashMalformed) {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := HashPassword([]byte("x"), Argon2Params{Memory: 64, Time: 1, Threads: 1}); !errors.Is(err, ErrHashMalformed) {
		t.Errorf("zero salt length: %v", err)
	}
}

func TestHasherUnknownUser(t *testing.T) {
	h := must(NewHasher(&Config{Argon2: testArgon2}))(t)
	ctx := context.Background()
	enc := must(h.Hash(ctx, []byte("pw")))(t)
	errWrong := h.Verify(ctx, []byte("nope"), enc)
	errUnknown := h.VerifyUnknown(ctx, []byte("nope"))
	if !errors.Is(errWrong, ErrPasswordMismatch) || errUnknown != errWrong {
		t.Fatalf("wrong password %v, unknown user %v: must be the same error", errWrong, errUnknown)
	}
	if !h.NeedsRehash(must(HashPassword([]byte("pw"), Argon2Params{Memory: 128, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))(t)) {
		t.Fatal("other params do not need rehash")
	}
}

// The dummy path does the same argon2 work as a real check.
func TestHasherUnknownUserTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	p := Argon2Params{Memory: 4096, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
	h := must(NewHasher(&Config{Argon2: p}))(t)
	ctx := context.Background()
	enc := must(h.Hash(ctx, []byte("pw")))(t)
	// The work is compared as the process's CPU time, not wall time, so
	// that other processes on a busy machine do not move it; the least of
	// several runs leaves out a collection that lands in one of them.
	best := func(f func()) time.Duration {
		min := time.Duration(1 << 62)
		for i := 0; i < 7; i++ {
			start := processCPU()
			f()
			if d := processCPU() - start; d < min {
				min = d
			}
		}
		return min
	}
	known := best(func() { _ = h.Verify(ctx, []byte("x"), enc) })
	unknown := best(func() { _ = h.VerifyUnknown(ctx, []byte("x")) })
	if unknown < known/2 || unknown > known*2 {
		t.Fatalf("known user %v, unknown user %v", known, unknown)
	}
}

func TestHasherConcurrencyCap(t *testing.T) {
	const limit = 2
	h := must(NewHasher(&Config{Argon2: testArgon2, HashConcurrency: limit}))(t)
	var active, peak atomic.Int32
	h.inSlot = func() {
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // widen the window for overlap
		active.Add(-1)
	}
	enc := must(HashPassword([]byte("pw"), testArgon2))(t)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Verify(context.Background(), []byte("pw"), enc); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := peak.Load(); got > limit || got < 1 {
		t.Fatalf("peak concurrency %d, cap %d", got, limit)
	}
}

func TestHasherQueueTimeout(t *testing.T) {
	h := must(NewHasher(&Config{Argon2: testArgon2, HashConcurrency: 1}))(t)
	release := make(chan struct{})
	held := make(chan struct{})
	h.inSlot = func() {
		h.inSlot = nil // only the first caller blocks
		close(held)
		<-release
	}
	go func() { _, _ = h.Hash(context.Background(), []byte("a")) }()
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := h.VerifyUnknown(ctx, []byte("b"))
	if !errors.Is(err, ErrHasherBusy) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued past deadline: %v", err)
	}
	close(release)
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := h.Hash(done, []byte("c")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}
