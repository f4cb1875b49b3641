package center

// Several centers.
//
// Each center publishes where its users are online in the cluster route
// table (route.Table, Redis): an Addr{Endpoint, Center, Session, Status}
// per session, set with a TTL and refreshed, so that a dead center's users
// age out. The writes leave the caller's goroutine (Online, Offline and
// presence run on endpoint event loops) through one bounded queue and one
// publisher goroutine; a failed write is healed by the next refresh.
//
// Besides the address, each entry carries the session's presence status
// (online, away, busy, invisible), read from the session when the write is
// made, so a queued write never puts back an old status. A presence change
// queues a rewrite of the session's route. Other centers read it to answer
// friend lookups (FRIENDS_ONLINE, FRIEND_INFO, SIGNATURE) for users with
// sessions elsewhere (center_presence.go); an invisible session is stored
// as such and shown to no one as online. Entries without a status (from
// before the table carried one) read as online.
//
// When a message's recipient has no session on this center, the center
// looks the recipient up in the table (through the table's client-side
// cache, batched) on a router goroutine and, when another center holds a
// session, FORWARDs the message over its link to that center
// (link_peer.go), which routes it as its own: it pushes and tracks the
// receipt, or, when the recipient's sessions there are all busy, stores it
// offline (the offline store is shared in a multi-center deployment), and
// answers with a RESULT. This center keeps a forwarded QoS 1 message until
// that RESULT and acks the sender from it; when the link drops or the
// RESULT is overdue it stores the message offline itself and acks Stored.
// The recipient's client drops a second copy by its (sender, client id).
//
// A route can be stale: the recipient reconnected to another center and the
// old center's entry has not aged out yet. A center that receives a QoS 1
// message for a user with no session there stores nothing and answers
// RESULT moved; the forwarding center routes the message again: to its own
// session when the recipient is here now, else, after a fresh lookup, to a
// center it has not tried, else to the offline store. The message keeps the
// list of centers tried (at most maxForwardTries) and only the forwarding
// center ever forwards it, so it cannot circle. QoS 0 is stored where it
// lands, as before.
//
// When the table cannot be read (Redis down), a router holds the QoS 1
// messages whose lookup failed, in order and bounded in count and bytes
// (RetryLen, RetryBytes), and reads the table again with backoff; what is
// still unrouted after LookupRetry, or does not fit, is stored offline and
// acked Stored (never an ack for what was not kept). A short blip thus
// delays those messages instead of sending them to the store. While
// messages are held, newer jobs wait behind them without a read of their
// own, which keeps each recipient's order and spares a table that is down.
// Acks, notices and QoS 0 are not held. Traffic between users of this
// center never needs the table.
//
// Whenever this center stores a message for a user with no session here
// (forward refused, timed out or lost with its link, table down past the
// retry, every center tried), the user may be online on another center,
// whose sessions would see the message only at their next fetch. So the
// offline writer sends, per stored batch, one STORED hint naming those
// users to every peer link that is up, and the receiving center has its
// sessions of them drain the store (spillTo). Hints need no table, so they
// also work while Redis is down; a hint lost with its link leaves the
// message to the next fetch, as before.
//
// ACKs, errors, notices and presence for users of other centers are
// FORWARDed without a RESULT; group messages cross to each other center
// once, as one FANOUT naming that center's members.
//
// Lock order: a forward shard's lock is taken alone; peersMu alone.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
)

