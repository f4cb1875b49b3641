package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// cell is one metric of one engine: the median over runs, and the median
// of its per-run ratios to bare bbolt (ratios are taken within a run, since
// a shared VM drifts between runs).
func cell(all []runResult, id, metric string) (med, ratio float64, ok bool) {
	var vals, ratios []float64
	for _, r := range all {
		v, have := r[id][metric]
		if !have {
			continue
		}
		vals = append(vals, v)
		if b, have := r["bbolt"][metric]; have && b != 0 {
			ratios = append(ratios, v/b)
		}
	}
	if len(vals) == 0 {
		return 0, 0, false
	}
	return median(vals), median(ratios), true
}

func printReport(w io.Writer, c runConfig, es []Engine, all []runResult, facts []buildFact) {
	num := func(id, m string, prec int) string {
		v, _, ok := cell(all, id, m)
		if !ok {
			return "–"
		}
		return commas(v, prec)
	}
	rat := func(id, m string) string {
		_, r, ok := cell(all, id, m)
		if !ok || r == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", r)
	}
	fmt.Fprintf(w, "Medians of %d run(s); ×bbolt = median of the per-run ratios to bare bbolt. %s, GOMAXPROCS=%d.\n\n",
		len(all), runtime.Version(), runtime.GOMAXPROCS(0))

	fmt.Fprintln(w, "| engine | a commit is durable after |")
	fmt.Fprintln(w, "|---|---|")
	for _, e := range es {
		fmt.Fprintf(w, "| %s | %s |\n", e.Label, e.Durability)
	}

	fmt.Fprintf(w, "\n**(a) append 1 message × %d writers, (b) append batches of %d** (%s each, %d-byte content)\n\n",
		appendWriters, batchSize, c.dur, contentSize)
	fmt.Fprintln(w, "| engine | (a) msg/s | ×bbolt | (a) p50 ms | (a) p99 ms | (b) msg/s | ×bbolt | (b) commit p50 ms |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, e := range es {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", e.Label,
			num(e.ID, "a_rate", 0), rat(e.ID, "a_rate"), num(e.ID, "a_p50_ms", 2), num(e.ID, "a_p99_ms", 2),
			num(e.ID, "b_rate", 0), rat(e.ID, "b_rate"), num(e.ID, "b_p50_ms", 2))
	}

	fmt.Fprintf(w, "\n**(c) drain %d recipients × %d messages: fetch %d, ack, repeat** (one consumer)\n\n",
		c.drainUsers, drainPerUser, pageSize)
	fmt.Fprintln(w, "| engine | msg/s drained | ×bbolt | drain s | fetch p50 µs | ack p50 ms | MiB on disk, full | MiB on disk, drained |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, e := range es {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", e.Label,
			num(e.ID, "c_rate", 0), rat(e.ID, "c_rate"), num(e.ID, "c_secs", 1), num(e.ID, "c_fetch_p50_us", 1),
			num(e.ID, "c_ack_p50_ms", 2), num(e.ID, "c_size_full", 1), num(e.ID, "c_size_empty", 1))
	}

	sync := "fsync on"
	if c.steadyNoSync {
		sync = "fsync off"
	}
	fmt.Fprintf(w, "\n**(d) steady state: %s cycles of append 1 + fetch ≤%d + ack, %d sessions, %d recipients** (%s)\n\n",
		commas(float64(c.steadyCycles), 0), pageSize, steadyWorkers, steadyUsers, sync)
	fmt.Fprintln(w, "| engine | cycles/s | ×bbolt | fetch p50 µs, first tenth | fetch p50 µs, last tenth | ×bbolt | fetch p99 µs, last tenth | MiB on disk after |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|")
	ds := es
	if c.naive {
		ds = append(ds[:len(ds):len(ds)], pebbleNaive)
	}
	for _, e := range ds {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", e.Label,
			num(e.ID, "d_rate", 0), rat(e.ID, "d_rate"), num(e.ID, "d_first_p50_us", 1),
			num(e.ID, "d_last_p50_us", 1), rat(e.ID, "d_last_p50_us"), num(e.ID, "d_last_p99_us", 0), num(e.ID, "d_size", 1))
	}

	if len(facts) > 0 {
		fmt.Fprintf(w, "\n**(e) build** (%s/%s; probe/ programs open a store, write and read one record; `-trimpath -ldflags=\"-s -w\"`)\n\n",
			runtime.GOOS, runtime.GOARCH)
		fmt.Fprintln(w, "| program | builds with CGO_ENABLED=0 | non-std cgo packages when cgo is on | binary KiB | delta KiB |")
		fmt.Fprintln(w, "|---|---|---|--:|--:|")
		base := facts[0].Size
		for _, f := range facts {
			pure := "yes"
			if f.Err != "" {
				pure = "no: " + f.Err
			}
			cgo := "none"
			if len(f.Cgo) > 0 {
				cgo = strings.Join(f.Cgo, ", ")
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", f.Name, pure, cgo,
				commas(float64(f.Size)/1024, 0), commas(float64(f.Size-base)/1024, 0))
		}
	}
}

// commas formats v with prec decimals and thousands separators.
func commas(v float64, prec int) string {
	s := fmt.Sprintf("%.*f", prec, v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// buildFact describes one probe program.
type buildFact struct {
	Name string
	Size int64    // stripped binary, CGO_ENABLED=0
	Err  string   // the CGO_ENABLED=0 build failed
	Cgo  []string // non-standard packages with cgo files in a cgo-enabled build
}

// buildFacts builds probe/base and one probe per engine with
// CGO_ENABLED=0 and lists the packages that would use cgo in a default
// build. It runs the go command from the module directory.
func buildFacts() ([]buildFact, error) {
	tmp, err := os.MkdirTemp("", "storecompare-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var out []buildFact
	for _, name := range []string{"base", "bbolt", "pebble", "sqlite"} {
		f := buildFact{Name: name}
		bin := filepath.Join(tmp, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./probe/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			if name == "base" {
				return nil, fmt.Errorf("build probe/base: %v\n%s", err, msg)
			}
			f.Err = firstLine(string(msg))
		} else if fi, err := os.Stat(bin); err == nil {
			f.Size = fi.Size()
		}
		cmd = exec.Command("go", "list", "-deps", "-f", "{{if and .CgoFiles (not .Standard)}}{{.ImportPath}}{{end}}", "./probe/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		msg, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go list probe/%s: %v", name, err)
		}
		f.Cgo = strings.Fields(string(msg))
		out = append(out, f)
	}
	return out, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
