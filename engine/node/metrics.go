package node

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// latencyMetric turns a latency snapshot into a Prometheus histogram in
// seconds.
func latencyMetric(s engine.LatencySnapshot, d *prometheus.Desc, labels ...string) prometheus.Metric {
	bounds := engine.LatencyBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += s.Counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, cum+s.Counts[len(bounds)], s.Sum.Seconds(), buckets, labels...)
}

// storeMethods names the storage.Store methods TimedStore times; the index
// is the method's slot in TimedStore.lat.
var storeMethods = [...]string{
	"CreateUser", "UserByName", "UserByID", "UpdateProfile", "TouchDevice", "Devices",
	"RequestFriend", "AcceptFriend", "RemoveFriend", "Friends", "PendingFriendRequests",
	"StoreOffline", "FetchOffline", "DeleteOffline", "CountOffline",
	"CreateGroup", "JoinGroup", "LeaveGroup", "GroupMembers", "UserGroups", "GroupInfo",
	"AppendGroupMsg", "FetchGroup", "AckGroup", "PurgeExpiredGroupMsgs", "CountGroupMsgs",
	"Ping",
}

const (
	mCreateUser = iota
	mUserByName
	mUserByID
	mUpdateProfile
	mTouchDevice
	mDevices
	mRequestFriend
	mAcceptFriend
	mRemoveFriend
	mFriends
	mPendingFriendRequests
	mStoreOffline
	mFetchOffline
	mDeleteOffline
	mCountOffline
	mCreateGroup
	mJoinGroup
	mLeaveGroup
	mGroupMembers
	mUserGroups
	mGroupInfo
	mAppendGroupMsg
	mFetchGroup
	mAckGroup
	mPurgeExpiredGroupMsgs
	mCountGroupMsgs
	mPing
	storeMethodCount
)

// TimedStore is a storage.Store that records each call's latency, by
// method, and counts failed calls. Safe for concurrent use, as the store it
// wraps; timing costs no lock and no allocation.
type TimedStore struct {
	storage.Store
	lat    [storeMethodCount]engine.LatencyHistogram
	errors [storeMethodCount]atomic.Uint64
}

// NewTimedStore wraps s.
func NewTimedStore(s storage.Store) *TimedStore { return &TimedStore{Store: s} }

// Latency returns the histogram of the named method, or nil.
func (t *TimedStore) Latency(method string) *engine.LatencyHistogram {
	for i, m := range storeMethods {
		if m == method {
			return &t.lat[i]
		}
	}
	return nil
}

func (t *TimedStore) done(m int, start time.Time, err error) {
	t.lat[m].Observe(time.Since(start))
	if storeFailed(err) {
		t.errors[m].Add(1)
	}
}

// storeFailed reports whether err is the store failing, not an answer
// (not found, exists, invalid) or the caller giving up.
func storeFailed(err error) bool {
	return err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrExists) &&
		!errors.Is(err, storage.ErrInvalid) && !errors.Is(err, context.Canceled)
}

// The methods below are storage.Store's, each timed.

func (t *TimedStore) CreateUser(ctx context.Context, u storage.User) (uint64, error) {
	start := time.Now()
	id, err := t.Store.CreateUser(ctx, u)
	t.done(mCreateUser, start, err)
	return id, err
}

func (t *TimedStore) UserByName(ctx context.Context, name string) (storage.User, error) {
	start := time.Now()
	u, err := t.Store.UserByName(ctx, name)
	t.done(mUserByName, start, err)
	return u, err
}

func (t *TimedStore) UserByID(ctx context.Context, id uint64) (storage.User, error) {
	start := time.Now()
	u, err := t.Store.UserByID(ctx, id)
	t.done(mUserByID, start, err)
	return u, err
}

func (t *TimedStore) UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error {
	start := time.Now()
	err := t.Store.UpdateProfile(ctx, id, signature, profile)
	t.done(mUpdateProfile, start, err)
	return err
}

