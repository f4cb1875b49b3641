package engine_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

func TestLatencyHistogramQuantile(t *testing.T) {
	var h engine.LatencyHistogram
	if q := h.Snapshot().Quantile(0.99); q != -1 {
		t.Fatalf("empty histogram p99 %v, want -1", q)
	}
	for i := 0; i < 98; i++ {
		h.Observe(300 * time.Microsecond) // bucket <= 500 µs
	}
	h.Observe(40 * time.Millisecond) // bucket <= 50 ms
	h.Observe(time.Minute)           // past the last bound
	s := h.Snapshot()
	if s.Count() != 100 {
		t.Fatalf("count %d", s.Count())
	}
	for q, want := range map[float64]time.Duration{
		0.5: 500 * time.Microsecond, 0.98: 500 * time.Microsecond, 0.99: 50 * time.Millisecond, 1: 10 * time.Second,
	} {
		if got := s.Quantile(q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	before := s
	h.Observe(2 * time.Millisecond)
	if d := h.Snapshot().Sub(before); d.Count() != 1 || d.Quantile(0.5) != 2500*time.Microsecond || d.Sum != 2*time.Millisecond {
		t.Fatalf("difference %+v", d)
	}
}

func TestTimedStoreRecordsLatency(t *testing.T) {
	raw, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st := engine.NewTimedStore(raw)
	defer st.Close()
	var s storage.Store = st // the decorator is a whole Store
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, storage.User{Name: "tia", PassHash: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserByName(ctx, "nobody"); err == nil {
		t.Fatal("found nobody")
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"CreateUser", "UserByName", "Ping"} {
		if n := st.Latency(m).Snapshot().Count(); n != 1 {
			t.Errorf("%s: %d observations, want 1", m, n)
		}
	}
	if st.Latency("FetchOffline").Snapshot().Count() != 0 || st.Latency("NoSuchMethod") != nil {
		t.Error("latency recorded for a method not called")
	}
}

func TestLogRingKeepsRecentWarnings(t *testing.T) {
	var out strings.Builder
	ring := engine.NewLogRing(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError}), 3)
	log := slog.New(ring).With("role", "test")
	log.Info("ignored")
	for i := 0; i < 5; i++ {
		log.Warn("warned", "n", i, "err", io.ErrUnexpectedEOF)
	}
	log.With("err", "bad disk").Error("failed")
	got := ring.Recent()
	if len(got) != 3 || got[0].Msg != "warned" || got[2].Msg != "failed" || got[2].Level != "ERROR" ||
		got[1].Err != io.ErrUnexpectedEOF.Error() || got[2].Err != "bad disk" {
		t.Fatalf("recent %+v", got)
	}
	// The wrapped handler still decides what it writes.
	if s := out.String(); strings.Contains(s, "warned") || !strings.Contains(s, "failed") {
		t.Fatalf("wrapped handler wrote:\n%s", s)
	}
}

func TestServerCountsBytesOutAndLoopLag(t *testing.T) {
	s := startServer(t, echo{}, engine.WithConfig(engine.Config{Addr: "tcp://127.0.0.1:0", Loops: 1,
		TickInterval: 20 * time.Millisecond}))
	c := dial(t, s)
	_, _ = c.Write(frame.Ping)
	readN(t, c, 3)
	st := s.Stats()
	eventually(t, 5*time.Second, func() bool { return st.BytesOut.Load() == 3 && st.Writes.Load() == 1 })
	// Sweeps run every tick on the loop that holds the connection.
	eventually(t, 5*time.Second, func() bool { return st.LoopLag.Snapshot().Count() >= 3 })
	if q := st.LoopLag.Snapshot().Quantile(0.5); q > time.Second {
		t.Fatalf("median loop lag %v on an idle loop", q)
	}
}

// TestMonitorServes checks /metrics (descriptions consistent with what is
// collected), /v1/status and the page on a node's admin listener, and that
// the public listener serves none of them.
func TestMonitorServes(t *testing.T) {
	n, err := engine.NewNode(engine.NodeConfig{Role: engine.RoleEndpoint, EndpointAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	center := engine.NewLocalCenter(engine.CenterConfig{})
	defer center.Close()
	mon := engine.NewMonitor(engine.MonitorConfig{Node: n, Center: center, ServerID: 1, Version: "test"})
	defer mon.Close()
	mon.Register(n)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(mon)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	center.Delivered.Add(3)
	base := "http://" + n.Addrs()["admin"].String()
	for path, want := range map[string]string{
		"/metrics":   `myim_messages_total{outcome="delivered"} 3`,
		"/v1/status": `"delivered":3`,
		"/":          "<title>MyIM status</title>",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, want %q in:\n%.400s", path, resp.StatusCode, want, b)
		}
	}
	if resp, err := http.Get(base + "/nothing"); err != nil || resp.StatusCode != 404 {
		t.Errorf("unknown path: %v %v", resp.StatusCode, err)
	}
	for _, path := range []string{"/metrics", "/v1/status", "/"} {
		resp, err := http.Get("http://" + n.Addrs()["http"].String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("public listener serves %s: %d", path, resp.StatusCode)
		}
	}
}

// TestInterpolatedQuantile wants percentiles read within the bucket: 100
// deliveries spread over 50..100 ms give a p99 near 99.5 ms and a p50
// near 75 ms, not the bucket's 100 ms.
func TestInterpolatedQuantile(t *testing.T) {
	var h engine.LatencyHistogram
	if q := h.Snapshot().Interpolated(0.99); q != -1 {
		t.Fatalf("empty: %v", q)
	}
	for i := 0; i < 100; i++ {
		h.Observe(50*time.Millisecond + time.Duration(i)*500*time.Microsecond + time.Microsecond)
	}
	s := h.Snapshot()
	if b := s.Quantile(0.99); b != 100*time.Millisecond {
		t.Fatalf("bucket edge %v", b)
	}
	p99, p50 := s.Interpolated(0.99), s.Interpolated(0.5)
	if p99 < 95*time.Millisecond || p99 >= 100*time.Millisecond {
		t.Errorf("interpolated p99 %v, want in [95ms, 100ms)", p99)
	}
	if p50 < 70*time.Millisecond || p50 > 80*time.Millisecond {
		t.Errorf("interpolated p50 %v, want about 75ms", p50)
	}
}
