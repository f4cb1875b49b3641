package center

import (
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
)

// handler takes one frame a session sent; ownership of buf passes to it.
type handler func(c *LocalCenter, user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer)

// handlers holds the center's handler of each command the command table
// (frame/commands.go) routes to a center, and no other: a test checks that
// the two agree. The table also says which of them run on the worker pool.
var handlers = [256]handler{
	frame.CmdMsg:           (*LocalCenter).p2p,
	frame.CmdGroupMsg:      (*LocalCenter).groupMsg,
	frame.CmdFile:          (*LocalCenter).fileFrame,
	frame.CmdFileServer:    (*LocalCenter).fileServer,
	frame.CmdAck:           (*LocalCenter).handleAck,
	frame.CmdPresence:      (*LocalCenter).handlePresence,
	frame.CmdFetch:         (*LocalCenter).handleFetch,
	frame.CmdSignature:     (*LocalCenter).handleLookup,
	frame.CmdFriendInfo:    (*LocalCenter).handleLookup,
	frame.CmdFriendsOnline: (*LocalCenter).handleLookup,
	frame.CmdServerList:    (*LocalCenter).handleLookup,
	frame.CmdProfile:       (*LocalCenter).handleProfile,
	frame.CmdGroup:         (*LocalCenter).handleGroup,
}

// Handle dispatches one frame from a session; ownership of buf passes to
// the center. A command the command table does not route to a center is
// answered ERROR bad request. The table's pooled commands (they read or
// write the store) run on the worker pool; when its queue is full they are
// refused with ERROR retry and the request's reference.
func (c *LocalCenter) Handle(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	cmd := frame.Frame(buf.B).Cmd()
	h := handlers[cmd]
	switch {
	case h == nil || cmd.Route() != frame.RouteCenter:
		bytebufferpool.Put(buf)
		c.errorTo(s, frame.ErrCodeBadRequest, 0, "unexpected "+cmd.String())
	case !cmd.Pooled():
		h(c, user, s, buf)
	case !c.submit(func() { h(c, user, s, buf) }):
		ref := frame.RequestRef(cmd, frame.Frame(buf.B).Body())
		bytebufferpool.Put(buf)
		c.refuseErr(s, ref, errBusy)
	}
}

func (c *LocalCenter) handleAck(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	c.ack(user, s, frame.Ack(frame.Frame(buf.B).Body()))
	bytebufferpool.Put(buf)
}

func (c *LocalCenter) handlePresence(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	c.presence(user, s, frame.Presence(frame.Frame(buf.B).Body()))
	bytebufferpool.Put(buf)
}

// handleFetch, handleLookup, handleProfile and handleGroup run on a center
// worker.

func (c *LocalCenter) handleFetch(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	fe := frame.Fetch(frame.Frame(buf.B).Body())
	req, kind, cursor, count := fe.Req(), fe.Kind(), fe.Cursor(), fe.Count()
	bytebufferpool.Put(buf)
	c.fetch(user, s, req, kind, cursor, count)
}

func (c *LocalCenter) handleLookup(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	defer bytebufferpool.Put(buf)
	f := frame.Frame(buf.B)
	l := frame.Lookup(f.Body())
	var js []byte
	if f.Cmd() == frame.CmdSignature && len(l.JSON()) > 0 {
		js = l.JSON() // a lookup by name (userlookup.go)
	}
	c.lookup(user, s, f.Cmd(), l.Req(), l.Target(), js)
}

func (c *LocalCenter) handleProfile(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	defer bytebufferpool.Put(buf)
	l := frame.Lookup(frame.Frame(buf.B).Body())
	c.profileFrame(user, s, l.Req(), l.Target(), l.JSON())
}

func (c *LocalCenter) handleGroup(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	defer bytebufferpool.Put(buf)
	g := frame.Group(frame.Frame(buf.B).Body())
	c.groupOp(user, s, g.Req(), g.Op(), g.Group(), g.JSON())
}
