package center

import "github.com/myim/myim/route"

// ID returns the center's server id.
func (c *LocalCenter) ID() uint32 { return c.cfg.ID }

// Routes returns the center's table of the sessions it holds, for
// operators and metrics to read (Len, Lookup, Range). Safe for concurrent
// use; only the center writes to it.
func (c *LocalCenter) Routes() *route.Local { return &c.routes }

// QueueStats are the lengths of a center's internal queues at one moment.
type QueueStats struct {
	// Offline is the messages waiting for the offline writer.
	Offline int
	// Jobs and JobsCap are the storage jobs queued for the center's
	// workers, and how many the queue holds before requests are refused.
	Jobs, JobsCap int
}

// Queues returns the lengths of the center's queues. Safe for concurrent
// use.
func (c *LocalCenter) Queues() QueueStats {
	return QueueStats{Offline: len(c.offline), Jobs: len(c.jobs), JobsCap: cap(c.jobs)}
}

// PendingReceipts counts pushed QoS 1 messages awaiting receipts; it takes
// each pending shard's lock in turn (a scrape, not the hot path).
func (c *LocalCenter) PendingReceipts() int {
	return c.pending.count()
}

// InFlight returns the QoS 1 messages pushed and awaiting receipts plus
// the storage jobs queued: what a stopping center waits for. Safe for
// concurrent use.
func (c *LocalCenter) InFlight() int { return c.PendingReceipts() + len(c.jobs) }
