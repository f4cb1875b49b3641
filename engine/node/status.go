package node

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/procfs"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/internal/httpjson"
	"github.com/myim/myim/engine/login"
	"github.com/myim/myim/route"
)

// MonitorConfig names what a Monitor reads. Every field may be nil: a node
// without a center has no message figures.
type MonitorConfig struct {
	Node     *Node
	Center   *center.LocalCenter
	Endpoint *endpoint.Handler
	Login    *login.Handler
	Store    *TimedStore
	// Logs holds recent warnings and errors for the status page.
	Logs *LogRing
	// ServerID, Version and Commit describe this node on the status page
	// and in myim_build_info.
	ServerID uint32
	Version  string
	Commit   string
	// Registry, when set, is where the node publishes its figures every few
	// seconds and reads the other nodes' for the status page (role "node").
	Registry route.Table
	// AdminAddr is the address published with the figures, where an
	// operator finds this node's own status page.
	AdminAddr string
}

// nodeRegistryBit sets the registry ids of the nodes' status records apart
// from the endpoints' (the server id) and the centers' (centerRegistryBit).
const nodeRegistryBit = 1 << 17

// RoleNode is the registry role of the nodes' status records.
const RoleNode = "node"

// nodeTTL is how long a node's status record lives unless rewritten; it is
// rewritten every nodePublish, so a node that died leaves the page within
// nodeTTL.
const (
	nodeTTL     = 15 * time.Second
	nodePublish = 5 * time.Second
)

// Monitor is what operators see of a node: the Prometheus collector behind
// /metrics, the public /v1/status JSON and page, and the figures the admin
// API reports. It reads the counters the hot path keeps; a goroutine samples
// them once a second so that rates and recent percentiles need no work on
// the hot path. Safe for concurrent use.
type Monitor struct {
	cfg   MonitorConfig
	start time.Time

	mu      sync.Mutex
	samples []sample // ring, oldest first once full
	next    int

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	// cluster caches the registry's node records for a second, so that
	// pages polling the status do not each read Redis.
	clusterMu sync.Mutex
	cluster   []NodeStatus
	clusterAt time.Time
	// proc reads this process's RSS and CPU time; nil where /proc is not.
	proc      *procfs.Proc
	adminAddr atomic.Value // string
}

// SetAdminAddr sets the admin address published with the node's figures,
// once the listener is bound. Safe for concurrent use.
func (m *Monitor) SetAdminAddr(addr string) { m.adminAddr.Store(addr) }

func (m *Monitor) admin() string {
	if a, ok := m.adminAddr.Load().(string); ok {
		return a
	}
	return m.cfg.AdminAddr
}

// sample is the node's totals at one second.
type sample struct {
	at       time.Time
	messages uint64 // center outcomes, all kinds
	frames   uint64 // frames in, every listener
	delivery engine.LatencySnapshot
	cpu      float64 // process CPU seconds
	logins   uint64  // login handshakes, succeeded
	failures uint64  // login handshakes, failed
	errs     uint64  // warnings and errors logged
}

// sampleWindow is how many one-second samples the monitor keeps: a minute,
// the longest window the status page shows.
const sampleWindow = 61

// rateWindow is the window messages per second are averaged over: long
// enough to smooth bursts, short enough that the page follows a load test.
const rateWindow = 10 * time.Second

// NewMonitor starts a monitor; Close stops its sampler.
func NewMonitor(cfg MonitorConfig) *Monitor {
	m := &Monitor{cfg: cfg, start: time.Now(), samples: make([]sample, 0, sampleWindow),
		stop: make(chan struct{}), done: make(chan struct{})}
	if p, err := procfs.Self(); err == nil {
		m.proc = &p
	}
	m.sample(time.Now())
	go m.run()
	return m
}

// Close stops the sampler.
func (m *Monitor) Close() {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
}

func (m *Monitor) run() {
	defer close(m.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastPublish time.Time
	for {
		select {
		case <-m.stop:
			if m.cfg.Registry != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = m.cfg.Registry.UnregisterServer(ctx, nodeRegistryBit|m.cfg.ServerID)
				cancel()
			}
			return
		case now := <-t.C:
			m.sample(now)
			if m.cfg.Registry != nil && now.Sub(lastPublish) >= nodePublish {
				lastPublish = now
				m.publish()
			}
		}
	}
}

// Publish writes this node's figures to the registry now (the sampler
// does it every few seconds). Safe for concurrent use.
func (m *Monitor) Publish() {
	if m.cfg.Registry != nil {
		m.publish()
	}
}

