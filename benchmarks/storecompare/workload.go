package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Workload parameters fixed by the comparison.
const (
	contentSize   = 256  // bytes of content per message
	appendWriters = 16   // concurrent writers of workload (a)
	batchSize     = 100  // messages per commit in workload (b)
	pageSize      = 50   // messages per fetch, then acked
	drainUsers    = 1000 // workload (c)
	drainPerUser  = 100  // workload (c)
	steadyUsers   = 100  // recipients of workload (d)
	steadyWorkers = 16   // concurrent sessions of workload (d)
	steadyWindows = 10   // workload (d) fetch latency is reported per tenth
	baseTime      = int64(1_700_000_000_000)
	appendUsers   = 1000 // recipients of workloads (a) and (b)
)

// payload is incompressible (end-to-end encrypted content is): messages
// take 256-byte windows of it.
var payload = func() []byte {
	b := make([]byte, 1<<16)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}()

// makeMsg builds message mid for user: time grows with mid, so every
// recipient's queue is appended at its tail.
func makeMsg(m *Msg, user, mid uint64) {
	off := int(mid*contentSize) % (len(payload) - contentSize)
	*m = Msg{To: user, Time: baseTime + int64(mid), MID: mid, From: 1, CID: mid,
		Content: payload[off : off+contentSize]}
}

// openFresh opens e in a new directory under root.
func openFresh(e Engine, root string, noSync bool) (Queue, string, error) {
	dir, err := os.MkdirTemp(root, e.ID+"-")
	if err != nil {
		return nil, "", err
	}
	q, err := e.Open(dir, noSync)
	if err != nil {
		return nil, "", fmt.Errorf("open %s: %w", e.ID, err)
	}
	return q, dir, nil
}

// latencies collects durations; quantiles sort a copy.
type latencies []time.Duration

