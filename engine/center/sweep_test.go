package center

import (
	"context"
	"testing"
	"time"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage/bolt"
)

type dueAt time.Time

func (d *dueAt) due() time.Time { return time.Time(*d) }

// A sweeper hands each expired entry to expire once, outside its shard,
// keeps the entries not yet due, and ends when stop closes.
func TestSweepExpired(t *testing.T) {
	shards := make([]deadlineShard[int, *dueAt], 4)
	now := time.Now()
	past, future := dueAt(now.Add(-time.Second)), dueAt(now.Add(time.Hour))
	for i := range shards {
		shards[i].m = make(map[int]*dueAt)
	}
	for k := 0; k < 40; k++ {
		at := &future
		if k%2 == 0 {
			at = &past
		}
		shards[k%len(shards)].m[k] = at
	}
	stop, done := make(chan struct{}), make(chan struct{})
	got := make(chan int, 100)
	go func() {
		defer close(done)
		sweepExpired(stop, 5*time.Millisecond, shards, func(k int, _ *dueAt) {
			if sh := &shards[k%len(shards)]; !sh.mu.TryLock() {
				t.Errorf("entry %d expired under its shard's lock", k)
			} else {
				sh.mu.Unlock()
			}
			got <- k
		})
	}()
	seen := map[int]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < 20 {
		select {
		case k := <-got:
			if k%2 != 0 || seen[k] {
				t.Fatalf("entry %d expired (again: %v)", k, seen[k])
			}
			seen[k] = true
		case <-timeout:
			t.Fatalf("%d of 20 expired entries swept", len(seen))
		}
	}
	time.Sleep(20 * time.Millisecond) // a few more ticks find nothing due
	close(stop)
	<-done
	if len(got) != 0 {
		t.Fatalf("%d more entries swept", len(got))
	}
	left := 0
	for i := range shards {
		left += len(shards[i].m)
	}
	if left != 20 {
		t.Fatalf("%d entries left, want the 20 not due", left)
	}
}

// A push whose receipt is overdue is stored and acked STORED to its sender
// by the receipt sweeper; its late receipt deletes it from the store.
func TestReceiptSweeperStoresOverdue(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := NewLocalCenter(Config{ID: 1, Store: st, AckTimeout: 200 * time.Millisecond})
	defer c.Close()
	ep := &recEndpoint{id: 1}
	c.Attach(ep)
	sa, sb := im.SessionRef{Endpoint: 1, Session: 1}, im.SessionRef{Endpoint: 1, Session: 2}
	online(t, c, 10, sa)
	online(t, c, 20, sb)
	sendMsg(c, 10, 20, 7, sa)
	m := frame.Msg(ep.wait(t, frame.CmdMsg).Body())
	if a := ep.waitAck(t, 7); a.Status() != frame.AckStored || a.MID() != m.MID() {
		t.Fatalf("overdue push acked with status %d, mid %d; want stored, %d", a.Status(), a.MID(), m.MID())
	}
	ctx := context.Background()
	if msgs, err := st.FetchOffline(ctx, 20, 0, 10); err != nil || len(msgs) != 1 || msgs[0].MID != m.MID() {
		t.Fatalf("store holds %v (%v), want the overdue push", msgs, err)
	}
	receipt(c, 20, sb, m)
	testenv.WaitFor(t, 10*time.Second, "the late receipt deletes the stored copy", func() bool {
		msgs, err := st.FetchOffline(ctx, 20, 0, 10)
		return err == nil && len(msgs) == 0
	})
}

// A forwarded message whose RESULT is overdue is stored by the forwarding
// center, which acks its sender STORED.
func TestForwardSweeperStoresOverdue(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	// The receiving center waits its default 10 s for the receipt that
	// never comes, so the RESULT is overdue at the forwarding one first.
	p := startPair(t, tables, func(cc *ClusterConfig) { cc.ForwardTimeout = 300 * time.Millisecond })
	sendMsg(p.a, 10, 20, 1, p.sa)
	p.eb.wait(t, frame.CmdMsg)
	if a := p.ea.waitAck(t, 1); a.Status() != frame.AckStored {
		t.Fatalf("overdue forward acked with status %d, want stored", a.Status())
	}
	if n := p.a.ClusterStats().ForwardStored.Load(); n != 1 {
		t.Fatalf("forwarding center stored %d overdue forwards, want 1", n)
	}
}
