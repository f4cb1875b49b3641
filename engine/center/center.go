package center

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/internal/lograte"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// Config wires the in-process center.
type Config struct {
	ID    uint32
	Store storage.Store
	// Servers returns the server list (SERVER_LIST lookups).
	Servers func(ctx context.Context) []session.ServerInfo
	// Window caps unacked pushes per session; beyond it QoS 1 goes to the
	// offline store and QoS 0 is shed. Default 64.
	Window int
	// AckTimeout is how long a pushed QoS 1 message waits for the
	// recipient's receipt before it is stored and its sender acked STORED;
	// the push stays outstanding on the session (it is not pushed again
	// there), and the late receipt deletes it from the store. Default
	// 10 s (myimd --receipt-timeout).
	AckTimeout time.Duration
	// GroupTTL is how long a group message is kept for offline members.
	// Default 7 days.
	GroupTTL time.Duration
	// GroupSweep is how often expired group messages are deleted from the
	// store (center_group.go). Default 1 minute.
	GroupSweep time.Duration
	// Workers run storage calls; QueueLen bounds the work waiting for them.
	// Defaults 32 and 65,536.
	Workers, QueueLen int
	// Files tunes file transfer and the private file server (files.go).
	Files FilesConfig
	// Cluster, when set, joins this center to the other centers of the
	// cluster (center_cluster.go); nil runs it alone.
	Cluster *ClusterConfig
	Logger  *slog.Logger
}

