package center

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/internal/lograte"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage/bolt"
)

// lockedBuffer is a log sink safe for the center's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With the storage job queue full, every receipt of a stored message finds
// no room for its delete; the warning it logs from the event loop is
// limited to a burst per interval, however many receipts come.
func TestFullJobQueueWarnsRateLimited(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs lockedBuffer
	c := NewLocalCenter(Config{ID: 1, Store: st, Workers: 1, QueueLen: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	block := make(chan struct{})
	defer c.Close()
	defer close(block)
	// One job holds the worker, the next fills the queue.
	for queued := 0; queued < 2; {
		if c.submit(func() { <-block }) {
			queued++
		}
	}

	const acks = 1000
	for mid := uint64(1); mid <= acks; mid++ {
		buf := frame.AcquireBuffer()
		buf.B, _ = frame.AppendAck(buf.B, 0, mid, 0, frame.AckReceived)
		c.Handle(7, im.SessionRef{Endpoint: 1, Session: 1}, buf)
	}
	n := strings.Count(logs.String(), "queue full")
	if n == 0 || n > lograte.Burst {
		t.Fatalf("%d queue-full warnings for %d receipts, want 1 to %d", n, acks, lograte.Burst)
	}
}