// ClusterConfig joins a center to the other centers of a cluster. Zero
// values mean the defaults.
type ClusterConfig struct {
	// Routes is the cluster's route table and server registry; the other
	// centers are the registry's entries of role "center" (see
	// CenterServer). Required.
	Routes route.Table
	// Link is the client side of the links this center dials to the other
	// centers (LoadNodeTLS's client configuration, or Plaintext).
	Link link.Config
	// RouteTTL is the lifetime of a published route; RefreshInterval how
	// often every local session's route is written again. Defaults 30 s
	// and 10 s: a route survives two failed refreshes, and a dead center's
	// users are gone from the table within 30 s.
	RouteTTL, RefreshInterval time.Duration
	// PeerInterval is how often the registry is read for other centers.
	// Default 2 s.
	PeerInterval time.Duration
	// DialTimeout bounds connecting to another center. Default 5 s.
	DialTimeout time.Duration
	// QueueLen bounds the route writes waiting for the publisher and, per
	// router, the messages waiting for a lookup. Default 65,536.
	QueueLen int
	// ForwardTimeout is how long a forwarded QoS 1 message waits for its
	// RESULT before this center stores it offline. Default the center's
	// AckTimeout plus 5 s: the other center answers by AckTimeout at the
	// latest (it stores what its recipient has not acked by then).
	ForwardTimeout time.Duration
	// LookupRetry is how long a QoS 1 message for a user with no session
	// here waits, after the route table failed to answer, for the table to
	// answer again (read again with backoff) before it is stored offline
	// and acked Stored. Default 5 s: a Redis restart or failover takes a
	// few seconds, and the sender waits at most that much longer for its
	// ack (plus one table call's timeout when the table hangs rather than
	// refuses). Negative stores at once, without retries.
	LookupRetry time.Duration
	// LossCheck is how often the center checks that the table still holds
	// one of its routes (one Redis call); when the table lost it (Redis
	// restarted empty, or failed over to an empty replica) every route is
	// written again at once, not at the next refresh, since messages to
	// this center's users are stored offline while their routes are
	// missing. Default 1 s; negative: no check.
	LossCheck time.Duration
	// RetryLen and RetryBytes bound the messages waiting for LookupRetry,
	// over all routers; past either, a message whose lookup failed is
	// stored at once. Defaults 4,096 and 16 MiB.
	RetryLen, RetryBytes int
}

func (c *ClusterConfig) fillDefaults(ack time.Duration) {
	c.Link.FillDefaults()
	if c.RouteTTL <= 0 {
		c.RouteTTL = 30 * time.Second
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = c.RouteTTL / 3
	}
	if c.PeerInterval <= 0 {
		c.PeerInterval = 2 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 1 << 16
	}
	if c.LossCheck == 0 {
		c.LossCheck = time.Second
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = ack + 5*time.Second
	}
	if c.LookupRetry == 0 {
		c.LookupRetry = 5 * time.Second
	}
	if c.RetryLen <= 0 {
		c.RetryLen = 4096
	}
	if c.RetryBytes <= 0 {
		c.RetryBytes = 16 << 20
	}
}

// centerRegistryBit marks a center's id in the server registry, which keys
// entries by id across roles: a node of role all registers its endpoint
// under its server id and its center under this bit plus the same id.
const centerRegistryBit = 1 << 16

// CenterServer is the server-registry entry of center id, whose link
// listener other centers reach at addr.
func CenterServer(id uint32, addr string) route.Server {
	return route.Server{ID: centerRegistryBit | id, Role: im.RoleCenter, Addr: addr}
}

// ClusterStats counts the center-to-center traffic. Safe for concurrent use.
type ClusterStats struct {
	Forwarded     atomic.Uint64 // QoS 1 messages forwarded to another center
	ForwardStored atomic.Uint64 // forwarded, then stored here: link down or RESULT overdue
	Received      atomic.Uint64 // messages forwarded here by other centers
	Relayed       atomic.Uint64 // acks, notices, presence, group pushes sent to other centers
	Unrouted      atomic.Uint64 // messages for a user of another center that no link took: stored
	RouteErrors   atomic.Uint64 // route table reads that failed
	PublishErrors atomic.Uint64 // route table writes that failed
	PublishDrops  atomic.Uint64 // route writes dropped: queue full (the refresh repairs them)
	PeerConnects  atomic.Uint64 // links to other centers established
	PeerDialFails atomic.Uint64 // failed connection attempts to other centers
	Moved         atomic.Uint64 // forwarded here for a user with no session here: answered moved
	Rerouted      atomic.Uint64 // forwarded, answered moved, routed again
	Held          atomic.Uint64 // QoS 1 messages held for a retry after a failed route read
	HeldStored    atomic.Uint64 // held, then stored: the table stayed down past LookupRetry
	HintsSent     atomic.Uint64 // users named in STORED hints to other centers
	HintsReceived atomic.Uint64 // users named in STORED hints from other centers
	Republished   atomic.Uint64 // full route rewrites because the table had lost them
}

// ClusterStats returns the center's cluster counters, or nil for a center
// that is not clustered.
func (c *LocalCenter) ClusterStats() *ClusterStats {
	if c.cl == nil {
		return nil
	}
	return &c.cl.ClusterStats
}