func (l latencies) q(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// ---- (a) single-message appends from concurrent writers

type appendResult struct {
	Msgs    int
	Elapsed time.Duration
	Lat     latencies // per Append call
}

func (r appendResult) rate() float64 { return float64(r.Msgs) / r.Elapsed.Seconds() }

// appendParallel runs writers goroutines appending one message per call
// until n messages are stored or dur has passed (whichever comes first;
// n <= 0 means no count limit, dur <= 0 no time limit).
func appendParallel(q Queue, writers, n int, dur time.Duration) (appendResult, error) {
	var next atomic.Uint64
	var firstErr error
	var errOnce sync.Once
	lats := make([]latencies, writers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range writers {
		wg.Go(func() {
			msgs := make([]Msg, 1)
			for {
				mid := next.Add(1)
				if n > 0 && mid > uint64(n) || dur > 0 && time.Now().After(deadline) {
					return
				}
				makeMsg(&msgs[0], (mid-1)%appendUsers+1, mid)
				t := time.Now()
				if err := q.Append(msgs); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				lats[w] = append(lats[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	r := appendResult{Elapsed: time.Since(start)}
	for _, l := range lats {
		r.Lat = append(r.Lat, l...)
	}
	r.Msgs = len(r.Lat)
	return r, firstErr
}

// ---- (b) batches of 100 from one writer

func appendBatches(q Queue, batches int, dur time.Duration) (appendResult, error) {
	msgs := make([]Msg, batchSize)
	var r appendResult
	start := time.Now()
	mid := uint64(0)
	for i := 0; batches <= 0 || i < batches; i++ {
		if dur > 0 && time.Since(start) > dur {
			break
		}
		for j := range msgs {
			mid++
			makeMsg(&msgs[j], (mid-1)%appendUsers+1, mid)
		}
		t := time.Now()
		if err := q.Append(msgs); err != nil {
			return r, err
		}
		r.Lat = append(r.Lat, time.Since(t))
		r.Msgs += batchSize
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// ---- (c) drain: fetch a page, ack it, until every queue is empty

// preload stores perUser messages for each of users recipients, in time
// order interleaved across recipients, 1000 per commit.
func preload(q Queue, users, perUser int) error {
	const chunk = 1000
	msgs := make([]Msg, 0, chunk)
	total := users * perUser
	for mid := uint64(1); mid <= uint64(total); mid++ {
		var m Msg
		makeMsg(&m, (mid-1)%uint64(users)+1, mid)
		msgs = append(msgs, m)
		if len(msgs) == chunk || mid == uint64(total) {
			if err := q.Append(msgs); err != nil {
				return err
			}
			msgs = msgs[:0]
		}
	}
	return nil
}

type drainResult struct {
	Msgs, Pages int
	Elapsed     time.Duration
	Fetch, Ack  latencies
}

// drain empties the queues of users 1..users one page at a time, each
// page acked before the next fetch.
func drain(q Queue, users int) (drainResult, error) {
	var r drainResult
	buf := make([]Msg, 0, pageSize)
	keys := make([]Key, 0, pageSize)
	start := time.Now()
	for u := uint64(1); u <= uint64(users); u++ {
		for {
			t := time.Now()
			page, err := q.Fetch(u, pageSize, buf)
			if err != nil {
				return r, err
			}
			r.Fetch = append(r.Fetch, time.Since(t))
			buf = page
			if len(page) == 0 {
				break
			}
			if err := checkPage(page, u); err != nil {
				return r, err
			}
			keys = keys[:0]
			for i := range page {
				keys = append(keys, Key{page[i].Time, page[i].MID})
			}
			t = time.Now()
			if err := q.Ack(u, keys); err != nil {
				return r, err
			}
			r.Ack = append(r.Ack, time.Since(t))
			r.Msgs += len(page)
			r.Pages++
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// checkPage verifies a page is the recipient's and in (Time, MID) order.
func checkPage(page []Msg, u uint64) error {
	for i := range page {
		if page[i].To != u || len(page[i].Content) != contentSize {
			return fmt.Errorf("fetch for user %d returned a message for %d with %d bytes", u, page[i].To, len(page[i].Content))
		}
		if i > 0 && (page[i].Time < page[i-1].Time || page[i].Time == page[i-1].Time && page[i].MID <= page[i-1].MID) {
			return fmt.Errorf("fetch for user %d out of order", u)
		}
	}
	return nil
}

// ---- (d) steady state: append, fetch, ack, over and over

type steadyResult struct {
	Cycles  int
	Elapsed time.Duration
	// Fetch holds the fetch latencies per tenth of the run, in order.
	Fetch [steadyWindows]latencies
}

// steady runs cycles append+fetch+ack cycles from workers goroutines, each
// serving its own share of users recipients round robin: append one
// message, fetch the recipient's page, ack it. Every recipient's queue head
// keeps growing a trail of deleted messages.
func steady(q Queue, users, workers, cycles int) (steadyResult, error) {
	var r steadyResult
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	window := max(1, cycles/steadyWindows)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var lats [steadyWindows]latencies
			defer func() {
				mu.Lock()
				for i := range lats {
					r.Fetch[i] = append(r.Fetch[i], lats[i]...)
				}
				mu.Unlock()
			}()
			msgs := make([]Msg, 1)
			buf := make([]Msg, 0, pageSize)
			keys := make([]Key, 0, pageSize)
			var mine []uint64
			for u := w + 1; u <= users; u += workers {
				mine = append(mine, uint64(u))
			}
			if len(mine) == 0 {
				return
			}
			for i := 0; ; i++ {
				c := next.Add(1)
				if c > int64(cycles) {
					return
				}
				u := mine[i%len(mine)]
				makeMsg(&msgs[0], u, uint64(c))
				err := q.Append(msgs)
				var page []Msg
				if err == nil {
					t := time.Now()
					page, err = q.Fetch(u, pageSize, buf)
					win := min(steadyWindows-1, int((c-1)/int64(window)))
					lats[win] = append(lats[win], time.Since(t))
				}
				if err == nil && len(page) == 0 {
					err = fmt.Errorf("user %d: fetch after append found nothing", u)
				}
				if err == nil {
					err = checkPage(page, u)
				}
				if err == nil {
					keys = keys[:0]
					for i := range page {
						keys = append(keys, Key{page[i].Time, page[i].MID})
					}
					err = q.Ack(u, keys)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				buf = page
			}
		})
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.Cycles = min(cycles, int(next.Load()))
	return r, firstErr
}
