package redis

import (
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route/routetest"
)

// TestRevokedTokens: a revocation written by one client is read by
// another, revoking again keeps the later time, and a lapsed one is gone.
func TestRevokedTokens(t *testing.T) {
	t.Parallel()
	prefix := testenv.RedisPrefix(t, testenv.RedisAddr(t))
	a := startRedis(t, Options{Prefix: prefix})
	b := startRedis(t, Options{Prefix: prefix})
	ctx := routetest.Context(t)
	later := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := a.RevokeToken(ctx, "sid-1", later); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeToken(ctx, "sid-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeToken(ctx, "sid-2", time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	got, err := b.RevokedTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["sid-1"].Equal(later) {
		t.Fatalf("revoked %v", got)
	}
	routetest.Eventually(t, 5*time.Second, func() error {
		got, err := b.RevokedTokens(ctx)
		if err == nil && (len(got) != 1 || !got["sid-1"].Equal(later)) {
			return fmt.Errorf("revoked %v, want sid-1 only", got)
		}
		return err
	})
}
