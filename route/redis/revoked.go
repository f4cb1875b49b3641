package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/myim/myim/route"
)

// Revoked access tokens, shared by every node of a cluster through Redis:
// one sorted set, <prefix>{revoked}, member = the token's session id,
// score = until when it is refused (unix milliseconds). Entries past their
// time are trimmed on every write and read.

func (r *Table) revokedKey() string { return r.prefix + "{revoked}" }

// RevokeToken records that tokens with session id sid are refused until
// until. Revoking again keeps the later time. Safe for concurrent use.
func (r *Table) RevokeToken(ctx context.Context, sid string, until time.Time) error {
	if r.closed.Load() {
		return route.ErrClosed
	}
	key := r.revokedKey()
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	cmds := []rueidis.Completed{
		r.client.B().Zadd().Key(key).Gt().ScoreMember().ScoreMember(float64(until.UnixMilli()), sid).Build(),
		r.client.B().Zremrangebyscore().Key(key).Min("-inf").Max(now).Build(),
	}
	for _, resp := range r.client.DoMulti(ctx, cmds...) {
		if err := resp.Error(); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// RevokedTokens returns the revocations in force, session id -> until.
// Safe for concurrent use.
func (r *Table) RevokedTokens(ctx context.Context) (map[string]time.Time, error) {
	if r.closed.Load() {
		return nil, route.ErrClosed
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	zs, err := r.client.Do(ctx, r.client.B().Zrange().Key(r.revokedKey()).Min("("+now).Max("+inf").Byscore().
		Withscores().Build()).AsZScores()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		out[z.Member] = time.UnixMilli(int64(z.Score))
	}
	return out, nil
}
