package endpoint

import (
	"time"

	"github.com/myim/myim/engine"
)

// coolEvery is how often the endpoint drops the AES-GCM state of the
// sessions that opened or sealed no frame since the last round: about 750
// bytes a session, most of what an idle session holds past its socket,
// rebuilt from the keys by the next frame in a microsecond or two. A
// session that went quiet is cooled within two rounds; one that talks every
// few seconds never is.
const coolEvery = 10 * time.Second

// coolBatch bounds the sessions one loop job visits, so that a round over
// a million sessions never holds a loop for long.
const coolBatch = 1024

// startCooler starts the cooling goroutine unless one runs. It stops by
// itself when the endpoint holds no session. Safe for concurrent use.
func (e *Handler) startCooler() {
	if e.cooling.CompareAndSwap(false, true) {
		go e.cooler()
	}
}

func (e *Handler) cooler() {
	t := time.NewTicker(coolEvery)
	defer t.Stop()
	for range t.C {
		if e.nsess.Load() == 0 {
			e.cooling.Store(false)
			// A session that came meanwhile saw cooling set and started
			// nothing: go on for it, unless another cooler did.
			if e.nsess.Load() == 0 || !e.cooling.CompareAndSwap(false, true) {
				return
			}
		}
		e.coolRound()
	}
}

// coolRound hands every session to its loop, in batches of coolBatch per
// loop job, where the quiet ones are cooled and the others marked for the
// next round.
func (e *Handler) coolRound() {
	type batch struct {
		first *engine.Conn // any connection of the loop
		conns []*engine.Conn
	}
	var batches []batch
	flush := func(b *batch) {
		conns := b.conns
		b.conns = nil
		_ = conns[0].Exec(func() { coolConns(conns) })
	}
	e.sessions.each(func(es *epSession) bool {
		c := es.conn
		i := 0
		for i < len(batches) && !batches[i].first.SameLoop(c) {
			i++
		}
		if i == len(batches) {
			batches = append(batches, batch{first: c})
		}
		b := &batches[i]
		b.conns = append(b.conns, c)
		if len(b.conns) == coolBatch {
			flush(b)
		}
		return true
	})
	for i := range batches {
		if len(batches[i].conns) > 0 {
			flush(&batches[i])
		}
	}
}

// coolConns cools the quiet sessions of conns, all of one loop: their
// AES-GCM state and their empty mailbox go. Loop only.
func coolConns(conns []*engine.Conn) {
	for _, c := range conns {
		if c.Closed() {
			continue
		}
		ec, ok := c.Context().(*epConn)
		if !ok || ec.keys == nil || !ec.live || ec.pending {
			continue
		}
		if ec.warm {
			ec.warm = false
			continue
		}
		ec.keys.Cool()
		c.ReleaseMailbox()
	}
}
