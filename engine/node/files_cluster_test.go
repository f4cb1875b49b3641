package node_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/link"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route"
	"github.com/myim/myim/route/redis"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/bolt"
)

// User-to-user file transfer between users of two centers, driven by the
// SDK: two clustered LocalCenters in process, each with an endpoint server
// that clients dial, sharing one store and one Redis route table.

// xferWindow is both the server's and the SDK's window in these tests, so
// that a chunk the server did not see acked across the centers is refused.
const (
	xferWindow = 4
	xferChunk  = 64 << 10
)

type xferCluster struct {
	st      storage.Store
	id      *clusterca.Identity
	dev     *ecdh.PrivateKey
	routes  route.Table // the test's own client, to watch the routes
	centers [2]*center.LocalCenter
	srvs    [2]*engine.Server
}

// startXferCluster starts centers 1 and 2, each with endpoint server 1 or
// 2, and waits until they are linked.
func startXferCluster(t *testing.T) *xferCluster {
	t.Helper()
	addr := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t, addr)
	dir := t.TempDir()
	st, err := bolt.Open(bolt.Config{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id, err := clusterca.LoadIdentity(dir, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := session.NewStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	table := func() route.Table {
		r, err := redis.New(redis.Options{Addr: addr, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() }) // after the center using it: cleanups run last first
		return r
	}
	xc := &xferCluster{st: st, id: id, dev: dev, routes: table()}
	lc := link.Config{Plaintext: true, Secret: []byte("test link secret, 32 bytes long!"), HeartbeatInterval: 100 * time.Millisecond}
	for i := range xc.centers {
		cid := uint32(i + 1)
		routes := table()
		c := center.NewLocalCenter(center.Config{ID: cid, Store: st,
			Files: center.FilesConfig{Window: xferWindow},
			Cluster: &center.ClusterConfig{Routes: routes, Link: lc,
				PeerInterval: 50 * time.Millisecond, RefreshInterval: 100 * time.Millisecond}})
		ls, err := center.NewLinkServer(center.LinkServerConfig{Addr: "127.0.0.1:0", Center: c, Link: lc})
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ls.Close(); c.Close() })
		if err := routes.RegisterServer(context.Background(), center.CenterServer(cid, ls.Addr().String()), time.Minute); err != nil {
			t.Fatal(err)
		}
		// Registered after the center's cleanup, so stopped before it: the
		// sessions go offline at a running center.
		xc.srvs[i] = startServer(t, endpoint.New(endpoint.Config{ID: cid, Identity: id, Center: c}))
		xc.centers[i] = c
	}
	eventually(t, 10*time.Second, func() bool { return xc.centers[0].PeersUp() == 1 && xc.centers[1].PeersUp() == 1 })
	return xc
}