func (c *Config) fillDefaults() {
	if c.ID == 0 {
		c.ID = 1
	}
	if c.Window <= 0 {
		c.Window = 64
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.GroupTTL <= 0 {
		c.GroupTTL = 7 * 24 * time.Hour
	}
	if c.GroupSweep <= 0 {
		c.GroupSweep = time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 1 << 16
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Files.fillDefaults()
}

// LocalCenter is the center role in process: it assigns message ids, routes
// to the sessions its endpoints registered, tracks receipts, and keeps what
// cannot be delivered in the store. Safe for concurrent use.
//
// Lock order: a pending shard's lock, then a sessState's lock. route.Local
// calls its callbacks under a shard read lock; they take no other lock of
// the center's but a sessState's.
type LocalCenter struct {
	cfg    Config
	routes route.Local
	epsMu  sync.RWMutex
	eps    map[uint32]im.Endpoint

	// nameLookups and strangerLookups are the users' lookup budgets
	// (userlookup.go).
	nameLookups, strangerLookups *LookupBudget

	lastMID atomic.Uint64
	dedupe  dedupeTable
	pending receiptTable

	jobs     chan func()
	lanes    []chan groupReq               // group messages, one lane per group (center_group_batch.go)
	gacks    [groupAckShards]groupAckShard // group read acks waiting for their write (center_group_acks.go)
	gackWake chan struct{}                 // wakes groupAckWriter
	offline  chan offlineItem
	storing  [storingShards]storingShard // messages on their way to the store, per recipient
	spilling atomic.Int64                // sessions with spill set
	xfers    xferTable                   // user-to-user file transfers (files.go)
	files    *fileService                // the private file server; nil when off
	cl       *cluster                    // the other centers; nil when alone
	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once

	// Stats for tests and metrics: p2p outcomes, group fan-out pushes, and
	// offline messages deleted after their receipt (StoredOffline minus
	// OfflineDeleted approximates the offline queue).
	Delivered, StoredOffline, Refused, Shed atomic.Uint64
	GroupPushes, OfflineDeleted             atomic.Uint64

	// storeWarn bounds the per-message storage warnings (queue full, store
	// failing), which a full queue or a store outage would repeat for every
	// message.
	storeWarn *lograte.Limit
	// GroupPurged counts expired group messages the sweep deleted.
	GroupPurged atomic.Uint64
}

// sessState is the center's view of one session (see center_delivery.go
// for the delivery state it keeps).
type sessState struct {
	ref    im.SessionRef
	mu     sync.Mutex
	status byte
	// The flags are together after mu (documented where they are used
	// below), not each padded to 8 bytes: with holdUntil's 8 bytes the
	// state is 176 bytes, a size class, where it was 216 (224).
	delBusy  bool
	spill    bool
	draining bool
	gone     bool   // went offline: never spills again
	text     string // status text of the last PRESENCE, "" if none
	// flight holds the pushed, unacked MIDs, made on the first push: true
	// for a live push that is not in the store (a pending entry), false
	// for one that is (drained, fetched, or stored at its receipt
	// timeout).
	flight map[uint64]bool
	// fetchAfter is the MID cursor of a client's p2p FETCH in progress.
	fetchAfter uint64
	// cursor of a group fetch in progress: the last (group, seq) sent
	gCurGroup, gCurSeq uint64
	// acked holds the offline messages this session acknowledged whose
	// delete has not committed yet, and groupAcked the highest seq it
	// acknowledged per group: a FETCH or a drain skips them, so that a
	// session reads its own acks even before the store has them.
	acked      map[uint64]struct{}
	groupAcked map[uint64]uint64
	// The receipts of stored messages (center_acks.go): delQ the MIDs
	// whose delete is queued or running (delBusy while a worker or a
	// retry owns it), reads the store reads of this session running,
	// limbo the committed deletes that stay in acked until they end.
	delQ  []uint64
	reads int
	limbo []uint64
	// spill is set while this session takes its messages from the store
	// (from Online until the store holds nothing for it, and again from
	// any message stored while it is online): new messages join the
	// store, so that per-sender order holds, and a drain pushes them as
	// the window frees (spill, draining above). spillGen counts the times
	// it was set.
	spillGen uint64
	// holdUntil: until then (monoNow's clock) a drain waits for the
	// client's first FETCH (zero once it came or the session was resumed).
	// 8 bytes where a time.Time took 24.
	holdUntil time.Duration
	// pushMu is held by the one drain or fetch pushing from the store to
	// this session, so that they push in MID order and never the same
	// message twice. Taken before mu.
	pushMu sync.Mutex
}

// monoStart is the origin of monoNow.
var monoStart = time.Now()

// monoNow is the time since the process started, on the monotonic clock: a
// deadline a session keeps in 8 bytes. Safe for concurrent use.
func monoNow() time.Duration { return time.Since(monoStart) }

// NewLocalCenter starts a center and its storage workers.
func NewLocalCenter(cfg Config) *LocalCenter {
	cfg.fillDefaults()
	c := &LocalCenter{cfg: cfg, storeWarn: lograte.New(), eps: make(map[uint32]im.Endpoint),
		jobs: make(chan func(), cfg.QueueLen), offline: make(chan offlineItem, cfg.QueueLen),
		stop: make(chan struct{}), nameLookups: NewLookupBudget(NameLookups),
		strangerLookups: NewLookupBudget(strangerLookups)}
	c.pending.init()
	c.dedupe.init()
	for i := 0; i < cfg.Workers; i++ {
		c.wg.Add(1)
		go c.worker()
	}
	c.startLanes()
	c.gackWake = make(chan struct{}, 1)
	c.wg.Add(5)
	go c.groupAckWriter()
	go c.groupSweeper()
	go c.sweeper()
	go c.offlineWriter()
	c.xfers.init()
	go c.xferSweeper()
	var err error
	if c.files, err = newFileService(c); err != nil {
		cfg.Logger.Error("file server off", "err", err)
	}
	if cfg.Cluster != nil && cfg.Cluster.Routes != nil {
		c.cl = newCluster(c, *cfg.Cluster)
	}
	return c
}

// Close stops the center after the queued storage work is done.
func (c *LocalCenter) Close() {
	if c.cl != nil {
		c.cl.close()
	}
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
}

func (c *LocalCenter) worker() {
	defer c.wg.Done()
	for {
		select {
		case f := <-c.jobs:
			f()
		case <-c.stop:
			for {
				select {
				case f := <-c.jobs:
					f()
				default:
					return
				}
			}
		}
	}
}

// submit queues storage work; false when the queue is full.
func (c *LocalCenter) submit(f func()) bool {
	select {
	case c.jobs <- f:
		return true
	default:
		return false
	}
}

// nextMID returns an id above every earlier one, time-based so that ids
// also increase across restarts: Unix milliseconds << 20, plus a counter.
// A clustered center keeps the low 8 bits for its id's low 8 bits and
// counts above them, so that centers never hand out the same id (the
// offline store and receipts key messages by recipient and id).
func (c *LocalCenter) nextMID() uint64 {
	floor, step := uint64(time.Now().UnixMilli())<<20, uint64(1)
	if c.cl != nil {
		floor, step = floor|uint64(c.cfg.ID&midSlotMask), midSlotMask+1
	}
	for {
		last := c.lastMID.Load()
		next := max(last+step, floor)
		if c.lastMID.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Attach registers an endpoint.
func (c *LocalCenter) Attach(ep im.Endpoint) {
	c.epsMu.Lock()
	c.eps[ep.ID()] = ep
	c.epsMu.Unlock()
}

// Detach forgets ep, if it is still the endpoint attached under its id.
// Safe for concurrent use.
func (c *LocalCenter) Detach(ep im.Endpoint) {
	c.epsMu.Lock()
	if c.eps[ep.ID()] == ep {
		delete(c.eps, ep.ID())
	}
	c.epsMu.Unlock()
}

func (c *LocalCenter) endpoint(id uint32) im.Endpoint {
	c.epsMu.RLock()
	ep := c.eps[id]
	c.epsMu.RUnlock()
	return ep
}

// Online records a session and tells the user's friends when that changes
// what they see of the user.
func (c *LocalCenter) Online(user uint64, s im.SessionRef) {
	// A session starts by taking what the store holds for its user, before
	// any newer message is pushed to it live (center_delivery.go): through
	// the client's FETCH if one comes within drainGrace, else pushed.
	st := &sessState{ref: s, status: frame.StatusOnline, spill: true, spillGen: 1, draining: true,
		holdUntil: monoNow() + drainGrace}
	c.spilling.Add(1)
	a := route.Addr{Endpoint: s.Endpoint, Center: c.cfg.ID, Session: s.Session}
	before, beforeText := c.statusText(user)
	c.routes.Put(user, a, st)
	if c.cl != nil {
		c.cl.publish(pubOp{user: user, a: a})
	}
	if !c.submit(func() { c.drain(user, st) }) {
		st.mu.Lock()
		st.draining = false // the timer below, a store or a receipt starts it
		st.mu.Unlock()
	}
	time.AfterFunc(drainGrace, func() { c.resumeDrain(user, st) })
	// Friends hear of the first session, and of a later one that changes
	// what they see (online beside an away or busy session).
	if after, afterText := c.statusText(user); after != before || afterText != beforeText {
		c.notifyFriends(user, after)
	}
}

// Offline forgets a session; what was pushed to it and not acked goes to
// the offline store.
func (c *LocalCenter) Offline(user uint64, s im.SessionRef, bye bool) {
	before, beforeText := c.statusText(user)
	// The session's live pushes count as on their way to the store before
	// it leaves the routes: until they are stored, one or the other holds
	// back the drains and FETCHes of the user's other sessions (horizon,
	// storingFloor), which must not push newer stored messages first.
	held := c.livePushes(user, s)
	for _, mid := range held {
		c.storingAdd(user, mid)
	}
	defer func() {
		for _, mid := range held {
			c.storingDone(user, mid)
		}
	}()
	v, ok := c.routes.Remove(user, s.Session)
	if !ok {
		return
	}
	if c.cl != nil {
		c.cl.publish(pubOp{user: user, a: route.Addr{Endpoint: s.Endpoint, Center: c.cfg.ID, Session: s.Session}, del: true})
	}
	st := v.(*sessState)
	st.mu.Lock()
	mids := make([]uint64, 0, len(st.flight))
	for mid, live := range st.flight {
		if live {
			mids = append(mids, mid)
		}
	}
	clear(st.flight)
	st.gone = true
	if st.spill {
		st.spill = false
		c.spilling.Add(-1)
	}
	st.mu.Unlock()
	for _, mid := range mids {
		c.dropFromPending(user, mid, st)
	}
	if c.routes.Lookup(user, func(route.Addr, any) {}) == 0 {
		c.notifyFriends(user, frame.StatusOffline)
	} else if after, afterText := c.statusText(user); after != before || afterText != beforeText {
		c.notifyFriends(user, after) // the session that set what friends saw left
	}
	c.xferOffline(user, s)
}

// livePushes returns the MIDs pushed live to session s of user whose
// receipt is awaited.
func (c *LocalCenter) livePushes(user uint64, s im.SessionRef) []uint64 {
	var mids []uint64
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if a.Session != s.Session {
			return
		}
		st := v.(*sessState)
		st.mu.Lock()
		for mid, live := range st.flight {
			if live {
				mids = append(mids, mid)
			}
		}
		st.mu.Unlock()
	})
	return mids
}

// dropFromPending removes st from a pending message's sessions; when none
// is left the message is stored offline.
func (c *LocalCenter) dropFromPending(to, mid uint64, st *sessState) {
	if p := c.pending.leave(pendKey{to, mid}, st); p != nil {
		c.storeAndAck(p.buf, p.from, p.cid, p.qos, to, p.origin)
		putPending(p)
	}
}

// p2p routes a point-to-point message (or a file transfer frame, which
// routes the same way).
func (c *LocalCenter) p2p(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	f := frame.Frame(buf.B)
	m := frame.Msg(f.Body())
	qos, to, cid := f.QoS(), m.To(), m.CID()
	if to == 0 {
		c.errorTo(s, frame.ErrCodeBadRequest, cid, "no recipient")
		bytebufferpool.Put(buf)
		return
	}
	if cid != 0 {
		if mid, dup := c.dedupe.seen(user, cid); dup {
			if qos == frame.QoS1 {
				c.ackTo(user, cid, mid, to, frame.AckDuplicate)
			}
			bytebufferpool.Put(buf)
			return
		}
	}
	mid := c.nextMID()
	m.SetMID(mid)
	if cid != 0 {
		c.dedupe.remember(user, cid, mid)
	}
	c.route(buf, user, cid, qos, to, 0, c.cl != nil) // a MSG, or a FILE offer or cancel
}

// sendTo delivers a copy of b to every session of user; it returns how many
// sessions here took it. When user has none here, a clustered center
// relays b to the centers that hold user (best effort: b is a receipt,
// notice or presence, which the client can do without or ask again).
func (c *LocalCenter) sendTo(user uint64, b []byte) int {
	n := c.sendLocal(user, b)
	if n == 0 && c.cl != nil {
		c.cl.relay(user, b)
	}
	return n
}

// sendLocal delivers a copy of b to every session of user on this center.
func (c *LocalCenter) sendLocal(user uint64, b []byte) int {
	n := 0
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if c.sendRef(v.(*sessState).ref, b) {
			n++
		}
	})
	return n
}

