package center

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// Bounds of one lane batch: what a lane gathers while its previous store
// write ran goes to the store in one write (AppendGroupMsgs). 256 messages
// keep a batch's acks and pushes within a few milliseconds of work; 1 MiB
// of content keeps one transaction (one multi-row INSERT on MySQL) far
// below max_allowed_packet. A single larger message is a batch of its own.
const (
	maxGroupBatch      = 256
	maxGroupBatchBytes = 1 << 20
)

// groupReq is a GROUP_MSG waiting on its lane: the sender and its session,
// and the frame, which the lane returns to the pool.
type groupReq struct {
	user uint64
	s    im.SessionRef
	buf  *bytebufferpool.ByteBuffer
}

// startLanes starts the group lanes: a group's messages are appended and
// pushed by one lane, so that every member receives them in sequence order
// (appends running side by side would commit in one order and push in
// another). Lanes run side by side for different groups. A lane takes
// what arrived while it was busy as one batch: one members read per group,
// one store write, then the acks and the pushes in sequence order.
func (c *LocalCenter) startLanes() {
	n := c.cfg.Workers
	c.lanes = make([]chan groupReq, n)
	for i := range c.lanes {
		c.lanes[i] = make(chan groupReq, max(c.cfg.QueueLen/n, 64))
		c.wg.Add(1)
		go c.lane(c.lanes[i])
	}
}

func (c *LocalCenter) lane(in chan groupReq) {
	defer c.wg.Done()
	var lb laneBatch
	for {
		select {
		case r := <-in:
			c.runBatch(&lb, r, in)
		case <-c.stop:
			for {
				select {
				case r := <-in:
					c.runBatch(&lb, r, in)
				default:
					return
				}
			}
		}
	}
}

// runBatch gathers, after first, what in holds (within the batch bounds)
// and stores and pushes it all.
func (c *LocalCenter) runBatch(lb *laneBatch, first groupReq, in chan groupReq) {
	lb.reqs = append(lb.reqs[:0], first)
	size := len(first.buf.B)
gather:
	for len(lb.reqs) < maxGroupBatch && size < maxGroupBatchBytes {
		select {
		case r := <-in:
			lb.reqs = append(lb.reqs, r)
			size += len(r.buf.B)
		default:
			break gather
		}
	}
	for len(lb.reqs) > 0 {
		c.appendGroupBatch(lb)
		for i := range lb.reqs {
			if lb.reqs[i].buf != nil {
				bytebufferpool.Put(lb.reqs[i].buf)
			}
			lb.reqs[i] = groupReq{}
		}
		lb.reqs, lb.later = lb.later, lb.reqs[:0]
	}
}

// groupMsg queues a group message on its group's lane, or refuses it BUSY
// when the lane is full. On the lane it is stored under the group's next
// sequence number, the sender is acked once it is kept, and it is pushed
// to the online members. Offline members fetch it; each member's receipt
// adds to its sent count. A resend (same sender and CID, after a lost ACK
// or a center failover) is acked DUPLICATE with the original number while
// this center remembers it.
func (c *LocalCenter) groupMsg(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	f := frame.Frame(buf.B)
	group := frame.Msg(f.Body()).To()
	select {
	case c.lanes[group%uint64(len(c.lanes))] <- groupReq{user, s, buf}:
	default:
		cid := frame.Msg(f.Body()).CID()
		bytebufferpool.Put(buf)
		c.refuseErr(s, cid, errBusy)
	}
}

// laneBatch is a lane's batch and the scratch it reuses from one batch to
// the next. Owned by its lane.
type laneBatch struct {
	reqs  []groupReq
	later []groupReq             // resends of a message of the batch: the next batch, once it is remembered
	keep  []int                  // the reqs to store, in order; ms[i] is reqs[keep[i]]'s
	ms    []storage.GroupMessage // what the store appends
	rost  []groupRoster          // the members of each group of the batch
	fr    [][]byte               // one group's frames, for fanout
}

// groupRoster is a group's members as one batch read them.
type groupRoster struct {
	group   uint64
	members []storage.Member
	err     error
}

// roster returns group's members, read once per batch.
func (lb *laneBatch) roster(ctx context.Context, st storage.Groups, group uint64) *groupRoster {
	for i := range lb.rost {
		if lb.rost[i].group == group {
			return &lb.rost[i]
		}
	}
	ms, err := st.GroupMembers(ctx, group)
	lb.rost = append(lb.rost, groupRoster{group: group, members: ms, err: err})
	return &lb.rost[len(lb.rost)-1]
}

