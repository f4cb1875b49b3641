package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/frame"
)

// What the SDK does for delivery (docs/protocol.md, "Delivery and
// reconnect", is the contract a client follows):
//
//   - every QoS 1 send can wait for its answer with a deadline (SendWait):
//     an ACK, a retry ERROR, the connection's end, or the deadline, each a
//     typed error the caller can retry with the same CID;
//   - pushed MSGs are acked as they are read (AutoAck) and dropped when
//     their (sender, CID) was seen (Dedupe);
//   - a group's messages are shown in sequence order, each once, and acked
//     cumulatively only up to the highest number below which every message
//     arrived (groupSeq).

// Errors of a send that waits for its answer. A send that failed with any
// of them may be sent again with the same CID: the server shows it once.
var (
	// ErrSendTimeout: no ACK or ERROR before the send's deadline. The
	// message may or may not have been accepted.
	ErrSendTimeout = errors.New("client: no answer to the message before its deadline")
	// ErrNotAcked: the connection ended before the message's answer.
	ErrNotAcked = errors.New("client: connection ended before the message was acknowledged")
)

// SendError is the error of a send that waits for its answer; errors.Is
// finds ErrSendTimeout, ErrNotAcked, or a *ServerError through it.
type SendError struct {
	CID uint64
	Err error
}

func (e *SendError) Error() string { return fmt.Sprintf("client: message %d: %v", e.CID, e.Err) }
func (e *SendError) Unwrap() error { return e.Err }

// Retryable reports whether the message may be sent again with the same
// CID: a retry ERROR (code 5), no answer in time, or the connection's end.
// A refusal with any other code (not a member, bad request) is final.
func (e *SendError) Retryable() bool {
	var se *ServerError
	if errors.As(e.Err, &se) {
		return se.Code == frame.ErrCodeRetry
	}
	return true
}

// Retryable reports whether err, from SendWait or Session.Send, says the
// message may be sent again with the same CID.
func Retryable(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Retryable()
}

// Acked is the server's ACK of a sent message.
type Acked struct {
	CID, MID, Peer uint64 // MID: the message id, or the group's sequence number
	Status         byte   // frame.AckDelivered, AckStored or AckDuplicate
}

// waiters are the sends waiting for their answer, by CID.
type waiters struct {
	mu sync.Mutex
	m  map[uint64]chan sendResult
}

type sendResult struct {
	ack Acked
	err error
}

func (w *waiters) add(cid uint64) chan sendResult {
	ch := make(chan sendResult, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[uint64]chan sendResult)
	}
	w.m[cid] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) remove(cid uint64) {
	w.mu.Lock()
	delete(w.m, cid)
	w.mu.Unlock()
}

// done answers the send with this CID, if one waits; the first answer wins.
func (w *waiters) done(cid uint64, r sendResult) {
	w.mu.Lock()
	ch := w.m[cid]
	delete(w.m, cid)
	w.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// closeAll answers every waiting send with err.
func (w *waiters) closeAll(err error) {
	w.mu.Lock()
	m := w.m
	w.m = nil
	w.mu.Unlock()
	for _, ch := range m {
		ch <- sendResult{err: err}
	}
}

// SendWait sends a QoS 1 MSG or GROUP_MSG with the given CID (0: a fresh
// one) and waits for its answer until ctx ends, or for Config.SendTimeout
// when ctx has no deadline. It returns the ACK, or a *SendError: a retry
// ERROR, ErrSendTimeout, ErrNotAcked. The ACK and ERROR still reach
// Frames.
func (c *Conn) SendWait(ctx context.Context, cmd frame.Cmd, to, cid uint64, content []byte) (Acked, error) {
	if cid == 0 {
		cid = c.NewCID()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.sendTimeout)
		defer cancel()
	}
	ch := c.waits.add(cid)
	if err := c.SendMsgCID(cmd, to, frame.QoS1, cid, content); err != nil {
		c.waits.remove(cid)
		return Acked{}, &SendError{CID: cid, Err: errors.Join(ErrNotAcked, err)}
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return Acked{}, &SendError{CID: cid, Err: r.err}
		}
		return r.ack, nil
	case <-ctx.Done():
		c.waits.remove(cid)
		return Acked{}, &SendError{CID: cid, Err: errors.Join(ErrSendTimeout, ctx.Err())}
	}
}

