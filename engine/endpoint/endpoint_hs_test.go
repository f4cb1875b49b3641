package endpoint

import "testing"

func TestBudgetKey(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3:5000":               "10.1.2.3",
		"[2001:db8:1:2:aaaa::1]:5000": "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb::9]:6000": "2001:db8:1:2::/64",
		"[::ffff:10.1.2.3]:5000":      "::ffff:10.1.2.3",
		"not an address":              "not an address",
	} {
		if got := budgetKey(in); got != want {
			t.Errorf("budgetKey(%q) = %q, want %q", in, got, want)
		}
	}
}
