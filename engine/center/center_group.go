package center

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
)

// fanout pushes a group's frames, one or more in seq order, to every
// online session of the members, the sender's own sessions included: the
// member count counts the sender, so a message is cleaned up only once the
// sender's receipt is in too. It runs on a group lane, never on an event
// loop. members are in ascending user order, as the store returns them.
//
// Members with no session here are looked up in the cluster's route table,
// and each frame crosses once to each other center that holds some of them.
func (c *LocalCenter) fanout(members []storage.Member, frames [][]byte) {
	g := groupPush{c: c, frames: frames}
	var away []uint64
	if c.routes.Len() < len(members)/2 {
		away = c.fanoutOnline(&g, members)
	} else {
		for _, mb := range members {
			n := c.routes.Lookup(mb.User, func(_ route.Addr, v any) { g.add(v.(*sessState).ref) })
			if n == 0 && c.cl != nil {
				away = append(away, mb.User)
			}
		}
	}
	c.GroupPushes.Add(uint64(g.flush()))
	if len(away) > 0 {
		for _, f := range frames {
			c.cl.fanout(away, f)
		}
	}
}

// fanoutOnline adds to g the sessions here of members by walking the
// sessions here (fewer than the members: a large group of which few are
// online) instead of looking each member up, and returns the members with
// no session here when in a cluster.
func (c *LocalCenter) fanoutOnline(g *groupPush, members []storage.Member) (away []uint64) {
	var here []uint64 // bit i: members[i] has a session here; only in a cluster
	if c.cl != nil {
		here = make([]uint64, (len(members)+63)/64)
	}
	c.routes.Range(func(user uint64, _ route.Addr, v any) bool {
		i, ok := slices.BinarySearchFunc(members, user, func(m storage.Member, u uint64) int { return cmp.Compare(m.User, u) })
		if ok {
			g.add(v.(*sessState).ref)
			if here != nil {
				here[i/64] |= 1 << (i % 64)
			}
		}
		return true
	})
	if here == nil {
		return nil
	}
	for i, mb := range members {
		if here[i/64]&(1<<(i%64)) == 0 {
			away = append(away, mb.User)
		}
	}
	return away
}

// manyDeliverer is an endpoint that takes one frame for many of its
// sessions at once: the endpoint in this process (endpoint.Handler), which
// seals it once per session on each event loop, and one behind a link
// that takes DELIVER_MANY.
type manyDeliverer interface {
	im.Endpoint
	DeliverMany(sessions []uint64, b []byte) int
}

// framesDeliverer is an endpoint that takes several frames for many of
// its sessions at once, b holding them back to back, and returns how many
// sessions it reached (each gets every frame, in order): the endpoint in
// this process. A member that gets a lane's batch of messages this way has
// them all in one write.
type framesDeliverer interface {
	DeliverFrames(sessions []uint64, b []byte) int
}

// groupPush pushes a group's frames to many sessions: once per endpoint
// that takes many (in this process, all frames in one call; behind a link
// that takes DELIVER_MANY and fans out itself, each frame once, so that
// it crosses each link once), one session at a time to the others. Each
// copy carries the delivering endpoint in DSrv, as a fetched group
// message does. Not safe for concurrent use.
type groupPush struct {
	c      *LocalCenter
	frames [][]byte
	many   map[manyDeliverer][]uint64
	n      int
	ep     im.Endpoint // the endpoint of the last session added
	epID   uint32
}

func (g *groupPush) add(ref im.SessionRef) {
	if g.ep == nil || ref.Endpoint != g.epID {
		g.ep, g.epID = g.c.endpoint(ref.Endpoint), ref.Endpoint // most sessions share one
	}
	ep := g.ep
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
	for _, f := range g.frames {
		if g.c.sendRefDSrv(ref, f) {
			g.n++
		}
	}
}

// flush sends what add collected per endpoint and returns the pushes made
// (sessions reached times frames).
func (g *groupPush) flush() int {
	b := bytebufferpool.Get()
	defer bytebufferpool.Put(b)
	for md, sessions := range g.many {
		if fd, ok := md.(framesDeliverer); ok && len(g.frames) > 1 {
			b.B = b.B[:0]
			for _, f := range g.frames {
				n := len(b.B)
				b.B = append(b.B, f...)
				frame.Msg(frame.Frame(b.B[n:]).Body()).SetDSrv(md.ID())
			}
			g.n += fd.DeliverFrames(sessions, b.B) * len(g.frames)
			continue
		}
		for _, f := range g.frames {
			b.B = append(b.B[:0], f...)
			frame.Msg(frame.Frame(b.B).Body()).SetDSrv(md.ID())
			g.n += md.DeliverMany(sessions, b.B)
		}
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
