package link

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// retained is a written QoS 1 message the peer has not confirmed yet.
type retained struct {
	seq uint64
	it  Item
}

// Queue is a link's bounded outbound FIFO, shared by the producers (event
// loops, center workers, the link's reader) and the one writer goroutine
// that Serve runs. Only traffic counts against the bounds; control frames
// (HELLO, ONLINE, OFFLINE, PING, PONG) are always admitted, since dropping
// one would leave the two ends disagreeing, and their number is bounded by
// session churn and the heartbeat. Every method is safe for concurrent use
// and never blocks but Serve. No connection is closed under the queue's
// lock; the only other locks taken under it are those an owner takes in
// Do, which must be leaves.
type Queue struct {
	mu       sync.Mutex
	items    []Item
	data     int // traffic items queued or retained
	bytes    int // their bytes
	kept     []retained
	acked    uint64 // the peer's last received count, this connection
	closed   bool
	maxItems int
	maxBytes int
	wake     chan struct{}
}

// NewQueue returns an empty queue bounded by cfg's QueueLen and QueueBytes
// (cfg's defaults filled). The queue is safe for concurrent use.
func NewQueue(cfg *Config) *Queue {
	return &Queue{maxItems: cfg.QueueLen, maxBytes: cfg.QueueBytes, wake: make(chan struct{}, 1)}
}

// Push appends it. Traffic is refused with ErrFull when the queue's bounds
// are reached, anything with ErrClosed after Close; on an error the caller
// still owns it (Release). Safe for concurrent use; never blocks.
func (q *Queue) Push(it Item) error {
	q.mu.Lock()
	err := q.pushLocked(it)
	q.mu.Unlock()
	return err
}

func (q *Queue) pushLocked(it Item) error {
	if q.closed {
		return ErrClosed
	}
	if it.data {
		sz := it.size()
		if q.data >= q.maxItems || q.bytes+sz > q.maxBytes {
			return ErrFull
		}
		q.data++
		q.bytes += sz
	}
	q.items = append(q.items, it)
	q.signal()
	return nil
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Queued returns how many traffic frames wait to be written or, retained,
// for the peer's confirmation. Safe for concurrent use.
func (q *Queue) Queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.data
}

// releaseLocked frees an item that leaves the queue for good.
func (q *Queue) releaseLocked(it *Item) {
	if it.data {
		q.data--
		q.bytes -= it.size()
	}
	it.Release()
}

// take moves every queued item to dst, in order.
func (q *Queue) take(dst []Item) []Item {
	q.mu.Lock()
	dst = append(dst, q.items...)
	clear(q.items)
	q.items = q.items[:0]
	q.mu.Unlock()
	return dst
}

// written records a batch the writer handled: items to keep are retained
// (all of them when the write failed, since the peer may not have them),
// the others released. seq counts frames written on this connection.
func (q *Queue) written(batch []Item, seq *uint64, failed bool) {
	q.mu.Lock()
	for i := range batch {
		it := &batch[i]
		*seq++
		if it.Retain && (failed || *seq > q.acked) {
			q.kept = append(q.kept, retained{seq: *seq, it: *it})
			continue
		}
		q.releaseLocked(it)
	}
	q.mu.Unlock()
	clear(batch)
}

// Confirm releases the retained messages the peer has read: received is a
// PONG's count of frames the peer read on this connection. Safe for
// concurrent use; the link's reader calls it.
func (q *Queue) Confirm(received uint64) {
	q.mu.Lock()
	if received > q.acked {
		q.acked = received
	}
	n := 0
	for n < len(q.kept) && q.kept[n].seq <= received {
		q.releaseLocked(&q.kept[n].it)
		n++
	}
	q.kept = append(q.kept[:0], q.kept[n:]...)
	q.mu.Unlock()
}

// Reset prepares the queue for the next connection: front goes first, then
// the retained messages, then the traffic still queued; control frames are
// dropped, because the next connection announces its sessions again. It
// returns how many retained messages it put back to be written again.
// Safe for concurrent use, but call it only while no Serve runs.
func (q *Queue) Reset(front []Item) (resent int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.resetLocked(front)
}

