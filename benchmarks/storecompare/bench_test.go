package main

import (
	"testing"
)

// The Go benchmarks run the same workloads as `go run .`, one engine per
// sub-benchmark, fsync on, each in a fresh store:
//
//	go test -run '^$' -bench . -benchtime 2s
//
// BenchmarkAppend16       op = one 1-message Append, from 16 goroutines
// BenchmarkAppendBatch100 op = one 100-message Append
// BenchmarkFetchAck       op = fetch a page of 50 + ack it (queues preloaded
//                         with 100 messages per recipient, b.N/2 recipients)
// BenchmarkSteady         op = one append+fetch+ack cycle, 16 sessions over
//                         100 recipients (fetch latency: first and last tenth)

func benchEngines(b *testing.B, list []Engine, fn func(b *testing.B, q Queue, dir string)) {
	for _, e := range list {
		b.Run("engine="+e.ID, func(b *testing.B) {
			dir := b.TempDir()
			q, err := e.Open(dir, false)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			fn(b, q, dir)
		})
	}
}

func BenchmarkAppend16(b *testing.B) {
	benchEngines(b, engines, func(b *testing.B, q Queue, _ string) {
		b.ReportAllocs()
		b.SetBytes(contentSize)
		b.ResetTimer()
		r, err := appendParallel(q, appendWriters, b.N, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.rate(), "msgs/s")
		b.ReportMetric(ms(r.Lat.q(0.99)), "p99-ms")
	})
}

func BenchmarkAppendBatch100(b *testing.B) {
	benchEngines(b, engines, func(b *testing.B, q Queue, _ string) {
		b.ReportAllocs()
		b.SetBytes(batchSize * contentSize)
		b.ResetTimer()
		r, err := appendBatches(q, b.N, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.rate(), "msgs/s")
	})
}

func BenchmarkFetchAck(b *testing.B) {
	benchEngines(b, engines, func(b *testing.B, q Queue, dir string) {
		pages := drainPerUser / pageSize
		users := (b.N + pages - 1) / pages
		if err := preload(q, users, drainPerUser); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		r, err := drain(q, users)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if r.Msgs != users*drainPerUser {
			b.Fatalf("drained %d messages, want %d", r.Msgs, users*drainPerUser)
		}
		b.ReportMetric(float64(r.Msgs)/r.Elapsed.Seconds(), "msgs/s")
		b.ReportMetric(us(r.Fetch.q(0.5)), "fetch-p50-µs")
		b.ReportMetric(mb(dirSize(dir)), "MiB-drained")
	})
}

func BenchmarkSteady(b *testing.B) {
	benchEngines(b, allEngines(), func(b *testing.B, q Queue, dir string) {
		b.ReportAllocs()
		b.ResetTimer()
		r, err := steady(q, steadyUsers, steadyWorkers, b.N)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(r.Cycles)/r.Elapsed.Seconds(), "cycles/s")
		b.ReportMetric(us(r.Fetch[0].q(0.5)), "fetch-first-p50-µs")
		b.ReportMetric(us(r.Fetch[steadyWindows-1].q(0.5)), "fetch-last-p50-µs")
		b.ReportMetric(mb(dirSize(dir)), "MiB")
	})
}
