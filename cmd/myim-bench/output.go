package main

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/bytedance/sonic"
)

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := sonic.ConfigStd.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writePlot draws the latency distribution the usual HDR way: latency
// against percentile on a log scale of 1/(1-q), so the tail gets room.
func writePlot(path string, r *Report) error {
	h := r.hist
	if h == nil || h.TotalCount() == 0 {
		return fmt.Errorf("plot: no latencies recorded")
	}
	const (
		w, ht      = 760.0, 420.0
		left, top  = 70.0, 40.0
		right, bot = 40.0, 60.0
		maxNines   = 5.0 // up to 99.999 %
	)
	pw, ph := w-left-right, ht-top-bot
	type pt struct{ x, y float64 }
	var pts []pt
	maxV := float64(h.Max())
	for i := 0; i <= 200; i++ {
		n := maxNines * float64(i) / 200 // nines
		q := 100 * (1 - math.Pow(10, -n))
		pts = append(pts, pt{n, float64(h.ValueAtQuantile(q))})
	}
	if maxV <= 0 {
		maxV = 1
	}
	yMax := niceCeil(maxV / 1000) // ms
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, ht)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%.0f" y="22" font-size="14">myim-bench %s (%s): latency by percentile, %d samples</text>`+"\n",
		left, r.Scenario, r.Proto, h.TotalCount())
	// axes and grid
	for i := 0; i <= int(maxNines); i++ {
		x := left + pw*float64(i)/maxNines
		label := []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"}[i]
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, top, x, top+ph)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+ph+18, label)
	}
	for i := 0; i <= 4; i++ {
		y := top + ph - ph*float64(i)/4
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n", left-6, y+4, yMax*float64(i)/4)
	}
	fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">percentile</text>`+"\n", left+pw/2, ht-16)
	fmt.Fprintf(&sb, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">latency (ms)</text>`+"\n", top+ph/2, top+ph/2)
	fmt.Fprintf(&sb, `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="`)
	for _, p := range pts {
		x := left + pw*p.x/maxNines
		y := top + ph - ph*math.Min(p.y/1000/yMax, 1)
		fmt.Fprintf(&sb, "%.1f,%.1f ", x, y)
	}
	sb.WriteString(`"/>` + "\n</svg>\n")
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
