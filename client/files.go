package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/frame"
)

// File transfer (FILE frames, user to user) and the private file server
// (FILE_SERVER frames). docs/files.md describes both protocols. Frames that
// belong to a transfer or request in progress on this Conn go to it and
// never reach Frames; an OFFER that no ReceiveFile waits for does (see
// ParseOffer), as do the ACKs of the transfer's offers. FILE frames sent
// with QoS 1 are acked as they arrive.

// MaxChunk is the largest chunk the server takes.
const MaxChunk = frame.MaxFileChunk

// DefaultWindow is how many chunks a transfer, an upload or a download
// keeps in flight; the server refuses transfer chunks beyond its own
// window (8 by default).
const DefaultWindow = 8

// Errors of file transfers.
var (
	ErrRejected     = errors.New("client: file offer rejected")
	ErrCanceled     = errors.New("client: file transfer canceled by the peer")
	ErrHashMismatch = errors.New("client: file hash mismatch")
)

// Offer is a file offered to this user.
type Offer struct {
	From   uint64 `json:"-"`
	Xfer   uint64 `json:"-"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Chunk  int    `json:"chunk"`
}

// ParseOffer reads a FILE OFFER frame from Frames.
func ParseOffer(f Frame) (Offer, error) {
	if f.Cmd != frame.CmdFile || len(f.Body) < frame.FileFrameLen || frame.File(f.Body).Op() != frame.FileOffer {
		return Offer{}, fmt.Errorf("%w: not a file offer", ErrProtocol)
	}
	ff := frame.File(f.Body)
	var o Offer
	if err := sonic.Unmarshal(ff.Data(), &o); err != nil {
		return Offer{}, fmt.Errorf("client: offer: %w", err)
	}
	o.From, o.Xfer = ff.Msg().From(), ff.Xfer()
	return o, nil
}

// fileMux routes file frames to the transfers and requests waiting for
// them. Safe for concurrent use.
type fileMux struct {
	mu    sync.Mutex
	xfers map[[2]uint64]*xferSink // (peer, transfer id)
	reqs  map[uint32]chan Frame
}

// xferSink is one transfer's inbox.
type xferSink struct {
	ch      chan Frame
	xfer    uint64
	cidBase uint64
	mu      sync.Mutex
	cids    map[uint64]bool // control frames' client ids
}

// Chunk client ids: cidBase + epoch<<32 + chunk index, where the epoch
// grows at each resynchronisation, so that a refusal of a chunk sent before
// it is told from one sent after. cidBase has the top bit set and its low 48
// bits clear, so chunk ids never meet NewCID's (time-based, below 2^63),
// request ids (below 2^32) or transfer ids (top bit clear).
const chunkIDBits = 48

func newCIDBase() uint64 { return (randUint64() | 1<<63) &^ (1<<chunkIDBits - 1) }

func (s *xferSink) isChunkCID(ref uint64) bool { return ref-s.cidBase < 1<<chunkIDBits }

// owns reports whether an ERROR's Ref is about this transfer.
func (s *xferSink) owns(ref uint64) bool {
	if ref == s.xfer || s.isChunkCID(ref) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cids[ref]
}

func (s *xferSink) addCID(cid uint64) {
	s.mu.Lock()
	s.cids[cid] = true
	s.mu.Unlock()
}

// route passes a received frame to its transfer or request; false when
// none waits for it. Called by the read loop.
func (c *Conn) routeFile(cmd frame.Cmd, q frame.QoS, body []byte) bool {
	if cmd == frame.CmdFile && q == frame.QoS1 {
		if m := frame.Msg(body); m.MID() != 0 {
			_ = c.Ack(m.MID(), m.From())
		}
	}
	mx := &c.files
	var ch chan Frame
	mx.mu.Lock()
	switch cmd {
	case frame.CmdFile:
		f := frame.File(body)
		if s := mx.xfers[[2]uint64{f.Msg().From(), f.Xfer()}]; s != nil {
			ch = s.ch
		}
	case frame.CmdFileServer:
		ch = mx.reqs[frame.FileServer(body).Req()]
	case frame.CmdError:
		ref := frame.Error(body).Ref()
		if ref <= 1<<32-1 {
			ch = mx.reqs[uint32(ref)]
		}
		for _, s := range mx.xfers {
			if ch == nil && s.owns(ref) {
				ch = s.ch
			}
		}
	}
	mx.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- Frame{Cmd: cmd, QoS: q, Body: body}:
	case <-c.done:
	}
	return true
}

func (c *Conn) addXfer(peer, xfer uint64) *xferSink {
	s := &xferSink{ch: make(chan Frame, 4*DefaultWindow+16), xfer: xfer, cidBase: newCIDBase(), cids: map[uint64]bool{}}
	c.files.mu.Lock()
	if c.files.xfers == nil {
		c.files.xfers = map[[2]uint64]*xferSink{}
	}
	c.files.xfers[[2]uint64{peer, xfer}] = s
	c.files.mu.Unlock()
	return s
}

func (c *Conn) dropXfer(peer, xfer uint64) {
	c.files.mu.Lock()
	delete(c.files.xfers, [2]uint64{peer, xfer})
	c.files.mu.Unlock()
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}

// sendFile sends one FILE frame; cid 0 picks a fresh one, recorded in s.
func (c *Conn) sendFile(s *xferSink, to uint64, q frame.QoS, op byte, offset uint64, cid uint64, data []byte) error {
	if cid == 0 {
		cid = c.NewCID()
		s.addCID(cid)
	}
	b := make([]byte, 0, frame.FileFrameLen+len(data))
	b = frame.AppendMsgHeader(b, frame.MsgHeader{From: c.user, To: to, Time: time.Now().UnixMilli(), CID: cid})
	b = append(b, op)
	b = binary.BigEndian.AppendUint64(b, s.xfer)
	b = binary.BigEndian.AppendUint64(b, offset)
	return c.Send(frame.CmdFile, q, append(b, data...))
}

// SendOptions tune SendFile. Zero values mean the defaults.
type SendOptions struct {
	// Chunk is the chunk size, at most MaxChunk (the default).
	Chunk int
	// Window is how many unacked chunks may be in flight (DefaultWindow).
	Window int
	// Xfer resumes a transfer this user started, after a reconnect: the
	// receiver then says where to go on from. 0 starts a new transfer.
	Xfer uint64
	// SHA256 is the file's hash in hex, if known; else SendFile reads r
	// once to compute it.
	SHA256 string
	// Started, if set, is called with the transfer id once the offer is
	// sent, so that a caller can resume after a lost connection.
	Started func(xfer uint64)
}

// SendFile offers size bytes of r, named name, to user to and sends them
// once the receiver accepts, holding at most opt.Window chunks that the
// receiver has not acked. It returns when the receiver reports the file
// complete with the right hash, refuses or cancels it, or ctx ends (the
// transfer is then canceled). When the receiver's connection drops, the
// transfer pauses until the receiver accepts again, from where it got to.
// If this connection drops, SendFile returns its error; call it again on a
// new connection with opt.Xfer set to resume.
func (c *Conn) SendFile(ctx context.Context, to uint64, name string, r io.ReaderAt, size int64, opt SendOptions) (uint64, error) {
	chunk := opt.Chunk
	if chunk <= 0 || chunk > MaxChunk {
		chunk = MaxChunk
	}
	window := opt.Window
	if window <= 0 {
		window = DefaultWindow
	}
	sum := opt.SHA256
	if sum == "" {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
			return 0, err
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}
	xfer := opt.Xfer
	if xfer == 0 {
		xfer = randUint64() >> 1
	}
	offer, _ := sonic.Marshal(Offer{Name: name, Size: size, SHA256: sum, Chunk: chunk})
	s := c.addXfer(to, xfer)
	defer c.dropXfer(to, xfer)
	if err := c.sendFile(s, to, frame.QoS1, frame.FileOffer, 0, 0, offer); err != nil {
		return xfer, err
	}
	if opt.Started != nil {
		opt.Started(xfer)
	}
	// While paused (the receiver dropped, or refused a chunk as busy) the
	// sender re-offers now and then; a receiver that is back answers with
	// ACCEPT at its offset.
	resync := time.NewTimer(time.Hour)
	resync.Stop()
	defer resync.Stop()
	o := &outgoing{c: c, s: s, to: to, r: r, size: size, chunk: chunk, window: window, sum: sum,
		buf: make([]byte, chunk), backoff: 250 * time.Millisecond, resync: resync}
	for {
		if err := o.fill(); err != nil {
			return xfer, err
		}
		var f Frame
		select {
		case f = <-s.ch:
		case <-resync.C:
			o.backoff = min(2*o.backoff, 5*time.Second)
			resync.Reset(o.backoff)
			if err := c.sendFile(s, to, frame.QoS0, frame.FileOffer, 0, 0, offer); err != nil {
				return xfer, err
			}
			continue
		case <-ctx.Done():
			_ = c.sendFile(s, to, frame.QoS1, frame.FileCancel, 0, 0, nil)
			return xfer, ctx.Err()
		case <-c.done:
			return xfer, c.closedErr()
		}
		if done, err := o.onFrame(f); done || err != nil {
			return xfer, err
		}
	}
}

// outgoing is one SendFile's progress; used by its goroutine only.
type outgoing struct {
	c      *Conn
	s      *xferSink
	to     uint64
	r      io.ReaderAt
	size   int64
	chunk  int
	window int
	sum    string
	buf    []byte

	accepted, paused bool
	next, acked      int64 // sent up to next; the receiver has acked up to acked
	epoch            uint64
	backoff          time.Duration
	resync           *time.Timer
}

// chunkCID is the CID of the chunk at off in the current epoch.
func (o *outgoing) chunkCID(off int64) uint64 {
	return o.s.cidBase + o.epoch<<32 + uint64(off/int64(o.chunk))&(1<<32-1)
}

// pause stops sending until the receiver accepts again, and starts the
// re-offers.
func (o *outgoing) pause() {
	o.accepted, o.paused = false, true
	o.epoch = (o.epoch + 1) & (1<<16 - 1)
	o.resync.Reset(o.backoff)
}

// fill sends chunks while the receiver has accepted and the window has
// room. A read error cancels the transfer.
func (o *outgoing) fill() error {
	c, s, to := o.c, o.s, o.to
	for o.accepted && o.next < o.size && o.next-o.acked < int64(o.window*o.chunk) {
		n := min(int64(o.chunk), o.size-o.next)
		if _, err := o.r.ReadAt(o.buf[:n], o.next); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			_ = c.sendFile(s, to, frame.QoS1, frame.FileCancel, 0, 0, nil)
			return err
		}
		if err := c.sendFile(s, to, frame.QoS0, frame.FileChunk, uint64(o.next), o.chunkCID(o.next), o.buf[:n]); err != nil {
			return err
		}
		o.next += n
	}
	return nil
}

// onFrame acts on the receiver's answer (or the server's ERROR) and
// reports whether the transfer has ended; err is why, nil when the file
// arrived whole.
func (o *outgoing) onFrame(f Frame) (done bool, err error) {
	if f.Cmd == frame.CmdError {
		e := errorFrom(f.Body).(*ServerError)
		if o.s.isChunkCID(e.Ref) && (e.Ref-o.s.cidBase)>>32 != o.epoch {
			return false, nil // about a chunk sent before the last resync
		}
		if e.Code != frame.ErrCodeRetry {
			return true, e
		}
		if !o.paused {
			o.pause()
		}
		return false, nil
	}
	ff := frame.File(f.Body)
	switch ff.Op() {
	case frame.FileAccept:
		off := int64(ff.Offset())
		if off > o.size {
			return true, fmt.Errorf("%w: accept at %d past the end", ErrProtocol, off)
		}
		o.epoch = (o.epoch + 1) & (1<<16 - 1)
		o.accepted, o.paused, o.next, o.acked = true, false, off, off
		o.backoff = 250 * time.Millisecond
		o.resync.Stop()
	case frame.FileChunkAck:
		if off := int64(ff.Offset()); off > o.acked && off <= o.next {
			o.acked = off
		}
	case frame.FileDone:
		if string(ff.Data()) != o.sum {
			return true, fmt.Errorf("%w: receiver got %s, sent %s", ErrHashMismatch, ff.Data(), o.sum)
		}
		return true, nil
	case frame.FileReject:
		return true, ErrRejected
	case frame.FileCancel:
		return true, ErrCanceled
	}
	return false, nil
}

func (c *Conn) closedErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// RecvState is a receive's progress, kept across reconnects: pass the same
// one to ReceiveFile on the new connection (with a writer that continues
// where the last one stopped) to resume. The zero value starts at 0.
type RecvState struct {
	Offset int64
	h      hash.Hash
}

// RejectFile refuses an offer.
func (c *Conn) RejectFile(o Offer) error {
	s := &xferSink{xfer: o.Xfer, cids: map[uint64]bool{}}
	return c.sendFile(s, o.From, frame.QoS1, frame.FileReject, 0, 0, nil)
}

// ReceiveFile accepts an offer and writes the file to w, from st.Offset
// (st may be nil to start at 0), acking each chunk. It returns nil once the
// whole file arrived with the offered SHA-256 (the sender is told), or
// ErrHashMismatch, ErrCanceled, the server's refusal, or the connection's
// error; ctx ending cancels the transfer.
func (c *Conn) ReceiveFile(ctx context.Context, o Offer, w io.Writer, st *RecvState) error {
	if st == nil {
		st = &RecvState{}
	}
	if st.h == nil {
		if st.Offset != 0 {
			return errors.New("client: resuming needs the RecvState of the first attempt")
		}
		st.h = sha256.New()
	}
	s := c.addXfer(o.From, o.Xfer)
	defer c.dropXfer(o.From, o.Xfer)
	if err := c.sendFile(s, o.From, frame.QoS1, frame.FileAccept, uint64(st.Offset), 0, nil); err != nil {
		return err
	}
	finish := func() error {
		sum := hex.EncodeToString(st.h.Sum(nil))
		if err := c.sendFile(s, o.From, frame.QoS1, frame.FileDone, 0, 0, []byte(sum)); err != nil {
			return err
		}
		if sum != o.SHA256 {
			return fmt.Errorf("%w: got %s, offered %s", ErrHashMismatch, sum, o.SHA256)
		}
		return nil
	}
	if st.Offset == o.Size {
		return finish()
	}
	for {
		var f Frame
		select {
		case f = <-s.ch:
		case <-ctx.Done():
			_ = c.sendFile(s, o.From, frame.QoS1, frame.FileCancel, 0, 0, nil)
			return ctx.Err()
		case <-c.done:
			return c.closedErr()
		}
		if f.Cmd == frame.CmdError {
			if e := errorFrom(f.Body).(*ServerError); e.Code != frame.ErrCodeRetry {
				return e
			}
			continue // the sender dropped: it resumes with a re-offer
		}
		ff := frame.File(f.Body)
		switch ff.Op() {
		case frame.FileChunk:
			if int64(ff.Offset()) != st.Offset {
				continue
			}
			data := ff.Data()
			if len(data) == 0 || st.Offset+int64(len(data)) > o.Size {
				return fmt.Errorf("%w: bad chunk", ErrProtocol)
			}
			if _, err := w.Write(data); err != nil {
				_ = c.sendFile(s, o.From, frame.QoS1, frame.FileCancel, 0, 0, nil)
				return err
			}
			st.h.Write(data)
			st.Offset += int64(len(data))
			if err := c.sendFile(s, o.From, frame.QoS0, frame.FileChunkAck, uint64(st.Offset), 0, nil); err != nil {
				return err
			}
			if st.Offset == o.Size {
				return finish()
			}
		case frame.FileOffer: // the sender resumes: say where to go on from
			if err := c.sendFile(s, o.From, frame.QoS1, frame.FileAccept, uint64(st.Offset), 0, nil); err != nil {
				return err
			}
		case frame.FileCancel:
			return ErrCanceled
		}
	}
}

// ---- the private file server

// FileInfo describes a file on the file server.
type FileInfo struct {
	ID      uint64 `json:"id"`
	Owner   uint64 `json:"owner"`
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Created int64  `json:"created"`
}

// FileList is the answer to ListFiles.
type FileList struct {
	Files []FileInfo `json:"files"`
	Used  int64      `json:"used"`
	Quota int64      `json:"quota"`
}

// fsStream is a run of file server requests sharing one inbox.
type fsStream struct {
	c    *Conn
	ch   chan Frame
	reqs []uint32
}

func (c *Conn) newStream(depth int) *fsStream {
	return &fsStream{c: c, ch: make(chan Frame, depth+1)}
}

func (st *fsStream) send(op byte, file, off uint64, data []byte) (uint32, error) {
	c := st.c
	req := c.NextReq()
	c.files.mu.Lock()
	if c.files.reqs == nil {
		c.files.reqs = map[uint32]chan Frame{}
	}
	c.files.reqs[req] = st.ch
	c.files.mu.Unlock()
	st.reqs = append(st.reqs, req)
	b := make([]byte, 0, frame.FileServerLen+len(data))
	b = binary.BigEndian.AppendUint32(b, req)
	b = append(b, op)
	b = binary.BigEndian.AppendUint64(b, file)
	b = binary.BigEndian.AppendUint64(b, off)
	return req, c.Send(frame.CmdFileServer, frame.QoS0, append(b, data...))
}

// recv waits for the next answer; an ERROR comes back as a *ServerError.
func (st *fsStream) recv(ctx context.Context) (frame.FileServer, error) {
	select {
	case f := <-st.ch:
		var req uint32
		if f.Cmd == frame.CmdError {
			e := errorFrom(f.Body).(*ServerError)
			st.done(uint32(e.Ref))
			return nil, e
		}
		fs := frame.FileServer(f.Body)
		req = fs.Req()
		st.done(req)
		return fs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-st.c.done:
		return nil, st.c.closedErr()
	}
}

func (st *fsStream) done(req uint32) {
	st.c.files.mu.Lock()
	delete(st.c.files.reqs, req)
	st.c.files.mu.Unlock()
}

// close forgets the stream's requests still unanswered.
func (st *fsStream) close() {
	st.c.files.mu.Lock()
	for _, r := range st.reqs {
		delete(st.c.files.reqs, r)
	}
	st.c.files.mu.Unlock()
}

// fsCall sends one request and waits for its answer.
func (c *Conn) fsCall(ctx context.Context, op byte, file, off uint64, data []byte) (frame.FileServer, error) {
	st := c.newStream(1)
	defer st.close()
	if _, err := st.send(op, file, off, data); err != nil {
		return nil, err
	}
	return st.recv(ctx)
}

// StartUpload announces a file of size bytes with SHA-256 sum (hex) and
// returns the upload id. The server reserves size bytes of the quota.
func (c *Conn) StartUpload(ctx context.Context, name string, size int64, sum string) (uint64, error) {
	js, _ := sonic.Marshal(map[string]any{"name": name, "size": size, "sha256": sum})
	a, err := c.fsCall(ctx, frame.FileServerUpload, 0, 0, js)
	if err != nil {
		return 0, err
	}
	return a.FileID(), nil
}

// UploadFrom writes size bytes of r to upload id, from the offset the
// server has, with up to window writes in flight (0: DefaultWindow), and
// returns the file once the server checked its hash. After a lost
// connection, call it again on a new one: it goes on from what the server
// kept.
func (c *Conn) UploadFrom(ctx context.Context, id uint64, r io.ReaderAt, size int64, window int) (FileInfo, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	a, err := c.fsCall(ctx, frame.FileServerUpload, id, 0, nil)
	if err != nil {
		return FileInfo{}, err
	}
	next := int64(a.Offset())
	st := c.newStream(window)
	defer st.close()
	buf := make([]byte, MaxChunk)
	inflight := 0
	if next >= size { // all there: an empty write at the end commits it
		if _, err := st.send(frame.FileServerWrite, id, uint64(next), nil); err != nil {
			return FileInfo{}, err
		}
		inflight++
	}
	for {
		for inflight < window && next < size {
			n := int(min(int64(MaxChunk), size-next))
			if _, err := r.ReadAt(buf[:n], next); err != nil && !errors.Is(err, io.EOF) {
				return FileInfo{}, err
			}
			if _, err := st.send(frame.FileServerWrite, id, uint64(next), buf[:n]); err != nil {
				return FileInfo{}, err
			}
			next += int64(n)
			inflight++
		}
		a, err := st.recv(ctx)
		if err != nil {
			return FileInfo{}, err
		}
		inflight--
		if a.Op() == frame.FileServerDone {
			var fi FileInfo
			if err := sonic.Unmarshal(a.Data(), &fi); err != nil {
				return FileInfo{}, fmt.Errorf("client: file info: %w", err)
			}
			return fi, nil
		}
		if inflight == 0 && next >= size {
			return FileInfo{}, fmt.Errorf("%w: upload %d not finished at %d bytes", ErrProtocol, id, a.Offset())
		}
	}
}

// Upload uploads size bytes of r as a new file named name (hashing r first)
// and returns it.
func (c *Conn) Upload(ctx context.Context, name string, r io.ReaderAt, size int64) (FileInfo, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return FileInfo{}, err
	}
	id, err := c.StartUpload(ctx, name, size, hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		return FileInfo{}, err
	}
	return c.UploadFrom(ctx, id, r, size, 0)
}

// AbortUpload discards an upload and what the server has of it.
func (c *Conn) AbortUpload(ctx context.Context, id uint64) error {
	_, err := c.fsCall(ctx, frame.FileServerAbort, id, 0, nil)
	return err
}

// Stat returns a file the user may read.
func (c *Conn) Stat(ctx context.Context, id uint64) (FileInfo, error) {
	a, err := c.fsCall(ctx, frame.FileServerStat, id, 0, nil)
	if err != nil {
		return FileInfo{}, err
	}
	var fi FileInfo
	return fi, sonic.Unmarshal(a.Data(), &fi)
}

// Download writes n bytes of file id from off to w (n < 0: to the end),
// with up to window reads in flight (0: DefaultWindow), and returns how
// many it wrote.
func (c *Conn) Download(ctx context.Context, id uint64, w io.Writer, off, n int64, window int) (int64, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	fi, err := c.Stat(ctx, id)
	if err != nil {
		return 0, err
	}
	end := fi.Size
	if n >= 0 {
		end = min(end, off+n)
	}
	st := c.newStream(window)
	defer st.close()
	next, written, inflight := off, int64(0), 0
	var ln [4]byte
	for {
		for inflight < window && next < end {
			k := min(int64(MaxChunk), end-next)
			binary.BigEndian.PutUint32(ln[:], uint32(k))
			if _, err := st.send(frame.FileServerRead, id, uint64(next), ln[:]); err != nil {
				return written, err
			}
			next += k
			inflight++
		}
		if inflight == 0 {
			return written, nil
		}
		a, err := st.recv(ctx)
		if err != nil {
			return written, err
		}
		inflight--
		if int64(a.Offset()) != off+written {
			return written, fmt.Errorf("%w: read answer at %d, want %d", ErrProtocol, a.Offset(), off+written)
		}
		m, err := w.Write(a.Data())
		written += int64(m)
		if err != nil {
			return written, err
		}
		if len(a.Data()) == 0 && inflight == 0 && off+written < end {
			return written, fmt.Errorf("%w: file ended at %d", ErrProtocol, off+written)
		}
	}
}

// DeleteFile deletes one of the user's files.
func (c *Conn) DeleteFile(ctx context.Context, id uint64) error {
	_, err := c.fsCall(ctx, frame.FileServerDelete, id, 0, nil)
	return err
}

// ListFiles returns the user's files, usage and quota.
func (c *Conn) ListFiles(ctx context.Context) (FileList, error) {
	a, err := c.fsCall(ctx, frame.FileServerList, 0, 0, nil)
	if err != nil {
		return FileList{}, err
	}
	var l FileList
	return l, sonic.Unmarshal(a.Data(), &l)
}

// ShareFile lets a friend (user) or the members of a group the owner is in
// (group) read file id; set one of the two. UnshareFile undoes it.
func (c *Conn) ShareFile(ctx context.Context, id, user, group uint64) error {
	return c.share(ctx, frame.FileServerShare, id, user, group)
}

// UnshareFile removes a share made by ShareFile.
func (c *Conn) UnshareFile(ctx context.Context, id, user, group uint64) error {
	return c.share(ctx, frame.FileServerUnshare, id, user, group)
}

func (c *Conn) share(ctx context.Context, op byte, id, user, group uint64) error {
	js, _ := sonic.Marshal(map[string]uint64{"user": user, "group": group})
	if user == 0 {
		js, _ = sonic.Marshal(map[string]uint64{"group": group})
	} else if group == 0 {
		js, _ = sonic.Marshal(map[string]uint64{"user": user})
	}
	_, err := c.fsCall(ctx, op, id, 0, js)
	return err
}
