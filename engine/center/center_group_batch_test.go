package center

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage"
)

// appendGate is a real store whose group appends can be held (so that
// messages queue on their lane meanwhile) and made to fail, and which
// counts the appends that reach it.
type appendGate struct {
	storage.Store

	mu      sync.Mutex
	held    chan struct{} // while non-nil, appends wait for it to close
	reached chan struct{} // closed by the first append held
	fail    error         // appends fail with it while non-nil
	writes  int           // appends that reached the store, batches counted once
}

func (g *appendGate) AppendGroupMsgs(ctx context.Context, ms []storage.GroupMessage) error {
	g.mu.Lock()
	held, reached := g.held, g.reached
	if reached != nil {
		g.reached = nil
	}
	g.mu.Unlock()
	if held != nil {
		if reached != nil {
			close(reached)
		}
		<-held
	}
	g.mu.Lock()
	g.writes++
	fail := g.fail
	g.mu.Unlock()
	if fail != nil {
		return fail
	}
	return g.Store.AppendGroupMsgs(ctx, ms)
}

// hold makes the next appends wait until the returned release is called,
// and returns once the first of them is held.
func (g *appendGate) hold(t *testing.T, first func()) (release func()) {
	t.Helper()
	held, reached := make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.held, g.reached = held, reached
	g.mu.Unlock()
	first()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the first append never reached the store")
	}
	return func() {
		g.mu.Lock()
		g.held = nil
		g.mu.Unlock()
		close(held)
	}
}

func (g *appendGate) appends() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// groupCenter is windowCenterOn with a group of alice and bob on an
// appendGate.
func groupCenter(t *testing.T) (*LocalCenter, *fakeEndpoint, *appendGate, uint64) {
	t.Helper()
	var g *appendGate
	c, ep, _ := windowCenterOn(t, Config{}, func(st storage.Store) storage.Store {
		g = &appendGate{Store: st}
		return g
	})
	group, err := g.CreateGroup(t.Context(), alice, "g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.JoinGroup(t.Context(), group, bob); err != nil {
		t.Fatal(err)
	}
	return c, ep, g, group
}

// aliceToGroup hands the center alice's QoS 1 group message cid.
func aliceToGroup(c *LocalCenter, group, cid uint64) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendMsg(buf.B, frame.CmdGroupMsg, frame.QoS1, frame.MsgHeader{From: alice, To: group, CID: cid,
		Time: time.Now().UnixMilli()}, fmt.Appendf(nil, "m%d", cid))
	c.Handle(alice, aliceS, buf)
}

// Messages that queue while the lane's append runs go to the store in one
// write: each is acked once stored with the seq of its arrival order, a
// resend within the batch is acked DUPLICATE with the original's seq, and
// the members get them once each, in seq order.
func TestGroupLaneBatchesAppends(t *testing.T) {
	c, ep, g, group := groupCenter(t)
	const n = 20
	release := g.hold(t, func() { aliceToGroup(c, group, 1) })
	for cid := uint64(2); cid <= n; cid++ {
		aliceToGroup(c, group, cid)
	}
	aliceToGroup(c, group, 3) // a resend, in the same batch as its original
	release()
	eventually(t, "every member has every message", func() bool {
		return len(ep.frames(bobS, frame.CmdGroupMsg)) >= n && len(ep.frames(aliceS, frame.CmdGroupMsg)) >= n
	})
	eventually(t, "every message acked", func() bool { return len(ep.acks(aliceS)) == n && len(ep.acks(aliceS)[3]) == 2 })
	if w := g.appends(); w != 2 {
		t.Fatalf("%d store writes, want 2: the held one and the batch that queued behind it", w)
	}
	acks := ep.acks(aliceS)
	for cid := uint64(1); cid <= n; cid++ {
		a := acks[cid][0]
		if a.Status() != frame.AckStored || a.MID() != cid {
			t.Fatalf("cid %d: ack status %d seq %d, want stored with seq %d", cid, a.Status(), a.MID(), cid)
		}
	}
	if a := acks[3][1]; a.Status() != frame.AckDuplicate || a.MID() != 3 {
		t.Fatalf("resend: ack status %d seq %d, want DUPLICATE of seq 3", a.Status(), a.MID())
	}
	for _, s := range [...]struct {
		name string
		fs   []frame.Frame
	}{{"bob", ep.frames(bobS, frame.CmdGroupMsg)}, {"alice", ep.frames(aliceS, frame.CmdGroupMsg)}} {
		if len(s.fs) != n {
			t.Fatalf("%s got %d group messages, want %d", s.name, len(s.fs), n)
		}
		for i, f := range s.fs {
			m := frame.Msg(f.Body())
			if m.MID() != uint64(i+1) || string(m.Content()) != fmt.Sprintf("m%d", i+1) {
				t.Fatalf("%s's message %d: seq %d %q", s.name, i, m.MID(), m.Content())
			}
		}
	}
	if k, err := g.CountGroupMsgs(t.Context(), group); err != nil || k != n {
		t.Fatalf("stored %d (%v), want %d", k, err, n)
	}
}