func (t *TimedStore) TouchDevice(ctx context.Context, d storage.Device) (bool, error) {
	start := time.Now()
	isNew, err := t.Store.TouchDevice(ctx, d)
	t.done(mTouchDevice, start, err)
	return isNew, err
}

func (t *TimedStore) Devices(ctx context.Context, user uint64) ([]storage.Device, error) {
	start := time.Now()
	ds, err := t.Store.Devices(ctx, user)
	t.done(mDevices, start, err)
	return ds, err
}

func (t *TimedStore) RequestFriend(ctx context.Context, from, to uint64) error {
	start := time.Now()
	err := t.Store.RequestFriend(ctx, from, to)
	t.done(mRequestFriend, start, err)
	return err
}

func (t *TimedStore) AcceptFriend(ctx context.Context, user, requester uint64) error {
	start := time.Now()
	err := t.Store.AcceptFriend(ctx, user, requester)
	t.done(mAcceptFriend, start, err)
	return err
}

func (t *TimedStore) RemoveFriend(ctx context.Context, a, b uint64) error {
	start := time.Now()
	err := t.Store.RemoveFriend(ctx, a, b)
	t.done(mRemoveFriend, start, err)
	return err
}

func (t *TimedStore) Friends(ctx context.Context, user uint64) ([]uint64, error) {
	start := time.Now()
	fs, err := t.Store.Friends(ctx, user)
	t.done(mFriends, start, err)
	return fs, err
}

func (t *TimedStore) PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error) {
	start := time.Now()
	fs, err := t.Store.PendingFriendRequests(ctx, user)
	t.done(mPendingFriendRequests, start, err)
	return fs, err
}

func (t *TimedStore) StoreOffline(ctx context.Context, msgs []storage.Message) error {
	start := time.Now()
	err := t.Store.StoreOffline(ctx, msgs)
	t.done(mStoreOffline, start, err)
	return err
}

func (t *TimedStore) FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]storage.Message, error) {
	start := time.Now()
	ms, err := t.Store.FetchOffline(ctx, user, afterMID, limit)
	t.done(mFetchOffline, start, err)
	return ms, err
}

func (t *TimedStore) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	start := time.Now()
	err := t.Store.DeleteOffline(ctx, user, mids)
	t.done(mDeleteOffline, start, err)
	return err
}

func (t *TimedStore) CountOffline(ctx context.Context, user uint64) (int, error) {
	start := time.Now()
	n, err := t.Store.CountOffline(ctx, user)
	t.done(mCountOffline, start, err)
	return n, err
}

func (t *TimedStore) CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error) {
	start := time.Now()
	id, err := t.Store.CreateGroup(ctx, owner, name)
	t.done(mCreateGroup, start, err)
	return id, err
}

func (t *TimedStore) JoinGroup(ctx context.Context, group, user uint64) (uint64, error) {
	start := time.Now()
	seq, err := t.Store.JoinGroup(ctx, group, user)
	t.done(mJoinGroup, start, err)
	return seq, err
}

func (t *TimedStore) LeaveGroup(ctx context.Context, group, user uint64) error {
	start := time.Now()
	err := t.Store.LeaveGroup(ctx, group, user)
	t.done(mLeaveGroup, start, err)
	return err
}

func (t *TimedStore) GroupMembers(ctx context.Context, group uint64) ([]storage.Member, error) {
	start := time.Now()
	ms, err := t.Store.GroupMembers(ctx, group)
	t.done(mGroupMembers, start, err)
	return ms, err
}

func (t *TimedStore) UserGroups(ctx context.Context, user uint64) ([]uint64, error) {
	start := time.Now()
	gs, err := t.Store.UserGroups(ctx, user)
	t.done(mUserGroups, start, err)
	return gs, err
}

func (t *TimedStore) GroupInfo(ctx context.Context, group uint64) (storage.Group, error) {
	start := time.Now()
	g, err := t.Store.GroupInfo(ctx, group)
	t.done(mGroupInfo, start, err)
	return g, err
}