func (q *Queue) resetLocked(front []Item) (resent int) {
	resent = len(q.kept)
	items := make([]Item, 0, len(front)+len(q.kept)+len(q.items))
	items = append(items, front...)
	for i := range q.kept {
		items = append(items, q.kept[i].it)
	}
	for i := range q.items {
		it := &q.items[i]
		if it.data {
			items = append(items, *it)
		} else {
			q.releaseLocked(it)
		}
	}
	q.items, q.kept, q.acked = items, q.kept[:0], 0
	if len(items) > 0 {
		q.signal()
	}
	return resent
}

// Clear drops everything queued and retained, for a link whose traffic
// does not outlive its connection; the queue stays open. Safe for
// concurrent use.
func (q *Queue) Clear() {
	q.mu.Lock()
	q.clearLocked()
	q.mu.Unlock()
}

func (q *Queue) clearLocked() {
	q.dropLocked()
	q.items, q.kept, q.acked = q.items[:0], q.kept[:0], 0
}

// Locked is a Queue whose lock is held: what Do passes its function. It is
// valid only during that call, on that goroutine.
type Locked struct{ q *Queue }

// Push is Queue.Push under the lock Do holds.
func (l Locked) Push(it Item) error { return l.q.pushLocked(it) }

// Reset is Queue.Reset under the lock Do holds.
func (l Locked) Reset(front []Item) (resent int) { return l.q.resetLocked(front) }

// Clear is Queue.Clear under the lock Do holds.
func (l Locked) Clear() { l.q.clearLocked() }

// Queued is Queue.Queued under the lock Do holds.
func (l Locked) Queued() int { return l.q.data }

// Do runs fn with the queue's lock held, so that an owner keeps state of
// its own in step with what is queued (the sessions it announced, whether
// its link is up): that state is then guarded by the queue's lock, and
// touched only inside Do. fn queues through l, never through q (q's
// methods would deadlock); it must be short, must not block, call out or
// panic, and may take only leaf locks. Safe for concurrent use.
func (q *Queue) Do(fn func(l Locked)) {
	q.mu.Lock()
	fn(Locked{q})
	q.mu.Unlock()
}

// Close refuses further pushes (ErrClosed) and frees everything queued and
// retained. Closing twice is harmless. Safe for concurrent use; call it
// once no Serve runs, or Serve's writer may still hold a batch.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.dropLocked()
	q.items, q.kept = nil, nil
	q.mu.Unlock()
}

func (q *Queue) dropLocked() {
	for i := range q.items {
		q.releaseLocked(&q.items[i])
	}
	for i := range q.kept {
		q.releaseLocked(&q.kept[i].it)
	}
}

// Serve runs one link connection: a goroutine writes what q holds (and a
// PING every cfg.HeartbeatInterval) while read consumes nc on the caller's
// goroutine, until either fails; then nc is closed and the writer stopped.
// It returns the reader's error, else the writer's. One Serve at a time per
// queue; it blocks until the connection ends.
func (q *Queue) Serve(nc net.Conn, cfg *Config, read func() error) error {
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		err := q.writeLoop(nc, cfg.HeartbeatInterval, cfg.HeartbeatTimeout, stop)
		nc.Close() // wakes the reader
		werr <- err
	}()
	err := read()
	nc.Close()
	close(stop)
	if e := <-werr; e != nil && err == nil {
		err = e
	}
	return err
}

// writeLoop writes what the queue holds until stop closes or a write fails,
// and sends a PING every interval. Each write must finish within timeout.
func (q *Queue) writeLoop(nc net.Conn, interval, timeout time.Duration, stop <-chan struct{}) error {
	w := bufio.NewWriterSize(nc, 64<<10)
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		batch []Item
		seq   uint64
	)
	for {
		select {
		case <-stop:
			return nil
		case now := <-t.C:
			_ = q.Push(NewPing(uint64(now.UnixNano())))
			continue // the push woke us
		case <-q.wake:
		}
		batch = q.take(batch[:0])
		if len(batch) == 0 {
			continue
		}
		_ = nc.SetWriteDeadline(time.Now().Add(timeout))
		var err error
		for i := range batch {
			it := &batch[i]
			if _, err = w.Write(it.head[:it.n]); err != nil {
				break
			}
			if it.buf != nil {
				if _, err = w.Write(it.buf.B); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = w.Flush()
		}
		q.written(batch, &seq, err != nil)
		if err != nil {
			return err
		}
	}
}
