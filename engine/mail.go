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
	l.inbox = append(l.inbox, inboxItem{c: c})
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
	l.inbox = append(l.inbox, inboxItem{fn: fn})
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

// inboxItem is a connection with mail (c) or a job (fn), in a loop's inbox.
type inboxItem struct {
	c  *Conn
	fn func()
}

// takeInbox swaps out the loop's inbox. Loop only.
func (l *loop) takeInbox() []inboxItem {
	l.mailMu.Lock()
	list := l.inbox
	l.inbox = l.inboxRest[:0]
	l.mailMu.Unlock()
	return list
}

// deliverMail runs the jobs and hands every posted buffer of the listed
// connections to the handler (or writes it), in the order they were
// queued: a connection's mail is taken whole at the place it was first
// listed, so a job queued after a buffer was posted comes after it. Then
// it marks for closing those that Close was called for, so that the flush
// that follows writes their mail first. Loop only.
func (s *Server) deliverMail(l *loop) {
	list := l.takeInbox()
	for i, it := range list {
		list[i] = inboxItem{}
		if it.fn != nil {
			it.fn()
			continue
		}
		c := it.c
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
	l.inboxRest = list[:0]
}