// PeersUp returns how many links to other centers are up.
func (c *LocalCenter) PeersUp() int {
	if c.cl == nil {
		return 0
	}
	c.cl.peersMu.Lock()
	defer c.cl.peersMu.Unlock()
	n := 0
	for _, p := range c.cl.peers {
		if p.up() {
			n++
		}
	}
	return n
}

const (
	// routerShards spreads route lookups over a few goroutines; messages
	// for one recipient always use the same one, which keeps their order.
	routerShards = 4
	// routeBatch bounds the jobs one lookup (GetMulti) serves.
	routeBatch = 256
	// publishParallel bounds the concurrent writes of a refresh: enough
	// for rueidis to pipeline them into few round trips.
	publishParallel = 32
	// tableTimeout bounds one route table call.
	tableTimeout = 2 * time.Second
	// maxForwardTries bounds the centers one message is forwarded to: a
	// recipient seldom moves more than once while a message is in flight,
	// and when three centers in a row hold no session the table is behind
	// and the store, with its STORED hint, is the better way to reach them.
	maxForwardTries = 3
	// Backoff of the route reads retried for held messages: the first
	// retry comes soon, since a dropped connection is redialed at once;
	// later ones space out, so that a table that is down sees about one
	// read a second per router.
	retryMinBackoff = 50 * time.Millisecond
	retryMaxBackoff = time.Second
)

