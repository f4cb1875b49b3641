package center

import (
	"sync"
	"time"

	"github.com/myim/myim/engine/link"
)

// stored sends a STORED hint naming users, whose messages this center just
// stored offline and who have no session here, to every peer link that is
// up. Best effort: a hint that does not fit a link's queue is dropped (the
// user's client fetches the message later). Never blocks.
func (cl *cluster) stored(users []uint64) {
	cl.away.add(users, time.Now())
	var arr [8]*peerLink
	ps := arr[:0]
	cl.peersMu.Lock()
	for _, p := range cl.peers {
		ps = append(ps, p)
	}
	cl.peersMu.Unlock()
	for _, p := range ps {
		if !p.up() {
			continue
		}
		it := link.NewStored(users)
		if p.push(it) {
			cl.HintsSent.Add(uint64(len(users)))
		} else {
			it.Release()
		}
	}
}

// awayUsers remembers the users named in STORED hints for a while, so
// that a peer whose link comes up later hears of them too: a center that
// restarted, or whose link was down when the hint went out, may hold
// sessions of theirs that no hint reached, and those sessions would see
// the stored messages only at their client's next fetch. Bounded: when
// full of users hinted within the window, new ones are not remembered.
// Safe for concurrent use.
type awayUsers struct {
	mu     sync.Mutex
	window time.Duration
	m      map[uint64]time.Time // user -> last stored
}

// maxAwayUsers bounds awayUsers: 65,536 users are 2 MiB of map at most,
// and one link-up replays them in 16 STORED frames of 4,096.
const maxAwayUsers = 1 << 16

func (a *awayUsers) add(users []uint64, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[uint64]time.Time)
	}
	for _, u := range users {
		if _, ok := a.m[u]; !ok && len(a.m) >= maxAwayUsers {
			for k, t := range a.m {
				if now.Sub(t) > a.window {
					delete(a.m, k)
				}
			}
			if len(a.m) >= maxAwayUsers {
				return
			}
		}
		a.m[u] = now
	}
}

// recent returns the users stored within the window.
func (a *awayUsers) recent(now time.Time) []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]uint64, 0, len(a.m))
	for u, t := range a.m {
		if now.Sub(t) > a.window {
			delete(a.m, u)
			continue
		}
		out = append(out, u)
	}
	return out
}

// replayStored sends p, whose link just came up, a STORED hint for every
// user hinted within the window.
func (cl *cluster) replayStored(p *peerLink) {
	users := cl.away.recent(time.Now())
	for len(users) > 0 {
		part := users[:min(len(users), maxDeliverMany)]
		users = users[len(part):]
		it := link.NewStored(part)
		if !p.push(it) {
			it.Release()
			return
		}
		cl.HintsSent.Add(uint64(len(part)))
	}
}

// onStored has the sessions here of users, named in a STORED hint, drain
// the offline store. It runs on the link's reader.
func (cl *cluster) onStored(users []uint64) {
	cl.HintsReceived.Add(uint64(len(users)))
	for _, u := range users {
		cl.c.spillTo(u)
	}
}
