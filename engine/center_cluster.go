package engine

// Several centers.
//
// Each center publishes where its users are online in the cluster route
// table (route.Table, Redis): an Addr{Endpoint, Center, Session} per
// session, set with a TTL and refreshed, so that a dead center's users age
// out. The writes leave the caller's goroutine (Online and Offline run on
// endpoint event loops) through one bounded queue and one publisher
// goroutine; a failed write is healed by the next refresh.
//
// When a message's recipient has no session on this center, the center
// looks the recipient up in the table (through the table's client-side
// cache, batched) on a router goroutine and, when another center holds a
// session, FORWARDs the message over its link to that center
// (link_peer.go), which routes it as its own: it pushes and tracks the
// receipt, or stores it offline (the offline store is shared in a
// multi-center deployment), and answers with a RESULT. This center keeps a
// forwarded QoS 1 message until that RESULT and acks the sender from it;
// when the link drops or the RESULT is overdue it stores the message
// offline itself and acks Stored. The recipient's client drops a second
// copy by its (sender, client id). When the table cannot be read (Redis
// down), QoS 1 for users not on this center goes to the offline store;
// traffic between users of this center never needs the table.
//
// ACKs, errors, notices and presence for users of other centers are
// FORWARDed without a RESULT; group messages cross to each other center
// once, as one FANOUT naming that center's members.
//
// Lock order: a forward shard's lock is taken alone; peersMu alone.

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

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
	Link LinkConfig
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
}

func (c *ClusterConfig) fillDefaults(ack time.Duration) {
	c.Link.fillDefaults()
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
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = ack + 5*time.Second
	}
}

// centerRegistryBit marks a center's id in the server registry, which keys
// entries by id across roles: a node of role all registers its endpoint
// under its server id and its center under this bit plus the same id.
const centerRegistryBit = 1 << 16

// CenterServer is the server-registry entry of center id, whose link
// listener other centers reach at addr.
func CenterServer(id uint32, addr string) route.Server {
	return route.Server{ID: centerRegistryBit | id, Role: RoleCenter, Addr: addr}
}

