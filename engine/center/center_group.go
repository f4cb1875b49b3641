package center

import (
	"context"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
)

// startLanes starts the group lanes: a group's messages are appended and
// pushed by one lane, one at a time, so that every member receives them in
// sequence order (appends running side by side would commit in one order
// and push in another). Lanes run side by side for different groups.
func (c *LocalCenter) startLanes() {
	n := c.cfg.Workers
	c.lanes = make([]chan func(), n)
	for i := range c.lanes {
		c.lanes[i] = make(chan func(), max(c.cfg.QueueLen/n, 64))
		c.wg.Add(1)
		go c.lane(c.lanes[i])
	}
}

func (c *LocalCenter) lane(in chan func()) {
	defer c.wg.Done()
	for {
		select {
		case f := <-in:
			f()
		case <-c.stop:
			for {
				select {
				case f := <-in:
					f()
				default:
					return
				}
			}
		}
	}
}

// groupMsg stores a group message under the group's next sequence number,
// acks the sender once it is kept, then pushes it to the online members,
// on the group's lane. Offline members fetch it; each member's receipt
// adds to its sent count. A resend (same sender and CID, after a lost ACK
// or a center failover) is acked DUPLICATE with the original number while
// this center remembers it.
func (c *LocalCenter) groupMsg(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	f := frame.Frame(buf.B)
	group := frame.Msg(f.Body()).To()
	select {
	case c.lanes[group%uint64(len(c.lanes))] <- func() { c.appendGroupMsg(user, s, buf) }:
	default:
		cid := frame.Msg(f.Body()).CID()
		bytebufferpool.Put(buf)
		c.refuseErr(s, cid, errBusy)
	}
}

func (c *LocalCenter) appendGroupMsg(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	defer bytebufferpool.Put(buf)
	f := frame.Frame(buf.B)
	m := frame.Msg(f.Body())
	group, cid := m.To(), m.CID()
	if cid != 0 {
		if seq, dup := c.seen(user, cid); dup {
			if f.QoS() == frame.QoS1 {
				c.ackTo(user, cid, seq, group, frame.AckDuplicate)
			}
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members, err := c.cfg.Store.GroupMembers(ctx, group)
	if err != nil {
		c.storeError(s, uint32(cid), err)
		return
	}
	isMember := false
	for _, mb := range members {
		if mb.User == user {
			isMember = true
			break
		}
	}
	if !isMember {
		c.refuseErr(s, cid, errNotMember)
		return
	}
	now := time.Now()
	seq, err := c.cfg.Store.AppendGroupMsg(ctx, storage.GroupMessage{Group: group, From: user, Time: m.Time(),
		CID: cid, MID: c.nextMID(), ExpiresAt: now.Add(c.cfg.GroupTTL).UnixMilli(),
		Content: append([]byte(nil), m.Content()...)})
	if err != nil {
		c.Refused.Add(1)
		if f.QoS() == frame.QoS1 {
			c.refuseErr(s, cid, err)
		}
		return
	}
	if cid != 0 {
		c.remember(user, cid, seq)
	}
	m.SetMID(seq)
	if f.QoS() == frame.QoS1 {
		c.ackTo(user, cid, seq, group, frame.AckStored)
	}
	c.fanout(members, buf.B)
}

// fanout pushes a group frame to every online session of the members,
// the sender's own sessions included: the member count counts the sender,
// so the message is cleaned up only once the sender's receipt is in too.
// It runs on a center worker, never on an event loop.
//
// Members with no session here are looked up in the cluster's route table,
// and the frame crosses once to each other center that holds some of them.
func (c *LocalCenter) fanout(members []storage.Member, b []byte) {
	var away []uint64
	g := groupPush{c: c, b: b}
	for _, mb := range members {
		n := c.routes.Lookup(mb.User, func(_ route.Addr, v any) { g.add(v.(*sessState).ref) })
		if n == 0 && c.cl != nil {
			away = append(away, mb.User)
		}
	}
	c.GroupPushes.Add(uint64(g.flush()))
	if len(away) > 0 {
		c.cl.fanout(away, b)
	}
}

// manyDeliverer is an endpoint that takes one frame for many of its
// sessions at once: the endpoint in this process (EndpointHandler), which
// seals it once per session on each event loop, and one behind a link
// that takes DELIVER_MANY.
type manyDeliverer interface {
	im.Endpoint
	DeliverMany(sessions []uint64, b []byte) int
}

// groupPush pushes one group frame to many sessions: once per endpoint
// that takes many (in this process, or behind a link that takes
// DELIVER_MANY and fans out itself, so that the frame crosses each link
// once), one session at a time to the others. Each copy carries the
// delivering endpoint in DSrv, as a fetched group message does. Not safe
// for concurrent use.
type groupPush struct {
	c    *LocalCenter
	b    []byte
	many map[manyDeliverer][]uint64
	n    int
}

func (g *groupPush) add(ref im.SessionRef) {
	ep := g.c.endpoint(ref.Endpoint)
	md, ok := ep.(manyDeliverer)
	if re, remote := ep.(*remoteEndpoint); remote && !re.many {
		ok = false // a link from an endpoint without DELIVER_MANY
	}
	if ok {
		if g.many == nil {
			g.many = make(map[manyDeliverer][]uint64)
		}
		g.many[md] = append(g.many[md], ref.Session)
		return
	}
	if g.c.sendRefDSrv(ref, g.b) {
		g.n++
	}
}

// flush sends what add collected per endpoint and returns the pushes made.
func (g *groupPush) flush() int {
	var b []byte
	for md, sessions := range g.many {
		b = append(b[:0], g.b...)
		frame.Msg(frame.Frame(b).Body()).SetDSrv(md.ID())
		g.n += md.DeliverMany(sessions, b)
	}
	return g.n
}

// groupOp runs a GROUP request (see groups.go) and answers it with the
// same JSON the HTTP API gives, or with an ERROR. It runs on a center
// worker.
func (c *LocalCenter) groupOp(user uint64, s im.SessionRef, req uint32, op byte, group uint64, js []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var in GroupRequest
	if len(js) > 0 && sonic.Unmarshal(js, &in) != nil {
		c.errorTo(s, frame.ErrCodeBadRequest, uint64(req), "request JSON must be an object")
		return
	}
	out, err := GroupOp(ctx, c.cfg.Store, user, op, group, in)
	if err != nil {
		ge := GroupFailure(err)
		c.errorTo(s, ge.Code, uint64(req), ge.Msg)
		return
	}
	switch r := out.(type) {
	case GroupInfo:
		group = r.Group
	}
	j, _ := sonic.Marshal(out)
	b, _ := frame.AppendGroup(nil, req, op, group, j)
	c.sendRef(s, b)
}

// groupSweeper deletes expired group messages every GroupSweep, so that
// the group log does not grow for ever with messages some member never
// acknowledged. It runs on its own goroutine, never on a loop or a
// worker; the store deletes in bounded batches (a few thousand rows per
// statement or transaction), so a large backlog never holds its writer
// for long. A failed sweep is retried at the next tick.
func (c *LocalCenter) groupSweeper() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.GroupSweep)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(c.cfg.GroupSweep, time.Minute))
			n, err := c.cfg.Store.PurgeExpiredGroupMsgs(ctx, now.UnixMilli())
			cancel()
			c.GroupPurged.Add(uint64(n))
			if err != nil {
				c.cfg.Logger.Warn("group message sweep failed", "deleted", n, "err", err)
			}
		}
	}
}
