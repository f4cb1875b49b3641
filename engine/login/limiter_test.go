package login

import (
	"errors"
	"testing"
	"time"
)

func testLimiter(cfg LimiterConfig) (*Limiter, *time.Time) {
	now := time.Unix(1_000_000, 0)
	l := NewLimiter(cfg)
	l.now = func() time.Time { return now }
	return l, &now
}

// fail runs one whole failed attempt, or returns why it was refused.
func (l *Limiter) fail(account, addr string) (time.Duration, error) {
	a, wait, err := l.Reserve(account, addr)
	if err != nil {
		return wait, err
	}
	if wait, err := a.Account(nil); err != nil {
		a.Cancel()
		return wait, err
	}
	a.Failed()
	return 0, nil
}

func TestLimiterBacksOffPerPair(t *testing.T) {
	l, now := testLimiter(LimiterConfig{FreeFailures: 3, Base: time.Second, Max: 8 * time.Second})
	for i := 0; i < 3; i++ {
		if _, err := l.fail("kim", "10.0.0.1"); err != nil {
			t.Fatalf("refused after %d failures: %v", i, err)
		}
	}
	// Past the free failures the pair backs off, doubling up to Max.
	for _, w := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		got, err := l.fail("kim", "10.0.0.1")
		if !errors.Is(err, ErrLoginBackoff) || got != w {
			t.Fatalf("refusal %v %v, want backoff %v", got, err, w)
		}
		*now = now.Add(w)
		if _, err := l.fail("kim", "10.0.0.1"); err != nil {
			t.Fatalf("still refused after the backoff: %v", err)
		}
	}
	// The same account from another address, and another account from the
	// guessing address, are not locked by the pair.
	if _, err := l.fail("kim", "10.0.0.2"); err != nil {
		t.Fatalf("another address locked out: %v", err)
	}
	if _, err := l.fail("lee", "10.0.0.1"); err != nil {
		t.Fatalf("another account locked out: %v", err)
	}
}

func TestLimiterReservesBeforeTheCheck(t *testing.T) {
	l, _ := testLimiter(LimiterConfig{FreeFailures: 3, Base: time.Minute, MaxInFlightAddress: 100})
	// Reserved attempts count as failures while in flight: with one
	// attempt per account at a time, the fourth reservation on the pair
	// is refused even though no attempt has failed yet.
	var held []*Attempt
	for i := 0; i < 3; i++ {
		a, _, err := l.Reserve("kim", "10.0.0.1")
		if err != nil {
			t.Fatalf("reservation %d refused: %v", i, err)
		}
		held = append(held, a)
	}
	if _, _, err := l.Reserve("kim", "10.0.0.1"); !errors.Is(err, ErrLoginBackoff) {
		t.Fatalf("fourth reservation: %v, want backoff", err)
	}
	// One account attempt in flight at a time.
	if _, err := held[0].Account(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := held[1].Account(nil); !errors.Is(err, ErrLoginBusy) {
		t.Fatalf("second in-flight attempt on the account: %v, want busy", err)
	}
	// Cancelled attempts give their counts back; a success clears the pair.
	held[1].Cancel()
	held[2].Cancel()
	held[0].Succeeded()
	for i := 0; i < 3; i++ {
		if _, err := l.fail("kim", "10.0.0.1"); err != nil {
			t.Fatalf("after a success, attempt %d refused: %v", i, err)
		}
	}
}

func TestLimiterCapsInFlightPerAddress(t *testing.T) {
	l, _ := testLimiter(LimiterConfig{MaxInFlightAddress: 2})
	a1, _, _ := l.Reserve("a", "10.0.0.1")
	a2, _, _ := l.Reserve("b", "10.0.0.1")
	if _, _, err := l.Reserve("c", "10.0.0.1"); !errors.Is(err, ErrLoginBusy) {
		t.Fatalf("third in-flight attempt from the address: %v", err)
	}
	if _, _, err := l.Reserve("c", "10.0.0.2"); err != nil {
		t.Fatalf("another address refused: %v", err)
	}
	a1.Failed()
	if _, _, err := l.Reserve("c", "10.0.0.1"); err != nil {
		t.Fatalf("refused after a slot freed: %v", err)
	}
	a2.Cancel()
}

func TestLimiterAccountSparesKnownDevices(t *testing.T) {
	l, _ := testLimiter(LimiterConfig{AccountFreeFailures: 4, AccountStep: 2, Base: time.Minute, Max: time.Hour})
	// Failures from many addresses, two each: no pair locks.
	for i := 0; i < 4; i++ {
		if _, err := l.fail("kim", "10.0.1."+string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
	}
	a, _, err := l.Reserve("kim", "10.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if w, err := a.Account(func() bool { return false }); !errors.Is(err, ErrLoginBackoff) || w != time.Minute {
		t.Fatalf("unknown device: %v %v, want a minute's backoff", w, err)
	}
	if _, err := a.Account(func() bool { return true }); err != nil || !a.KnownDevice() {
		t.Fatalf("known device refused: %v", err)
	}
	a.Succeeded()
}

func TestLimiterIsBounded(t *testing.T) {
	l := NewLimiter(LimiterConfig{MaxKeys: 100})
	for i := 0; i < 10_000; i++ {
		_, _ = l.fail(string(rune(i)), string(rune(1000+i)))
	}
	if n := len(l.keys); n > 100 {
		t.Fatalf("%d keys kept, bound 100", n)
	}
}
