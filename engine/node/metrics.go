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

// TimedStore is a storage.Store that records each call's latency, by
// method, and counts failed calls (storage.Observe does the timing). Safe
// for concurrent use, as the store it wraps; timing costs no lock and no
// allocation.
type TimedStore struct {
	storage.Store
	lat    [storage.MethodCount]engine.LatencyHistogram
	errors [storage.MethodCount]atomic.Uint64
}

// NewTimedStore wraps s.
func NewTimedStore(s storage.Store) *TimedStore {
	t := &TimedStore{}
	t.Store = storage.Observe(s, t.observe)
	return t
}

// Latency returns the histogram of the named method, or nil.
func (t *TimedStore) Latency(method string) *engine.LatencyHistogram {
	for m := range storage.MethodCount {
		if m.String() == method {
			return &t.lat[m]
		}
	}
	return nil
}

func (t *TimedStore) observe(m storage.Method, d time.Duration, err error) {
	t.lat[m].Observe(d)
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
		gauge(descOfflineQueue, float64(c.Queues().Offline))
		gauge(descPending, float64(c.PendingReceipts()))
		gauge(descStoreQueue, float64(c.Queues().Jobs))
		gauge(descStoreQueueCap, float64(c.Queues().JobsCap))
		gauge(descOnline, float64(c.Routes().Len()))
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
		for m := range storage.MethodCount {
			ch <- latencyMetric(t.lat[m].Snapshot(), descStoreLat, m.String())
			counter(descStoreErr, t.errors[m].Load(), m.String())
		}
	}
	gauge(descUptime, time.Since(m.start).Seconds())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
