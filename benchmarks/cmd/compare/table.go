package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// table renders the medians and ranges as markdown, with a last column
// that judges MyIM against the best peer of each row: MyIM's median over
// that peer's, where the best is the highest for a rate and the lowest for
// a cost.
func table(o options, systems []system, figs []figure, res map[string]map[string][][]float64, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n\n", machine())
	fmt.Fprintf(&b, "Medians of %d rounds (min–max). The last column is MyIM's median over the best peer's in that row "+
		"(the highest rate, the lowest cost), and which peer that is. "+
		"Server and load generator share the machine; CPU is the server's utime+stime over the measured window. "+
		"Whole run: %.0f s.\n\n", o.rounds, took.Seconds())
	b.WriteString("| figure |")
	for _, s := range systems {
		fmt.Fprintf(&b, " %s |", s.name)
	}
	b.WriteString(" MyIM ÷ best peer |\n|---|")
	for range systems {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, f := range figs {
		for mi, m := range f.metrics {
			fmt.Fprintf(&b, "| %s |", m.label)
			base, best, bestName := math.NaN(), math.NaN(), ""
			for si, s := range systems {
				runs := res[f.key][s.key]
				if len(runs) == 0 {
					b.WriteString(" – |")
					continue
				}
				vals := make([]float64, len(runs))
				for i, r := range runs {
					vals[i] = r[mi]
				}
				med := median(vals)
				fmt.Fprintf(&b, " %s (%s–%s) |", fmt.Sprintf(m.format, med), fmt.Sprintf(m.format, slices.Min(vals)),
					fmt.Sprintf(m.format, slices.Max(vals)))
				switch {
				case si == 0:
					base = med
				case med <= 0 || math.IsNaN(med):
				case math.IsNaN(best) || (m.higher && med > best) || (!m.higher && med < best):
					best, bestName = med, s.name
				}
			}
			if m.plain || math.IsNaN(best) || math.IsNaN(base) {
				b.WriteString(" – |\n")
			} else {
				fmt.Fprintf(&b, " %.2f× (%s) |\n", base/best, bestName)
			}
		}
	}
	return b.String()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
