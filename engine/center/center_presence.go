package center

// Presence across centers.
//
// What friends see of a user is the most present status among the user's
// sessions (presenceRank), an invisible session counting as none. A center
// knows its own sessions' statuses; in a cluster it also writes each
// session's status into the route table with the session's route
// (route.Addr.Status, rewritten when the session's presence changes), so
// that the lookups answering FRIENDS_ONLINE, FRIEND_INFO and SIGNATURE can
// see sessions on other centers. Those lookups run on center workers and
// read the table once per request (GetMulti, through the table's
// client-side cache), only for the users this center cannot settle alone.
// A table that cannot be read leaves the answer at what this center knows
// and counts a route error; the request itself never fails for it.
//
// Live presence changes (FRIEND_NOTIFY) do not use the table: each center
// announces its own sessions' changes, which reach friends on any center
// by FORWARD.

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
)

// presenceRank orders the statuses friends may see, most present first:
// online, then busy (at the device, not to be disturbed), then away. Offline,
// invisible and values this version does not know rank 0: they show as
// offline, so that an unknown status is never revealed as presence.
func presenceRank(s byte) int {
	switch s {
	case frame.StatusOnline:
		return 3
	case frame.StatusBusy:
		return 2
	case frame.StatusAway:
		return 1
	}
	return 0
}

// morePresent returns the status friends see of a user with sessions in
// statuses best and s: the higher ranked, and StatusOffline when neither
// may be shown.
func morePresent(best, s byte) byte {
	if presenceRank(s) > presenceRank(best) {
		return s
	}
	if presenceRank(best) == 0 {
		return frame.StatusOffline
	}
	return best
}

// tableStatus is the status a route read from the table stands for: its
// Status, or online for an entry that carries none (written before the
// table carried statuses).
func tableStatus(a route.Addr) byte {
	if a.Status == frame.StatusOffline {
		return frame.StatusOnline
	}
	return a.Status
}

// currentStatus returns the session's presence status. Takes st.mu.
func (st *sessState) currentStatus() byte {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.status
}

// publishedAddr returns the route to write for session a of user: a with
// the session's current status. ok is false when the session is no longer
// on this center (its delete is queued, or done). Reading the status at
// write time rather than when the write was queued means a late or repeated
// write never puts an old status back. Safe for concurrent use.
func (c *LocalCenter) publishedAddr(user uint64, a route.Addr) (out route.Addr, ok bool) {
	c.routes.Lookup(user, func(la route.Addr, v any) {
		if la.Session == a.Session && la.Endpoint == a.Endpoint {
			out, ok = a, true
			out.Status = v.(*sessState).currentStatus()
		}
	})
	return out, ok
}

// friendStatus is friendStatuses for one user.
func (c *LocalCenter) friendStatus(ctx context.Context, user uint64) byte {
	one := [1]uint64{user}
	var st [1]byte
	c.friendStatuses(ctx, one[:], st[:])
	return st[0]
}

// friendStatuses writes to out[i] what a friend sees of users[i]: status()
// merged, in a cluster, with the user's sessions on other centers as the
// route table has them. The table is read once, for the users this center
// does not already show as online; when it cannot be read the answer is
// this center's own view and a route error is counted. out must be at
// least as long as users.
//
// It may block for a table round trip (bounded by tableTimeout): call it
// on a center worker or another goroutine that may block, never on an
// event loop.
func (c *LocalCenter) friendStatuses(ctx context.Context, users []uint64, out []byte) {
	var ask []uint64
	for i, u := range users {
		out[i] = c.status(u)
		if c.cl != nil && out[i] != frame.StatusOnline {
			ask = append(ask, u)
		}
	}
	if len(ask) == 0 {
		return
	}
	remote := c.cl.remoteStatuses(ctx, ask)
	if len(remote) == 0 {
		return
	}
	for i, u := range users {
		if s, ok := remote[u]; ok {
			out[i] = morePresent(out[i], s)
		}
	}
}

