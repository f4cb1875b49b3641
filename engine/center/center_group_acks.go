package center

import (
	"context"
	"sync"
	"time"
)

// groupAckShards spreads the group read acks waiting for a worker over
// locks, by member: every member of a group acks each message of it at
// about the same instant.
const groupAckShards = 64

type groupAckKey struct{ group, user uint64 }

// groupAckShard holds, per member and group, the highest seq read and not
// yet written, while its write waits for a worker.
type groupAckShard struct {
	mu sync.Mutex
	m  map[groupAckKey]uint64 // guarded by mu
}

// ackGroupRead writes user's read of group up to seq to the store on a
// worker. A read ack that comes while an earlier one of the same member
// and group still waits for its worker joins it (AckGroup keeps the
// highest seq, so one write of the highest is the same as one write per
// ack): a member that acks the messages it got in one write costs one
// store write. When the workers' queue is full the ack is not written, as
// before; the member's next ack covers it. Safe for concurrent use.
func (c *LocalCenter) ackGroupRead(group, user, seq uint64) {
	k := groupAckKey{group, user}
	sh := &c.gacks[user%groupAckShards]
	sh.mu.Lock()
	if cur, waiting := sh.m[k]; waiting {
		sh.m[k] = max(cur, seq)
		sh.mu.Unlock()
		return
	}
	if sh.m == nil {
		sh.m = make(map[groupAckKey]uint64)
	}
	sh.m[k] = seq
	sh.mu.Unlock()
	if !c.submit(func() { c.writeGroupAck(sh, k) }) {
		sh.mu.Lock()
		delete(sh.m, k)
		sh.mu.Unlock()
	}
}

// writeGroupAck writes the highest seq waiting for k. Worker only.
func (c *LocalCenter) writeGroupAck(sh *groupAckShard, k groupAckKey) {
	sh.mu.Lock()
	seq := sh.m[k]
	delete(sh.m, k)
	sh.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.cfg.Store.AckGroup(ctx, k.group, k.user, seq); err != nil {
		if ok, n := c.storeWarn.Allow(); ok {
			c.cfg.Logger.Warn("group ack failed", "group", k.group, "user", k.user, "err", err, "suppressed", n)
		}
	}
}
