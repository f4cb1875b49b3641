package center

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/storage"
)

// User-to-user file transfer (FILE frames). The center keeps a small state
// per transfer, never the file: chunks pass straight from the sender's
// session to the receiver's, and the sender may have at most Window chunks
// that the receiver has not acked (CHUNK_ACK), so a slow receiver holds the
// sender back and the server holds at most Window chunks of a transfer.
// docs/files.md describes the protocol from the client's side. A transfer
// lives on its sender's center; center_cluster_files.go carries it to a
// receiver on another center.

// MaxFileChunk is the largest CHUNK (and file server WRITE or READ) data:
// a quarter of the default maximum frame, so a chunk frame with its headers
// and seal always fits.
const MaxFileChunk = frame.MaxFileChunk

// FilesConfig tunes file transfer and the private file server. Zero values
// mean the defaults, filled in by fillDefaults.
type FilesConfig struct {
	// Dir is where the local blob store keeps file contents ("" and no
	// Blobs: the file server is off and FILE_SERVER requests are refused).
	Dir string
	// Blobs overrides the local blob store in Dir (an S3-compatible store,
	// a test double).
	Blobs storage.BlobStore
	// Quota is each user's file server quota in bytes: files plus open
	// uploads. Default 1 GiB; negative means no limit.
	Quota int64
	// MaxFileSize caps one file server file. Default 4 GiB.
	MaxFileSize int64
	// UploadTimeout is how long an upload may go without a write before
	// it is discarded with its partial content. Default 1 h.
	UploadTimeout time.Duration
	// Window caps a transfer's chunks sent and not yet acked by the
	// receiver. Default 8: 2 MiB of 256 KiB chunks, half the default
	// per-connection outbound cap, so a receiver's queue holds a whole
	// window with room for its messages.
	Window int
	// XferIdle ends an accepted transfer that makes no progress (no chunk,
	// ack or accept) for this long; both sides get ERROR code 7. An offer
	// not yet accepted waits OfferTTL. Defaults 10 min and 7 days.
	XferIdle, OfferTTL time.Duration
	// MaxXfers caps the transfers one user sends at a time. Default 64.
	MaxXfers int
	// Workers run file server I/O, each serving the files whose id maps
	// to it (so one file's requests run in order). Default 8.
	Workers int
	// QueueBytes bounds the chunk bytes waiting for the workers; beyond it
	// requests are refused as retryable. Default 64 MiB.
	QueueBytes int64
}

func (c *FilesConfig) fillDefaults() {
	if c.Quota == 0 {
		c.Quota = 1 << 30
	}
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = 4 << 30
	}
	if c.UploadTimeout <= 0 {
		c.UploadTimeout = time.Hour
	}
	if c.Window <= 0 {
		c.Window = 8
	}
	if c.XferIdle <= 0 {
		c.XferIdle = 10 * time.Minute
	}
	if c.OfferTTL <= 0 {
		c.OfferTTL = 7 * 24 * time.Hour
	}
	if c.MaxXfers <= 0 {
		c.MaxXfers = 64
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 64 << 20
	}
}

// FileOfferJSON is the data of a FILE OFFER.
type FileOfferJSON struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Chunk  int    `json:"chunk"`
}

type xferKey struct{ from, xfer uint64 }

// xferState is one transfer as the center sees it. Guarded by its shard's
// lock.
type xferState struct {
	to       uint64
	size     uint64
	chunk    uint64
	sha      [32]byte
	accepted bool
	next     uint64 // offset the next CHUNK must have
	acked    uint64 // bytes the receiver acked
	rs, ss   im.SessionRef
	touched  time.Time
}

const xferShards = 64

type xferShard struct {
	mu   sync.Mutex
	m    map[xferKey]*xferState
	legs map[xferKey]*xferLeg // transfers held by another center (center_cluster_files.go)
}