// ClusterStats counts the center-to-center traffic. Safe for concurrent use.
type ClusterStats struct {
	Forwarded     atomic.Uint64 // QoS 1 messages forwarded to another center
	ForwardStored atomic.Uint64 // forwarded, then stored here: link down or RESULT overdue
	Received      atomic.Uint64 // messages forwarded here by other centers
	Relayed       atomic.Uint64 // acks, notices, presence, group pushes sent to other centers
	Unrouted      atomic.Uint64 // messages for a user of another center whose link was down: stored
	RouteErrors   atomic.Uint64 // route table reads that failed
	PublishErrors atomic.Uint64 // route table writes that failed
	PublishDrops  atomic.Uint64 // route writes dropped: queue full (the refresh repairs them)
	PeerConnects  atomic.Uint64 // links to other centers established
	PeerDialFails atomic.Uint64 // failed connection attempts to other centers
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
	slotErr map[uint32]bool // peers already reported for a clashing id

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type pubOp struct {
	user uint64
	a    route.Addr
	del  bool
}

// routeJob is a frame for a user with no session here, waiting for a
// lookup. p2p marks a message routed with a receipt (its MID set).
type routeJob struct {
	to   uint64
	buf  *bytebufferpool.ByteBuffer
	p2p  bool
	from uint64
	cid  uint64
	qos  frame.QoS
}

type fwdKey struct{ to, mid uint64 }

// fwdEntry is a forwarded QoS 1 message awaiting its RESULT.
type fwdEntry struct {
	buf       *bytebufferpool.ByteBuffer
	from, cid uint64
	qos       frame.QoS
	peer      uint32
	deadline  time.Time
}

type fwdShard struct {
	mu sync.Mutex
	m  map[fwdKey]*fwdEntry
}

func newCluster(c *LocalCenter, cfg ClusterConfig) *cluster {
	cfg.fillDefaults(c.cfg.AckTimeout)
	if cfg.Link.Logger == nil {
		cfg.Link.Logger = c.cfg.Logger
	}
	cl := &cluster{c: c, cfg: cfg, log: c.cfg.Logger.With("part", "cluster"),
		pub: make(chan pubOp, cfg.QueueLen), peers: make(map[uint32]*peerLink),
		slotErr: make(map[uint32]bool), stop: make(chan struct{})}
	for i := range cl.fwd {
		cl.fwd[i].m = make(map[fwdKey]*fwdEntry)
	}
	for i := range cl.routers {
		cl.routers[i] = make(chan routeJob, cfg.QueueLen/routerShards)
		cl.wg.Add(1)
		go cl.router(cl.routers[i])
	}
	cl.wg.Add(3)
	go cl.publisher()
	go cl.peerManager()
	go cl.fwdSweeper()
	return cl
}

// close stops the goroutines and the peer links. What waits in the
// routers is stored offline, so that nothing acked is lost at shutdown.
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
	for {
		select {
		case <-cl.stop:
			return
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

func (cl *cluster) write(op pubOp) error {
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	if op.del {
		return cl.cfg.Routes.Del(ctx, op.user, op.a)
	}
	return cl.cfg.Routes.Set(ctx, op.user, op.a, cl.cfg.RouteTTL)
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

func (cl *cluster) router(in chan routeJob) {
	defer cl.wg.Done()
	jobs := make([]routeJob, 0, routeBatch)
	users := make([]uint64, 0, routeBatch)
	for {
		var first routeJob
		select {
		case first = <-in:
		case <-cl.stop:
			for {
				select {
				case j := <-in:
					cl.unrouted(j)
				default:
					return
				}
			}
		}
		jobs = append(jobs[:0], first)
	collect:
		for len(jobs) < routeBatch {
			select {
			case j := <-in:
				jobs = append(jobs, j)
			default:
				break collect
			}
		}
		users = users[:0]
		for _, j := range jobs {
			users = append(users, j.to)
		}
		addrs, err := cl.lookup(users)
		for i, j := range jobs {
			if err != nil {
				cl.unrouted(j)
			} else {
				cl.dispatch(j, addrs[j.to])
			}
			jobs[i] = routeJob{}
		}
	}
}

// lookup reads users' routes from the table.
func (cl *cluster) lookup(users []uint64) (map[uint64][]route.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	m, err := cl.cfg.Routes.GetMulti(ctx, users)
	if err != nil {
		if cl.RouteErrors.Add(1)%1000 == 1 {
			cl.log.Warn("route table read failed: messages for other centers are stored offline", "err", err)
		}
	}
	return m, err
}

// unrouted disposes of a job that cannot be forwarded: a message is routed
// here again, which stores it when the recipient is still not here.
func (cl *cluster) unrouted(j routeJob) {
	if !j.p2p {
		bytebufferpool.Put(j.buf)
		return
	}
	cl.c.route(j.buf, j.from, j.cid, j.qos, j.to, 0, false)
}

// dispatch forwards a job to the centers addrs name.
func (cl *cluster) dispatch(j routeJob, addrs []route.Addr) {
	if !j.p2p {
		var sent [4]uint32
		n := 0
	next:
		for _, a := range addrs {
			if a.Center == cl.c.cfg.ID || a.Center == 0 {
				continue
			}
			for _, s := range sent[:n] {
				if s == a.Center {
					continue next
				}
			}
			if n < len(sent) {
				sent[n] = a.Center
				n++
			}
			if p := cl.peer(a.Center); p != nil {
				out := bytebufferpool.Get()
				out.B = append(out.B, j.buf.B...)
				if p.push(forwardItem(j.to, 0, out)) {
					cl.Relayed.Add(1)
				} else {
					bytebufferpool.Put(out)
				}
			}
		}
		bytebufferpool.Put(j.buf)
		return
	}
	if cl.c.routes.Lookup(j.to, func(route.Addr, any) {}) > 0 {
		cl.unrouted(j) // came online here meanwhile
		return
	}
	var p *peerLink
	for _, a := range addrs {
		if a.Center == cl.c.cfg.ID || a.Center == 0 {
			continue
		}
		if q := cl.peer(a.Center); q != nil && q.up() && (p == nil || a.Center < p.id) {
			p = q
		}
	}
	if p == nil {
		if len(addrs) > 0 {
			cl.Unrouted.Add(1)
		}
		cl.unrouted(j)
		return
	}
	mid := frame.Msg(frame.Frame(j.buf.B).Body()).MID()
	if j.qos != frame.QoS1 {
		if !p.push(forwardItem(j.to, linkForwardP2P, j.buf)) {
			cl.Unrouted.Add(1)
			cl.unrouted(j)
		}
		return
	}
	k := fwdKey{j.to, mid}
	sh := &cl.fwd[mid%pendingShards]
	sh.mu.Lock()
	sh.m[k] = &fwdEntry{buf: j.buf, from: j.from, cid: j.cid, qos: j.qos, peer: p.id,
		deadline: time.Now().Add(cl.cfg.ForwardTimeout)}
	sh.mu.Unlock()
	out := bytebufferpool.Get()
	out.B = append(out.B, j.buf.B...)
	if p.push(forwardItem(j.to, linkForwardP2P, out)) {
		cl.Forwarded.Add(1)
		return
	}
	bytebufferpool.Put(out)
	if e := cl.takeFwd(k, p.id); e != nil {
		cl.Unrouted.Add(1)
		cl.c.storeAndAck(e.buf, e.from, e.cid, e.qos, j.to, 0)
	}
}

// takeFwd removes and returns a forwarded message's entry if it went to
// peer.
func (cl *cluster) takeFwd(k fwdKey, peer uint32) *fwdEntry {
	sh := &cl.fwd[k.mid%pendingShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil || e.peer != peer {
		return nil
	}
	delete(sh.m, k)
	return e
}

// fanout sends a group frame to members that have no session here, one
// FANOUT per other center. It runs on a center worker.
func (cl *cluster) fanout(users []uint64, b []byte) {
	addrs, err := cl.lookup(users)
	if err != nil {
		return // members fetch what they missed: group messages are stored first
	}
	by := map[uint32][]uint64{}
	for _, u := range users {
		for _, a := range addrs[u] {
			if a.Center == cl.c.cfg.ID || a.Center == 0 {
				continue
			}
			l := by[a.Center]
			if len(l) == 0 || l[len(l)-1] != u {
				by[a.Center] = append(l, u)
			}
		}
	}
	for id, us := range by {
		p := cl.peer(id)
		if p == nil {
			continue
		}
		it := fanoutItem(us, b)
		if p.push(it) {
			cl.Relayed.Add(1)
		} else {
			bytebufferpool.Put(it.buf)
		}
	}
}

// ---- what other centers send ----

// onForward handles a FORWARD from center origin; it runs on the link's
// reader. Ownership of buf passes.
func (cl *cluster) onForward(origin uint32, user uint64, flags byte, buf *bytebufferpool.ByteBuffer) error {
	if flags&linkForwardP2P == 0 {
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
		p.push(resultItem(to, mid, status))
	}
	// Otherwise the origin stores the message when its RESULT is overdue.
}

// onResult handles a RESULT from center peer.
func (cl *cluster) onResult(peer uint32, to, mid uint64, status byte) {
	e := cl.takeFwd(fwdKey{to, mid}, peer)
	if e == nil {
		return // already stored here: the link dropped or the RESULT was late
	}
	c := cl.c
	if status == resultRefused {
		c.Refused.Add(1)
		c.forget(e.from, e.cid)
		c.errorToUser(e.from, frame.ErrCodeRetry, e.cid, "store unavailable; retry")
	} else {
		c.ackTo(e.from, e.cid, mid, to, status)
	}
	bytebufferpool.Put(e.buf)
}

// onFanout pushes a group frame to users' sessions here.
func (cl *cluster) onFanout(users []uint64, b []byte) {
	for _, u := range users {
		cl.c.routes.Lookup(u, func(_ route.Addr, v any) {
			if cl.c.sendRef(v.(*sessState).ref, b) {
				cl.c.GroupPushes.Add(1)
			}
		})
	}
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
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case now := <-t.C:
			for i := range cl.fwd {
				sh := &cl.fwd[i]
				var es []*fwdEntry
				var ks []fwdKey
				sh.mu.Lock()
				for k, e := range sh.m {
					if now.After(e.deadline) {
						es, ks = append(es, e), append(ks, k)
						delete(sh.m, k)
					}
				}
				sh.mu.Unlock()
				for j, e := range es {
					cl.ForwardStored.Add(1)
					cl.c.storeAndAck(e.buf, e.from, e.cid, e.qos, ks[j].to, 0)
				}
			}
		}
	}
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
	list, err := cl.cfg.Routes.Servers(ctx, RoleCenter)
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
	var gone []*peerLink
	cl.peersMu.Lock()
	for id, p := range cl.peers {
		if addr, ok := want[id]; !ok || addr != p.addr {
			gone = append(gone, p)
			delete(cl.peers, id)
		}
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

// resultRefused is the RESULT status of a forwarded message the other
// center could not keep: the sender must send it again.
const resultRefused byte = 0xFF

// midSlotMask selects the bits of a center id that a clustered center puts
// in the low bits of its message ids (nextMID).
const midSlotMask = 0xFF
