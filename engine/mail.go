package engine

import (
	"context"

	"github.com/valyala/bytebufferpool"
)

// Mail is what other goroutines hand a loop: buffers posted to its
// connections (Conn.Post), Closes, and jobs. Posters list the connection
// on its loop; the loop takes the list at the end of a read callback or
// in a drain it is woken for, and delivers it before it flushes.

// addMail lists c as having posted buffers (or a Close) and schedules the
// loop's drain unless one is pending or the loop is in a read callback,
// whose end takes the mail (OnTraffic). Safe for concurrent use. It
// reports false when the loop refused the drain (it is stopping).
//
// The list is appended to before reading is loaded, and the loop clears
// reading before it takes the list: a poster that still sees reading set
// has its entry taken by the callback's end (or, if the set it saw is a
// later callback's, by that one's end).
func (l *loop) addMail(c *Conn) bool {
	l.mailMu.Lock()
	l.mailConns = append(l.mailConns, c)
	l.mailMu.Unlock()
	if l.reading.Load() {
		return true
	}
	if l.wakeSet.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l.drainMail); err != nil {
			l.wakeSet.Store(false)
			return false
		}
	}
	return true
}

// addJob queues fn for the loop and schedules a drain as addMail does.
// Safe for concurrent use.
func (l *loop) addJob(fn func()) {
	l.mailMu.Lock()
	l.jobs = append(l.jobs, fn)
	l.mailMu.Unlock()
	if l.reading.Load() {
		return
	}
	if l.wakeSet.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l.drainMail); err != nil {
			l.wakeSet.Store(false)
		}
	}
}

// takeMailConns swaps out the list of connections with mail and the jobs.
// Loop only.
func (l *loop) takeMailConns() ([]*Conn, []func()) {
	l.mailMu.Lock()
	list, jobs := l.mailConns, l.jobs
	l.mailConns, l.jobs = l.mailSpare[:0], l.jobSpare[:0]
	l.mailMu.Unlock()
	return list, jobs
}

// deliverMail hands every posted buffer of the listed connections to the
// handler (or writes it), then marks for closing those that Close was
// called for, so that the flush that follows writes their mail first.
// Loop only.
func (s *Server) deliverMail(l *loop) {
	list, jobs := l.takeMailConns()
	for i, fn := range jobs {
		jobs[i] = nil
		fn()
	}
	l.jobSpare = jobs[:0]
	for i, c := range list {
		list[i] = nil
		var shut bool
		l.mail, shut = c.takeMail(l.mail[:0])
		for j, b := range l.mail {
			if !c.closing && !c.closed.Load() {
				if s.mh != nil {
					if err := s.mh.OnMail(c, b.B); err != nil {
						s.handlerError(c, err)
					}
				} else {
					c.Write(b.B)
				}
			}
			bytebufferpool.Put(b)
			l.mail[j] = nil
		}
		if shut && !c.closing && !c.closed.Load() {
			c.closeOnLoop(c.Reason())
			c.markDirty()
		}
	}
	l.mailSpare = list[:0]
}