func (m *Monitor) publish() {
	st := m.self(m.Stats())
	info, _ := json.Marshal(st)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := m.cfg.Registry.RegisterServer(ctx, route.Server{ID: nodeRegistryBit | m.cfg.ServerID, Role: RoleNode,
		Addr: m.admin(), Info: info}, nodeTTL)
	if err != nil && m.cfg.Logs != nil {
		slog.New(m.cfg.Logs).Debug("status record not published", "err", err)
	}
}

func (m *Monitor) sample(now time.Time) {
	s := m.read(now)
	m.mu.Lock()
	if len(m.samples) < sampleWindow {
		m.samples = append(m.samples, s)
	} else {
		m.samples[m.next] = s
		m.next = (m.next + 1) % sampleWindow
	}
	m.mu.Unlock()
}

// read takes the totals a sample holds.
func (m *Monitor) read(now time.Time) sample {
	s := sample{at: now}
	if c := m.cfg.Center; c != nil {
		s.messages = c.Delivered.Load() + c.StoredOffline.Load() + c.Refused.Load() + c.Shed.Load()
	}
	if n := m.cfg.Node; n != nil {
		for _, name := range n.order {
			s.frames += n.servers[name].Stats().FramesIn.Load()
		}
	}
	if e := m.cfg.Endpoint; e != nil {
		s.delivery = e.DeliveryLatency().Snapshot()
	}
	if l := m.cfg.Login; l != nil {
		h := l.Handshakes()
		s.logins = h.OK.Load()
		for i := range h.Failed {
			s.failures += h.Failed[i].Load()
		}
	}
	if m.cfg.Logs != nil {
		s.errs = m.cfg.Logs.Count()
	}
	if m.proc != nil {
		if ps, err := m.proc.Stat(); err == nil {
			s.cpu = ps.CPUTime()
		}
	}
	return s
}

// rss returns the process's resident memory in bytes, 0 where unknown.
func (m *Monitor) rss() uint64 {
	if m.proc != nil {
		if ps, err := m.proc.Stat(); err == nil {
			return uint64(ps.ResidentMemory())
		}
	}
	return 0
}

func (m *Monitor) role() string {
	if n := m.cfg.Node; n != nil {
		return n.cfg.Role
	}
	return im.RoleAll
}

// history returns the samples oldest first. Lock must be held.
func (m *Monitor) history() []sample {
	out := make([]sample, 0, len(m.samples))
	out = append(out, m.samples[m.next:]...)
	return append(out, m.samples[:m.next]...)
}

// NodeStats are a node's figures at one moment, for the status page and
// the admin API.
type NodeStats struct {
	Node        uint32         `json:"node"`
	Version     string         `json:"version"`
	Uptime      float64        `json:"uptime_seconds"`
	Connections map[string]int `json:"connections"` // by listener
	Sessions    int            `json:"sessions"`
	Draining    bool           `json:"draining"`
	// MessagesPerSec is averaged over the last ten seconds.
	MessagesPerSec float64 `json:"messages_per_sec"`
	FramesPerSec   float64 `json:"frames_per_sec"`
	// MessageRate is messages per second for each of the last 60 seconds,
	// oldest first.
	MessageRate []float64 `json:"message_rate"`
	Delivered   uint64    `json:"delivered"`
	Stored      uint64    `json:"stored_offline"`
	Refused     uint64    `json:"refused"`
	Shed        uint64    `json:"shed"`
	// Pending counts pushed QoS 1 messages awaiting receipts; StoreQueue
	// the storage jobs waiting for a worker.
	Pending    int `json:"pending_receipts"`
	StoreQueue int `json:"storage_queue"`
	// DeliveryP50Ms and DeliveryP99Ms are percentiles of delivery latency
	// over the last minute in milliseconds, interpolated within the
	// histogram's buckets; -1 without deliveries.
	DeliveryP50Ms float64 `json:"delivery_p50_ms"`
	DeliveryP99Ms float64 `json:"delivery_p99_ms"`
	Goroutines    int     `json:"goroutines"`
	HeapBytes     uint64  `json:"heap_bytes"`
	RSSBytes      uint64  `json:"rss_bytes"`
	// CPUPercent is the process's CPU use over the last ten seconds, 100
	// for one core busy.
	CPUPercent float64 `json:"cpu_percent"`
	// LoginsPerSec and LoginFailuresPerSec are login handshakes over the
	// last ten seconds; ErrorsPerMin the warnings and errors logged.
	LoginsPerSec        float64 `json:"logins_per_sec"`
	LoginFailuresPerSec float64 `json:"login_failures_per_sec"`
	ErrorsPerMin        float64 `json:"errors_per_min"`
	// Nodes lists every node of the cluster the registry knows (only this
	// one without a shared registry), this one included, by id.
	Nodes []NodeStatus `json:"nodes"`
}