// answer completes a waiting send from an ACK or ERROR frame.
func (c *Conn) answer(cmd frame.Cmd, body []byte) {
	ref := frame.AnswerRef(cmd, body)
	switch {
	case ref == 0:
	case cmd == frame.CmdAck:
		a := frame.Ack(body)
		c.waits.done(ref, sendResult{ack: Acked{CID: ref, MID: a.MID(), Peer: a.Peer(), Status: a.Status()}})
	default:
		c.waits.done(ref, sendResult{err: errorFrom(body)})
	}
}

// groupSeq puts one group's messages in sequence order for one user:
// next is the number expected, held what came early.
type groupSeq struct {
	next  uint64
	held  map[uint64]Frame
	since time.Time // when the oldest gap opened
}

// groupTracker holds the groupSeqs of a user, shared across reconnects
// through Dedupe. Safe for concurrent use.
type groupTracker struct {
	mu sync.Mutex
	m  map[uint64]*groupSeq
}

// maxHeld bounds the messages held behind one gap; past it the gap is
// given up (the missing ones are fetched again on the next connection).
const maxHeld = 4096

// TrackGroup starts putting group's messages in order from the one after
// seq (the member's join number, or the last one the application kept).
// The SDK calls it itself when it sees the answer to its own GROUP create
// or join. A group it does not know yet starts at the lowest message it
// holds when the first complete group fetch of the connection ends
// (AutoFetch), or, without AutoFetch, at the first message that comes.
func (d *Dedupe) TrackGroup(group, seq uint64) { d.groups.track(group, seq) }

// track starts group after seq; it returns the held messages that now
// follow on, and the ack for them.
func (g *groupTracker) track(group, seq uint64) (out []Frame, ack uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[uint64]*groupSeq)
	}
	s := g.m[group]
	switch {
	case s == nil:
		g.m[group] = &groupSeq{next: seq + 1}
	case s.next <= seq:
		s.next = seq + 1
		for q := range s.held {
			if q < s.next {
				delete(s.held, q)
			}
		}
		out = s.releaseLocked(out)
		if len(out) > 0 {
			ack = s.next - 1
		}
	}
	return out, ack
}

// add takes one GROUP_MSG; it returns the frames now in order (to show)
// and the highest number below which all arrived when that moved (to ack).
// seed says whether an unknown group starts at this message; if not, it is
// held until seedAll.
func (g *groupTracker) add(f Frame, now time.Time, seed bool) (out []Frame, ack uint64) {
	m := frame.Msg(f.Body)
	group, seq := m.To(), m.MID()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[uint64]*groupSeq)
	}
	s := g.m[group]
	if s == nil {
		s = &groupSeq{}
		g.m[group] = s
	}
	if s.next == 0 {
		if !seed {
			if s.held == nil {
				s.held = make(map[uint64]Frame)
			}
			s.held[seq] = f
			return nil, 0
		}
		s.next = seq
	}
	switch {
	case seq < s.next:
		return nil, 0 // had it
	case seq > s.next:
		if s.held == nil {
			s.held = make(map[uint64]Frame)
		}
		if len(s.held) == 0 {
			s.since = now
		}
		s.held[seq] = f
		if len(s.held) > maxHeld {
			return s.skipLocked(), s.next - 1
		}
		return nil, 0
	}
	out = append(out, f)
	s.next++
	out = s.releaseLocked(out)
	if len(s.held) > 0 {
		s.since = now
	}
	return out, s.next - 1
}

// seedAll starts every group not started yet at the lowest message it
// holds: called when a complete group fetch ends, which sent every stored
// message above the member's floor, so the lowest held is the first one.
func (g *groupTracker) seedAll() (out []Frame, acks map[uint64]uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.m {
		if s.next != 0 || len(s.held) == 0 {
			continue
		}
		out = append(out, s.skipLocked()...)
		if acks == nil {
			acks = make(map[uint64]uint64)
		}
		acks[id] = s.next - 1
	}
	return out, acks
}

// releaseLocked appends to out the held messages that follow on from
// next, moving next past them.
func (s *groupSeq) releaseLocked(out []Frame) []Frame {
	for {
		h, ok := s.held[s.next]
		if !ok {
			return out
		}
		delete(s.held, s.next)
		out = append(out, h)
		s.next++
	}
}

