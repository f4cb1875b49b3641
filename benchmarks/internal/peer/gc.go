package peer

import (
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// CollectOnSignal makes SIGUSR1 a forced collection (runtime.GC, then
// debug.FreeOSMemory), as myimd does, so that the compare reads every
// system's idle memory alike: with the collector's headroom and without.
func CollectOnSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			runtime.GC()
			debug.FreeOSMemory()
		}
	}()
}
