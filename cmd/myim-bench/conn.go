package main

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myim/myim/frame"
)

// bconn is one bench session. One goroutine reads it (readLoop); anything
// may send on it through queue and send, which serialise the send half of
// its codec with wmu, so frames reach the socket in the order they were
// sealed.
//
// Frames a read produces (receipts, the next messages of a closed loop) are
// queued and written once at the end of that read, as the server batches
// its writes.
type bconn struct {
	r    *runner
	idx  int
	user uint64

	wmu     sync.Mutex // guards everything below up to the blank line
	nc      net.Conn
	c       codec
	wbuf    []byte
	pl      []byte // payload scratch
	rng     *rand.Rand
	pings   []int64            // send times of pings whose answer has no body (MQTT)
	unacked map[uint64]sentMsg // reconnect-storm: QoS 1 messages not yet acked, by CID
	down    bool               // reconnecting: sends wait in unacked

	sent, done atomic.Int64         // messages (or pings) this client started and completed
	got        map[[2]uint64]uint16 // reconnect-storm: (sender user, CID) -> times received; reader only
	acked      []sentMsg            // reconnect-storm: what the server acked; reader only
	groupSeq   uint64               // last group sequence seen; reader only
	sinceGAck  int                  // group messages since the last group receipt; reader only
	ctl        chan event           // answers to FETCH and GROUP requests
}

// sentMsg is a message a client sent and must see acked.
type sentMsg struct {
	to, cid uint64
	payload []byte
}

func newBconn(r *runner, idx int, user uint64, nc net.Conn, c codec) *bconn {
	return &bconn{r: r, idx: idx, user: user, nc: nc, c: c,
		rng: rand.New(rand.NewPCG(uint64(idx)+1, uint64(time.Now().UnixNano()))), ctl: make(chan event, 16)}
}

// queue appends what fn produces to the pending output without writing it.
func (b *bconn) queue(fn func([]byte) ([]byte, error)) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	var err error
	b.wbuf, err = fn(b.wbuf)
	return err
}

// flush writes the pending output.
func (b *bconn) flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.flushLocked()
}

func (b *bconn) flushLocked() error {
	if len(b.wbuf) == 0 || b.down {
		return nil
	}
	_, err := b.nc.Write(b.wbuf)
	if cap(b.wbuf) > 1<<20 { // one burst must not pin a large buffer
		b.wbuf = nil
	} else {
		b.wbuf = b.wbuf[:0]
	}
	if err != nil {
		b.r.writeErr(b, err)
	}
	return err
}

// send appends what fn produces and writes everything pending.
func (b *bconn) send(fn func([]byte) ([]byte, error)) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	var err error
	if b.wbuf, err = fn(b.wbuf); err != nil {
		return err
	}
	return b.flushLocked()
}

// appendNextLocked appends this client's next message or ping; wmu held.
func (b *bconn) appendNextLocked() error {
	r := b.r
	seq := r.cidBase + uint64(b.sent.Load()) + 1
	if cap(b.pl) < r.cfg.Size {
		b.pl = make([]byte, r.cfg.Size)
	}
	p := b.pl[:r.cfg.Size]
	putPayload(p, b.idx, seq)
	var err error
	switch r.kind {
	case loadPing:
		if r.cfg.Proto == "mqtt" {
			b.pings = append(b.pings, time.Now().UnixNano())
		}
		b.wbuf, err = b.c.appendPing(b.wbuf, p)
	case loadGroup:
		b.wbuf, err = b.c.appendMsg(b.wbuf, true, r.group, r.qos, seq, p)
	default:
		to := r.pickPeer(b)
		if r.track {
			b.unacked[seq] = sentMsg{to: to, cid: seq, payload: append([]byte(nil), p...)}
			if b.down {
				b.sent.Add(1)
				r.sent.Add(1)
				return nil
			}
		}
		b.wbuf, err = b.c.appendMsg(b.wbuf, false, to, r.qos, seq, p)
	}
	if err != nil {
		return err
	}
	b.sent.Add(1)
	r.sent.Add(1)
	return nil
}