type cluster struct {
	ClusterStats
	c   *LocalCenter
	cfg ClusterConfig
	log *slog.Logger

	pub     chan pubOp
	routers [routerShards]chan routeJob
	fwd     [pendingShards]fwdShard

	peersMu sync.Mutex
	peers   map[uint32]*peerLink
	slotErr map[uint32]bool      // peers already reported for a clashing id
	missing map[uint32]time.Time // linked peers absent from the registry, since when
	away    awayUsers            // users hinted lately, for peers that come up later

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type pubOp struct {
	user uint64
	a    route.Addr
	del  bool
}

// centerList is a bounded list of center ids, kept by value.
type centerList struct {
	ids [maxForwardTries]uint32
	n   uint8
}

func (l *centerList) has(id uint32) bool {
	for _, x := range l.ids[:l.n] {
		if x == id {
			return true
		}
	}
	return false
}

// add appends id; the caller checks full first.
func (l *centerList) add(id uint32) {
	l.ids[l.n] = id
	l.n++
}

func (l *centerList) full() bool { return int(l.n) == len(l.ids) }

func newCluster(c *LocalCenter, cfg ClusterConfig) *cluster {
	cfg.fillDefaults(c.cfg.AckTimeout)
	if cfg.Link.Logger == nil {
		cfg.Link.Logger = c.cfg.Logger
	}
	cl := &cluster{c: c, cfg: cfg, log: c.cfg.Logger.With("part", "cluster"),
		pub: make(chan pubOp, cfg.QueueLen), peers: make(map[uint32]*peerLink),
		slotErr: make(map[uint32]bool), missing: make(map[uint32]time.Time), stop: make(chan struct{})}
	cl.away.window = max(cfg.RouteTTL, time.Minute)
	for i := range cl.fwd {
		cl.fwd[i].m = make(map[fwdKey]*fwdEntry)
	}
	for i := range cl.routers {
		cl.routers[i] = make(chan routeJob, cfg.QueueLen/routerShards)
		cl.wg.Add(1)
		go cl.router(cl.routers[i], &retryList{maxLen: max(cfg.RetryLen/routerShards, 1),
			maxBytes: max(cfg.RetryBytes/routerShards, 1)})
	}
	cl.wg.Add(3)
	go cl.publisher()
	go cl.peerManager()
	go cl.fwdSweeper()
	return cl
}

// close stops the goroutines and the peer links. What waits in the
// routers, held for a retry or not, is stored offline, so that nothing
// acked is lost at shutdown.
func (cl *cluster) close() {
	cl.stopOnce.Do(func() { close(cl.stop) })
	cl.wg.Wait()
	cl.peersMu.Lock()
	peers := cl.peers
	cl.peers = map[uint32]*peerLink{}
	cl.peersMu.Unlock()
	for _, p := range peers {
		p.close()
	}
	for id := range peers {
		cl.peerDown(id)
	}
}

// ---- publishing routes ----

// publish queues a route write; never blocks.
func (cl *cluster) publish(op pubOp) {
	select {
	case cl.pub <- op:
	default:
		cl.PublishDrops.Add(1)
	}
}

func (cl *cluster) publisher() {
	defer cl.wg.Done()
	t := time.NewTicker(cl.cfg.RefreshInterval)
	defer t.Stop()
	var dels []pubOp // deletes to retry; a lost one expires with its TTL
	failing := false
	note := func(err error) {
		if err == nil {
			if failing {
				cl.log.Info("route table writes recovered")
			}
			failing = false
			return
		}
		cl.PublishErrors.Add(1)
		if !failing {
			cl.log.Warn("route table write failed; retrying at the next refresh", "err", err)
		}
		failing = true
	}
	var canary <-chan time.Time
	if cl.cfg.LossCheck > 0 {
		tc := time.NewTicker(cl.cfg.LossCheck)
		defer tc.Stop()
		canary = tc.C
	}
	for {
		select {
		case <-cl.stop:
			return
		case <-canary:
			switch err := cl.checkCanary(); {
			case errors.Is(err, errRoutesLost):
				cl.Republished.Add(1)
				cl.log.Warn("route table lost this center's routes (Redis restarted or failed over): writing them all again")
				note(cl.refresh())
			case err != nil:
				note(err)
			case failing:
				note(cl.refresh()) // back: write what failed meanwhile
			}
		case op := <-cl.pub:
			err := cl.write(op)
			note(err)
			if err != nil && op.del && len(dels) < cl.cfg.QueueLen {
				dels = append(dels, op)
			}
		case <-t.C:
			keep := dels[:0]
			for _, op := range dels {
				if err := cl.write(op); err != nil {
					keep = append(keep, op)
				}
			}
			dels = keep
			note(cl.refresh())
		}
	}
}

// errRoutesLost is checkCanary's answer when the table dropped a route of a
// session that still lives here.
var errRoutesLost = errors.New("center: route table lost this center's routes")

// checkCanary refreshes the route of one local session (any: the first the
// table ranges over). The table not having it while the session still
// lives here means the table lost its data.
func (cl *cluster) checkCanary() error {
	var user uint64
	var a route.Addr
	found := false
	cl.c.routes.Range(func(u uint64, la route.Addr, _ any) bool {
		user, a, found = u, la, true
		return false
	})
	if !found {
		return nil
	}
	pa, ok := cl.c.publishedAddr(user, a)
	if !ok {
		return nil // gone meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	err := cl.cfg.Routes.Refresh(ctx, user, pa, cl.cfg.RouteTTL)
	if errors.Is(err, route.ErrNotFound) {
		if _, still := cl.c.publishedAddr(user, a); still {
			return errRoutesLost
		}
		return nil // the session left between the two reads
	}
	return err
}

// write applies one route write. A Set carries the session's status as it
// is now (publishedAddr), and is skipped when the session has left: its
// delete follows.
func (cl *cluster) write(op pubOp) error {
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	if op.del {
		return cl.cfg.Routes.Del(ctx, op.user, op.a)
	}
	a, ok := cl.c.publishedAddr(op.user, op.a)
	if !ok {
		return nil
	}
	return cl.cfg.Routes.Set(ctx, op.user, a, cl.cfg.RouteTTL)
}

// refresh writes every local session's route again, a bounded number at a
// time; it gives up at the first failure (the table is down: the next
// refresh tries again) and returns it.
func (cl *cluster) refresh() error {
	var all []pubOp
	cl.c.routes.Range(func(user uint64, a route.Addr, _ any) bool {
		all = append(all, pubOp{user: user, a: a})
		return true
	})
	if len(all) == 0 {
		return nil
	}
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		firstErr atomic.Pointer[error]
	)
	for w := 0; w < min(publishParallel, len(all)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				if err := cl.write(all[i]); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return *e
	}
	return nil
}

// ---- routing ----

// routeP2P queues a message (MSG, its MID set) for a recipient with no
// session here; false when the queue is full and the caller must store it.
// Ownership of buf passes on success. Never blocks.
func (cl *cluster) routeP2P(buf *bytebufferpool.ByteBuffer, from, cid uint64, qos frame.QoS, to uint64) bool {
	return cl.enqueue(routeJob{to: to, buf: buf, p2p: true, from: from, cid: cid, qos: qos})
}

// relay queues a copy of b (an ACK, ERROR, NOTICE, presence) for user's
// sessions on other centers; dropped when the queue is full.
func (cl *cluster) relay(user uint64, b []byte) {
	buf := bytebufferpool.Get()
	buf.B = append(buf.B, b...)
	cl.relayBuf(user, buf)
}

// relayBuf is relay of a copy the caller made; ownership of buf passes.
func (cl *cluster) relayBuf(user uint64, buf *bytebufferpool.ByteBuffer) {
	if !cl.enqueue(routeJob{to: user, buf: buf}) {
		bytebufferpool.Put(buf)
	}
}

func (cl *cluster) enqueue(j routeJob) bool {
	select {
	case cl.routers[((j.to*0x9E3779B97F4A7C15)>>32)%routerShards] <- j:
		return true
	default:
		return false
	}
}

// ---- what other centers send ----

// onForward handles a FORWARD from center origin; it runs on the link's
// reader. Ownership of buf passes.
func (cl *cluster) onForward(origin uint32, user uint64, flags byte, buf *bytebufferpool.ByteBuffer) error {
	if flags&link.ForwardFile != 0 || frame.Frame(buf.B).Cmd() == frame.CmdFile {
		return cl.onFile(origin, user, flags, buf) // center_cluster_files.go
	}
	if flags&link.ForwardP2P == 0 {
		cl.c.sendLocal(user, buf.B)
		bytebufferpool.Put(buf)
		return nil
	}
	f := frame.Frame(buf.B)
	m := frame.Msg(f.Body())
	if f.Cmd() != frame.CmdMsg || m.To() != user || m.MID() == 0 {
		bytebufferpool.Put(buf)
		return ErrLinkProtocol
	}
	cl.Received.Add(1)
	cl.c.route(buf, m.From(), m.CID(), f.QoS(), user, origin, false)
	return nil
}

// result answers a forwarded QoS 1 message to the center it came from.
func (cl *cluster) result(origin uint32, to, mid uint64, status byte) {
	if p := cl.peer(origin); p != nil {
		p.push(link.NewResult(to, mid, status))
	}
	// Otherwise the origin stores the message when its RESULT is overdue.
}

// reroutes reports whether center id may be answered RESULT moved: false
// only for a center whose HELLO said it is older, which gets the message
// stored here and RESULT stored, as before moved existed. With no link to
// it, moved is sent nowhere and id stores the message itself when its
// RESULT is overdue, as for any RESULT lost with a link.
func (cl *cluster) reroutes(id uint32) bool {
	p := cl.peer(id)
	if p == nil {
		return true
	}
	return p.reroutes()
}

// moved answers a QoS 1 message forwarded by origin for a user with no
// session here: origin routes it again.
func (cl *cluster) moved(origin uint32, to, mid uint64) {
	cl.Moved.Add(1)
	cl.result(origin, to, mid, resultMoved)
}

// onResult handles a RESULT from center peer; it runs on the link's reader.
func (cl *cluster) onResult(peer uint32, to, mid uint64, status byte) {
	e := cl.takeFwd(fwdKey{to, mid}, peer)
	if e == nil {
		return // already stored here: the link dropped or the RESULT was late
	}
	c := cl.c
	if status == resultMoved {
		cl.reroute(to, e)
		return
	}
	if status == resultRefused {
		c.Refused.Add(1)
		c.dedupe.forget(e.from, e.cid)
		c.errorToUser(e.from, frame.ErrCodeRetry, e.cid, "store unavailable; retry")
	} else {
		c.ackTo(e.from, e.cid, mid, to, status)
	}
	bytebufferpool.Put(e.buf)
}

// reroute routes again a forwarded QoS 1 message whose recipient the other
// center did not hold: to the recipient's sessions here if it has any now,
// else through a router (a fresh lookup) to a center not tried yet, else to
// the offline store. Never blocks.
func (cl *cluster) reroute(to uint64, e *fwdEntry) {
	cl.Rerouted.Add(1)
	j := routeJob{to: to, buf: e.buf, p2p: true, from: e.from, cid: e.cid, qos: e.qos, tried: e.tried}
	if j.tried.full() || cl.c.routes.Lookup(to, func(route.Addr, any) {}) > 0 || !cl.enqueue(j) {
		cl.unrouted(j)
	}
}

// onFanout pushes a group frame to users' sessions here.
func (cl *cluster) onFanout(users []uint64, b []byte) {
	g := groupPush{c: cl.c, frames: [][]byte{b}}
	for _, u := range users {
		cl.c.routes.Lookup(u, func(_ route.Addr, v any) { g.add(v.(*sessState).ref) })
	}
	cl.c.GroupPushes.Add(uint64(g.flush()))
}

// ---- failure handling ----

// peerDown stores offline every message forwarded to peer that awaits its
// RESULT: the peer may have died with it.
func (cl *cluster) peerDown(peer uint32) {
	var es []*fwdEntry
	var ks []fwdKey
	for i := range cl.fwd {
		sh := &cl.fwd[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.peer == peer {
				es, ks = append(es, e), append(ks, k)
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
	if len(es) > 0 {
		cl.log.Warn("center peer link lost with messages in flight: storing them offline",
			"peer_center", peer, "messages", len(es))
	}
	for i, e := range es {
		cl.ForwardStored.Add(1)
		cl.c.storeAndAck(e.buf, e.from, e.cid, e.qos, ks[i].to, 0)
	}
}

// fwdSweeper stores forwarded messages whose RESULT is overdue.
func (cl *cluster) fwdSweeper() {
	defer cl.wg.Done()
	sweepExpired(cl.stop, time.Second, cl.fwd[:], func(k fwdKey, e *fwdEntry) {
		cl.ForwardStored.Add(1)
		cl.c.storeAndAck(e.buf, e.from, e.cid, e.qos, k.to, 0)
	})
}

// ---- peers ----

func (cl *cluster) peer(id uint32) *peerLink {
	cl.peersMu.Lock()
	defer cl.peersMu.Unlock()
	return cl.peers[id]
}

// peerManager keeps a link to every center in the registry.
func (cl *cluster) peerManager() {
	defer cl.wg.Done()
	t := time.NewTicker(cl.cfg.PeerInterval)
	defer t.Stop()
	for {
		cl.syncPeers()
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
	}
}

func (cl *cluster) syncPeers() {
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	list, err := cl.cfg.Routes.Servers(ctx, im.RoleCenter)
	cancel()
	if err != nil {
		return // keep the links we have
	}
	want := make(map[uint32]string, len(list))
	for _, s := range list {
		if s.ID&centerRegistryBit == 0 {
			continue
		}
		id := s.ID &^ centerRegistryBit
		if id != cl.c.cfg.ID && id != 0 && s.Addr != "" {
			want[id] = s.Addr
		}
	}
	// A peer missing from the registry while its link works is kept for
	// RouteTTL: more likely Redis lost the entry (a restart, a failover to
	// an empty replica) than the center died, which its link would show,
	// and its registration comes back within seconds. Dropping the link
	// would store everything in flight to it.
	cl.peersMu.Lock()
	known := make([]*peerLink, 0, len(cl.peers))
	for _, p := range cl.peers {
		known = append(known, p)
	}
	cl.peersMu.Unlock()
	up := make(map[uint32]bool, len(known))
	for _, p := range known {
		up[p.id] = p.up()
	}
	now := time.Now()
	var gone []*peerLink
	cl.peersMu.Lock()
	for id, p := range cl.peers {
		addr, ok := want[id]
		if ok && addr == p.addr {
			delete(cl.missing, id)
			continue
		}
		if !ok && up[id] {
			since, seen := cl.missing[id]
			if !seen {
				cl.missing[id] = now
				continue
			}
			if now.Sub(since) < cl.cfg.RouteTTL {
				continue
			}
		}
		delete(cl.missing, id)
		gone = append(gone, p)
		delete(cl.peers, id)
	}
	for id, addr := range want {
		if cl.peers[id] != nil {
			continue
		}
		if id&midSlotMask == cl.c.cfg.ID&midSlotMask && !cl.slotErr[id] {
			cl.slotErr[id] = true
			cl.log.Error("two centers share the low 8 bits of their ids: their message ids can collide; renumber one",
				"peer_center", id, "center", cl.c.cfg.ID)
		}
		cl.log.Info("center peer found", "peer_center", id, "addr", addr)
		cl.peers[id] = newPeerLink(cl, id, addr)
	}
	cl.peersMu.Unlock()
	for _, p := range gone {
		go p.close() // its run loop calls peerDown
	}
}

// RESULT statuses beside the ACK statuses.
const (
	// resultRefused: the other center could not keep the forwarded
	// message; the sender must send it again.
	resultRefused = link.ResultRefused
	// resultMoved: the recipient has no session on the other center, which
	// kept nothing; the forwarding center routes the message again.
	resultMoved = link.ResultMoved
)

// midSlotMask selects the bits of a center id that a clustered center puts
// in the low bits of its message ids (nextMID).
const midSlotMask = 0xFF
