package routetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/myim/myim/route"
)

func serverIDs(ss []route.Server) []uint32 {
	ids := make([]uint32, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// WantServers reports an error unless tb lists exactly ids, in order, for
// role.
func WantServers(t testing.TB, tb route.Table, role string, ids ...uint32) error {
	t.Helper()
	ss, err := tb.Servers(Context(t), role)
	if err != nil {
		t.Fatalf("Servers(%q): %v", role, err)
	}
	if got := serverIDs(ss); !slices.Equal(got, ids) {
		return fmt.Errorf("Servers(%q) = %v, want %v", role, got, ids)
	}
	return nil
}

func testServerOrdering(t *testing.T, tb route.Table) {
	ctx := Context(t)
	before := time.Now().UnixMilli()
	for _, s := range []route.Server{
		{ID: 1, Role: "endpoint", Addr: "10.0.0.1:7000", Priority: 2, Load: 0},
		{ID: 2, Role: "endpoint", Addr: "10.0.0.2:7000", Priority: 1, Load: 50},
		{ID: 3, Role: "endpoint", Addr: "10.0.0.3:7000", WSAddr: ":5290", Priority: 1, Load: 10, StaticKey: []byte{0, 1, 2, 255}},
		{ID: 4, Role: "endpoint", Addr: "10.0.0.4:7000", Priority: 1, Load: 10},
		{ID: 5, Role: "center", Addr: "10.0.1.1:7100", Priority: 0, Load: 0},
	} {
		if err := tb.RegisterServer(ctx, s, TTLLong); err != nil {
			t.Fatal(err)
		}
	}
	if err := WantServers(t, tb, "endpoint", 3, 4, 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "center", 5); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "login"); err != nil {
		t.Fatal(err)
	}
	ss, err := tb.Servers(ctx, "endpoint")
	if err != nil {
		t.Fatal(err)
	}
	got := ss[0]
	if got.Role != "endpoint" || got.Addr != "10.0.0.3:7000" || got.WSAddr != ":5290" || got.Priority != 1 || got.Load != 10 ||
		string(got.StaticKey) != "\x00\x01\x02\xff" || got.Updated < before {
		t.Fatalf("server 3 read back as %+v", got)
	}
}

func testServerReRegistration(t *testing.T, tb route.Table) {
	ctx := Context(t)
	reg := func(s route.Server) {
		t.Helper()
		if err := tb.RegisterServer(ctx, s, TTLLong); err != nil {
			t.Fatal(err)
		}
	}
	reg(route.Server{ID: 1, Role: "center", Load: 10})
	reg(route.Server{ID: 2, Role: "center", Load: 20})
	if err := WantServers(t, tb, "center", 1, 2); err != nil {
		t.Fatal(err)
	}
	reg(route.Server{ID: 1, Role: "center", Load: 30}) // load report
	if err := WantServers(t, tb, "center", 2, 1); err != nil {
		t.Fatal(err)
	}
	ss, _ := tb.Servers(ctx, "center")
	if ss[1].Load != 30 {
		t.Fatalf("load after re-registration = %d, want 30", ss[1].Load)
	}
	reg(route.Server{ID: 2, Role: "endpoint", Addr: "moved"}) // role change
	if err := WantServers(t, tb, "center", 1); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "endpoint", 2); err != nil {
		t.Fatal(err)
	}
	if err := tb.UnregisterServer(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "endpoint"); err != nil {
		t.Fatal(err)
	}
	if err := tb.UnregisterServer(ctx, 2); err != nil {
		t.Fatalf("Unregister of missing server: %v", err)
	}
	if err := tb.UnregisterServer(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "center"); err != nil {
		t.Fatal(err)
	}
	reg(route.Server{ID: 1, Role: "center"}) // back after unregistering
	if err := WantServers(t, tb, "center", 1); err != nil {
		t.Fatal(err)
	}
}

func testServerExpiry(t *testing.T, tb route.Table) {
	ctx := Context(t)
	if err := tb.RegisterServer(ctx, route.Server{ID: 1, Role: "endpoint"}, TTLShort); err != nil {
		t.Fatal(err)
	}
	if err := tb.RegisterServer(ctx, route.Server{ID: 2, Role: "endpoint", Priority: 9}, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "endpoint", 1, 2); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Second, func() error { return WantServers(t, tb, "endpoint", 2) })
	// A dead server that comes back is listed again.
	if err := tb.RegisterServer(ctx, route.Server{ID: 1, Role: "endpoint"}, TTLLong); err != nil {
		t.Fatal(err)
	}
	if err := WantServers(t, tb, "endpoint", 1, 2); err != nil {
		t.Fatal(err)
	}
}

func testInvalidServer(t *testing.T, tb route.Table) {
	ctx := Context(t)
	for _, s := range []route.Server{{Role: "endpoint"}, {ID: 1}} {
		if err := tb.RegisterServer(ctx, s, TTLLong); !errors.Is(err, route.ErrInvalidServer) {
			t.Errorf("RegisterServer(%+v) = %v, want ErrInvalidServer", s, err)
		}
	}
}

// testReadsSeeWrites checks read-your-writes: a read through the same Table
// right after a write sees it, even when the earlier reads were cached.
// (Backends with a client-side cache test invalidation across Tables in
// their own test file.)
