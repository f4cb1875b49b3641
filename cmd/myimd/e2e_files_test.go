package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// genFile is size bytes of reproducible pseudo-random content, generated on
// demand so that a large file needs neither memory nor disk in the test.
type genFile struct {
	seed uint64
	size int64
}

func splitmix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}

func (g genFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= g.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), g.size-off))
	var w [8]byte
	for i := 0; i < n; {
		pos := off + int64(i)
		binary.LittleEndian.PutUint64(w[:], splitmix(g.seed^uint64(pos/8)))
		i += copy(p[i:n], w[pos%8:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (g genFile) sum(t testing.TB) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(g, 0, g.size)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashSink counts and hashes what is written to it.
type hashSink struct {
	mu sync.Mutex
	n  int64
	hh interface {
		io.Writer
		Sum([]byte) []byte
	}
	after func(n int64) // called after each write
}

func newSink() *hashSink { return &hashSink{hh: sha256.New()} }

func (s *hashSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.hh.Write(p)
	s.n += int64(len(p))
	n := s.n
	s.mu.Unlock()
	if s.after != nil {
		s.after(n)
	}
	return len(p), nil
}

func (s *hashSink) sum() string { return hex.EncodeToString(s.hh.Sum(nil)) }

// rssMonitor samples a process's resident memory until stopped.
type rssMonitor struct {
	stop chan struct{}
	done chan struct{}
	peak int
}

func watchRSS(t testing.TB, p *proc) *rssMonitor {
	m := &rssMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			if kb := p.rssKB(t); kb > m.peak {
				m.peak = kb
			}
			select {
			case <-m.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return m
}

func (m *rssMonitor) end() int {
	close(m.stop)
	<-m.done
	return m.peak
}

// vmHWM is the process's peak resident memory since it started, in KiB.
func (p *proc) vmHWM(t testing.TB) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// recvOffer waits for a FILE OFFER on c.
func recvOffer(t testing.TB, c *client.Conn) client.Offer {
	t.Helper()
	f := recvCmd(t, c, frame.CmdFile)
	o, err := client.ParseOffer(f)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// wantServerErr checks that err is an ERROR with code and text containing
// want.
func wantServerErr(t testing.TB, err error, code uint16, want string) {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != code || !strings.Contains(se.Text, want) {
		t.Fatalf("got %v, want server error %d %q", err, code, want)
	}
}

// TestFileLargeFlatRSS sends bigFile bytes from alice to bob, then uploads
// and downloads them through the file server, watching myimd's memory.
func TestFileLargeFlatRSS(t *testing.T) {
	p := startMyimd(t, "--loops", "2")
	p.register(t, "alice", "password-alice")
	p.register(t, "bob", "password-bob")
	alice := p.connect(t, "alice", newDevice(t))
	bob := p.connect(t, "bob", newDevice(t))
	src := genFile{seed: 42, size: bigFile}
	sum := src.sum(t)
	ctx := ctxT(t, 10*time.Minute)
	report := func(what string, start time.Time, before int, mon *rssMonitor) {
		peak := mon.end()
		after := p.rssKB(t)
		secs := time.Since(start).Seconds()
		t.Logf("%s: %d MiB in %.1fs, %.0f MB/s; myimd RSS before %d KiB, after %d KiB, peak %d KiB (VmHWM %d KiB)",
			what, src.size>>20, secs, float64(src.size)/secs/1e6, before, after, peak, p.vmHWM(t))
		if grow := peak - before; grow > 128<<10 {
			t.Errorf("%s: RSS grew by %d KiB", what, grow)
		}
	}

	before, mon, start := p.rssKB(t), watchRSS(t, p), time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := alice.conn.SendFile(ctx, bob.id, "big.bin", src, src.size, client.SendOptions{SHA256: sum})
		errc <- err
	}()
	o := recvOffer(t, bob.conn)
	if o.Name != "big.bin" || o.Size != src.size || o.SHA256 != sum || o.From != alice.id {
		t.Fatalf("offer %+v", o)
	}
	sink := newSink()
	if err := bob.conn.ReceiveFile(ctx, o, sink, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if sink.n != src.size || sink.sum() != sum {
		t.Fatalf("received %d bytes, hash %s", sink.n, sink.sum())
	}
	report("user to user", start, before, mon)

	before, mon, start = p.rssKB(t), watchRSS(t, p), time.Now()
	id, err := alice.conn.StartUpload(ctx, "big.bin", src.size, sum)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := alice.conn.UploadFrom(ctx, id, src, src.size, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != src.size || fi.SHA256 != sum {
		t.Fatalf("uploaded %+v", fi)
	}
	report("upload", start, before, mon)

	before, mon, start = p.rssKB(t), watchRSS(t, p), time.Now()
	sink = newSink()
	if n, err := alice.conn.Download(ctx, fi.ID, sink, 0, -1, 0); err != nil || n != src.size || sink.sum() != sum {
		t.Fatalf("download: %d bytes, %v, hash %s", n, err, sink.sum())
	}
	report("download", start, before, mon)
}

// TestFileTransferResume kills each side's connection in turn mid-transfer;
// the transfer goes on from where the receiver got to.
func TestFileTransferResume(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "alice", "password-alice")
	p.register(t, "bob", "password-bob")
	aliceDev, bobDev := newDevice(t), newDevice(t)
	alice := p.connect(t, "alice", aliceDev)
	bob := p.connect(t, "bob", bobDev)
	src := genFile{seed: 7, size: 8<<20 + 12345}
	sum := src.sum(t)
	ctx := ctxT(t, 2*time.Minute)

	var xfer uint64
	sendErr := make(chan error, 1)
	send := func(c *client.Conn) {
		_, err := c.SendFile(ctx, bob.id, "r.bin", src, src.size, client.SendOptions{SHA256: sum, Xfer: xfer,
			Chunk: 64 << 10, Started: func(x uint64) { xfer = x }})
		sendErr <- err
	}
	go send(alice.conn)
	o := recvOffer(t, bob.conn)

	// 1. The receiver's connection dies after 2 MiB.
	st := &client.RecvState{}
	sink := newSink()
	first := bob.conn
	sink.after = func(n int64) {
		if n >= 2<<20 {
			sink.after = nil
			first.Close()
		}
	}
	if err := first.ReceiveFile(ctx, o, sink, st); err == nil {
		t.Fatal("receive survived its connection")
	}
	got := st.Offset
	bob = p.connect(t, "bob", bobDev)

	// 2. The sender's connection dies once the resumed receiver has 5 MiB.
	recvErr := make(chan error, 1)
	sink.after = func(n int64) {
		if n >= 5<<20 {
			sink.after = nil
			alice.conn.Close()
		}
	}
	go func() { recvErr <- bob.conn.ReceiveFile(ctx, o, sink, st) }()
	if err := <-sendErr; err == nil {
		t.Fatal("send survived its connection")
	}
	alice = p.connect(t, "alice", aliceDev)
	go send(alice.conn)
	if err := <-recvErr; err != nil {
		t.Fatalf("resumed receive: %v", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatalf("resumed send: %v", err)
	}
	if sink.n != src.size || sink.sum() != sum {
		t.Fatalf("got %d bytes (first part %d), hash %s", sink.n, got, sink.sum())
	}

	// An upload resumes too, on a new connection, from what the server kept.
	id, err := alice.conn.StartUpload(ctx, "u.bin", src.size, sum)
	if err != nil {
		t.Fatal(err)
	}
	cut := &cutReader{r: src, at: 3 << 20, cut: alice.conn.Close}
	if _, err := alice.conn.UploadFrom(ctx, id, cut, src.size, 0); err == nil {
		t.Fatal("upload survived its connection")
	}
	alice = p.connect(t, "alice", aliceDev)
	fi, err := alice.conn.UploadFrom(ctx, id, src, src.size, 0)
	if err != nil || fi.SHA256 != sum || fi.Size != src.size {
		t.Fatalf("resumed upload: %+v %v", fi, err)
	}
	sink = newSink()
	if _, err := alice.conn.Download(ctx, fi.ID, sink, 0, -1, 0); err != nil || sink.sum() != sum {
		t.Fatalf("download after resumed upload: %v", err)
	}
}

// cutReader calls cut once a read reaches at.
type cutReader struct {
	r    io.ReaderAt
	at   int64
	once sync.Once
	cut  func() error
}

func (c *cutReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.at {
		c.once.Do(func() { _ = c.cut() })
	}
	return c.r.ReadAt(p, off)
}

// TestFileOfferWaitsOffline: an offer to an offline user is stored like a
// message and comes back as a FILE frame when the user fetches.
func TestFileOfferWaitsOffline(t *testing.T) {
	p := startMyimd(t)
	p.register(t, "alice", "password-alice")
	p.register(t, "bob", "password-bob")
	alice := p.connect(t, "alice", newDevice(t))
	ctx := ctxT(t, time.Minute)
	src := genFile{seed: 3, size: 300 << 10}
	var bobUserID uint64
	{
		b := p.connect(t, "bob", newDevice(t))
		bobUserID = b.id
		b.conn.Close()
	}
	time.Sleep(100 * time.Millisecond)
	errc := make(chan error, 1)
	go func() {
		_, err := alice.conn.SendFile(ctx, bobUserID, "later.txt", src, src.size, client.SendOptions{})
		errc <- err
	}()
	a := frame.Ack(recvCmd(t, alice.conn, frame.CmdAck).Body)
	if a.Status() != frame.AckStored {
		t.Fatalf("offer to an offline user: ack status %d", a.Status())
	}
	bob := p.connect(t, "bob", newDevice(t))
	if _, err := bob.conn.Fetch(frame.FetchP2P, 0, 10); err != nil {
		t.Fatal(err)
	}
	o := recvOffer(t, bob.conn)
	if o.Name != "later.txt" || o.From != alice.id {
		t.Fatalf("offer %+v", o)
	}
	sink := newSink()
	if err := bob.conn.ReceiveFile(ctx, o, sink, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil || sink.n != src.size {
		t.Fatalf("send: %v, %d bytes", err, sink.n)
	}
	// The offer was acked on receipt: it leaves the store.
	testenv.WaitFor(t, 10*time.Second, "offer deleted once acked", func() bool {
		req, _ := bob.conn.Fetch(frame.FetchP2P, 0, 10)
		for {
			f := recvCmd(t, bob.conn, frame.CmdFetch)
			if fe := frame.Fetch(f.Body); fe.Req() == req {
				return fe.Count() == 0
			}
		}
	})
}

// sendRaw sends one FILE frame from u.
func sendRaw(t testing.TB, u *user, to uint64, cid uint64, op byte, xfer, off uint64, data []byte) {
	t.Helper()
	b := frame.AppendMsgHeader(nil, frame.MsgHeader{From: u.id, To: to, Time: time.Now().UnixMilli(), CID: cid})
	b = append(b, op)
	b = binary.BigEndian.AppendUint64(b, xfer)
	b = binary.BigEndian.AppendUint64(b, off)
	if err := u.conn.Send(frame.CmdFile, frame.QoS0, append(b, data...)); err != nil {
		t.Fatal(err)
	}
}

func recvErr(t testing.TB, u *user) *client.ServerError {
	t.Helper()
	return client.ParseServerError(recvCmd(t, u.conn, frame.CmdError)).(*client.ServerError)
}

// TestFileTransferBadInput: each misuse of a transfer gets a clear ERROR.
func TestFileTransferBadInput(t *testing.T) {
	p := startMyimd(t, "--xfer-idle", "1s")
	p.register(t, "alice", "password-alice")
	p.register(t, "bob", "password-bob")
	alice := p.connect(t, "alice", newDevice(t))
	bob := p.connect(t, "bob", newDevice(t))
	const chunk = 1024
	offer := func(xfer uint64, size int) {
		js, _ := sonic.Marshal(map[string]any{"name": "f", "size": size, "sha256": strings.Repeat("ab", 32), "chunk": chunk})
		sendRaw(t, alice, bob.id, 0, frame.FileOffer, xfer, 0, js)
		recvCmd(t, bob.conn, frame.CmdFile)
		sendRaw(t, bob, alice.id, 0, frame.FileAccept, xfer, 0, nil)
		f := frame.File(recvCmd(t, alice.conn, frame.CmdFile).Body)
		if f.Op() != frame.FileAccept {
			t.Fatalf("want ACCEPT, got op %d", f.Op())
		}
	}
	data := bytes.Repeat([]byte{1}, chunk)

	sendRaw(t, alice, bob.id, 11, frame.FileChunk, 999, 0, data)
	if e := recvErr(t, alice); e.Code != frame.ErrCodeNotFound || e.Ref != 11 || !strings.Contains(e.Text, "unknown transfer") {
		t.Fatalf("unknown transfer: %+v", e)
	}
	sendRaw(t, alice, bob.id, 12, frame.FileOffer, 5, 0, []byte(`{"name":"x","size":10,"sha256":"zz","chunk":1}`))
	wantServerErr(t, recvErr(t, alice), frame.ErrCodeBadRequest, "sha256")
	sendRaw(t, alice, bob.id, 13, frame.FileOffer, 5, 0, []byte(`{"name":"x","size":10,"sha256":"`+strings.Repeat("0", 64)+`","chunk":300000}`))
	wantServerErr(t, recvErr(t, alice), frame.ErrCodeBadRequest, "chunk must be")

	offer(1, 100*chunk)
	sendRaw(t, alice, bob.id, 14, frame.FileChunk, 1, 5, data)
	wantServerErr(t, recvErr(t, alice), frame.ErrCodeBadRequest, "wrong offset 5")
	for i := 0; i < 8; i++ { // the server's window
		sendRaw(t, alice, bob.id, 0, frame.FileChunk, 1, uint64(i*chunk), data)
	}
	sendRaw(t, alice, bob.id, 15, frame.FileChunk, 1, 8*chunk, data)
	if e := recvErr(t, alice); e.Ref != 15 || !strings.Contains(e.Text, "chunk out of window") {
		t.Fatalf("out of window: %+v", e)
	}
	sendRaw(t, bob, alice.id, 16, frame.FileChunkAck, 1, 20*chunk, nil)
	wantServerErr(t, recvErr(t, bob), frame.ErrCodeBadRequest, "wrong offset")
	sendRaw(t, bob, alice.id, 17, frame.FileDone, 1, 0, []byte(strings.Repeat("ab", 32)))
	wantServerErr(t, recvErr(t, bob), frame.ErrCodeBadRequest, "incomplete")

	// Abandoned half way: no progress for --xfer-idle, both sides hear it.
	if e := recvErr(t, alice); e.Code != frame.ErrCodeIdle || e.Ref != 1 || !strings.Contains(e.Text, "abandoned") {
		t.Fatalf("abandoned, sender: %+v", e)
	}
	if e := recvErr(t, bob); e.Code != frame.ErrCodeIdle || e.Ref != 1 {
		t.Fatalf("abandoned, receiver: %+v", e)
	}
	sendRaw(t, alice, bob.id, 18, frame.FileChunk, 1, 8*chunk, data)
	wantServerErr(t, recvErr(t, alice), frame.ErrCodeNotFound, "unknown transfer")

	// A chunk for a receiver that went away is refused, not stored.
	offer(2, 10*chunk)
	bob.conn.Close()
	time.Sleep(200 * time.Millisecond)
	sendRaw(t, alice, bob.id, 19, frame.FileChunk, 2, 0, data)
	for {
		e := recvErr(t, alice)
		if e.Ref == 19 {
			wantServerErr(t, e, frame.ErrCodeRetry, "transfer 2")
			break
		}
		wantServerErr(t, e, frame.ErrCodeRetry, "receiver offline")
	}

	// Content that does not match the offered hash fails on both sides.
	bob = p.connect(t, "bob", newDevice(t))
	ctx := ctxT(t, time.Minute)
	src := genFile{seed: 1, size: 100 << 10}
	errc := make(chan error, 1)
	go func() {
		_, err := alice.conn.SendFile(ctx, bob.id, "bad", src, src.size, client.SendOptions{SHA256: strings.Repeat("00", 32)})
		errc <- err
	}()
	o := recvOffer(t, bob.conn)
	if err := bob.conn.ReceiveFile(ctx, o, newSink(), nil); !errors.Is(err, client.ErrHashMismatch) {
		t.Fatalf("receiver: %v", err)
	}
	if err := <-errc; !errors.Is(err, client.ErrHashMismatch) {
		t.Fatalf("sender: %v", err)
	}
	// A rejected offer ends the send.
	go func() {
		_, err := alice.conn.SendFile(ctx, bob.id, "no", src, src.size, client.SendOptions{})
		errc <- err
	}()
	if err := bob.conn.RejectFile(recvOffer(t, bob.conn)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, client.ErrRejected) {
		t.Fatalf("rejected: %v", err)
	}
}

// httpCall does an HTTP request with a bearer token and optional headers.
func (p *proc) httpCall(t testing.TB, method, path, token string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+p.addrs["http"]+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestFileServer covers the file server's rules: quota, size cap, hash
// check, ownership and shares, deduplication, abandoned uploads and HTTP.
func TestFileServer(t *testing.T) {
	p := startMyimd(t, "--file-quota", "3000000", "--max-file-size", "2000000", "--upload-timeout", "1s")
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		p.register(t, n, "password-"+n)
	}
	alice := p.connect(t, "alice", newDevice(t))
	bob := p.connect(t, "bob", newDevice(t))
	carol := p.connect(t, "carol", newDevice(t))
	dave := p.connect(t, "dave", newDevice(t))
	ctx := ctxT(t, time.Minute)
	src := genFile{seed: 9, size: 1_000_000}
	sum := src.sum(t)

	// Size cap, quota, bad hash, wrong offset.
	_, err := alice.conn.StartUpload(ctx, "huge", 2_000_001, sum)
	wantServerErr(t, err, frame.ErrCodeBadRequest, "file too large")
	fi, err := alice.conn.Upload(ctx, "a.bin", src, src.size)
	if err != nil || fi.SHA256 != sum {
		t.Fatalf("upload: %+v %v", fi, err)
	}
	id, err := alice.conn.StartUpload(ctx, "b.bin", src.size, strings.Repeat("00", 32))
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.conn.StartUpload(ctx, "c.bin", src.size+1, sum)
	wantServerErr(t, err, frame.ErrCodeForbidden, "over quota")
	_, err = alice.conn.UploadFrom(ctx, id, src, src.size, 0)
	wantServerErr(t, err, frame.ErrCodeBadRequest, "hash mismatch")
	_, err = alice.conn.UploadFrom(ctx, id, src, src.size, 0)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such upload")
	l, err := alice.conn.ListFiles(ctx)
	if err != nil || len(l.Files) != 1 || l.Used != src.size || l.Quota != 3000000 {
		t.Fatalf("list after a bad upload: %+v %v", l, err)
	}
	id, _ = alice.conn.StartUpload(ctx, "d.bin", 10, sum)
	b := make([]byte, 0, 64)
	b = binary.BigEndian.AppendUint32(b, 77)
	b = append(b, frame.FileServerWrite)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint64(b, 4)
	_ = alice.conn.Send(frame.CmdFileServer, frame.QoS0, append(b, "xyz"...))
	if e := recvErr(t, alice); e.Ref != 77 || !strings.Contains(e.Text, "wrong offset 4") {
		t.Fatalf("wrong offset: %+v", e)
	}
	// Abandoned: after --upload-timeout without writes it is gone, and its
	// reservation with it.
	testenv.WaitFor(t, 10*time.Second, "abandoned upload discarded", func() bool {
		l, _ := alice.conn.ListFiles(ctx)
		return l.Used == src.size
	})
	err = alice.conn.AbortUpload(ctx, id)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such upload")

	// Unknown and foreign ids; shares with a friend and a group.
	_, err = alice.conn.Stat(ctx, 424242)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such file")
	_, err = bob.conn.Download(ctx, fi.ID, newSink(), 0, -1, 0)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such file")
	err = bob.conn.DeleteFile(ctx, fi.ID)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such file")
	err = alice.conn.ShareFile(ctx, fi.ID, bob.id, 0)
	wantServerErr(t, err, frame.ErrCodeForbidden, "not a friend")
	if code, body := p.post(t, "/v1/friends/requests", alice.login.Token, fmt.Sprintf(`{"to":%d}`, bob.id)); code != http.StatusAccepted {
		t.Fatalf("friend request: %d %s", code, body)
	}
	if code, body := p.post(t, "/v1/friends/accept", bob.login.Token, fmt.Sprintf(`{"from":%d}`, alice.id)); code != http.StatusOK {
		t.Fatalf("friend accept: %d %s", code, body)
	}
	if err := alice.conn.ShareFile(ctx, fi.ID, bob.id, 0); err != nil {
		t.Fatal(err)
	}
	sink := newSink()
	if n, err := bob.conn.Download(ctx, fi.ID, sink, 0, -1, 0); err != nil || n != src.size || sink.sum() != sum {
		t.Fatalf("shared download: %d %v", n, err)
	}
	err = bob.conn.DeleteFile(ctx, fi.ID)
	wantServerErr(t, err, frame.ErrCodeForbidden, "only the owner")
	_, body := p.post(t, "/v1/groups", alice.login.Token, `{"name":"g"}`)
	var g struct {
		ID uint64 `json:"group"`
	}
	_ = sonic.Unmarshal(body, &g)
	if code, body := p.post(t, fmt.Sprintf("/v1/groups/%d/invite", g.ID), alice.login.Token,
		fmt.Sprintf(`{"user":%d}`, carol.id)); code != http.StatusOK {
		t.Fatalf("invite: %d %s", code, body)
	}
	err = bob.conn.ShareFile(ctx, fi.ID, 0, g.ID)
	wantServerErr(t, err, frame.ErrCodeForbidden, "only the owner")
	if err := alice.conn.ShareFile(ctx, fi.ID, 0, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.conn.Stat(ctx, fi.ID); err != nil {
		t.Fatalf("group member: %v", err)
	}
	_, err = dave.conn.Stat(ctx, fi.ID)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such file")
	// Ranges.
	var part bytes.Buffer
	if n, err := carol.conn.Download(ctx, fi.ID, &part, 999_990, 100, 0); err != nil || n != 10 {
		t.Fatalf("range at the end: %d %v", n, err)
	}
	want := make([]byte, 10)
	_, _ = src.ReadAt(want, 999_990)
	if !bytes.Equal(part.Bytes(), want) {
		t.Fatal("range bytes differ")
	}

	// Same content from two users is stored once; deleting is safe.
	fb, err := bob.conn.Upload(ctx, "copy.bin", src, src.size)
	if err != nil {
		t.Fatal(err)
	}
	blobs := func() int {
		n := 0
		_ = filepath.Walk(filepath.Join(p.dir, "files", "blobs"), func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	if n := blobs(); n != 1 {
		t.Fatalf("%d blobs for one content", n)
	}
	if err := alice.conn.DeleteFile(ctx, fi.ID); err != nil {
		t.Fatal(err)
	}
	_, err = carol.conn.Stat(ctx, fi.ID)
	wantServerErr(t, err, frame.ErrCodeNotFound, "no such file")
	sink = newSink()
	if _, err := bob.conn.Download(ctx, fb.ID, sink, 0, -1, 0); err != nil || sink.sum() != sum {
		t.Fatalf("the other copy after delete: %v", err)
	}
	if err := bob.conn.DeleteFile(ctx, fb.ID); err != nil {
		t.Fatal(err)
	}
	if n := blobs(); n != 0 {
		t.Fatalf("%d blobs left after deleting every file", n)
	}

	// HTTP: PUT with the session token, GET with Range, others refused.
	content := make([]byte, 300_000)
	_, _ = src.ReadAt(content, 0)
	hs := sha256.Sum256(content)
	resp, body := p.httpCall(t, "PUT", "/v1/files?name=h.bin&sha256="+hex.EncodeToString(hs[:]), alice.login.Token,
		bytes.NewReader(content), nil)
	var hf client.FileInfo
	if resp.StatusCode != http.StatusCreated || sonic.Unmarshal(body, &hf) != nil || hf.Size != int64(len(content)) {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	resp, body = p.httpCall(t, "GET", fmt.Sprintf("/v1/files/%d", hf.ID), alice.login.Token, nil, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, content[1000:2000]) {
		t.Fatalf("GET range: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ := p.httpCall(t, "GET", fmt.Sprintf("/v1/files/%d", hf.ID), dave.login.Token, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("foreign GET: %d", resp.StatusCode)
	}
	if resp, _ := p.httpCall(t, "GET", fmt.Sprintf("/v1/files/%d", hf.ID), "nonsense", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without a valid token: %d", resp.StatusCode)
	}
	resp, body = p.httpCall(t, "PUT", "/v1/files?name=bad&sha256="+strings.Repeat("00", 32), alice.login.Token, bytes.NewReader(content), nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "hash mismatch") {
		t.Fatalf("PUT with a wrong hash: %d %s", resp.StatusCode, body)
	}
	// Over frames, the HTTP upload reads back the same.
	sink = newSink()
	if _, err := alice.conn.Download(ctx, hf.ID, sink, 0, -1, 0); err != nil || sink.sum() != hex.EncodeToString(hs[:]) {
		t.Fatalf("download of the HTTP upload: %v", err)
	}
}
