package center

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/redis"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// presenceTable connects a Redis route table on addr under prefix, closed
// when the test ends.
func presenceTable(t *testing.T, addr, prefix string) *redis.Table {
	t.Helper()
	r, err := redis.New(redis.Options{Addr: addr, Prefix: prefix,
		DialTimeout: 300 * time.Millisecond, IOTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// presenceCenter starts clustered center id on routes, with its link
// listener registered, and an endpoint that records what it is sent. The
// routes live two minutes, so the refresh (every third of that) never runs
// within a test: what the tests see was written by Online, Offline and
// presence changes.
func presenceCenter(t *testing.T, id uint32, st storage.Store, routes route.Table) (*LocalCenter, *recEndpoint) {
	t.Helper()
	return startCenter(t, id, st, &ClusterConfig{Routes: routes, Link: testLink,
		PeerInterval: 50 * time.Millisecond, RouteTTL: 2 * time.Minute})
}

// presenceStore opens an embedded store and creates users named names,
// the first befriending all the others; it returns their ids in order.
func presenceStore(t *testing.T, names ...string) (storage.Store, []uint64) {
	t.Helper()
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	ids := make([]uint64, len(names))
	for i, n := range names {
		if ids[i], err = st.CreateUser(ctx, storage.User{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range ids[1:] {
		if err := st.RequestFriend(ctx, ids[0], f); err != nil {
			t.Fatal(err)
		}
		if err := st.AcceptFriend(ctx, f, ids[0]); err != nil {
			t.Fatal(err)
		}
	}
	return st, ids
}

// setPresence sends a PRESENCE frame from session s of user.
func setPresence(c *LocalCenter, user uint64, s im.SessionRef, status byte) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendPresence(buf.B, frame.CmdPresence, user, time.Now().UnixMilli(), status, nil)
	c.Handle(user, s, buf)
}

var presenceReq atomic.Uint32

// ask sends a lookup (cmd, target) from session s of user and returns the
// answer's JSON; an ERROR instead of the answer fails the test.
func ask(t *testing.T, c *LocalCenter, ep *recEndpoint, user uint64, s im.SessionRef, cmd frame.Cmd, target uint64) []byte {
	t.Helper()
	req := presenceReq.Add(1)
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendLookup(buf.B, cmd, req, target, nil)
	c.Handle(user, s, buf)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ep.mu.Lock()
		for i, f := range ep.in {
			switch {
			case f.Cmd() == cmd && frame.Lookup(f.Body()).Req() == req:
				ep.in = append(ep.in[:i], ep.in[i+1:]...)
				ep.mu.Unlock()
				return frame.Lookup(f.Body()).JSON()
			case f.Cmd() == frame.CmdError:
				ep.mu.Unlock()
				t.Fatalf("%s lookup answered with an error", cmd)
			}
		}
		ep.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no answer to %s request %d", cmd, req)
	return nil
}

// friendsOnline asks FRIENDS_ONLINE for user and returns friend → status.
func friendsOnline(t *testing.T, c *LocalCenter, ep *recEndpoint, user uint64, s im.SessionRef) map[uint64]byte {
	t.Helper()
	var list []FriendStatus
	if err := json.Unmarshal(ask(t, c, ep, user, s, frame.CmdFriendsOnline, 0), &list); err != nil {
		t.Fatal(err)
	}
	m := make(map[uint64]byte, len(list))
	for _, f := range list {
		m[f.User] = f.Status
	}
	return m
}

// lookupStatus asks cmd (FRIEND_INFO or SIGNATURE) about target and
// returns the answer's status.
func lookupStatus(t *testing.T, c *LocalCenter, ep *recEndpoint, user uint64, s im.SessionRef, cmd frame.Cmd, target uint64) byte {
	t.Helper()
	var u UserJSON
	if err := json.Unmarshal(ask(t, c, ep, user, s, cmd, target), &u); err != nil {
		t.Fatal(err)
	}
	if u.User != target {
		t.Fatalf("%s about %d answered for %d", cmd, target, u.User)
	}
	if u.Status == nil {
		t.Fatalf("%s about %d answered no status", cmd, target)
	}
	return *u.Status
}

// waitFriends asks FRIENDS_ONLINE until the answer is want.
func waitFriends(t *testing.T, c *LocalCenter, ep *recEndpoint, user uint64, s im.SessionRef, want map[uint64]byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := friendsOnline(t, c, ep, user, s)
		if sameStatuses(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("FRIENDS_ONLINE = %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sameStatuses(a, b map[uint64]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestPresenceAcrossCenters: alice on center 1 sees the statuses of her
// friends on center 2, read from the route table (real Redis, one client
// per center as in production, so center 1 reads through its client-side
// cache and learns changes by invalidation).
func TestPresenceAcrossCenters(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t, addr)
	st, ids := presenceStore(t, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := ids[0], ids[1], ids[2], ids[3]
	ra, rb := presenceTable(t, addr, prefix), presenceTable(t, addr, prefix)
	a, ea := presenceCenter(t, 1, st, ra)
	b, _ := presenceCenter(t, 2, st, rb)
	deadline := time.Now().Add(10 * time.Second)
	for a.PeersUp() != 1 || b.PeersUp() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("centers did not link")
		}
		time.Sleep(10 * time.Millisecond)
	}

	sa, sd := im.SessionRef{Endpoint: 1, Session: 1}, im.SessionRef{Endpoint: 1, Session: 2}
	sb, sc := im.SessionRef{Endpoint: 2, Session: 1}, im.SessionRef{Endpoint: 2, Session: 2}
	a.Online(alice, sa)
	a.Online(dave, sd)
	b.Online(bob, sb)
	b.Online(carol, sc)
	setPresence(b, bob, sb, frame.StatusBusy)
	setPresence(b, carol, sc, frame.StatusInvisible)

	// Bob shows busy from the other center, dave online from this one;
	// invisible carol is not listed.
	waitFriends(t, a, ea, alice, sa, map[uint64]byte{bob: frame.StatusBusy, dave: frame.StatusOnline})
	if s := lookupStatus(t, a, ea, alice, sa, frame.CmdFriendInfo, bob); s != frame.StatusBusy {
		t.Fatalf("FRIEND_INFO status of bob = %d, want busy", s)
	}
	if s := lookupStatus(t, a, ea, alice, sa, frame.CmdSignature, bob); s != frame.StatusBusy {
		t.Fatalf("SIGNATURE status of bob = %d, want busy", s)
	}
	// The table holds carol's invisible session as such; lookups hide it.
	if as, err := ra.Get(context.Background(), carol); err != nil || len(as) != 1 || as[0].Status != frame.StatusInvisible {
		t.Fatalf("carol's route = %v, %v; want one invisible session", as, err)
	}
	if s := lookupStatus(t, a, ea, alice, sa, frame.CmdFriendInfo, carol); s != frame.StatusOffline {
		t.Fatalf("FRIEND_INFO status of invisible carol = %d, want offline", s)
	}

	// Changes reach center 1: carol becomes visible, bob online.
	setPresence(b, carol, sc, frame.StatusAway)
	setPresence(b, bob, sb, frame.StatusOnline)
	waitFriends(t, a, ea, alice, sa,
		map[uint64]byte{bob: frame.StatusOnline, carol: frame.StatusAway, dave: frame.StatusOnline})

	// A second device of carol's on center 1, invisible, hides nothing
	// of the away one on center 2.
	sc1 := im.SessionRef{Endpoint: 1, Session: 3}
	a.Online(carol, sc1)
	setPresence(a, carol, sc1, frame.StatusInvisible)
	if s := lookupStatus(t, a, ea, alice, sa, frame.CmdFriendInfo, carol); s != frame.StatusAway {
		t.Fatalf("carol invisible here, away there: FRIEND_INFO status %d, want away", s)
	}
	a.Offline(carol, sc1, true)

	// Going offline removes them.
	b.Offline(bob, sb, true)
	b.Offline(carol, sc, true)
	waitFriends(t, a, ea, alice, sa, map[uint64]byte{dave: frame.StatusOnline})
	if n := a.ClusterStats().RouteErrors.Load(); n != 0 {
		t.Fatalf("%d route errors with Redis up", n)
	}
}

// TestPresenceTableDown: when the route table cannot be read, lookups
// still answer, with what this center knows, and count the error.
func TestPresenceTableDown(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t, addr)
	st, ids := presenceStore(t, "alice", "bob", "dave")
	alice, bob, dave := ids[0], ids[1], ids[2]
	direct := presenceTable(t, addr, prefix)
	p := testenv.StartProxy(t, addr)
	a, ea := presenceCenter(t, 1, st, presenceTable(t, p.Addr(), prefix))

	sa, sd := im.SessionRef{Endpoint: 1, Session: 1}, im.SessionRef{Endpoint: 1, Session: 2}
	a.Online(alice, sa)
	a.Online(dave, sd)
	// Bob is busy on a center 2, as that center would have written it.
	if err := direct.Set(context.Background(), bob, route.Addr{Endpoint: 2, Center: 2, Session: 1,
		Status: frame.StatusBusy}, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFriends(t, a, ea, alice, sa, map[uint64]byte{bob: frame.StatusBusy, dave: frame.StatusOnline})

	p.Cut()
	waitFriends(t, a, ea, alice, sa, map[uint64]byte{dave: frame.StatusOnline})
	if s := lookupStatus(t, a, ea, alice, sa, frame.CmdFriendInfo, dave); s != frame.StatusOnline {
		t.Fatalf("FRIEND_INFO status of dave, on this center, = %d with the table down", s)
	}
	if a.ClusterStats().RouteErrors.Load() == 0 {
		t.Fatal("no route error counted")
	}
}

func TestMorePresent(t *testing.T) {
	const (
		off, on, away, busy, inv = frame.StatusOffline, frame.StatusOnline, frame.StatusAway,
			frame.StatusBusy, frame.StatusInvisible
	)
	for _, tc := range []struct{ a, b, want byte }{
		{off, off, off}, {off, inv, off}, {inv, inv, off}, {inv, away, away},
		{away, busy, busy}, {busy, away, busy}, {busy, on, on}, {on, away, on},
		{on, inv, on}, {off, 200, off}, {200, off, off}, {away, 200, away},
	} {
		if got := morePresent(tc.a, tc.b); got != tc.want {
			t.Errorf("morePresent(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if tableStatus(route.Addr{}) != on {
		t.Error("a route without a status is not read as online")
	}
}