func (c *LocalCenter) sendRef(s im.SessionRef, b []byte) bool {
	ep := c.endpoint(s.Endpoint)
	if ep == nil {
		return false
	}
	out := bytebufferpool.Get()
	out.B = append(out.B, b...)
	if ep.Deliver(s, out) != nil {
		bytebufferpool.Put(out)
		return false
	}
	return true
}

// sendRefDSrv is sendRef for a MSG or GROUP_MSG frame b: the copy carries
// s's endpoint in DSrv.
func (c *LocalCenter) sendRefDSrv(s im.SessionRef, b []byte) bool {
	ep := c.endpoint(s.Endpoint)
	if ep == nil {
		return false
	}
	out := bytebufferpool.Get()
	out.B = append(out.B, b...)
	frame.Msg(frame.Frame(out.B).Body()).SetDSrv(s.Endpoint)
	if ep.Deliver(s, out) != nil {
		bytebufferpool.Put(out)
		return false
	}
	return true
}

// ackTo builds the ack straight into the buffer the endpoint seals from,
// which a user's last (most often only) session takes without a copy.
func (c *LocalCenter) ackTo(user, cid, mid, peer uint64, status byte) {
	buf := bytebufferpool.Get()
	buf.B, _ = frame.AppendAck(buf.B, cid, mid, peer, status)
	c.sendOwned(user, buf)
}

