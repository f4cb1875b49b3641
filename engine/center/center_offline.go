package center

import (
	"context"
	"slices"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
)

// storeAndAck keeps an undelivered message offline and, for QoS 1, acks it
// to its sender once stored, or refuses it as retryable when the store
// fails. Never an ack for what was not kept. A message forwarded by center
// origin (non-zero) is answered to that center instead.
func (c *LocalCenter) storeAndAck(buf *bytebufferpool.ByteBuffer, from, cid uint64, qos frame.QoS, to uint64, origin uint32) {
	mid := frame.Msg(frame.Frame(buf.B).Body()).MID()
	c.storingAdd(to, mid)
	select {
	case c.offline <- offlineItem{buf: buf, from: from, cid: cid, to: to, qos: qos, origin: origin}:
	default:
		c.storingDone(to, mid)
		bytebufferpool.Put(buf)
		c.refuse(from, cid, qos, mid, to, origin, "server busy; retry")
	}
}

// refuse tells a message's sender (or the center that forwarded it) to
// send it again.
func (c *LocalCenter) refuse(from, cid uint64, qos frame.QoS, mid, to uint64, origin uint32, text string) {
	c.Refused.Add(1)
	if qos != frame.QoS1 {
		return
	}
	if origin != 0 {
		c.cl.result(origin, to, mid, resultRefused)
		return
	}
	c.dedupe.forget(from, cid)
	c.errorToUser(from, frame.ErrCodeRetry, cid, text)
}

// acked tells a QoS 1 message's sender, or the center that forwarded it,
// what became of it.
func (c *LocalCenter) acked(from, cid, mid, to uint64, origin uint32, status byte) {
	if origin != 0 {
		c.cl.result(origin, to, mid, status)
		return
	}
	c.ackTo(from, cid, mid, to, status)
}

// offlineItem is a message waiting for the offline writer.
type offlineItem struct {
	buf           *bytebufferpool.ByteBuffer
	from, cid, to uint64
	qos           frame.QoS
	origin        uint32
}

// maxStoreBatch bounds one StoreOffline call: a few hundred rows per
// multi-row INSERT is where MySQL's gain from batching levels off, and it
// stays far under the driver's placeholder and packet limits.
const maxStoreBatch = 256

// offlineWriter is the one goroutine that writes undelivered messages. One
// writer keeps commits in the order messages were handed over, so that one
// sender's messages to one recipient are stored in MID order; batching whatever queued up meanwhile into one
// StoreOffline call keeps it fast (one fsync, one multi-row INSERT).
func (c *LocalCenter) offlineWriter() {
	defer c.wg.Done()
	items := make([]offlineItem, 0, maxStoreBatch)
	msgs := make([]storage.Message, 0, maxStoreBatch)
	var away []uint64  // stored for users with no session here: hinted to the other centers
	var tos []uint64   // the recipients of the batch
	var done []pendKey // the batch's (recipient, MID)
	for {
		var first offlineItem
		select {
		case first = <-c.offline:
		case <-c.stop:
			select {
			case first = <-c.offline:
			default:
				return
			}
		}
		items = collectBatch(items, first, c.offline, maxStoreBatch)
		msgs = msgs[:0]
		for _, it := range items {
			m := frame.Msg(frame.Frame(it.buf.B).Body())
			msgs = append(msgs, storage.Message{MID: m.MID(), From: m.From(), To: m.To(), Time: m.Time(),
				CID: m.CID(), Srv: m.Srv(), QoS: storedQoS(it.buf.B, it.qos), Content: m.Content()})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.cfg.Store.StoreOffline(ctx, msgs)
		cancel()
		if err != nil {
			c.cfg.Logger.Warn("offline store failed", "messages", len(items), "err", err)
		}
		tos, done = tos[:0], done[:0]
		for i, it := range items {
			switch {
			case err != nil:
				c.refuse(it.from, it.cid, it.qos, msgs[i].MID, it.to, it.origin, "store unavailable; retry")
			default:
				c.StoredOffline.Add(1)
				if it.qos == frame.QoS1 {
					c.acked(it.from, it.cid, msgs[i].MID, it.to, it.origin, frame.AckStored)
				}
			}
			tos = append(tos, it.to)
			done = append(done, pendKey{it.to, msgs[i].MID})
			bytebufferpool.Put(it.buf)
			items[i] = offlineItem{}
		}
		// Every online session of each recipient drains the store now
		// (after a failure too: the drain finds out whether anything is
		// left); only then is the message no longer on its way, in that
		// order (see drain).
		for _, to := range tos {
			c.spillTo(to)
		}
		for _, k := range done {
			c.storingDone(k.to, k.mid)
		}
		if err == nil && c.cl != nil {
			away = away[:0]
			for _, to := range tos {
				if c.routes.Lookup(to, func(route.Addr, any) {}) == 0 {
					away = append(away, to)
				}
			}
			if len(away) > 0 {
				// One hint per user per batch: the user may be online on
				// another center, whose sessions drain the store on it.
				slices.Sort(away)
				c.cl.stored(slices.Compact(away))
			}
		}
		clear(msgs)
	}
}

// collectBatch returns batch (emptied) with first and then what in holds
// now, up to limit in all: a worker takes whatever queued while it was
// busy in one go, and never waits for more.
func collectBatch[T any](batch []T, first T, in <-chan T, limit int) []T {
	batch = append(batch[:0], first)
	for len(batch) < limit {
		select {
		case x := <-in:
			batch = append(batch, x)
		default:
			return batch
		}
	}
	return batch
}
