package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/node"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

func TestTimedStoreRecordsLatency(t *testing.T) {
	raw, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st := node.NewTimedStore(raw)
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
	ring := node.NewLogRing(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError}), 3)
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

// TestMonitorServes checks /metrics (descriptions consistent with what is
// collected), /v1/status and the page on a node's admin listener, and that
// the public listener serves none of them.
func TestMonitorServes(t *testing.T) {
	n, err := node.NewNode(node.NodeConfig{Role: im.RoleEndpoint, EndpointAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctr := center.NewLocalCenter(center.Config{})
	defer ctr.Close()
	mon := node.NewMonitor(node.MonitorConfig{Node: n, Center: ctr, ServerID: 1, Version: "test"})
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
	ctr.Delivered.Add(3)
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