// A batch whose write fails refuses each of its senders with a retryable
// error and acks and pushes none of them; the next message is stored.
func TestGroupLaneBatchStoreFailure(t *testing.T) {
	c, ep, g, group := groupCenter(t)
	const n = 5
	g.mu.Lock()
	g.fail = fmt.Errorf("%w: test", storage.ErrUnavailable)
	g.mu.Unlock()
	release := g.hold(t, func() { aliceToGroup(c, group, 1) })
	for cid := uint64(2); cid <= n; cid++ {
		aliceToGroup(c, group, cid)
	}
	release()
	eventually(t, "every sender refused", func() bool { return len(ep.frames(aliceS, frame.CmdError)) == n })
	for i, f := range ep.frames(aliceS, frame.CmdError) {
		if e := frame.Error(f.Body()); e.Code() != frame.ErrCodeRetry || e.Ref() != uint64(i+1) {
			t.Fatalf("refusal %d: code %d ref %d, want RETRY for cid %d", i, e.Code(), e.Ref(), i+1)
		}
	}
	g.mu.Lock()
	g.fail = nil
	g.mu.Unlock()
	aliceToGroup(c, group, n+1)
	eventually(t, "the next message acked", func() bool { return len(ep.acks(aliceS)) == 1 })
	if a := ep.acks(aliceS)[n+1]; len(a) != 1 || a[0].Status() != frame.AckStored || a[0].MID() != 1 {
		t.Fatalf("after the failure: acks %v, want cid %d stored with seq 1", ep.acks(aliceS), n+1)
	}
	if fs := ep.frames(bobS, frame.CmdGroupMsg); len(fs) != 1 || frame.Msg(fs[0].Body()).MID() != 1 {
		t.Fatalf("bob got %d group messages, want only seq 1", len(fs))
	}
}