// xferTable holds the transfers in progress. Safe for concurrent use.
type xferTable struct {
	shards [xferShards]xferShard
	active atomic.Int64
	// perUser counts each sender's transfers; offers and their ends are
	// rare next to chunks, so one lock is enough.
	mu      sync.Mutex
	perUser map[uint64]int
	// byUser indexes the transfers by both their users, sender and
	// receiver (guarded by mu), so that a closing session visits its own
	// transfers, not every transfer of the center.
	byUser map[uint64]map[xferKey]struct{}
	// legsPer counts each receiver's legs (guarded by mu); legsN all of
	// them.
	legsPer map[uint64]int
	legsN   atomic.Int64
	// route holds FILE frames waiting for a route lookup (xferRouter).
	route chan xferJob
}

func (t *xferTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[xferKey]*xferState)
		t.shards[i].legs = make(map[xferKey]*xferLeg)
	}
	t.perUser = make(map[uint64]int)
	t.byUser = make(map[uint64]map[xferKey]struct{})
	t.legsPer = make(map[uint64]int)
	t.route = make(chan xferJob, xferRouteQueue)
}

func (t *xferTable) shard(k xferKey) *xferShard {
	return &t.shards[(k.from^k.xfer*0x9E3779B97F4A7C15)%xferShards]
}

// add counts a new transfer k of k.from to user to and indexes it by both;
// false when k.from has too many. k's shard lock must be held.
func (t *xferTable) add(k xferKey, to uint64, limit int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.perUser[k.from] >= limit {
		return false
	}
	t.perUser[k.from]++
	t.index(k.from, k)
	t.index(to, k)
	t.active.Add(1)
	return true
}

// index files k under user; t.mu must be held.
func (t *xferTable) index(user uint64, k xferKey) {
	ks := t.byUser[user]
	if ks == nil {
		ks = make(map[xferKey]struct{})
		t.byUser[user] = ks
	}
	ks[k] = struct{}{}
}

// unindex removes k from user's transfers; t.mu must be held.
func (t *xferTable) unindex(user uint64, k xferKey) {
	if ks := t.byUser[user]; ks != nil {
		delete(ks, k)
		if len(ks) == 0 {
			delete(t.byUser, user)
		}
	}
}

// done uncounts and unindexes transfer k, sent to user to.
func (t *xferTable) done(k xferKey, to uint64) {
	t.mu.Lock()
	if t.perUser[k.from]--; t.perUser[k.from] <= 0 {
		delete(t.perUser, k.from)
	}
	t.unindex(k.from, k)
	t.unindex(to, k)
	t.mu.Unlock()
	t.active.Add(-1)
}

// remove deletes a transfer; sh's lock must be held.
func (t *xferTable) remove(sh *xferShard, k xferKey) {
	if st, ok := sh.m[k]; ok {
		delete(sh.m, k)
		t.done(k, st.to)
	}
}

// keysOf returns the transfers user sends or receives, a copy taken under
// the index's lock (the transfers may end meanwhile: look each up again).
func (t *xferTable) keysOf(user uint64, dst []xferKey) []xferKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.byUser[user] {
		dst = append(dst, k)
	}
	return dst
}