// remoteStatuses reads users' routes from the table in one GetMulti and
// returns what friends see of their sessions on other centers; users with
// nothing to show are absent. This center's own routes are skipped: its
// sessions' statuses are known first hand and fresher. On a table error it
// counts a route error and returns nil. Safe for concurrent use; blocks for
// up to tableTimeout.
func (cl *cluster) remoteStatuses(ctx context.Context, users []uint64) map[uint64]byte {
	ctx, cancel := context.WithTimeout(ctx, tableTimeout)
	defer cancel()
	m, err := cl.cfg.Routes.GetMulti(ctx, users)
	if err != nil {
		if cl.RouteErrors.Add(1)%1000 == 1 {
			cl.log.Warn("route table read failed: friends on other centers show as offline", "err", err)
		}
		return nil
	}
	out := make(map[uint64]byte, len(m))
	for u, as := range m {
		best := frame.StatusOffline
		for _, a := range as {
			if a.Center != cl.c.cfg.ID {
				best = morePresent(best, tableStatus(a))
			}
		}
		if best != frame.StatusOffline {
			out[u] = best
		}
	}
	return out
}

// status returns what friends see of user's sessions on this center: the
// most present of their statuses (presenceRank); invisible shows as
// offline. It reads only this center's sessions and never blocks, so the
// event loop may call it; lookups that must also see other centers use
// friendStatuses (center_presence.go).
func (c *LocalCenter) status(user uint64) byte {
	best := frame.StatusOffline
	c.routes.Lookup(user, func(_ route.Addr, v any) {
		best = morePresent(best, v.(*sessState).currentStatus())
	})
	return best
}

// presence sets the status of session s and tells user's friends when
// that changes what they see. In a cluster it queues a rewrite of the
// session's route, which carries the status to the other centers. Called
// on the caller's goroutine (an event loop); never blocks.
func (c *LocalCenter) presence(user uint64, s im.SessionRef, p frame.Presence) {
	st, text := p.Status(), p.Text()
	switch {
	case st > frame.StatusInvisible:
		c.errorTo(s, frame.ErrCodeBadRequest, 0, "unknown status")
		return
	case len(text) > MaxStatusText || !utf8.Valid(text):
		c.errorTo(s, frame.ErrCodeBadRequest, 0, fmt.Sprintf("status text must be UTF-8, at most %d bytes", MaxStatusText))
		return
	}
	before, beforeText := c.statusText(user)
	changed := false
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if a.Session == s.Session {
			ss := v.(*sessState)
			ss.mu.Lock()
			changed = ss.status != st
			ss.status = st
			if string(text) != ss.text {
				ss.text = string(text)
			}
			ss.mu.Unlock()
		}
	})
	if changed && c.cl != nil {
		c.cl.publish(pubOp{user: user, a: route.Addr{Endpoint: s.Endpoint, Center: c.cfg.ID, Session: s.Session}})
	}
	if after, afterText := c.statusText(user); after != before || afterText != beforeText {
		c.notifyFriends(user, after)
	}
}

// MaxStatusText bounds the status text of PRESENCE, in bytes.
const MaxStatusText = 255

// statusText is status with the text friends see beside it: that of the
// session holding the most present status (the first such session with a
// text). Offline shows no text. Never blocks.
func (c *LocalCenter) statusText(user uint64) (byte, string) {
	best, text := frame.StatusOffline, ""
	c.routes.Lookup(user, func(_ route.Addr, v any) {
		ss := v.(*sessState)
		ss.mu.Lock()
		st, t := ss.status, ss.text
		ss.mu.Unlock()
		switch {
		case presenceRank(st) == 0:
		case presenceRank(st) > presenceRank(best):
			best, text = st, t
		case st == best && text == "":
			text = t
		}
	})
	return best, text
}

// notifyFriends tells user's online friends its status, off the caller's
// goroutine.
func (c *LocalCenter) notifyFriends(user uint64, status byte) {
	var text string
	if status != frame.StatusOffline {
		status, text = c.statusText(user) // invisible sessions announce nothing
		if status == frame.StatusOffline {
			return
		}
	}
	c.submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		friends, err := c.cfg.Store.Friends(ctx, user)
		if err != nil {
			return
		}
		b, _ := frame.AppendPresence(nil, frame.CmdFriendNotify, user, time.Now().UnixMilli(), status, []byte(text))
		for _, f := range friends {
			c.sendTo(f, b)
		}
	})
}

// Announce tells user's sessions the current status of friend, after a new
// friendship (so presence starts flowing without a reconnect). It may read
// the route table (friendStatus): not for an event loop.
func (c *LocalCenter) Announce(user, friend uint64) {
	st, text := c.presenceOf(context.Background(), friend)
	b, _ := frame.AppendPresence(nil, frame.CmdFriendNotify, friend, time.Now().UnixMilli(), st, []byte(text))
	c.sendTo(user, b)
}