// A group most of whose members are offline is pushed by walking the
// sessions here, not the members: the members online here get it, and in
// a cluster those online on another center get it through that center.
func TestGroupFanoutFewOnline(t *testing.T) {
	addr := testenv.RedisAddr(t)
	p := startPair(t, redisTables(addr, testenv.RedisPrefix(t, addr)), nil)
	st := p.a.cfg.Store
	group, err := st.CreateGroup(t.Context(), 10, "few online")
	if err != nil {
		t.Fatal(err)
	}
	for u := uint64(20); u < 40; u++ { // 20 online on b, 21..39 offline
		if _, err := st.JoinGroup(t.Context(), group, u); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []struct {
		c    *LocalCenter
		user uint64
		ref  im.SessionRef
	}{{p.a, 10, p.sa}, {p.b, 20, p.sb}} {
		buf := bytebufferpool.Get()
		buf.B, _ = frame.AppendMsg(buf.B, frame.CmdGroupMsg, frame.QoS1, frame.MsgHeader{From: s.user, To: group, CID: 1,
			Time: time.Now().UnixMilli()}, []byte("few"))
		s.c.Handle(s.user, s.ref, buf)
		for _, ep := range []*recEndpoint{p.ea, p.eb} {
			m := frame.Msg(ep.wait(t, frame.CmdGroupMsg).Body())
			if m.From() != s.user || m.To() != group || string(m.Content()) != "few" {
				t.Fatalf("endpoint %d got from %d to %d %q", ep.id, m.From(), m.To(), m.Content())
			}
		}
	}
}

// ackGate is a real store whose first group ack write (AckGroup or
// AckGroups) waits for release, and which records the acks of each write.
type ackGate struct {
	storage.Store
	reached, release chan struct{}
	mu               sync.Mutex
	calls            [][]storage.GroupAck
}

func (a *ackGate) record(acks []storage.GroupAck) {
	a.mu.Lock()
	a.calls = append(a.calls, slices.Clone(acks))
	first := len(a.calls) == 1
	a.mu.Unlock()
	if first {
		close(a.reached)
		<-a.release
	}
}

func (a *ackGate) AckGroups(ctx context.Context, acks []storage.GroupAck) error {
	a.record(acks)
	return a.Store.AckGroups(ctx, acks)
}

func (a *ackGate) AckGroup(ctx context.Context, group, user, seq uint64) error {
	a.record([]storage.GroupAck{{Group: group, User: user, Seq: seq}})
	return a.Store.AckGroup(ctx, group, user, seq)
}

// Read acks that come while the previous write runs are written together
// in the next, one per member and group, with the highest seq.
func TestGroupReadAcksJoin(t *testing.T) {
	var st *ackGate
	c, ep, _ := windowCenterOn(t, Config{}, func(s storage.Store) storage.Store {
		st = &ackGate{Store: s, reached: make(chan struct{}), release: make(chan struct{})}
		return st
	})
	group, err := st.CreateGroup(t.Context(), alice, "g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.JoinGroup(t.Context(), group, bob); err != nil {
		t.Fatal(err)
	}
	other, err := st.CreateGroup(t.Context(), alice, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.JoinGroup(t.Context(), other, bob); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for cid := uint64(1); cid <= n; cid++ {
		aliceToGroup(c, group, cid)
	}
	aliceToGroup(c, other, n+1)
	eventually(t, "bob has every message", func() bool { return len(ep.frames(bobS, frame.CmdGroupMsg)) == n+1 })
	readAckOf := func(g, user uint64, s im.SessionRef, seq uint64) {
		buf := bytebufferpool.Get()
		buf.B, _ = frame.AppendAck(buf.B, 0, seq, g, frame.AckGroupRead)
		c.Handle(user, s, buf)
	}
	readAck := func(user uint64, s im.SessionRef, seq uint64) { readAckOf(group, user, s, seq) }
	readAck(alice, aliceS, n) // the first write, held
	select {
	case <-st.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the first ack never reached the store")
	}
	for seq := uint64(1); seq <= n; seq++ {
		readAck(bob, bobS, seq)
	}
	readAckOf(other, bob, bobS, 1)
	close(st.release)
	eventually(t, "bob's read written", func() bool {
		ms, err := st.GroupMembers(t.Context(), group)
		return err == nil && len(ms) == 2 && ms[1].User == bob && ms[1].AckedSeq == n
	})
	eventually(t, "bob's read of the other group written", func() bool {
		ms, err := st.GroupMembers(t.Context(), other)
		return err == nil && len(ms) == 2 && ms[1].AckedSeq == 1
	})
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.calls) == 2 {
		slices.SortFunc(st.calls[1], func(a, b storage.GroupAck) int { return cmp.Compare(a.Group, b.Group) })
	}
	want := [][]storage.GroupAck{{{Group: group, User: alice, Seq: n}},
		{{Group: group, User: bob, Seq: n}, {Group: other, User: bob, Seq: 1}}}
	if fmt.Sprint(st.calls) != fmt.Sprint(want) {
		t.Fatalf("store writes %v, want %v", st.calls, want)
	}
	if k, err := st.CountGroupMsgs(t.Context(), group); err != nil || k != 0 {
		t.Fatalf("%d messages left (%v) once both members read them all", k, err)
	}
}
