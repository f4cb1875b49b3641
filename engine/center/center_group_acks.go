package center

import (
	"context"
	"sync"
	"time"

	"github.com/myim/myim/storage"
)

// groupAckShards spreads the group read acks waiting for their write over
// locks, by member: every member of a group acks each message of it at
// about the same instant.
const groupAckShards = 64

// maxGroupAcks bounds the acks of one store write, so that one
// transaction holds its member rows for a bounded time (on MySQL each ack
// is a few statements); a larger backlog takes several writes.
const maxGroupAcks = 1024

type groupAckKey struct{ group, user uint64 }

// groupAckShard holds, per member and group, the highest seq read and not
// yet written.
type groupAckShard struct {
	mu sync.Mutex
	m  map[groupAckKey]uint64 // guarded by mu
}

// ackGroupRead records user's read of group up to seq, for groupAckWriter
// to write. An ack that comes while an earlier one of the same member and
// group waits joins it (AckGroup keeps the highest seq, so one write of
// the highest is the same as one write per ack). Safe for concurrent use;
// never blocks on the store.
func (c *LocalCenter) ackGroupRead(group, user, seq uint64) {
	k := groupAckKey{group, user}
	sh := &c.gacks[user%groupAckShards]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[groupAckKey]uint64)
	}
	sh.m[k] = max(sh.m[k], seq)
	sh.mu.Unlock()
	select {
	case c.gackWake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// groupAckWriter writes the group read acks: each time, all that came
// since the last write, of every member and group, in one store write
// (AckGroups), so that the acks of a group message's members share one
// transaction and each message is counted once per write, not once per
// member. A failed write is logged and not retried: the members' next acks
// cover the same messages.
func (c *LocalCenter) groupAckWriter() {
	defer c.wg.Done()
	var acks []storage.GroupAck
	for {
		select {
		case <-c.gackWake:
		case <-c.stop:
			c.writeGroupAcks(acks[:0]) // what came before the stop
			return
		}
		acks = c.writeGroupAcks(acks[:0])
	}
}

// writeGroupAcks takes every waiting ack and writes them, maxGroupAcks at
// a time, and returns acks for reuse.
func (c *LocalCenter) writeGroupAcks(acks []storage.GroupAck) []storage.GroupAck {
	for i := range c.gacks {
		sh := &c.gacks[i]
		sh.mu.Lock()
		for k, seq := range sh.m {
			acks = append(acks, storage.GroupAck{Group: k.group, User: k.user, Seq: seq})
		}
		clear(sh.m)
		sh.mu.Unlock()
	}
	for lo := 0; lo < len(acks); lo += maxGroupAcks {
		part := acks[lo:min(lo+maxGroupAcks, len(acks))]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.cfg.Store.AckGroups(ctx, part)
		cancel()
		if err != nil {
			if ok, n := c.storeWarn.Allow(); ok {
				c.cfg.Logger.Warn("group acks failed", "acks", len(part), "err", err, "suppressed", n)
			}
		}
	}
	return acks[:0]
}