// skipLocked gives up the gap: the messages held are released from the
// lowest, as far as they run on.
func (s *groupSeq) skipLocked() []Frame {
	if len(s.held) == 0 {
		return nil
	}
	seqs := make([]uint64, 0, len(s.held))
	for q := range s.held {
		seqs = append(seqs, q)
	}
	slices.Sort(seqs)
	var out []Frame
	s.next = seqs[0]
	for _, q := range seqs {
		if q != s.next {
			break
		}
		out = append(out, s.held[q])
		delete(s.held, q)
		s.next++
	}
	return out
}

// gaps returns the groups with a gap opened before t.
func (g *groupTracker) gaps(t time.Time) []uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []uint64
	for id, s := range g.m {
		if s.next != 0 && len(s.held) > 0 && s.since.Before(t) {
			out = append(out, id)
		}
	}
	return out
}

// skipGaps gives up the gaps opened before t, after a fetch that started
// at t found nothing to fill them: the missing messages are gone (expired,
// or acked by another device). It returns the frames released and the
// acks to send, by group.
func (g *groupTracker) skipGaps(t time.Time) (out []Frame, acks map[uint64]uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.m {
		if s.next == 0 || len(s.held) == 0 || !s.since.Before(t) {
			continue
		}
		out = append(out, s.skipLocked()...)
		if acks == nil {
			acks = make(map[uint64]uint64)
		}
		acks[id] = s.next - 1
		if len(s.held) > 0 {
			s.since = t
		}
	}
	return out, acks
}

// groupIn handles a pushed or fetched GROUP_MSG: in order, once, acked
// cumulatively when everything below has arrived.
func (c *Conn) groupIn(f Frame) {
	if !c.autoAck { // the application acks and orders itself
		c.showGroup([]Frame{f})
		return
	}
	out, ack := c.groups.add(f, time.Now(), !c.autoFet || c.seeded.Load())
	c.showGroup(out)
	if ack > 0 && c.autoAck {
		_ = c.AckGroup(frame.Msg(f.Body).To(), ack)
	}
}

func (c *Conn) showGroup(fs []Frame) {
	for _, g := range fs {
		if c.dedupe != nil {
			if m := frame.Msg(g.Body); c.dedupe.Seen(m.From(), m.CID()) {
				c.dups.Add(1)
				continue // a resend appended twice (after a failover)
			}
		}
		c.received.Add(1)
		c.in <- g
	}
}

// groupAnswer notes the groups this connection created or joined.
func (c *Conn) groupAnswer(body []byte) {
	g := frame.Group(body)
	switch g.Op() {
	case frame.GroupCreate, frame.GroupJoin:
	default:
		return
	}
	var r struct {
		Group   uint64 `json:"group"`
		JoinSeq uint64 `json:"join_seq"`
	}
	if sonic.Unmarshal(g.JSON(), &r) == nil && r.Group != 0 {
		out, ack := c.groups.track(r.Group, r.JoinSeq)
		c.showGroup(out)
		c.ackGroups(map[uint64]uint64{r.Group: ack})
	}
}

// fetchAnswer gives up the gaps a complete group fetch did not fill.
func (c *Conn) fetchAnswer(fe frame.Fetch) {
	if fe.Kind() != frame.FetchGroup || fe.Flags()&frame.FetchMore != 0 {
		return
	}
	if !c.seeded.Swap(true) {
		out, acks := c.groups.seedAll()
		c.showGroup(out)
		c.ackGroups(acks)
	}
	c.gapMu.Lock()
	start := c.gapFetch
	c.gapFetch = time.Time{}
	c.gapMu.Unlock()
	if start.IsZero() {
		return
	}
	out, acks := c.groups.skipGaps(start)
	c.showGroup(out)
	c.ackGroups(acks)
}

func (c *Conn) ackGroups(acks map[uint64]uint64) {
	if !c.autoAck {
		return
	}
	for g, seq := range acks {
		if seq > 0 {
			_ = c.AckGroup(g, seq)
		}
	}
}

// gapWatch fetches the groups again when a gap has stayed open for
// gapWait: the missing messages are in the store, or gone.
func (c *Conn) gapWatch() {
	t := time.NewTicker(gapWait / 2)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			if len(c.groups.gaps(now.Add(-gapWait))) == 0 {
				continue
			}
			c.gapMu.Lock()
			idle := c.gapFetch.IsZero()
			if idle {
				c.gapFetch = now
			}
			c.gapMu.Unlock()
			if idle {
				_, _ = c.Fetch(frame.FetchGroup, 0, 100)
			}
		}
	}
}

// gapWait is how long a group's gap may stay open before the SDK fetches:
// longer than a push takes to overtake another on its way.
const gapWait = 2 * time.Second
