package link

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

func testConfig(items int) *Config {
	cfg := &Config{QueueLen: items, HeartbeatInterval: time.Hour, HeartbeatTimeout: 10 * time.Second}
	cfg.FillDefaults()
	return cfg
}

func handle(cid uint64) Item {
	b := bytebufferpool.Get()
	b.B, _ = frame.AppendMsg(b.B, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 1, To: 2, CID: cid}, []byte("hi"))
	it := NewHandle(1, 2, b)
	it.Retain = true
	return it
}

// Traffic is bounded, control frames are not, and a closed queue takes
// nothing.
func TestQueueBounds(t *testing.T) {
	q := NewQueue(testConfig(2))
	for i := range 2 {
		if err := q.Push(handle(uint64(i + 1))); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	it := handle(3)
	if err := q.Push(it); !errors.Is(err, ErrFull) {
		t.Fatalf("third traffic frame: %v, want ErrFull", err)
	}
	it.Release()
	if err := q.Push(NewOnline(1, 2, 0)); err != nil {
		t.Fatalf("a control frame on a full queue: %v", err)
	}
	if n := q.Queued(); n != 2 {
		t.Fatalf("queued %d, want 2", n)
	}
	q.Clear()
	if n := q.Queued(); n != 0 {
		t.Fatalf("queued %d after Clear", n)
	}
	q.Close()
	if err := q.Push(NewPing(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after Close: %v, want ErrClosed", err)
	}
	q.Close()
}

// serveOnce runs q on one end of a pipe and returns the reader of the
// other end and a func that ends the connection and waits for Serve.
func serveOnce(t *testing.T, q *Queue, cfg *Config) (*Reader, func()) {
	t.Helper()
	a, b := net.Pipe()
	_ = b.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		done <- q.Serve(a, cfg, func() error { <-stop; return nil })
	}()
	return NewReader(bufio.NewReader(b), 1<<20), func() {
		close(stop)
		<-done
		b.Close()
	}
}

// next reads frames until one that is not a PING and returns its op and,
// for a HANDLE, the client id of the message it carries.
func next(t *testing.T, lr *Reader) (Op, uint64) {
	t.Helper()
	for {
		op, _, tail, err := lr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if op == OpPing {
			continue
		}
		var cid uint64
		if tail > 0 {
			buf, err := lr.ReadClientFrame(tail)
			if err != nil {
				t.Fatal(err)
			}
			cid = frame.Msg(frame.Frame(buf.B).Body()).CID()
			bytebufferpool.Put(buf)
		}
		return op, cid
	}
}

// A retained message written on a connection that ends before the peer
// confirms it is written again first (after the front) on the next one;
// a PONG's count releases it.
func TestQueueRetainsUntilConfirmed(t *testing.T) {
	cfg := testConfig(0)
	q := NewQueue(cfg)
	if err := q.Push(handle(7)); err != nil {
		t.Fatal(err)
	}
	lr, end := serveOnce(t, q, cfg)
	if op, cid := next(t, lr); op != OpHandle || cid != 7 {
		t.Fatalf("op %d cid %d", op, cid)
	}
	end()
	if err := q.Push(NewOffline(1, 2, false)); err != nil {
		t.Fatal(err)
	}
	if n := q.Reset([]Item{NewOnline(1, 2, Resumed)}); n != 1 {
		t.Fatalf("Reset put back %d, want 1", n)
	}
	lr, end = serveOnce(t, q, cfg)
	defer end()
	if op, _ := next(t, lr); op != OpOnline {
		t.Fatalf("first op %d, want ONLINE (the control frame queued before Reset is dropped)", op)
	}
	if op, cid := next(t, lr); op != OpHandle || cid != 7 {
		t.Fatalf("op %d cid %d, want the retained HANDLE", op, cid)
	}
	testenv.WaitFor(t, 10*time.Second, "the HANDLE written", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.kept) == 1
	})
	if n := q.Queued(); n != 1 {
		t.Fatalf("queued %d before the confirmation, want 1", n)
	}
	q.Confirm(lr.Count())
	if n := q.Queued(); n != 0 {
		t.Fatalf("queued %d after the confirmation", n)
	}
}

// Do runs its function under the queue's lock: a Push from elsewhere waits
// for it, and what the function queued comes first.
func TestQueueDo(t *testing.T) {
	q := NewQueue(testConfig(0))
	in, release, pushed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go q.Do(func(l Locked) {
		if err := l.Push(NewPing(1)); err != nil || l.Queued() != 0 {
			t.Errorf("push under Do: %v, queued %d", err, l.Queued())
		}
		close(in)
		<-release
	})
	<-in
	go func() {
		_ = q.Push(NewPing(2))
		close(pushed)
	}()
	select {
	case <-pushed:
		t.Fatal("Push went through while Do held the lock")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-pushed
	batch := q.take(nil)
	if len(batch) != 2 || batch[0].head[batch[0].n-1] != 1 { // the last byte of PING 1's nonce
		t.Fatalf("queued %d items, the first not Do's", len(batch))
	}
}
