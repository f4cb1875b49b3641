package node

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
