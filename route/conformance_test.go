package route_test

import (
	"testing"

	"github.com/myim/myim/route"
	"github.com/myim/myim/route/routetest"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	routetest.Run(t, func(t testing.TB) route.Table {
		m := route.NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}