func (xc *xferCluster) user(t *testing.T, name string) uint64 {
	t.Helper()
	u, err := xc.st.CreateUser(context.Background(), storage.User{Name: name, PassHash: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// connect dials user at center i's endpoint and waits until the cluster's
// route table shows the new session.
func (xc *xferCluster) connect(t *testing.T, user uint64, i int) *client.Conn {
	t.Helper()
	tok, err := session.IssueToken(xc.id.TokenKey, session.TokenRequest{UserID: user, Audience: xc.id.Audience,
		DeviceKey: xc.dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), client.Config{Device: xc.dev, AutoAck: true},
		xc.srvs[i].Addr().String(), xc.id.Static.PublicKey().Bytes(), tok)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	roundTrip(t, c)
	eventually(t, 10*time.Second, func() bool {
		as, err := xc.routes.Get(context.Background(), user)
		if err != nil {
			return false
		}
		for _, a := range as {
			if a.Center == uint32(i+1) {
				return true
			}
		}
		return false
	})
	return c
}

// waitOffer returns the next file offer c receives.
func waitOffer(t *testing.T, c *client.Conn) client.Offer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Recv(ctx, func(f client.Frame) bool {
		return f.Cmd == frame.CmdFile && frame.File(f.Body).Op() == frame.FileOffer
	})
	if err != nil {
		t.Fatalf("user %d waiting for an offer: %v", c.UserID(), err)
	}
	o, err := client.ParseOffer(f)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// watchedReader is a file whose reads are recorded: high is the end of the
// furthest read so far. hook, if set, is called before each read.
type watchedReader struct {
	r    *bytes.Reader
	high atomic.Int64
	hook func(off int64)
}

func (w *watchedReader) ReadAt(p []byte, off int64) (int, error) {
	if w.hook != nil {
		w.hook(off)
	}
	n, err := w.r.ReadAt(p, off)
	for end := off + int64(n); ; {
		h := w.high.Load()
		if end <= h || w.high.CompareAndSwap(h, end) {
			break
		}
	}
	return n, err
}

// gatedSink hashes what it is given. Before each write it checks that the
// sender has read no further than the window allows past what arrived,
// and it calls hook (if set) with the bytes written before that write.
type gatedSink struct {
	src  *watchedReader
	mu   sync.Mutex
	n    int64
	h    hash.Hash
	hook func(written int64)
	bad  atomic.Value // string: the first window violation
}

func newGatedSink(src *watchedReader) *gatedSink {
	return &gatedSink{src: src, h: sha256.New()}
}

func (s *gatedSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	written := s.n
	s.mu.Unlock()
	// The sender's acked bytes never exceed what arrived here, and it
	// reads at most window chunks past them.
	if high := s.src.high.Load(); high > written+xferWindow*xferChunk && s.bad.Load() == nil {
		s.bad.Store("sender read to " + strconv.FormatInt(high, 10) + " with " + strconv.FormatInt(written, 10) + " bytes received")
	}
	if s.hook != nil {
		s.hook(written)
	}
	s.mu.Lock()
	s.h.Write(p)
	s.n += int64(len(p))
	s.mu.Unlock()
	return len(p), nil
}

func (s *gatedSink) digest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return hex.EncodeToString(s.h.Sum(nil))
}

// pseudoRandom returns n reproducible bytes.
func pseudoRandom(n int) []byte {
	b := make([]byte, n)
	var x uint64 = 0x9E3779B97F4A7C15
	for i := 0; i < n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		copy(b[i:], w[:])
	}
	return b
}

// TestFileTransferAcrossCenters sends a file from a user of center 1 to a
// user of center 2. The receiver is slow for a while (the sender must stay
// within the window of what crossed back as acks), then drops twice and
// resumes: first on center 2 again, then on center 1, the sender's own.
func TestFileTransferAcrossCenters(t *testing.T) {
	xc := startXferCluster(t)
	alice, bob := xc.user(t, "alice"), xc.user(t, "bob")
	ca := xc.connect(t, alice, 0)
	cb := xc.connect(t, bob, 1)

	data := pseudoRandom(4<<20 + 1234)
	src := &watchedReader{r: bytes.NewReader(data)}
	want := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := ca.SendFile(ctx, bob, "across.bin", src, int64(len(data)),
			client.SendOptions{Chunk: xferChunk, Window: xferWindow, SHA256: hex.EncodeToString(want[:])})
		sent <- err
	}()
	o := waitOffer(t, cb)
	if o.From != alice || o.Name != "across.bin" || o.Size != int64(len(data)) || o.SHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("offer %+v", o)
	}

	sink := newGatedSink(src)
	var (
		slowDone atomic.Bool
		drops    atomic.Int32
		conn     atomic.Pointer[client.Conn]
	)
	conn.Store(cb)
	sink.hook = func(written int64) {
		switch {
		case written >= 512<<10 && !slowDone.Load():
			// A slow receiver: hold this write until the sender has used
			// its whole window, and a moment longer, in which it must not
			// read on.
			slowDone.Store(true)
			deadline := time.Now().Add(10 * time.Second)
			for src.high.Load() < written+xferWindow*xferChunk && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
		case written >= 1536<<10 && drops.Load() == 0, written >= 3<<20 && drops.Load() == 1:
			drops.Add(1)
			conn.Load().Close() // the receiver's connection drops mid-transfer
		}
	}
	st := &client.RecvState{}
	if err := cb.ReceiveFile(ctx, o, sink, st); err == nil {
		t.Fatal("first receive: no error after its connection closed")
	}
	if st.Offset < 1536<<10 {
		t.Fatalf("first receive stopped at %d", st.Offset)
	}
	// Back on center 2: the transfer goes on where it stopped.
	cb2 := xc.connect(t, bob, 1)
	conn.Store(cb2)
	if err := cb2.ReceiveFile(ctx, o, sink, st); err == nil {
		t.Fatal("second receive: no error after its connection closed")
	}
	// Now on center 1, where the transfer is held.
	cb3 := xc.connect(t, bob, 0)
	conn.Store(cb3)
	if err := cb3.ReceiveFile(ctx, o, sink, st); err != nil {
		t.Fatalf("third receive: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := sink.digest(); got != hex.EncodeToString(want[:]) {
		t.Fatalf("received hash %s, sent %x", got, want)
	}
	if drops.Load() != 2 || st.Offset != int64(len(data)) {
		t.Fatalf("drops %d, offset %d", drops.Load(), st.Offset)
	}
	if bad := sink.bad.Load(); bad != nil {
		t.Fatalf("window not held across centers: %s", bad)
	}
}

