package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/myim/myim/route"
)

// serverRecord is a Server as stored in the registry.
type serverRecord struct {
	ID        uint32 `json:"id"`
	Role      string `json:"role"`
	Addr      string `json:"addr"`
	WSAddr    string `json:"ws,omitempty"`
	Priority  int    `json:"prio"`
	Load      int    `json:"load"`
	StaticKey []byte `json:"key,omitempty"`
	Cert      []byte `json:"cert,omitempty"`
	Updated   int64  `json:"upd"`
	Expires   int64  `json:"exp"` // Unix ms
	Info      []byte `json:"info,omitempty"`
}

// roleKey returns <prefix>{servers}:<role>.
func (r *Table) roleKey(role string) string { return r.prefix + "{servers}:" + role }

// indexKey returns <prefix>{servers}:index, the id → role hash.
func (r *Table) indexKey() string { return r.prefix + "{servers}:index" }

// casAttempts bounds the read-then-compare-and-set loops of the registry. A
// conflict means another process wrote the same server id between our read
// and our script, which only a misconfiguration (two servers sharing an id)
// does repeatedly.
const casAttempts = 4

// registerScript stores a server record under its role and in the index,
// removing it from its previous role, but only if the index still says the
// previous role is ARGV[4] (returns 0 otherwise, and the caller retries). It
// also drops expired records of the role it writes to, so that role hashes
// do not grow with servers that died without unregistering.
//
// KEYS[1] role key; KEYS[2] index key; KEYS[3] previous role key (any key
// of the registry when there is none). ARGV[1] id; ARGV[2] role; ARGV[3]
// record; ARGV[4] previous role or ""; ARGV[5] now ms.
var registerScript = rueidis.NewLuaScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if cur ~= ARGV[4] then return 0 end
if cur ~= '' and cur ~= ARGV[2] then redis.call('HDEL', KEYS[3], ARGV[1]) end
local now = tonumber(ARGV[5])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
	local ok, rec = pcall(cjson.decode, all[i+1])
	if ok and type(rec) == 'table' and tonumber(rec.exp) and tonumber(rec.exp) <= now then
		redis.call('HDEL', KEYS[1], all[i])
		if redis.call('HGET', KEYS[2], all[i]) == ARGV[2] then
			redis.call('HDEL', KEYS[2], all[i])
		end
	end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`)

// unregisterScript removes server ARGV[1] from role key KEYS[1] and the
// index KEYS[2] if the index still says its role is ARGV[2]; it returns 0
// when the index says otherwise (the caller retries) and 1 when done or
// already gone.
var unregisterScript = rueidis.NewLuaScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return 1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`)

// pruneServerScript removes server ARGV[1] from role key KEYS[1] if its
// record is still exactly ARGV[2] (the expired one a reader saw), and from
// the index KEYS[2] if the index still maps it to role ARGV[3].
var pruneServerScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
	redis.call('HDEL', KEYS[1], ARGV[1])
	if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[3] then
		redis.call('HDEL', KEYS[2], ARGV[1])
	end
end
return 1
`)

// indexRole returns the role the index holds for id, or "" if none.
func (r *Table) indexRole(ctx context.Context, id string) (string, error) {
	role, err := r.client.Do(ctx, r.client.B().Hget().Key(r.indexKey()).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", nil
	}
	return role, err
}

// RegisterServer implements Table. Safe for concurrent use.
func (r *Table) RegisterServer(ctx context.Context, s route.Server, ttl time.Duration) error {
	if r.closed.Load() {
		return route.ErrClosed
	}
	if ttl <= 0 {
		return route.ErrInvalidTTL
	}
	if !route.ValidServer(&s) {
		return route.ErrInvalidServer
	}
	now := nowMs()
	rec, err := json.Marshal(serverRecord{
		ID: s.ID, Role: s.Role, Addr: s.Addr, WSAddr: s.WSAddr, Priority: s.Priority, Load: s.Load,
		StaticKey: s.StaticKey, Cert: s.Cert, Updated: now, Expires: now + ttlMs(ttl), Info: s.Info,
	})
	if err != nil {
		return fmt.Errorf("route: encode server: %w", err)
	}
	id := strconv.FormatUint(uint64(s.ID), 10)
	for range casAttempts {
		prev, err := r.indexRole(ctx, id)
		if err != nil {
			return unavailable(err)
		}
		prevKey := r.roleKey(s.Role)
		if prev != "" {
			prevKey = r.roleKey(prev)
		}
		n, err := registerScript.Exec(ctx, r.client,
			[]string{r.roleKey(s.Role), r.indexKey(), prevKey},
			[]string{id, s.Role, string(rec), prev, strconv.FormatInt(now, 10)},
		).AsInt64()
		if err != nil {
			return unavailable(err)
		}
		if n == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: server %d is being registered concurrently", route.ErrUnavailable, s.ID)
}

// Servers implements Table. Expired records seen on the way are removed
// (best effort). Safe for concurrent use.
func (r *Table) Servers(ctx context.Context, role string) ([]route.Server, error) {
	if r.closed.Load() {
		return nil, route.ErrClosed
	}
	key := r.roleKey(role)
	recs, err := r.client.Do(ctx, r.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, unavailable(err)
	}
	now := nowMs()
	out := make([]route.Server, 0, len(recs))
	var dead []rueidis.LuaExec
	for id, raw := range recs {
		var rec serverRecord
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			continue // not ours to interpret; left for an operator
		}
		if rec.Expires <= now {
			dead = append(dead, rueidis.LuaExec{
				Keys: []string{key, r.indexKey()},
				Args: []string{id, raw, role},
			})
			continue
		}
		out = append(out, route.Server{
			ID: rec.ID, Role: rec.Role, Addr: rec.Addr, WSAddr: rec.WSAddr, Priority: rec.Priority, Load: rec.Load,
			StaticKey: rec.StaticKey, Cert: rec.Cert, Updated: rec.Updated, Info: rec.Info,
		})
	}
	if len(dead) > 0 {
		_ = pruneServerScript.ExecMulti(ctx, r.client, dead...)
	}
	route.SortServers(out)
	return out, nil
}

// UnregisterServer implements Table. Safe for concurrent use.
func (r *Table) UnregisterServer(ctx context.Context, id uint32) error {
	if r.closed.Load() {
		return route.ErrClosed
	}
	sid := strconv.FormatUint(uint64(id), 10)
	for range casAttempts {
		role, err := r.indexRole(ctx, sid)
		if err != nil {
			return unavailable(err)
		}
		if role == "" {
			return nil
		}
		n, err := unregisterScript.Exec(ctx, r.client,
			[]string{r.roleKey(role), r.indexKey()},
			[]string{sid, role},
		).AsInt64()
		if err != nil {
			return unavailable(err)
		}
		if n == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: server %d is being re-registered concurrently", route.ErrUnavailable, id)
}
