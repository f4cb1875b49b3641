// Command storecompare measures MyIM's offline-queue workload (append, fetch
// a recipient's messages in time order, delete on ack) on bbolt, pebble and
// modernc SQLite, every commit fsync-durable, and prints markdown tables.
//
//	go run .                 # one run, about 2 minutes on 2 cores
//	go run . -runs 3         # medians of 3 runs (about 5 minutes); ratios within a run
//
// Workloads:
//
//	(a) 16 goroutines append one 256-byte message per commit
//	(b) one goroutine appends batches of 100 messages per commit
//	(c) 1,000 recipients with 100 queued messages each: fetch a page of 50,
//	    ack (delete) it, until every queue is empty
//	(d) steady state: 200k append+fetch+ack cycles from 16 sessions over 100
//	    recipients; fetch latency is reported for the first and last tenth
//	(e) on-disk size, and build facts (pure Go, binary size delta)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	runs := flag.Int("runs", 1, "number of runs; tables show medians")
	dur := flag.Duration("dur", 3*time.Second, "duration of each append workload (a) and (b)")
	drainN := flag.Int("drain-users", drainUsers, "recipients of workload (c)")
	steadyN := flag.Int("steady", 200_000, "cycles of workload (d)")
	steadyNoSync := flag.Bool("steady-nosync", false, "run workload (d) without fsync")
	only := flag.String("engines", "", "comma-separated engine IDs (default all)")
	naive := flag.Bool("naive", true, "add the naive pebble layout to workload (d)")
	build := flag.Bool("build", true, "report build facts (builds the probe/ programs)")
	root := flag.String("dir", "", "directory for the stores (default: a new temp dir)")
	jsonOut := flag.String("json", "", "write every run's raw metrics to this file")
	flag.Parse()
	log.SetFlags(0)

	es := engines
	if *only != "" {
		es = nil
		for id := range strings.SplitSeq(*only, ",") {
			e, ok := engineByID(strings.TrimSpace(id))
			if !ok {
				log.Fatalf("unknown engine %q", id)
			}
			es = append(es, e)
		}
	}
	dir := *root
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "storecompare-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}

	cfg := runConfig{dur: *dur, drainUsers: *drainN, steadyCycles: *steadyN, steadyNoSync: *steadyNoSync,
		naive: *naive, root: dir}
	var all []runResult
	t0 := time.Now()
	for r := range *runs {
		// Rotate the engine order so that none always runs first.
		order := slices.Clone(es)
		k := r % len(order)
		order = append(order[k:], order[:k]...)
		res, err := cfg.run(order)
		if err != nil {
			log.Fatal(err)
		}
		all = append(all, res)
		log.Printf("run %d/%d done after %s", r+1, *runs, time.Since(t0).Round(time.Second))
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	var facts []buildFact
	if *build {
		var err error
		if facts, err = buildFacts(); err != nil {
			log.Fatal(err)
		}
	}
	printReport(os.Stdout, cfg, es, all, facts)
}

// runResult maps engine ID to metric name to value, for one run.
type runResult map[string]map[string]float64

type runConfig struct {
	dur          time.Duration
	drainUsers   int
	steadyCycles int
	steadyNoSync bool
	naive        bool
	root         string
}

// setFunc records metric k of engine e.
type setFunc func(e Engine, k string, v float64)

// run runs each step on each engine in turn and returns their metrics.
func (c runConfig) run(es []Engine) (runResult, error) {
	res := runResult{}
	set := func(e Engine, k string, v float64) {
		if res[e.ID] == nil {
			res[e.ID] = map[string]float64{}
		}
		res[e.ID][k] = v
	}
	type step struct {
		name string
		fn   func(e Engine, set setFunc) error
	}
	steps := []step{
		{"(a) append x16", c.appendStep},
		{"(b) append batch", c.batchStep},
		{"(c) drain", c.drainStep},
		{"(d) steady", c.steadyStep},
	}
	for _, s := range steps {
		list := es
		if s.name == "(d) steady" && c.naive {
			list = append(slices.Clone(es), pebbleNaive)
		}
		for _, e := range list {
			t := time.Now()
			if err := s.fn(e, set); err != nil {
				return nil, fmt.Errorf("%s on %s: %w", s.name, e.ID, err)
			}
			log.Printf("%-16s %-14s %6.1fs", s.name, e.ID, time.Since(t).Seconds())
		}
	}
	return res, nil
}

// appendStep measures appends by appendWriters writers at once.
func (c runConfig) appendStep(e Engine, set setFunc) error {
	q, d, err := openFresh(e, c.root, false)
	if err != nil {
		return err
	}
	defer os.RemoveAll(d)
	r, err := appendParallel(q, appendWriters, 0, c.dur)
	if err != nil {
		q.Close()
		return err
	}
	set(e, "a_rate", r.rate())
	set(e, "a_p50_ms", ms(r.Lat.q(0.5)))
	set(e, "a_p99_ms", ms(r.Lat.q(0.99)))
	return q.Close()
}

// batchStep measures batched appends.
func (c runConfig) batchStep(e Engine, set setFunc) error {
	q, d, err := openFresh(e, c.root, false)
	if err != nil {
		return err
	}
	defer os.RemoveAll(d)
	r, err := appendBatches(q, 0, c.dur)
	if err != nil {
		q.Close()
		return err
	}
	set(e, "b_rate", r.rate())
	set(e, "b_p50_ms", ms(r.Lat.q(0.5)))
	return q.Close()
}

// drainStep preloads c.drainUsers users and measures draining them.
func (c runConfig) drainStep(e Engine, set setFunc) error {
	q, d, err := openFresh(e, c.root, false)
	if err != nil {
		return err
	}
	defer os.RemoveAll(d)
	if err := preload(q, c.drainUsers, drainPerUser); err != nil {
		q.Close()
		return err
	}
	set(e, "c_size_full", mb(dirSize(d)))
	r, err := drain(q, c.drainUsers)
	if err != nil {
		q.Close()
		return err
	}
	if want := c.drainUsers * drainPerUser; r.Msgs != want {
		q.Close()
		return fmt.Errorf("%s drained %d messages, want %d", e.ID, r.Msgs, want)
	}
	set(e, "c_rate", float64(r.Msgs)/r.Elapsed.Seconds())
	set(e, "c_secs", r.Elapsed.Seconds())
	set(e, "c_fetch_p50_us", us(r.Fetch.q(0.5)))
	set(e, "c_ack_p50_ms", ms(r.Ack.q(0.5)))
	set(e, "c_size_empty", mb(dirSize(d)))
	return q.Close()
}

// steadyStep measures steady fetch and ack cycles.
func (c runConfig) steadyStep(e Engine, set setFunc) error {
	q, d, err := openFresh(e, c.root, c.steadyNoSync)
	if err != nil {
		return err
	}
	defer os.RemoveAll(d)
	r, err := steady(q, steadyUsers, steadyWorkers, c.steadyCycles)
	if err != nil {
		q.Close()
		return err
	}
	set(e, "d_rate", float64(r.Cycles)/r.Elapsed.Seconds())
	set(e, "d_secs", r.Elapsed.Seconds())
	set(e, "d_first_p50_us", us(r.Fetch[0].q(0.5)))
	set(e, "d_last_p50_us", us(r.Fetch[steadyWindows-1].q(0.5)))
	set(e, "d_last_p99_us", us(r.Fetch[steadyWindows-1].q(0.99)))
	set(e, "d_size", mb(dirSize(d)))
	return q.Close()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func mb(n int64) float64         { return float64(n) / (1 << 20) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