func (t *TimedStore) AppendGroupMsg(ctx context.Context, m storage.GroupMessage) (uint64, error) {
	start := time.Now()
	seq, err := t.Store.AppendGroupMsg(ctx, m)
	t.done(mAppendGroupMsg, start, err)
	return seq, err
}

func (t *TimedStore) FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]storage.GroupMessage, error) {
	start := time.Now()
	ms, err := t.Store.FetchGroup(ctx, group, user, afterSeq, limit)
	t.done(mFetchGroup, start, err)
	return ms, err
}

func (t *TimedStore) AckGroup(ctx context.Context, group, user, seq uint64) error {
	start := time.Now()
	err := t.Store.AckGroup(ctx, group, user, seq)
	t.done(mAckGroup, start, err)
	return err
}

func (t *TimedStore) PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error) {
	start := time.Now()
	n, err := t.Store.PurgeExpiredGroupMsgs(ctx, now)
	t.done(mPurgeExpiredGroupMsgs, start, err)
	return n, err
}

func (t *TimedStore) CountGroupMsgs(ctx context.Context, group uint64) (int, error) {
	start := time.Now()
	n, err := t.Store.CountGroupMsgs(ctx, group)
	t.done(mCountGroupMsgs, start, err)
	return n, err
}

func (t *TimedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := t.Store.Ping(ctx)
	t.done(mPing, start, err)
	return err
}

// Close closes the wrapped store; it is not timed.
func (t *TimedStore) Close() error { return t.Store.Close() }

var _ storage.Store = (*TimedStore)(nil)

// Metric descriptors; names follow Prometheus conventions (base units,
// _total for counters).
var (
	descConns = prometheus.NewDesc("myim_connections",
		"Open connections by listener.", []string{"listener"}, nil)
	descAccepted = prometheus.NewDesc("myim_accepted_total",
		"Connections accepted by listener.", []string{"listener"}, nil)
	descFramesIn = prometheus.NewDesc("myim_frames_in_total",
		"Frames received by listener.", []string{"listener"}, nil)
	descBytesIn = prometheus.NewDesc("myim_bytes_in_total",
		"Bytes of complete frames received by listener.", []string{"listener"}, nil)
	descBytesOut = prometheus.NewDesc("myim_bytes_out_total",
		"Bytes written to sockets by listener.", []string{"listener"}, nil)
	descWrites = prometheus.NewDesc("myim_writes_total",
		"Socket writes by listener (one per connection per loop iteration).", []string{"listener"}, nil)
	descClosed = prometheus.NewDesc("myim_closed_total",
		"Connections closed by listener and reason.", []string{"listener", "reason"}, nil)
	descLoopLag = prometheus.NewDesc("myim_loop_lag_seconds",
		"Delay between scheduling an event loop's sweep and the loop running it.", []string{"listener"}, nil)
	descSessions = prometheus.NewDesc("myim_sessions",
		"Authenticated client sessions on this endpoint.", nil, nil)
	descDraining = prometheus.NewDesc("myim_draining",
		"1 while the endpoint drains (refuses new sessions).", nil, nil)
	descHandshakes = prometheus.NewDesc("myim_handshakes_total",
		"Completed handshakes by role.", []string{"role"}, nil)
	descHandshakeFail = prometheus.NewDesc("myim_handshake_failures_total",
		"Failed handshakes by role and reason.", []string{"role", "reason"}, nil)
	descMessages = prometheus.NewDesc("myim_messages_total",
		"Messages the center handled, by outcome.", []string{"outcome"}, nil)
	descFramesByCmd = prometheus.NewDesc("myim_session_frames_total",
		"Frames opened from and sealed to client sessions, by command and direction.", []string{"cmd", "dir"}, nil)
	descGroupPushes = prometheus.NewDesc("myim_group_pushes_total",
		"Group messages pushed to online members' sessions.", nil, nil)
	descGroupPurged = prometheus.NewDesc("myim_group_purged_total",
		"Expired group messages the sweep deleted from the store.", nil, nil)
	descOfflineDeleted = prometheus.NewDesc("myim_offline_deleted_total",
		"Offline messages deleted after the recipient's receipt.", nil, nil)
	descOfflineDepth = prometheus.NewDesc("myim_offline_depth",
		"Offline messages stored by this process and not yet deleted (since start).", nil, nil)
	descOfflineQueue = prometheus.NewDesc("myim_offline_write_queue",
		"Undelivered messages waiting for the offline writer.", nil, nil)
	descPending = prometheus.NewDesc("myim_pending_receipts",
		"QoS 1 messages pushed and awaiting the recipient's receipt.", nil, nil)
	descStoreQueue = prometheus.NewDesc("myim_storage_queue",
		"Storage jobs waiting for the center's workers.", nil, nil)
	descStoreQueueCap = prometheus.NewDesc("myim_storage_queue_capacity",
		"Capacity of the center's storage job queue.", nil, nil)
	descOnline = prometheus.NewDesc("myim_routes",
		"Sessions registered in the center's routing table.", nil, nil)
	descCluster = prometheus.NewDesc("myim_cluster_events_total",
		"Center-to-center traffic and route table events, by event (see docs/operations.md).", []string{"event"}, nil)
	descPeers = prometheus.NewDesc("myim_cluster_peers_up",
		"Links from this center to other centers that are up.", nil, nil)
	descDelivery = prometheus.NewDesc("myim_delivery_seconds",
		"Time from the center accepting a message to the recipient's receipt (ms resolution).", nil, nil)
	descStoreLat = prometheus.NewDesc("myim_storage_seconds",
		"Storage call latency by method.", []string{"method"}, nil)
	descStoreErr = prometheus.NewDesc("myim_storage_errors_total",
		"Storage calls that failed (not counting not-found, exists or invalid answers), by method.", []string{"method"}, nil)
	descUptime = prometheus.NewDesc("myim_uptime_seconds",
		"Seconds since the process started serving.", nil, nil)
	descBuildInfo = prometheus.NewDesc("myim_build_info",
		"Always 1; the labels name the build this process runs.", []string{"version", "commit", "goversion", "role"}, nil)
)