// fileFrame handles a FILE frame from user's session s. Offers, answers,
// completion and cancel route like messages (an offer to an offline
// receiver is stored and pushed when it fetches); chunks and chunk acks go
// only to the live session of the other side and are never stored. On a
// clustered center, s may stand for user's sessions on another center
// (remoteRef): the frame is a control frame that center forwarded here,
// where the transfer is held.
func (c *LocalCenter) fileFrame(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer) {
	f := frame.File(frame.Frame(buf.B).Body())
	m := f.Msg()
	op, xfer, off, cid := f.Op(), f.Xfer(), f.Offset(), m.CID()
	fail := func(code uint16, text string) {
		bytebufferpool.Put(buf)
		c.xferError(user, s, code, cid, text)
	}
	if m.To() == 0 || m.To() == user {
		fail(frame.ErrCodeBadRequest, "file transfer needs another user as receiver")
		return
	}
	switch op {
	case frame.FileOffer:
		c.fileOffer(user, s, buf, f, fail)
	case frame.FileAccept, frame.FileReject, frame.FileDone:
		c.fileAnswer(user, s, buf, f, fail)
	case frame.FileCancel:
		// Either side: the sender names the receiver, the receiver the sender.
		held := false
		for _, k := range [2]xferKey{{user, xfer}, {m.To(), xfer}} {
			sh := c.xfers.shard(k)
			sh.mu.Lock()
			if st := sh.m[k]; st != nil && (k.from == user && st.to == m.To() || k.from == m.To() && st.to == user) {
				c.xfers.remove(sh, k)
				held = true
			}
			sh.mu.Unlock()
		}
		if !held && c.xferForward(user, s, buf, f) {
			return
		}
		c.p2p(user, s, buf)
	case frame.FileChunk:
		c.xferChunk(user, s, buf, f)
	case frame.FileChunkAck:
		k := xferKey{m.To(), xfer}
		sh := c.xfers.shard(k)
		sh.mu.Lock()
		st := sh.m[k]
		switch {
		case st == nil || st.to != user:
			sh.mu.Unlock()
			if st == nil && c.xferForward(user, s, buf, f) {
				return
			}
			fail(frame.ErrCodeNotFound, fmt.Sprintf("unknown transfer %d", xfer))
			return
		case off < st.acked || off > st.next:
			sh.mu.Unlock()
			fail(frame.ErrCodeBadRequest, fmt.Sprintf("wrong offset %d: acks must lie in [%d, %d]", off, st.acked, st.next))
			return
		}
		st.acked, st.touched = off, time.Now()
		ss := st.ss
		sh.mu.Unlock()
		frame.Msg(frame.Frame(buf.B).Body()).SetMID(0)
		if !c.deliverLive(m.To(), ss, buf) {
			bytebufferpool.Put(buf) // the sender is gone; it resumes with a re-offer
		}
	default:
		fail(frame.ErrCodeBadRequest, fmt.Sprintf("unknown file operation %d", op))
	}
}

// fileOffer handles a FILE offer from user: a new offer is routed as a
// message; a re-offer of a live transfer goes to the receiver's session, on
// this center or another, and is never stored. fail refuses the frame.
func (c *LocalCenter) fileOffer(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer, f frame.File,
	fail func(code uint16, text string)) {
	m := f.Msg()
	xfer := f.Xfer()
	live, rs, err := c.xferOffer(user, s, m.To(), xfer, f.Data())
	if err != "" {
		fail(frame.ErrCodeBadRequest, err)
		return
	}
	if live { // a re-offer resynchronises a live transfer: never stored
		if c.cl != nil && c.routes.Lookup(m.To(), func(route.Addr, any) {}) == 0 {
			// The receiver is elsewhere, if anywhere: the router
			// tells the sender when it is not.
			if !c.xferEnqueue(xferJob{buf: buf, peer: m.To(), user: user, s: s, prefer: remoteCenter(rs), deliver: true}) {
				fail(frame.ErrCodeRetry, "server busy; retry")
			}
			return
		}
		if !c.deliverLive(m.To(), im.SessionRef{}, buf) {
			fail(frame.ErrCodeRetry, fmt.Sprintf("receiver offline; transfer %d paused", xfer))
		}
		return
	}
	c.p2p(user, s, buf)
}