// TestFileSenderResumesAcrossCenters: the sender's connection drops
// mid-transfer; back on its center, it offers the same transfer again,
// which reaches the receiver on the other center, and the transfer goes on.
func TestFileSenderResumesAcrossCenters(t *testing.T) {
	xc := startXferCluster(t)
	alice, bob := xc.user(t, "alice"), xc.user(t, "bob")
	ca := xc.connect(t, alice, 0)
	cb := xc.connect(t, bob, 1)

	data := pseudoRandom(2<<20 + 77)
	sum := sha256.Sum256(data)
	src := &watchedReader{r: bytes.NewReader(data)}
	var dropped atomic.Bool
	src.hook = func(off int64) {
		if off >= 1<<20 && !dropped.Swap(true) {
			ca.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	received := make(chan error, 1)
	sink := newGatedSink(src)
	go func() {
		o, err := cb.Recv(ctx, func(f client.Frame) bool {
			return f.Cmd == frame.CmdFile && frame.File(f.Body).Op() == frame.FileOffer
		})
		if err == nil {
			var offer client.Offer
			if offer, err = client.ParseOffer(o); err == nil {
				err = cb.ReceiveFile(ctx, offer, sink, nil)
			}
		}
		received <- err
	}()
	var xfer uint64
	opt := client.SendOptions{Chunk: xferChunk, Window: xferWindow, SHA256: hex.EncodeToString(sum[:]),
		Started: func(x uint64) { xfer = x }}
	if _, err := ca.SendFile(ctx, bob, "resumed.bin", src, int64(len(data)), opt); err == nil {
		t.Fatal("send: no error after its connection closed")
	}
	ca2 := xc.connect(t, alice, 0)
	opt.Xfer = xfer
	if _, err := ca2.SendFile(ctx, bob, "resumed.bin", src, int64(len(data)), opt); err != nil {
		t.Fatalf("resumed send: %v", err)
	}
	if err := <-received; err != nil {
		t.Fatalf("receive: %v", err)
	}
	if got := sink.digest(); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("received hash %s, sent %x", got, sum)
	}
}

// TestFileRejectAndUnknownAcrossCenters: a REJECT from a user of center 2
// reaches the sender on center 1, and a control frame for a transfer that
// no center holds is answered "unknown transfer", whether its other party
// is online elsewhere or nowhere.
func TestFileRejectAndUnknownAcrossCenters(t *testing.T) {
	xc := startXferCluster(t)
	alice, bob := xc.user(t, "alice"), xc.user(t, "bob")
	ca := xc.connect(t, alice, 0)
	cb := xc.connect(t, bob, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	data := pseudoRandom(100 << 10)
	sent := make(chan error, 1)
	go func() {
		_, err := ca.SendFile(ctx, bob, "no.bin", bytes.NewReader(data), int64(len(data)), client.SendOptions{})
		sent <- err
	}()
	if err := cb.RejectFile(waitOffer(t, cb)); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; !errors.Is(err, client.ErrRejected) {
		t.Fatalf("send: %v, want rejected", err)
	}

	for _, tc := range []struct {
		name string
		peer uint64
		op   byte
	}{
		{"accept, sender on the other center", alice, frame.FileAccept},
		{"chunk ack, sender on the other center", alice, frame.FileChunkAck},
		{"done, sender nowhere", 1 << 40, frame.FileDone},
	} {
		cid := cb.NewCID()
		xfer := uint64(0x5EED0000) + cid%1000
		b := frame.AppendMsgHeader(nil, frame.MsgHeader{From: bob, To: tc.peer, Time: time.Now().UnixMilli(), CID: cid})
		b = append(b, tc.op)
		b = binary.BigEndian.AppendUint64(b, xfer)
		b = binary.BigEndian.AppendUint64(b, 0)
		if err := cb.Send(frame.CmdFile, frame.QoS1, b); err != nil {
			t.Fatal(err)
		}
		e := frame.Error(recvCmd(t, cb, frame.CmdError, func(b []byte) bool { return frame.Error(b).Ref() == cid }))
		if e.Code() != frame.ErrCodeNotFound || !strings.HasPrefix(string(e.Text()), "unknown transfer "+strconv.FormatUint(xfer, 10)) {
			t.Fatalf("%s: error %d %q", tc.name, e.Code(), e.Text())
		}
	}
}
