package center

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage/bolt"
)

// The center has a handler for exactly the commands the command table
// routes to a center.
func TestHandlersMatchCommandTable(t *testing.T) {
	for i := 0; i < 256; i++ {
		c := frame.Cmd(i)
		if has, want := handlers[c] != nil, c.Route() == frame.RouteCenter; has != want {
			t.Errorf("%v: center handler %v, command table routes it to the center %v", c, has, want)
		}
	}
}

// tableFrame returns a frame of command c whose body is c's fixed fields:
// a message from user with no recipient, or a request whose reference is
// ref.
func tableFrame(c frame.Cmd, user, ref uint64) *bytebufferpool.ByteBuffer {
	body := make([]byte, max(c.MinBody(), 0))
	switch c.Ref() {
	case frame.RefCID:
		body = frame.AppendMsgHeader(body[:0], frame.MsgHeader{From: user, CID: ref})
		body = append(body, make([]byte, c.MinBody()-len(body))...)
	case frame.RefReq:
		binary.BigEndian.PutUint32(body, uint32(ref))
	}
	q := frame.QoS1
	if c.Info().QoS == frame.QoSOnly0 {
		q = frame.QoS0
	}
	buf := frame.AcquireBuffer()
	buf.B, _ = frame.AppendHeader(buf.B, c, q, len(body))
	buf.B = append(buf.B, body...)
	return buf
}

// Walking every command code through Handle with the worker pool's queue
// full: a command the table does not route to a center, or an unknown one,
// is answered "unexpected", a pooled request is refused with ERROR retry
// and its reference, and a command routed to the center is never called
// unexpected.
func TestHandleWalksCommandTable(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := NewLocalCenter(Config{ID: 1, Store: st, Workers: 1, QueueLen: 1})
	defer c.Close()
	block := make(chan struct{})
	defer close(block)
	for queued := 0; queued < 2; { // one job holds the worker, one fills the queue
		if c.submit(func() { <-block }) {
			queued++
		}
	}
	ep := &recEndpoint{id: 1}
	c.Attach(ep)
	const user = 7
	s := im.SessionRef{Endpoint: 1, Session: 1}
	for i := 1; i < 256; i++ {
		c.Handle(user, s, tableFrame(frame.Cmd(i), user, uint64(0x100+i)))
	}
	for i := 1; i < 256; i++ {
		cmd := frame.Cmd(i)
		unexpected := func(f frame.Frame) bool {
			e := frame.Error(f.Body())
			return e.Code() == frame.ErrCodeBadRequest && e.Ref() == 0 && string(e.Text()) == "unexpected "+cmd.String()
		}
		switch {
		case cmd.Route() != frame.RouteCenter:
			ep.waitFor(t, frame.CmdError, unexpected)
		case cmd.Pooled():
			ep.waitFor(t, frame.CmdError, func(f frame.Frame) bool {
				e := frame.Error(f.Body())
				return e.Code() == frame.ErrCodeRetry && e.Ref() == uint64(0x100+i)
			})
		}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for _, f := range ep.in {
		if f.Cmd() == frame.CmdError && strings.HasPrefix(string(frame.Error(f.Body()).Text()), "unexpected") {
			t.Errorf("left over: %s", frame.Error(f.Body()).Text())
		}
	}
}
