package node

import "testing"

// TestConnShares: on a 20,000-file limit the endpoint keeps what the
// login, center and HTTP listeners leave, and a WebSocket listener beside
// an endpoint shares the endpoint's cap instead of taking a quarter of the
// files from it; without an endpoint it takes its quarter.
func TestConnShares(t *testing.T) {
	const limit, reserve = 20000, 2064
	avail := limit - reserve
	for _, tc := range []struct {
		name  string
		names []string
		want  map[string]int
	}{
		{"endpoint", []string{"endpoint", "ws", "http"},
			map[string]int{"endpoint": avail - 1024, "ws": avail - 1024, "http": 1024}},
		{"all", []string{"login", "endpoint", "center", "ws", "http"},
			map[string]int{"login": avail / 8, "center": avail / 16, "http": 1024,
				"endpoint": avail - avail/8 - avail/16 - 1024, "ws": avail - avail/8 - avail/16 - 1024}},
		{"login", []string{"login", "ws", "http"},
			map[string]int{"login": avail / 8, "ws": avail / 4, "http": 1024}},
	} {
		caps := map[string]int{"http": 1024}
		for _, n := range tc.names {
			if n != "http" {
				caps[n] = 1_000_000
			}
		}
		got := connShares(limit, reserve, tc.names, caps)
		for n, want := range tc.want {
			if got[n] != want {
				t.Errorf("%s: %s cap %d, want %d", tc.name, n, got[n], want)
			}
		}
	}
}