// fileAnswer handles the receiver's ACCEPT, REJECT or DONE of a transfer it
// was offered: it updates or ends the transfer and passes the frame on to
// the sender. fail refuses the frame.
func (c *LocalCenter) fileAnswer(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer, f frame.File,
	fail func(code uint16, text string)) {
	m := f.Msg()
	op, xfer, off, cid := f.Op(), f.Xfer(), f.Offset(), m.CID()
	k := xferKey{m.To(), xfer}
	sh := c.xfers.shard(k)
	sh.mu.Lock()
	st := sh.m[k]
	if st == nil || st.to != user {
		sh.mu.Unlock()
		if st == nil && c.xferForward(user, s, buf, f) {
			return
		}
		fail(frame.ErrCodeNotFound, fmt.Sprintf("unknown transfer %d", xfer))
		return
	}
	var refuse string
	switch op {
	case frame.FileAccept:
		if off > st.size {
			refuse = fmt.Sprintf("wrong offset %d: the file has %d bytes", off, st.size)
			break
		}
		st.accepted, st.next, st.acked, st.rs, st.touched = true, off, off, s, time.Now()
	case frame.FileReject:
		c.xfers.remove(sh, k)
	case frame.FileDone:
		if !st.accepted || st.acked != st.size {
			refuse = fmt.Sprintf("transfer %d incomplete: %d of %d bytes acked", xfer, st.acked, st.size)
			break
		}
		if sum, err := hex.DecodeString(string(f.Data())); err != nil || len(sum) != 32 || [32]byte(sum) != st.sha {
			refuse = fmt.Sprintf("hash mismatch: transfer %d failed", xfer)
		}
		c.xfers.remove(sh, k) // done either way; the sender learns the receiver's hash
	}
	sh.mu.Unlock()
	if refuse != "" && op != frame.FileDone {
		fail(frame.ErrCodeBadRequest, refuse)
		return
	}
	if refuse != "" {
		c.xferError(user, s, frame.ErrCodeBadRequest, cid, refuse)
	}
	c.p2p(user, s, buf)
}

// badFileName returns why name is refused (storage.CheckFileName), or "".
func badFileName(name string) string {
	if err := storage.CheckFileName(name); err != nil {
		return "bad file name: " + strings.TrimPrefix(err.Error(), storage.ErrInvalid.Error()+": ") +
			" (1 to 255 bytes of UTF-8, no control character, no '/' or '\\', not '.' or '..')"
	}
	return ""
}

// xferOffer validates an offer and records the transfer. live is true for
// a re-offer of a transfer the center knows (the sender resumes); rs is
// then the receiver's session that last accepted it.
func (c *LocalCenter) xferOffer(user uint64, s im.SessionRef, to, xfer uint64, data []byte) (live bool, rs im.SessionRef, refuse string) {
	var o FileOfferJSON
	if err := sonic.Unmarshal(data, &o); err != nil {
		return false, rs, "offer data must be JSON {name,size,sha256,chunk}"
	}
	sum, err := hex.DecodeString(o.SHA256)
	switch {
	case xfer == 0:
		return false, rs, "transfer id must not be 0"
	case badFileName(o.Name) != "":
		return false, rs, badFileName(o.Name)
	case o.Size < 0:
		return false, rs, "negative file size"
	case err != nil || len(sum) != 32:
		return false, rs, "sha256 must be 64 hex digits"
	case o.Chunk <= 0 || o.Chunk > MaxFileChunk:
		return false, rs, fmt.Sprintf("chunk must be 1 to %d bytes", MaxFileChunk)
	}
	k := xferKey{user, xfer}
	sh := c.xfers.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := time.Now()
	if st := sh.m[k]; st != nil {
		if st.to != to || st.size != uint64(o.Size) || st.sha != [32]byte(sum) {
			return false, rs, fmt.Sprintf("transfer %d exists with another receiver or file", xfer)
		}
		st.chunk, st.ss, st.touched = uint64(o.Chunk), s, now
		st.accepted = false // chunks wait for the receiver's ACCEPT
		return true, st.rs, ""
	}
	if !c.xfers.add(k, to, c.cfg.Files.MaxXfers) {
		return false, rs, fmt.Sprintf("too many transfers: at most %d at a time", c.cfg.Files.MaxXfers)
	}
	sh.m[k] = &xferState{to: to, size: uint64(o.Size), chunk: uint64(o.Chunk), sha: [32]byte(sum), ss: s, touched: now}
	return false, rs, ""
}

