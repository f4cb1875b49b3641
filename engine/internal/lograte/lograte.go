// Package lograte limits log lines that a peer or a failing dependency can
// make frequent.
package lograte

import (
	"sync"
	"time"
)

// Limit bounds a log line that an attacker or a failing dependency can
// make frequent (a failed login, a full queue, once per message): at most
// burst records per interval pass; the rest are counted, and the next
// record that passes says how many were left out. Safe for concurrent use;
// cheap enough for an event loop (one mutex, no allocation).
type Limit struct {
	interval time.Duration
	burst    int

	mu      sync.Mutex
	start   time.Time
	n       int
	dropped uint64
}

// Defaults of the limited log lines: enough for fail2ban and for an
// operator to see what happens, at most a line a second on average.
const (
	Interval = 10 * time.Second
	Burst    = 10
)

// New returns a Limit of Burst records per Interval.
func New() *Limit {
	return &Limit{interval: Interval, burst: Burst}
}

// Allow reports whether a record may be logged now and how many were
// suppressed since the last one that was.
func (l *Limit) Allow() (ok bool, suppressed uint64) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.interval {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.dropped++
		return false, 0
	}
	l.n++
	suppressed, l.dropped = l.dropped, 0
	return true, suppressed
}