// sendOwned is sendTo for a buffer the caller hands over: the user's last
// session here takes buf itself, the others a copy.
func (c *LocalCenter) sendOwned(user uint64, buf *bytebufferpool.ByteBuffer) {
	var arr [maxSessionsPerPush]im.SessionRef
	refs := arr[:0]
	c.routes.Lookup(user, func(_ route.Addr, v any) { refs = append(refs, v.(*sessState).ref) })
	n := 0
	for i, s := range refs {
		if i < len(refs)-1 {
			if c.sendRef(s, buf.B) {
				n++
			}
			continue
		}
		if ep := c.endpoint(s.Endpoint); ep != nil && ep.Deliver(s, buf) == nil {
			return
		}
	}
	if n == 0 && c.cl != nil {
		c.cl.relay(user, buf.B)
	}
	bytebufferpool.Put(buf)
}

func (c *LocalCenter) errorTo(s im.SessionRef, code uint16, ref uint64, text string) {
	b, _ := frame.AppendError(nil, code, ref, text)
	c.sendRef(s, b)
}

func (c *LocalCenter) errorToUser(user uint64, code uint16, ref uint64, text string) {
	b, _ := frame.AppendError(nil, code, ref, text)
	c.sendTo(user, b)
}

// Notify sends a NOTICE to every session of user.
func (c *LocalCenter) Notify(user uint64, code uint16, json []byte) {
	b, _ := frame.AppendNotice(nil, code, json)
	c.sendTo(user, b)
}