// xferChunk checks a CHUNK against its transfer and passes it to the
// receiving session, here or on another center, refusing it when the
// receiver is not there.
func (c *LocalCenter) xferChunk(user uint64, s im.SessionRef, buf *bytebufferpool.ByteBuffer, f frame.File) {
	m := f.Msg()
	xfer, off, n, cid := f.Xfer(), f.Offset(), uint64(len(f.Data())), m.CID()
	k := xferKey{user, xfer}
	sh := c.xfers.shard(k)
	sh.mu.Lock()
	st := sh.m[k]
	var code uint16
	var refuse string
	switch {
	case st == nil || st.to != m.To():
		code, refuse = frame.ErrCodeNotFound, fmt.Sprintf("unknown transfer %d", xfer)
	case !st.accepted:
		code, refuse = frame.ErrCodeRetry, fmt.Sprintf("transfer %d not accepted (yet)", xfer)
	case off != st.next:
		code, refuse = frame.ErrCodeBadRequest, fmt.Sprintf("wrong offset %d: transfer %d expects %d", off, xfer, st.next)
	case n == 0 || n > st.chunk || off+n > st.size || (n < st.chunk && off+n != st.size):
		code, refuse = frame.ErrCodeBadRequest, fmt.Sprintf("bad chunk length %d at %d (chunk %d, size %d)", n, off, st.chunk, st.size)
	case off+n-st.acked > uint64(c.cfg.Files.Window)*st.chunk:
		code, refuse = frame.ErrCodeBadRequest, fmt.Sprintf("chunk out of window: %d bytes unacked, window %d chunks", off+n-st.acked, c.cfg.Files.Window)
	default:
		msg := frame.Msg(frame.Frame(buf.B).Body())
		msg.SetMID(0)
		var err error
		if center := remoteCenter(st.rs); center != 0 {
			err = c.xferPush(center, st.to, buf)
		} else if ep := c.endpoint(st.rs.Endpoint); ep != nil {
			msg.SetDSrv(st.rs.Endpoint)
			err = ep.Deliver(st.rs, buf)
		} else {
			err = im.ErrUnknownSession
		}
		if err == nil {
			st.next, st.ss, st.touched = off+n, s, time.Now()
			sh.mu.Unlock()
			return
		}
		code, refuse = frame.ErrCodeRetry, fmt.Sprintf("receiver offline; transfer %d paused", xfer)
		if errors.Is(err, im.ErrSlowReader) {
			refuse = fmt.Sprintf("receiver busy; transfer %d paused", xfer)
		}
		st.accepted = false // until the receiver accepts again
	}
	sh.mu.Unlock()
	bytebufferpool.Put(buf)
	c.errorTo(s, code, cid, refuse)
}

// deliverLive passes buf to session prefer, or else to any session of user;
// it reports whether one took it (ownership passes then).
func (c *LocalCenter) deliverLive(user uint64, prefer im.SessionRef, buf *bytebufferpool.ByteBuffer) bool {
	if prefer.Session != 0 {
		if ep := c.endpoint(prefer.Endpoint); ep != nil && ep.Deliver(prefer, buf) == nil {
			return true
		}
	}
	taken := false
	c.routes.Lookup(user, func(_ route.Addr, v any) {
		if taken {
			return
		}
		ref := v.(*sessState).ref
		if ep := c.endpoint(ref.Endpoint); ep != nil {
			frame.Msg(frame.Frame(buf.B).Body()).SetDSrv(ref.Endpoint)
			taken = ep.Deliver(ref, buf) == nil
		}
	})
	return taken
}