// descAcceptErrors counts accepts that failed (EMFILE, ENFILE...) and
// were retried after a backoff, per listener (http included).
var descAcceptErrors = prometheus.NewDesc("myim_accept_errors_total",
	"Accepts that failed (out of file descriptors, or another error) and were retried after a backoff, by listener.",
	[]string{"listener"}, nil)

// Describe sends every descriptor the monitor's metrics use.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descAccepted, descFramesIn, descBytesIn, descBytesOut,
		descWrites, descClosed, descLoopLag, descSessions, descDraining, descHandshakes, descHandshakeFail,
		descMessages, descFramesByCmd, descGroupPushes, descGroupPurged, descOfflineDeleted, descOfflineDepth, descOfflineQueue, descPending, descStoreQueue, descStoreQueueCap, descOnline, descDelivery,
		descCluster, descPeers, descStoreLat, descStoreErr, descUptime, descBuildInfo, descAcceptErrors} {
		ch <- d
	}
}

// Collect reads the counters at scrape time; nothing is counted here.
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descBuildInfo, 1, m.cfg.Version, m.cfg.Commit, runtime.Version(), m.role())
	if n := m.cfg.Node; n != nil {
		for _, name := range n.order {
			st := n.servers[name].Stats()
			gauge(descConns, float64(st.Conns.Load()), name)
			counter(descAccepted, st.Accepted.Load(), name)
			counter(descFramesIn, st.FramesIn.Load(), name)
			counter(descBytesIn, st.BytesIn.Load(), name)
			counter(descBytesOut, st.BytesOut.Load(), name)
			counter(descWrites, st.Writes.Load(), name)
			for r := engine.ReasonPeer; r < engine.NumReasons; r++ {
				counter(descClosed, st.Closed[r].Load(), name, r.String())
			}
			ch <- latencyMetric(st.LoopLag.Snapshot(), descLoopLag, name)
			counter(descAcceptErrors, st.AcceptErrors.Load(), name)
		}
		if errs, limit := n.HTTPStats(); limit > 0 {
			counter(descAcceptErrors, errs, "http")
		}
	}
	handshakes := func(role string, h *im.HandshakeStats) {
		counter(descHandshakes, h.OK.Load(), role)
		for f := im.HandshakeFailure(0); f < im.NumHandshakeFailures; f++ {
			counter(descHandshakeFail, h.Failed[f].Load(), role, f.String())
		}
	}
	if e := m.cfg.Endpoint; e != nil {
		gauge(descSessions, float64(e.Sessions()))
		gauge(descDraining, b2f(e.Draining()))
		handshakes("endpoint", e.Handshakes())
		in, out := e.FramesByCommand()
		for c := 1; c < 256; c++ {
			if n := in[c].Load(); n > 0 {
				counter(descFramesByCmd, n, frame.Cmd(c).String(), "in")
			}
			if n := out[c].Load(); n > 0 {
				counter(descFramesByCmd, n, frame.Cmd(c).String(), "out")
			}
		}
		ch <- latencyMetric(e.DeliveryLatency().Snapshot(), descDelivery)
	}
	if l := m.cfg.Login; l != nil {
		handshakes("login", l.Handshakes())
	}
	if c := m.cfg.Center; c != nil {
		counter(descMessages, c.Delivered.Load(), "delivered")
		counter(descMessages, c.StoredOffline.Load(), "stored_offline")
		counter(descMessages, c.Refused.Load(), "refused")
		counter(descMessages, c.Shed.Load(), "shed")
		counter(descGroupPushes, c.GroupPushes.Load())
		counter(descOfflineDeleted, c.OfflineDeleted.Load())
		counter(descGroupPurged, c.GroupPurged.Load())
		gauge(descOfflineDepth, float64(max(int64(c.StoredOffline.Load())-int64(c.OfflineDeleted.Load()), 0)))
		gauge(descOfflineQueue, float64(len(c.offline)))
		gauge(descPending, float64(c.pendingReceipts()))
		gauge(descStoreQueue, float64(len(c.jobs)))
		gauge(descStoreQueueCap, float64(cap(c.jobs)))
		gauge(descOnline, float64(c.routes.Len()))
		if cs := c.ClusterStats(); cs != nil {
			for _, e := range []struct {
				name string
				v    *atomic.Uint64
			}{{"forwarded", &cs.Forwarded}, {"forward_stored", &cs.ForwardStored}, {"received", &cs.Received},
				{"relayed", &cs.Relayed}, {"unrouted", &cs.Unrouted}, {"route_errors", &cs.RouteErrors},
				{"publish_errors", &cs.PublishErrors}, {"publish_drops", &cs.PublishDrops},
				{"peer_connects", &cs.PeerConnects}, {"peer_dial_fails", &cs.PeerDialFails},
				{"moved", &cs.Moved}, {"rerouted", &cs.Rerouted}, {"held", &cs.Held}, {"held_stored", &cs.HeldStored},
				{"hints_sent", &cs.HintsSent}, {"hints_received", &cs.HintsReceived},
				{"republished", &cs.Republished}} {
				counter(descCluster, e.v.Load(), e.name)
			}
			gauge(descPeers, float64(c.PeersUp()))
		}
	}
	if t := m.cfg.Store; t != nil {
		for i, name := range storeMethods {
			ch <- latencyMetric(t.lat[i].Snapshot(), descStoreLat, name)
			counter(descStoreErr, t.errors[i].Load(), name)
		}
	}
	gauge(descUptime, time.Since(m.start).Seconds())
}

// pendingReceipts counts pushed QoS 1 messages awaiting receipts; it takes
// each pending shard's lock in turn (a scrape, not the hot path).
func (c *LocalCenter) pendingReceipts() int {
	n := 0
	for i := range c.pending {
		sh := &c.pending[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// InFlight returns the QoS 1 messages pushed and awaiting receipts plus
// the storage jobs queued: what a stopping center waits for. Safe for
// concurrent use.
func (c *LocalCenter) InFlight() int { return c.pendingReceipts() + len(c.jobs) }