// heapBytes reads the live heap through runtime/metrics, which, unlike
// runtime.ReadMemStats, does not stop the world: the status JSON is public.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		return s[0].Value.Uint64()
	}
	return 0
}

// NodeStatus is one node of the cluster with its load, as it published it
// in the registry.
type NodeStatus struct {
	ID                  uint32  `json:"id"`
	Role                string  `json:"role"`
	Version             string  `json:"version"`
	State               string  `json:"state"` // serving or draining
	Sessions            int     `json:"sessions"`
	Conns               int     `json:"connections"`
	Draining            bool    `json:"draining"`
	RSSBytes            uint64  `json:"rss_bytes"`
	CPUPercent          float64 `json:"cpu_percent"`
	MessagesPerSec      float64 `json:"messages_per_sec"`
	LoginsPerSec        float64 `json:"logins_per_sec"`
	LoginFailuresPerSec float64 `json:"login_failures_per_sec"`
	ErrorsPerMin        float64 `json:"errors_per_min"`
	Uptime              float64 `json:"uptime_seconds"`
	AdminAddr           string  `json:"admin_addr,omitempty"`
	// Age is how many seconds ago the node published these figures.
	Age  float64 `json:"age_seconds"`
	Self bool    `json:"self"`
}

// self is this node's line of the cluster table, from its stats.
func (m *Monitor) self(st *NodeStats) NodeStatus {
	total := 0
	for _, c := range st.Connections {
		total += c
	}
	state := "serving"
	if st.Draining {
		state = "draining"
	}
	return NodeStatus{ID: m.cfg.ServerID, Role: m.role(), Version: m.cfg.Version, State: state,
		Sessions: st.Sessions, Conns: total, Draining: st.Draining, RSSBytes: st.RSSBytes,
		CPUPercent: st.CPUPercent, MessagesPerSec: st.MessagesPerSec, LoginsPerSec: st.LoginsPerSec,
		LoginFailuresPerSec: st.LoginFailuresPerSec, ErrorsPerMin: st.ErrorsPerMin, Uptime: st.Uptime,
		AdminAddr: m.admin(), Self: true}
}

// nodes returns the cluster's nodes from the registry with this one's
// line fresh, by id.
func (m *Monitor) nodes(self NodeStatus) []NodeStatus {
	out := []NodeStatus{self}
	if m.cfg.Registry == nil {
		return out
	}
	m.clusterMu.Lock()
	defer m.clusterMu.Unlock()
	if time.Since(m.clusterAt) > time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		list, err := m.cfg.Registry.Servers(ctx, RoleNode)
		cancel()
		if err == nil {
			m.cluster = m.cluster[:0]
			now := time.Now().UnixMilli()
			for _, s := range list {
				var ns NodeStatus
				if json.Unmarshal(s.Info, &ns) != nil {
					continue
				}
				ns.Self, ns.Age = false, float64(now-s.Updated)/1000
				m.cluster = append(m.cluster, ns)
			}
			m.clusterAt = time.Now()
		}
	}
	for _, ns := range m.cluster {
		if ns.ID != self.ID {
			out = append(out, ns)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats computes the node's figures now.
func (m *Monitor) Stats() *NodeStats {
	st := &NodeStats{Node: m.cfg.ServerID, Version: m.cfg.Version, Uptime: time.Since(m.start).Seconds(),
		Connections: map[string]int{}, DeliveryP99Ms: -1, DeliveryP50Ms: -1}
	if n := m.cfg.Node; n != nil {
		for _, name := range n.order {
			st.Connections[name] = int(n.servers[name].Stats().Conns.Load())
		}
	}
	if e := m.cfg.Endpoint; e != nil {
		st.Sessions = e.Sessions()
		st.Draining = e.Draining()
	}
	if c := m.cfg.Center; c != nil {
		st.Delivered, st.Stored = c.Delivered.Load(), c.StoredOffline.Load()
		st.Refused, st.Shed = c.Refused.Load(), c.Shed.Load()
		st.Pending = c.PendingReceipts()
		st.StoreQueue = c.Queues().Jobs
	}
	m.mu.Lock()
	h := m.history()
	m.mu.Unlock()
	// Rates and the percentile run from the samples up to now, so that
	// they include the last fraction of a second.
	last := m.read(time.Now())
	if len(h) > 0 {
		first := h[0]
		for _, s := range h {
			if last.at.Sub(s.at) <= rateWindow {
				first = s
				break
			}
		}
		if secs := last.at.Sub(first.at).Seconds(); secs > 0 {
			st.MessagesPerSec = float64(last.messages-first.messages) / secs
			st.FramesPerSec = float64(last.frames-first.frames) / secs
		}
		st.MessageRate = make([]float64, 0, len(h)-1)
		for i := 1; i < len(h); i++ {
			if secs := h[i].at.Sub(h[i-1].at).Seconds(); secs > 0 {
				st.MessageRate = append(st.MessageRate, float64(h[i].messages-h[i-1].messages)/secs)
			}
		}
		if secs := last.at.Sub(first.at).Seconds(); secs > 0 {
			st.CPUPercent = 100 * (last.cpu - first.cpu) / secs
			st.LoginsPerSec = float64(last.logins-first.logins) / secs
			st.LoginFailuresPerSec = float64(last.failures-first.failures) / secs
		}
		if secs := last.at.Sub(h[0].at).Seconds(); secs > 0 {
			st.ErrorsPerMin = 60 * float64(last.errs-h[0].errs) / secs
		}
		d := last.delivery.Sub(h[0].delivery)
		if q := d.Interpolated(0.99); q >= 0 {
			st.DeliveryP99Ms = float64(q) / float64(time.Millisecond)
			st.DeliveryP50Ms = float64(d.Interpolated(0.5)) / float64(time.Millisecond)
		}
	}
	st.Goroutines, st.HeapBytes, st.RSSBytes = runtime.NumGoroutine(), heapBytes(), m.rss()
	st.Nodes = m.nodes(m.self(st))
	return st
}

//go:embed status.html
var statusPage []byte

// Register adds /metrics (Prometheus, with Go runtime and process
// collectors), the /v1/status JSON and the status page at / to n's admin
// listener. The status JSON holds figures only, no log lines: the recent
// warnings and errors are in the admin API, behind the secret.
func (m *Monitor) Register(n *Node) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.HandleAdmin("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	n.HandleAdmin("GET /v1/status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, m.Stats())
	}))
	n.HandleAdmin("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = w.Write(statusPage)
	}))
}

