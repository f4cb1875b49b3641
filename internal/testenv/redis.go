package testenv

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// DefaultRedisAddr is the test Redis when MYIM_TEST_REDIS_ADDR is not set.
const DefaultRedisAddr = "127.0.0.1:6379"

// RedisAddr returns the address of the shared test Redis,
// MYIM_TEST_REDIS_ADDR or DefaultRedisAddr, once it has answered a
// handshake. When it does not, the test is skipped, or fails under CI.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := envOr("MYIM_TEST_REDIS_ADDR", DefaultRedisAddr)
	c, err := redisClient(addr)
	if err != nil {
		Unavailable(t, "redis at %s unreachable (set MYIM_TEST_REDIS_ADDR): %v", addr, err)
	}
	c.Close()
	return addr
}

// RedisPrefix returns a key prefix no other test run uses,
// "myimtest:<random>:", and deletes every key under it on the Redis at addr
// when the test ends. Cleanups run last first, so whatever the test starts
// after this call (tables, servers writing under the prefix) is stopped
// before the keys are deleted.
func RedisPrefix(t testing.TB, addr string) string {
	t.Helper()
	prefix := randomName(t, "myimtest:") + ":"
	t.Cleanup(func() { DeleteRedisPrefix(t, addr, prefix) })
	return prefix
}

// DeleteRedisPrefix deletes every key starting with prefix on the Redis at
// addr, over a connection of its own, so that it works whatever state the
// clients under test are in. Errors are reported with t.Errorf.
func DeleteRedisPrefix(t testing.TB, addr, prefix string) {
	t.Helper()
	c, err := redisClient(addr)
	if err != nil {
		t.Errorf("cleanup of %s*: %v", prefix, err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Errorf("cleanup scan %s*: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			// One DEL a key, pipelined: a failure names its key.
			dels := make(rueidis.Commands, len(e.Elements))
			for i, k := range e.Elements {
				dels[i] = c.B().Del().Key(k).Build()
			}
			for i, res := range c.DoMulti(ctx, dels...) {
				if err := res.Error(); err != nil {
					t.Errorf("cleanup del %s: %v", e.Elements[i], err)
				}
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// redisClient connects a client without client-side caching; NewClient
// returns only after a handshake with the server.
func redisClient(addr string) (rueidis.Client, error) {
	return rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true,
		Dialer: net.Dialer{Timeout: 2 * time.Second}})
}
