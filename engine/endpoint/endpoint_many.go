package endpoint

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// sharedFrame is one plaintext frame that several event loops seal for
// their sessions; the last loop done returns it to the pool.
type sharedFrame struct {
	buf  *bytebufferpool.ByteBuffer
	refs atomic.Int32
}

func (sf *sharedFrame) release() {
	if sf.refs.Add(-1) == 0 {
		bytebufferpool.Put(sf.buf)
	}
}

// loopBatch is the sessions of one event loop that a DeliverMany reaches.
type loopBatch struct {
	conns []*engine.Conn
}

// DeliverMany queues one plaintext frame b (a group message) for many
// sessions of this endpoint and returns how many it reached, as
// DeliverFrames does. Safe for concurrent use; b may be reused once it
// returns.
func (e *Handler) DeliverMany(sessions []uint64, b []byte) int {
	return e.DeliverFrames(sessions, b)
}

// DeliverFrames queues the plaintext frames b holds back to back (group
// messages, of one group in sequence order: frames of one command) for many sessions of this
// endpoint and returns how many sessions it reached; each gets every
// frame, in order. b is copied once, not once per session: each event
// loop holding some of the sessions gets one job (Conn.Exec) that seals
// the frames for all of them into their write batches, so that a session
// has them all in one write, as it has several jobs' frames when its loop
// runs them together. Sessions gone or unknown are skipped. Safe for
// concurrent use; b may be reused once it returns.
func (e *Handler) DeliverFrames(sessions []uint64, b []byte) int {
	var arr [4]loopBatch // a few loops: most machines run one per core
	batches := arr[:0]
	n := 0
	for _, id := range sessions {
		es := e.sessions.load(id)
		if es == nil || es.conn.Closed() {
			continue
		}
		c := es.conn
		i := 0
		for i < len(batches) && !batches[i].conns[0].SameLoop(c) {
			i++
		}
		if i == len(batches) {
			batches = append(batches, loopBatch{})
		}
		batches[i].conns = append(batches[i].conns, c)
		n++
	}
	if n == 0 {
		return 0
	}
	sf := &sharedFrame{buf: bytebufferpool.Get()}
	sf.buf.B = append(sf.buf.B, b...)
	sf.refs.Store(int32(len(batches)))
	for _, lb := range batches {
		conns := lb.conns
		if conns[0].Exec(func() { e.sealMany(conns, sf) }) != nil {
			n -= len(conns)
			sf.release()
		}
	}
	return n
}

// sealMany seals sf's frames for each of conns, all of one loop, into
// their write batches: one clock read for all, and each write batch grown
// once to take them. Loop only.
func (e *Handler) sealMany(conns []*engine.Conn, sf *sharedFrame) {
	defer sf.release()
	frames := 0
	for b := sf.buf.B; len(b) > 0; frames++ {
		n, err := frame.Split(b, len(b)) // frames the center built: whole
		if err != nil || n == 0 {
			break
		}
		b = b[n:]
	}
	grow := len(sf.buf.B) + frames*(session.TagSize+frame.MaxLengthBytes)
	now := time.Now()
	sealed := 0
	defer func() { e.framesOut[frame.Frame(sf.buf.B).Cmd()].Add(uint64(sealed)) }()
	for _, c := range conns {
		if c.Closed() {
			continue
		}
		ec, ok := c.Context().(*epConn)
		if !ok || ec.keys == nil || ec.pending {
			continue
		}
		out := c.Out()
		out.B = slices.Grow(out.B, grow)
		b := sf.buf.B
		for range frames {
			n, _ := frame.Split(b, len(b))
			if err := e.sealAt(c, ec, frame.Frame(b[:n]), now); err != nil {
				c.CloseOnLoop(engine.ReasonCrypto)
				break
			}
			sealed++
			b = b[n:]
		}
	}
}