// xferOffline pauses the transfers a closing session took part in and tells
// the other side (ERROR code 5, Ref = transfer id): the receiver resumes
// with ACCEPT at its offset, the sender with a re-offer.
func (c *LocalCenter) xferOffline(user uint64, s im.SessionRef) {
	if c.xfers.legsN.Load() > 0 {
		c.legsOffline(user, s)
	}
	if c.xfers.active.Load() == 0 {
		return
	}
	type note struct {
		to   uint64
		xfer uint64
		text string
	}
	var notes []note
	for _, k := range c.xfers.keysOf(user, nil) {
		sh := c.xfers.shard(k)
		sh.mu.Lock()
		switch st := sh.m[k]; {
		case st == nil: // ended meanwhile
		case st.accepted && st.to == user && st.rs == s:
			st.accepted = false
			notes = append(notes, note{k.from, k.xfer, fmt.Sprintf("receiver offline; transfer %d paused", k.xfer)})
		case k.from == user && st.ss == s:
			notes = append(notes, note{st.to, k.xfer, fmt.Sprintf("sender offline; transfer %d paused", k.xfer)})
		}
		sh.mu.Unlock()
	}
	for _, n := range notes {
		c.errorToUser(n.to, frame.ErrCodeRetry, n.xfer, n.text)
	}
}

// xferSweeper ends transfers that made no progress in time. On a
// clustered center it also starts the router of FILE frames for other
// centers (center_cluster_files.go): the sweeper holds the center's wait
// group open, so adding to it here cannot race with Close.
func (c *LocalCenter) xferSweeper() {
	defer c.wg.Done()
	if c.cfg.Cluster != nil && c.cfg.Cluster.Routes != nil {
		c.wg.Add(1)
		go c.xferRouter()
	}
	every := min(c.cfg.Files.XferIdle/4, 30*time.Second)
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	type gone struct {
		k  xferKey
		to uint64
	}
	var ended []gone
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			if c.xfers.legsN.Load() > 0 {
				c.sweepLegs(now)
			}
			if c.xfers.active.Load() == 0 {
				continue
			}
			ended = ended[:0]
			for i := range c.xfers.shards {
				sh := &c.xfers.shards[i]
				sh.mu.Lock()
				for k, st := range sh.m {
					ttl := c.cfg.Files.OfferTTL
					if st.accepted || st.next > 0 {
						ttl = c.cfg.Files.XferIdle
					}
					if now.Sub(st.touched) > ttl {
						c.xfers.remove(sh, k)
						ended = append(ended, gone{k, st.to})
					}
				}
				sh.mu.Unlock()
			}
			for _, g := range ended {
				text := fmt.Sprintf("transfer %d abandoned: no progress for %s", g.k.xfer, c.cfg.Files.XferIdle)
				c.errorToUser(g.k.from, frame.ErrCodeIdle, g.k.xfer, text)
				c.errorToUser(g.to, frame.ErrCodeIdle, g.k.xfer, text)
			}
		}
	}
}

// appendStored encodes an offline message for its recipient's session on
// endpoint dsrv: a MSG, or the FILE frame it was stored from.
func appendStored(m storage.Message, dsrv uint32) []byte {
	cmd, qos := frame.CmdMsg, m.QoS
	if qos&storage.QoSFileFrame != 0 {
		cmd, qos = frame.CmdFile, qos&^storage.QoSFileFrame
	}
	b, _ := frame.AppendMsg(nil, cmd, frame.QoS(qos), frame.MsgHeader{From: m.From, To: m.To,
		Time: m.Time, CID: m.CID, Srv: m.Srv, MID: m.MID, DSrv: dsrv}, m.Content)
	return b
}

// storedQoS is the QoS byte an offline message keeps for frame b.
func storedQoS(b []byte, q frame.QoS) uint8 {
	if frame.Frame(b).Cmd() == frame.CmdFile {
		return uint8(q) | storage.QoSFileFrame
	}
	return uint8(q)
}
