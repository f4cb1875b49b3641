package engine

import (
	"testing"
	"time"
)

func TestLimiterBacksOffPerAccountAndAddress(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := NewLimiter(LimiterConfig{FreeFailures: 3, Base: time.Second, Max: 8 * time.Second})
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if w := l.Blocked("kim", "10.0.0.1"); w != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		l.Fail("kim", "10.0.0.1")
	}
	// The fourth failure starts the backoff, doubling up to Max.
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for _, w := range want {
		l.Fail("kim", "10.0.0.1")
		if got := l.Blocked("kim", "10.0.0.1"); got != w {
			t.Fatalf("blocked %v, want %v", got, w)
		}
	}
	// Another address is blocked by the account; another account from a
	// fresh address is not.
	if l.Blocked("kim", "10.0.0.2") == 0 || l.Blocked("lee", "10.0.0.2") != 0 {
		t.Fatal("account and address keys mixed up")
	}
	// The guessing address stays blocked for other accounts too.
	if l.Blocked("lee", "10.0.0.1") == 0 {
		t.Fatal("address not throttled")
	}
	// A good password clears the account, not the address.
	l.Succeed("kim", "10.0.0.1")
	if l.Blocked("kim", "10.0.0.2") != 0 || l.Blocked("lee", "10.0.0.1") == 0 {
		t.Fatal("success cleared the wrong key")
	}
	now = now.Add(9 * time.Second)
	if l.Blocked("lee", "10.0.0.1") != 0 {
		t.Fatal("backoff never ends")
	}
}

func TestLimiterIsBounded(t *testing.T) {
	l := NewLimiter(LimiterConfig{MaxKeys: 100})
	for i := 0; i < 10_000; i++ {
		l.Fail(string(rune('a'+i%26))+string(rune(i)), "addr")
	}
	if n := len(l.keys); n > 100 {
		t.Fatalf("%d keys kept, bound 100", n)
	}
}