// appendGroupBatch checks each message of the batch (resend, sender a
// member), stores those that pass in one write, acks them and pushes them,
// each group's in sequence order.
func (c *LocalCenter) appendGroupBatch(lb *laneBatch) {
	lb.keep, lb.ms, lb.rost = lb.keep[:0], lb.ms[:0], lb.rost[:0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	for i, r := range lb.reqs {
		f := frame.Frame(r.buf.B)
		m := frame.Msg(f.Body())
		group, cid := m.To(), m.CID()
		if cid != 0 {
			if seq, dup := c.dedupe.seen(r.user, cid); dup {
				if f.QoS() == frame.QoS1 {
					c.ackTo(r.user, cid, seq, group, frame.AckDuplicate)
				}
				continue
			}
			if lb.keptEarlier(i) {
				lb.later = append(lb.later, r) // acked DUPLICATE (or stored) once the first is done
				lb.reqs[i].buf = nil
				continue
			}
		}
		ro := lb.roster(ctx, c.cfg.Store, group)
		if ro.err != nil {
			c.storeError(r.s, uint32(cid), ro.err)
			continue
		}
		if !isMember(ro.members, r.user) {
			c.refuseErr(r.s, cid, errNotMember)
			continue
		}
		lb.keep = append(lb.keep, i)
		lb.ms = append(lb.ms, storage.GroupMessage{Group: group, From: r.user, Time: m.Time(), CID: cid,
			MID: c.nextMID(), ExpiresAt: now.Add(c.cfg.GroupTTL).UnixMilli(), Content: m.Content()})
	}
	if len(lb.ms) == 0 {
		return
	}
	if err := c.storeBatch(ctx, lb); err != nil {
		return
	}
	for k, i := range lb.keep {
		r := lb.reqs[i]
		f := frame.Frame(r.buf.B)
		seq, cid := lb.ms[k].Seq, lb.ms[k].CID
		if cid != 0 {
			c.dedupe.remember(r.user, cid, seq)
		}
		frame.Msg(f.Body()).SetMID(seq)
		if f.QoS() == frame.QoS1 {
			c.ackTo(r.user, cid, seq, lb.ms[k].Group, frame.AckStored)
		}
	}
	c.fanoutBatch(lb)
}

// keptEarlier reports whether a message kept earlier in the batch has the
// same sender and CID as reqs[i].
func (lb *laneBatch) keptEarlier(i int) bool {
	r := lb.reqs[i]
	cid := frame.Msg(frame.Frame(r.buf.B).Body()).CID()
	for k, j := range lb.keep {
		if lb.reqs[j].user == r.user && lb.ms[k].CID == cid {
			return true
		}
	}
	return false
}

func isMember(members []storage.Member, user uint64) bool {
	for _, mb := range members {
		if mb.User == user {
			return true
		}
	}
	return false
}

// storeBatch appends the batch's kept messages in one write and sets their
// seqs. When the write fails, each sender gets its refusal (the store's
// error: retryable when the store is unavailable) and nothing is acked or
// pushed; lb.keep is emptied then. A batch refused for one
// message (a group deleted meanwhile, an invalid one) is stored one message
// at a time instead, so that each gets its own answer.
func (c *LocalCenter) storeBatch(ctx context.Context, lb *laneBatch) error {
	err := c.cfg.Store.AppendGroupMsgs(ctx, lb.ms)
	if err == nil {
		return nil
	}
	if len(lb.ms) > 1 && !errors.Is(err, storage.ErrUnavailable) && ctx.Err() == nil {
		kept := 0
		for k, i := range lb.keep {
			seq, err := c.cfg.Store.AppendGroupMsg(ctx, lb.ms[k])
			if err != nil {
				c.refuseStore(lb.reqs[i], err)
				continue
			}
			lb.ms[k].Seq = seq
			lb.keep[kept], lb.ms[kept] = i, lb.ms[k]
			kept++
		}
		lb.keep, lb.ms = lb.keep[:kept], lb.ms[:kept]
		if kept > 0 {
			return nil
		}
		return err
	}
	for _, i := range lb.keep {
		c.refuseStore(lb.reqs[i], err)
	}
	lb.keep, lb.ms = lb.keep[:0], lb.ms[:0]
	return err
}

// refuseStore answers a message the store did not keep.
func (c *LocalCenter) refuseStore(r groupReq, err error) {
	c.Refused.Add(1)
	if f := frame.Frame(r.buf.B); f.QoS() == frame.QoS1 {
		c.refuseErr(r.s, frame.Msg(f.Body()).CID(), err)
	}
}

// fanoutBatch pushes the batch's stored messages, group by group, each
// group's in sequence order (the order they were stored in), to the online
// members: one members walk and, per endpoint, one delivery per group.
func (c *LocalCenter) fanoutBatch(lb *laneBatch) {
	for gi := range lb.rost {
		ro := &lb.rost[gi]
		lb.fr = lb.fr[:0]
		for k, i := range lb.keep {
			if lb.ms[k].Group == ro.group {
				lb.fr = append(lb.fr, lb.reqs[i].buf.B)
			}
		}
		if len(lb.fr) > 0 {
			c.fanout(ro.members, lb.fr)
		}
		lb.rost[gi] = groupRoster{}
	}
	clear(lb.fr)
}