// RecentError is a warning or error log record as the status page shows
// it: the message and its "err" attribute, nothing else, since the page is
// public.
type RecentError struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	Err   string    `json:"err,omitempty"`
}

// LogRing is a slog.Handler that passes every record to the handler it
// wraps and keeps the last few warnings and errors for the status page.
// Warnings are rare, so a mutex guards the ring. Safe for concurrent use.
type LogRing struct {
	next slog.Handler
	r    *ring
	err  string // the last "err" attribute added through WithAttrs
}

type ring struct {
	n    atomic.Uint64 // warnings and errors ever logged
	mu   sync.Mutex
	recs []RecentError
	pos  int
	size int
}

// NewLogRing wraps h and keeps the last size warnings and errors.
func NewLogRing(h slog.Handler, size int) *LogRing {
	return &LogRing{next: h, r: &ring{recs: make([]RecentError, 0, size), size: size}}
}

// Enabled reports true for warnings and errors, which the ring keeps even
// if the wrapped handler drops them, and otherwise asks the wrapped handler.
func (l *LogRing) Enabled(ctx context.Context, lvl slog.Level) bool {
	return lvl >= slog.LevelWarn || l.next.Enabled(ctx, lvl)
}

// Handle keeps warnings and errors and passes what the wrapped handler
// wants to it.
func (l *LogRing) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelWarn {
		e := RecentError{Time: rec.Time, Level: rec.Level.String(), Msg: rec.Message, Err: l.err}
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				e.Err = a.Value.String()
				return false
			}
			return true
		})
		l.r.add(e)
	}
	if l.next.Enabled(ctx, rec.Level) {
		return l.next.Handle(ctx, rec)
	}
	return nil
}

// WithAttrs returns a handler sharing the ring.
func (l *LogRing) WithAttrs(as []slog.Attr) slog.Handler {
	n := &LogRing{next: l.next.WithAttrs(as), r: l.r, err: l.err}
	for _, a := range as {
		if a.Key == "err" {
			n.err = a.Value.String()
		}
	}
	return n
}

// WithGroup returns a handler sharing the ring.
func (l *LogRing) WithGroup(name string) slog.Handler {
	return &LogRing{next: l.next.WithGroup(name), r: l.r, err: l.err}
}

// Recent returns the kept records, oldest first.
func (l *LogRing) Recent() []RecentError {
	return l.r.list()
}

// Count returns how many warnings and errors were logged since start.
func (l *LogRing) Count() uint64 { return l.r.n.Load() }

func (r *ring) add(e RecentError) {
	r.n.Add(1)
	r.mu.Lock()
	if len(r.recs) < r.size {
		r.recs = append(r.recs, e)
	} else if r.size > 0 {
		r.recs[r.pos] = e
		r.pos = (r.pos + 1) % r.size
	}
	r.mu.Unlock()
}

func (r *ring) list() []RecentError {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RecentError, 0, len(r.recs))
	out = append(out, r.recs[r.pos:]...)
	return append(out, r.recs[:r.pos]...)
}
