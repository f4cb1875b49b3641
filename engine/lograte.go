package engine

import (
	"sync"
	"time"
)

// logLimit bounds a log line that an attacker or a failing dependency can
// make frequent (a failed login, a full queue, once per message): at most
// burst records per interval pass; the rest are counted, and the next
// record that passes says how many were left out. Safe for concurrent use;
// cheap enough for an event loop (one mutex, no allocation).
type logLimit struct {
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
	logLimitInterval = 10 * time.Second
	logLimitBurst    = 10
)

func newLogLimit() *logLimit {
	return &logLimit{interval: logLimitInterval, burst: logLimitBurst}
}

// allow reports whether a record may be logged now and how many were
// suppressed since the last one that was.
func (l *logLimit) allow() (ok bool, suppressed uint64) {
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
