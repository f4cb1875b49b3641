package main

import (
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// collectOnSignal makes SIGUSR1 a forced collection: runtime.GC, then
// debug.FreeOSMemory, which returns the freed pages to the kernel at once
// instead of over the scavenger's minutes. Benchmarks send it to every
// system they compare (the peers of benchmarks/ take it too) so that idle
// memory is read alike, with and without the collector's headroom. It runs
// on its own goroutine and never on an event loop; the stop signals are
// not affected.
func collectOnSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			runtime.GC()
			debug.FreeOSMemory()
		}
	}()
}
