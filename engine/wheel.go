package engine

import "time"

// wheelSlots is the number of slots; deadlines further out than this many
// ticks are parked in the last reachable slot and rescheduled from there.
// 1024 one-second slots cover the default 120 s idle timeout with room to
// spare, so a connection is normally touched once per idle period.
const wheelSlots = 1024

// wheel is a hashed timing wheel of connection deadlines, one per event
// loop, touched only on that loop. A connection's activity only moves its
// timestamps; the wheel finds out lazily, when the connection's slot comes
// due, and reschedules it then. No timer exists per connection.
type wheel struct {
	unit  time.Duration
	pos   int64 // last tick processed
	slots [wheelSlots][]*Conn
}

func (w *wheel) tickOf(d time.Duration) int64 { return int64(d/w.unit) + 1 }

// schedule files c under the tick that covers deadline d. An earlier entry
// for c elsewhere becomes stale: entries whose tick no longer matches
// c.wheelTick are skipped.
func (w *wheel) schedule(c *Conn, d time.Duration) {
	t := w.tickOf(d)
	if t <= w.pos {
		t = w.pos + 1
	}
	if t-w.pos >= wheelSlots {
		t = w.pos + wheelSlots - 1
	}
	if c.wheelTick == t {
		return
	}
	c.wheelTick = t
	i := t % wheelSlots
	w.slots[i] = append(w.slots[i], c)
}

// advance processes every tick up to now, calling expire for connections
// whose deadline passed and rescheduling the others.
func (w *wheel) advance(now time.Duration, expire func(*Conn, CloseReason)) {
	target := w.tickOf(now) - 1
	for t := w.pos + 1; t <= target; t++ {
		w.pos = t
		i := t % wheelSlots
		slot := w.slots[i]
		w.slots[i] = nil
		for _, c := range slot {
			if c.wheelTick != t || c.closing {
				continue
			}
			c.wheelTick = -1
			if d := c.nextDeadline(); d <= now {
				expire(c, c.expiryReason(now))
			} else {
				w.schedule(c, d)
			}
		}
		if cap(slot) <= 4096 && w.slots[i] == nil {
			clear(slot)
			w.slots[i] = slot[:0]
		}
	}
}
