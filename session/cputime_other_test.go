//go:build !linux

package session

import "time"

var cpuEpoch = time.Now()

// threadCPU falls back to wall time where the thread CPU clock is not
// wired up.
func threadCPU() time.Duration { return time.Since(cpuEpoch) }

// processCPU falls back to wall time where rusage is not wired up.
func processCPU() time.Duration { return time.Since(cpuEpoch) }