// pump sends while the window has room and the run has budget. From this
// session's reader it only queues (the read's flush writes); from anywhere
// else it writes at once.
func (b *bconn) pump(fromReader bool) {
	r := b.r
	if r.cfg.Rate > 0 || !b.isSender() {
		return
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	for b.sent.Load()-b.done.Load() < int64(r.cfg.Window) && r.take() {
		if err := b.appendNextLocked(); err != nil {
			r.fail(err)
			break
		}
	}
	if !fromReader {
		_ = b.flushLocked()
	}
}

func (b *bconn) isSender() bool { return b.r.kind != loadGroup || b.idx < b.r.cfg.Senders }

// readLoop reads and handles frames until the connection ends; in a
// reconnect storm it reconnects and goes on.
func (b *bconn) readLoop() {
	r := b.r
	defer r.readers.Done()
	buf := make([]byte, 0, 4096)
	for {
		if cap(buf)-len(buf) < 2048 {
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		b.wmu.Lock()
		nc := b.nc
		b.wmu.Unlock()
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		off := 0
		for off < len(buf) {
			k, ev, derr := b.c.next(buf[off:])
			if derr != nil {
				err = derr
				break
			}
			if k == 0 {
				break
			}
			off += k
			b.handle(&ev)
		}
		buf = buf[:copy(buf, buf[off:])]
		_ = b.flush()
		if err == nil {
			continue
		}
		if r.track && !r.closing.Load() {
			buf = buf[:0]
			if b.reconnect() {
				continue
			}
		}
		if !r.closing.Load() && !errors.Is(err, net.ErrClosed) {
			r.connErr(b, err)
		}
		return
	}
}

// handle acts on one event; it runs on the reader.
func (b *bconn) handle(ev *event) {
	r := b.r
	switch ev.kind {
	case evMsg:
		b.onMsg(ev)
	case evAck:
		b.onAck(ev)
	case evPong:
		b.onPong(ev)
	case evPing:
		_ = b.queue(b.c.appendPong)
	case evError:
		b.onError(ev)
	case evFetch, evGroup:
		select {
		case b.ctl <- *ev:
		default:
		}
		if ev.kind == evFetch && ev.flags&frame.FetchMore != 0 && r.track {
			cur := ev.cursor
			_ = b.queue(func(d []byte) ([]byte, error) {
				return b.c.(*myimCodec).appendFetch(d, 0, cur, 256)
			})
		}
	}
}

// onMsg counts a delivered message and its latency, acknowledges it and,
// when delivery completes a send, lets its sender send the next.
func (b *bconn) onMsg(ev *event) {
	r := b.r
	r.delivered.Add(1)
	ts, sender, _, ok := payloadFields(ev.payload)
	if !ok {
		r.errs.Add(1)
		return
	}
	r.hist.record(b.idx, time.Now().UnixNano()-ts)
	if r.track && !ev.group {
		k := [2]uint64{ev.from, ev.cid}
		if b.got[k]++; b.got[k] > 1 {
			r.dups.Add(1)
		}
	}
	if ev.qos == frame.QoS1 && !ev.group {
		_ = b.queue(func(d []byte) ([]byte, error) { return b.c.appendReceipt(d, ev) })
	}
	if ev.group {
		b.groupSeq = max(b.groupSeq, ev.mid)
		if b.sinceGAck++; b.sinceGAck >= 64 {
			b.sinceGAck = 0
			ge := event{group: true, mid: b.groupSeq, to: ev.to}
			_ = b.queue(func(d []byte) ([]byte, error) { return b.c.appendReceipt(d, &ge) })
		}
	}
	if r.completeOnDelivery && !ev.group && sender >= 0 && sender < len(r.conns) {
		if s := r.conns[sender]; s != nil {
			s.done.Add(1)
			s.pump(s == b)
		}
	}
}

// onAck counts the server's ack of a send and, unless delivery completes
// sends, lets this client send the next.
func (b *bconn) onAck(ev *event) {
	r := b.r
	if r.track {
		// After a reconnect one message may be acked twice: the
		// original's ack reaches the new session, and so does the
		// resend's AckDuplicate. Count each CID once.
		b.wmu.Lock()
		m, ok := b.unacked[ev.cid]
		if ok {
			delete(b.unacked, ev.cid)
			b.acked = append(b.acked, sentMsg{to: m.to, cid: m.cid})
		}
		b.wmu.Unlock()
		if !ok {
			return
		}
	}
	r.acked.Add(1)
	if ev.status == frame.AckStored {
		r.stored.Add(1)
	}
	if !r.completeOnDelivery {
		b.done.Add(1)
		b.pump(true)
	}
}

// onPong counts a keepalive or, in the ping scenario, a round trip and
// its latency.
func (b *bconn) onPong(ev *event) {
	r := b.r
	var ts int64
	if r.cfg.Proto == "mqtt" {
		b.wmu.Lock()
		if len(b.pings) > 0 {
			ts = b.pings[0]
			b.pings = b.pings[1:]
		}
		b.wmu.Unlock()
	} else if t, _, _, ok := payloadFields(ev.payload); ok {
		ts = t
	}
	if r.kind != loadPing {
		r.keepalives.Add(1)
		return
	}
	if ts != 0 {
		r.hist.record(b.idx, time.Now().UnixNano()-ts)
	}
	r.delivered.Add(1)
	b.done.Add(1)
	b.pump(true)
}

// onError notes a server ERROR; a refused send (retry) frees its window
// slot, unless it is to be resent.
func (b *bconn) onError(ev *event) {
	r := b.r
	r.errs.Add(1)
	r.noteErr(errors.New("server ERROR " + itoa(int(ev.code)) + ": " + ev.text))
	if r.kind != loadPing && ev.code == frame.ErrCodeRetry {
		if r.track { // resend it later with the same CID
			return
		}
		b.done.Add(1)
		b.pump(true)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// drop disconnects the session without a BYE (reconnect-storm). By default
// it half-closes: the server sees end of stream, and the reader, which goes
// on reading pushes until the server closes, then reconnects. With
// abrupt it closes the socket at once, so that unread data makes the kernel
// answer with a reset.
func (b *bconn) drop(abrupt bool) {
	b.wmu.Lock()
	nc := b.nc
	b.wmu.Unlock()
	if tc, ok := nc.(interface{ CloseWrite() error }); ok && !abrupt {
		_ = tc.CloseWrite()
		return
	}
	_ = nc.Close()
}

// reconnect dials again with the same token, resends every unacked QoS 1
// message with its original CID and fetches what was stored meanwhile. It
// holds wmu throughout, so senders wait.
func (b *bconn) reconnect() bool {
	r := b.r
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.down = true
	_ = b.nc.Close()
	r.reconnects.Add(1)
	for attempt := 0; attempt < 5 && !r.closing.Load(); attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
		}
		nc, c, err := r.open(r.ctx, b.idx)
		if err != nil {
			r.noteErr(err)
			continue
		}
		b.nc, b.c = nc, c
		b.wbuf = b.wbuf[:0]
		b.down = false
		for _, m := range b.unacked {
			if b.wbuf, err = c.appendMsg(b.wbuf, false, m.to, r.qos, m.cid, m.payload); err != nil {
				break
			}
			r.resent.Add(1)
		}
		if err == nil {
			b.wbuf, err = c.(*myimCodec).appendFetch(b.wbuf, 0, 0, 256)
		}
		if err == nil {
			err = b.flushLocked()
		}
		if err == nil {
			return true
		}
		r.noteErr(err)
		_ = nc.Close()
		b.down = true
	}
	r.errs.Add(1)
	return false
}
