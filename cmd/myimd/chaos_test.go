package main

import (
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage/bolt"
)

// The fault suite: `go test -run Chaos ./cmd/myimd`. Each scenario streams
// QoS 1 messages through real myimd processes while a fault happens, and
// checks the delivery contract, not only that traffic flows: every acked
// message shown once to every recipient, none out of order per sender →
// receiver (a group: in sequence order), none late (shown more than the
// receipt timeout and a margin after its ack while its recipient was
// connected), every send answered. MYIM_CHAOS_HEAVY=1 runs the same
// scenarios with ten times the messages. MYIM_CHAOS_BIN runs another build
// of myimd (an older one, to measure it), and MYIM_CHAOS_LEGACY=1 makes the
// receivers ack as the SDK did before groups were sequenced (every group
// message acked up to its own number as it arrives, groups not deduped);
// either turns the checks into a report.

// chaosScale multiplies the message counts under MYIM_CHAOS_HEAVY.
func chaosScale() int {
	if os.Getenv("MYIM_CHAOS_HEAVY") != "" {
		return 10
	}
	return 1
}

func chaosMeasureOnly() bool {
	return os.Getenv("MYIM_CHAOS_BIN") != "" || os.Getenv("MYIM_CHAOS_LEGACY") != ""
}

func chaosLegacy() bool { return os.Getenv("MYIM_CHAOS_LEGACY") != "" }

// chaosStart starts myimd from MYIM_CHAOS_BIN when set.
func chaosStart(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	if b := os.Getenv("MYIM_CHAOS_BIN"); b != "" {
		saved := binPath
		binPath = b
		defer func() { binPath = saved }()
		// A build before --receipt-timeout: its fixed 10 s.
		if i := slices.Index(args, "--receipt-timeout"); i >= 0 {
			args = slices.Delete(slices.Clone(args), i, i+2)
		}
	}
	return startMyimdDir(t, dir, args...)
}

// msgKey names one message: its sender and its index in the sender's
// stream (the first 8 bytes of the content).
type msgKey struct{ from, idx uint64 }

// tally is what a scenario saw. Safe for concurrent use.
type tally struct {
	mu        sync.Mutex
	sent      map[msgKey]time.Time // first write
	acked     map[msgKey]time.Time
	refused   map[msgKey]bool // got a retry ERROR at least once
	to        map[msgKey][]uint64
	shown     map[[3]uint64]int       // {recipient, from, idx} -> times
	shownAt   map[[3]uint64]time.Time // first time
	lastIdx   map[[2]uint64]uint64    // {recipient, from} -> highest index shown
	lastSeq   map[[2]uint64]uint64    // {recipient, group} -> highest seq shown
	outOrder  int
	deadlined int                  // messages sent again after sendDeadline without an answer
	since     map[uint64]time.Time // recipient -> connected since
	lateAfter time.Duration
}

func newTally(lateAfter time.Duration) *tally {
	return &tally{sent: map[msgKey]time.Time{}, acked: map[msgKey]time.Time{}, refused: map[msgKey]bool{},
		to: map[msgKey][]uint64{}, shown: map[[3]uint64]int{}, shownAt: map[[3]uint64]time.Time{},
		lastIdx: map[[2]uint64]uint64{}, lastSeq: map[[2]uint64]uint64{}, since: map[uint64]time.Time{},
		lateAfter: lateAfter}
}

func (tl *tally) connected(user uint64) {
	tl.mu.Lock()
	tl.since[user] = time.Now()
	tl.mu.Unlock()
}

// show records a MSG or GROUP_MSG shown to recipient.
func (tl *tally) show(recipient uint64, cmd frame.Cmd, m frame.Msg) {
	if len(m.Content()) < 8 || m.From() == recipient {
		return
	}
	idx := binary.BigEndian.Uint64(m.Content())
	k := [3]uint64{recipient, m.From(), idx}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.shown[k]++
	if tl.shown[k] > 1 {
		return
	}
	tl.shownAt[k] = time.Now()
	pk := [2]uint64{recipient, m.From()}
	if last, ok := tl.lastIdx[pk]; ok && idx < last && !tl.refused[msgKey{m.From(), idx}] {
		tl.outOrder++
	}
	tl.lastIdx[pk] = max(tl.lastIdx[pk], idx)
	if cmd == frame.CmdGroupMsg {
		gk := [2]uint64{recipient, m.To()}
		if m.MID() < tl.lastSeq[gk] {
			tl.outOrder++
		}
		tl.lastSeq[gk] = max(tl.lastSeq[gk], m.MID())
	}
}

// chaosReport is one scenario's figures.
type chaosReport struct {
	sent, acked, shown, lost, dups, outOrder, late, unanswered, deadlined int
}

func (r chaosReport) String() string {
	return fmt.Sprintf("sent %d, acked %d, shown %d, lost %d, duplicated %d, out of order %d, late %d, unanswered %d (sent again after %v without an answer: %d)",
		r.sent, r.acked, r.shown, r.lost, r.dups, r.outOrder, r.late, r.unanswered, sendDeadline, r.deadlined)
}

func (tl *tally) report() chaosReport {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	r := chaosReport{sent: len(tl.sent), acked: len(tl.acked), outOrder: tl.outOrder, deadlined: tl.deadlined}
	for k := range tl.sent {
		if _, ok := tl.acked[k]; !ok {
			r.unanswered++
			if os.Getenv("MYIM_CHAOS_DEBUG") != "" {
				fmt.Printf("unanswered %v refused %v\n", k, tl.refused[k])
			}
		}
	}
	for k, at := range tl.acked {
		for _, rcp := range tl.to[k] {
			sk := [3]uint64{rcp, k.from, k.idx}
			n := tl.shown[sk]
			switch {
			case n == 0:
				r.lost++
			case n > 1:
				r.dups += n - 1
				if os.Getenv("MYIM_CHAOS_DEBUG") != "" {
					fmt.Printf("dup %v to %d\n", k, rcp)
				}
			}
			if n > 0 {
				r.shown++
				// Late: shown long after the ack, or after the recipient's
				// last connect when that came later.
				from := at
				if s := tl.since[rcp]; s.After(from) {
					from = s
				}
				if tl.shownAt[sk].Sub(from) > tl.lateAfter {
					r.late++
				}
			}
		}
	}
	return r
}

// check fails the test on any breach of the contract, unless measuring.
func (r chaosReport) check(t *testing.T, name string) {
	t.Helper()
	t.Logf("chaos %s: %s", name, r)
	if chaosMeasureOnly() {
		return
	}
	if r.lost != 0 || r.dups != 0 || r.outOrder != 0 || r.late != 0 || r.unanswered != 0 || r.deadlined != 0 || r.acked == 0 {
		t.Errorf("%s broke the delivery contract: %s", name, r)
	}
}

// chaosClient is a user that stays connected: it logs in at the address
// login returns (a restarted myimd listens elsewhere), reconnects when its
// connection ends, and records what it is shown. It follows the client
// contract of docs/protocol.md through the SDK: AutoAck, AutoFetch, one
// Dedupe across reconnects.
type chaosClient struct {
	t      *testing.T
	name   string
	id     uint64
	dev    *ecdh.PrivateKey
	cfg    func() client.Config
	login  func() string
	pick   func(*client.LoginResult) client.Server
	tl     *tally
	dedupe *client.Dedupe
	legacy map[[2]uint64]bool // legacy mode: MSG (from, cid) seen

	mu      sync.Mutex
	conn    *client.Conn
	changed chan struct{}
	// acks carries the answers to this client's sends: an ACK's CID, or
	// an ERROR's ref with refused set.
	acks chan answer
	// ackDelay, when set, acks each pushed MSG this long after it came
	// (a slow acker) instead of AutoAck.
	ackDelay time.Duration
	groupAns map[uint32]uint64 // GROUP answers' group ids by request; guarded by mu
}

type answer struct {
	cid     uint64
	refused bool
	seq     uint64 // a group message's number, from its ACK
}

func newChaosClient(t *testing.T, name string, id uint64, tl *tally, cfg func() client.Config, login func() string) *chaosClient {
	cc := &chaosClient{t: t, name: name, id: id, dev: newDevice(t), cfg: cfg, login: login, tl: tl,
		dedupe: client.NewDedupe(0), legacy: map[[2]uint64]bool{}, changed: make(chan struct{}),
		acks: make(chan answer, 1<<16), groupAns: map[uint32]uint64{}}
	cc.pick = func(r *client.LoginResult) client.Server { return r.Servers[0] }
	return cc
}

// run keeps the client connected until ctx ends.
func (cc *chaosClient) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		c, err := cc.connect(ctx)
		if err != nil {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		cc.tl.connected(cc.id)
		cc.mu.Lock()
		cc.conn = c
		close(cc.changed)
		cc.changed = make(chan struct{})
		cc.mu.Unlock()
		cc.read(c)
	}
}

func (cc *chaosClient) connect(ctx context.Context) (*client.Conn, error) {
	cfg := cc.cfg()
	cfg.Device, cfg.Dedupe = cc.dev, cc.dedupe
	cfg.AutoAck, cfg.AutoFetch = cc.ackDelay == 0 && !chaosLegacy(), true
	if chaosLegacy() {
		cfg.Dedupe = nil
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := client.Login(cctx, cfg, cc.login(), cc.name, []byte("password-"+cc.name))
	if err != nil {
		return nil, err
	}
	return client.Connect(cctx, cfg, res, cc.pick(res))
}

// read records what c shows until it ends.
func (cc *chaosClient) read(c *client.Conn) {
	for f := range c.Frames() {
		switch f.Cmd {
		case frame.CmdMsg, frame.CmdGroupMsg:
			m := frame.Msg(f.Body)
			if chaosLegacy() {
				// The SDK before: every pushed MSG acked, every group
				// message acked up to its own number, MSG deduped.
				if f.Cmd == frame.CmdMsg {
					_ = c.Ack(m.MID(), m.From())
					k := [2]uint64{m.From(), m.CID()}
					if cc.legacy[k] {
						continue
					}
					cc.legacy[k] = true
				} else {
					_ = c.AckGroup(m.To(), m.MID())
				}
			} else if cc.ackDelay > 0 && f.Cmd == frame.CmdMsg {
				mid, from := m.MID(), m.From()
				time.AfterFunc(cc.ackDelay, func() { _ = c.Ack(mid, from) })
			}
			cc.tl.show(cc.id, f.Cmd, m)
		case frame.CmdGroup:
			g := frame.Group(f.Body)
			var r struct {
				Group uint64 `json:"group"`
			}
			if sonic.Unmarshal(g.JSON(), &r) == nil {
				cc.mu.Lock()
				cc.groupAns[g.Req()] = r.Group
				cc.mu.Unlock()
			}
		case frame.CmdAck:
			a := frame.Ack(f.Body)
			if s := a.Status(); a.CID() != 0 && s != frame.AckReceived && s != frame.AckGroupRead {
				cc.acks <- answer{cid: a.CID(), seq: a.MID()}
			}
		case frame.CmdError:
			if e := client.ParseServerError(f); e != nil {
				var se *client.ServerError
				if errors.As(e, &se) && se.Ref != 0 {
					cc.acks <- answer{cid: se.Ref, refused: true}
				}
			}
		}
	}
}

// current returns the connection and a channel closed when a newer one
// replaces it.
func (cc *chaosClient) current() (*client.Conn, <-chan struct{}) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.conn, cc.changed
}

// waitConnected waits for the first connection.
func (cc *chaosClient) waitConnected(t *testing.T) *client.Conn {
	t.Helper()
	var c *client.Conn
	testenv.WaitFor(t, 60*time.Second, cc.name+" connected", func() bool {
		c, _ = cc.current()
		return c != nil
	})
	return c
}

// drop closes the current connection; run reconnects.
func (cc *chaosClient) drop() {
	if c, _ := cc.current(); c != nil {
		c.Close()
	}
}

// stream sends n QoS 1 messages of cmd to target (a user, or a group whose
// members are recipients), at most window unanswered, in order; after a
// reconnect the unanswered ones go again in order with their CIDs, and a
// refused one (retry ERROR) goes again at once. It returns when every one
// is acked, or when nothing was answered for stall (then the rest counts
// as unanswered).
func (cc *chaosClient) stream(cmd frame.Cmd, target uint64, recipients []uint64, n, window int, stall time.Duration) {
	type inflight struct {
		idx uint64
		cid uint64
		at  time.Time // last written
	}
	recipients = slices.DeleteFunc(slices.Clone(recipients), func(u uint64) bool { return u == cc.id })
	var pending []inflight // in send order
	next := 0
	cids := make(map[uint64]uint64) // cid -> idx
	conn, changed := cc.current()
	send := func(p *inflight) {
		p.at = time.Now()
		var body [16]byte
		binary.BigEndian.PutUint64(body[:], p.idx)
		binary.BigEndian.PutUint64(body[8:], uint64(time.Now().UnixNano()))
		if conn != nil {
			_ = conn.SendMsgCID(cmd, target, frame.QoS1, p.cid, body[:])
		}
	}
	lastProgress := time.Now()
	for next < n || len(pending) > 0 {
		for next < n && len(pending) < window && conn != nil {
			p := inflight{idx: uint64(next), cid: conn.NewCID()}
			next++
			cids[p.cid] = p.idx
			k := msgKey{cc.id, p.idx}
			cc.tl.mu.Lock()
			cc.tl.sent[k] = time.Now()
			cc.tl.to[k] = recipients
			cc.tl.mu.Unlock()
			pending = append(pending, p)
			send(&pending[len(pending)-1])
		}
		select {
		case a := <-cc.acks:
			idx, ok := cids[a.cid]
			if !ok {
				continue
			}
			i := slices.IndexFunc(pending, func(p inflight) bool { return p.cid == a.cid })
			if i < 0 {
				continue // answered already
			}
			if a.refused {
				cc.tl.mu.Lock()
				cc.tl.refused[msgKey{cc.id, idx}] = true
				cc.tl.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				send(&pending[i])
				continue
			}
			lastProgress = time.Now()
			cc.tl.mu.Lock()
			cc.tl.acked[msgKey{cc.id, idx}] = time.Now()
			cc.tl.mu.Unlock()
			pending = slices.Delete(pending, i, i+1)
		case <-changed:
			conn, changed = cc.current()
			for i := range pending {
				send(&pending[i])
			}
		case <-time.After(time.Second):
			if time.Since(lastProgress) > stall {
				return
			}
			// The client contract's own deadline: a message with no
			// answer is sent again, with its CID, in order.
			for i := range pending {
				if time.Since(pending[i].at) > sendDeadline {
					cc.tl.mu.Lock()
					cc.tl.deadlined++
					cc.tl.mu.Unlock()
					send(&pending[i])
				}
			}
			if conn == nil {
				conn, changed = cc.current()
			}
		}
	}
}

// sendDeadline is how long a stream waits for an answer before it sends a
// message again (the SDK's SendTimeout, shortened for the tests).
const sendDeadline = 10 * time.Second

// chaosUsers registers n users on p and returns their names and ids.
func chaosUsers(t *testing.T, p *proc, prefix string, n int) ([]string, []uint64) {
	names, ids := make([]string, n), make([]uint64, n)
	for i := range n {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
		ids[i] = p.register(t, names[i], "password-"+names[i])
	}
	return names, ids
}

// waitShown waits until every acked message was shown to its recipients,
// or within, whichever comes first (what is missing then is counted lost).
func (tl *tally) waitShown(within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if r := tl.report(); r.lost == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chaosAllInOne runs a scenario on an all-in-one myimd: it returns a
// function that gives the current login address, the current process, and
// one that kills it with SIGKILL and starts it again on the same data.
type allInOne struct {
	mu   sync.Mutex
	p    *proc
	dir  string
	args []string
}

func startAllInOne(t *testing.T, args ...string) *allInOne {
	a := &allInOne{dir: t.TempDir(), args: args}
	a.p = chaosStart(t, a.dir, args...)
	return a
}

func (a *allInOne) proc() *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.p
}

func (a *allInOne) loginAddr() string { return a.proc().addrs["login"] }

func (a *allInOne) cfg(t *testing.T) func() client.Config {
	return func() client.Config { return a.proc().cfg(t, nil) }
}

func (a *allInOne) killAndRestart(t *testing.T) {
	a.mu.Lock()
	old := a.p
	a.mu.Unlock()
	old.kill()
	p := chaosStart(t, a.dir, a.args...)
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
}

// streamAll starts a stream of n QoS 1 messages of cmd to `to` from each
// of senders, shown to the users in rcpts, with window unanswered at most;
// the WaitGroup ends when every stream has.
func streamAll(senders []*chaosClient, cmd frame.Cmd, to uint64, rcpts []uint64, n, window int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stream(cmd, to, rcpts, n, window, 60*time.Second)
		}()
	}
	return &wg
}

// TestChaosKillAllInOne streams p2p messages from three senders to one
// recipient and kills the all-in-one myimd with SIGKILL in the middle,
// twice, on the embedded store and on MariaDB: after the restart every
// acked message is shown once, in send order per sender, and nothing
// waits for another reconnect.
func TestChaosKillAllInOne(t *testing.T) {
	for _, backend := range []string{"embedded", "mariadb"} {
		t.Run(backend, func(t *testing.T) {
			var args []string
			if backend == "mariadb" {
				args = []string{"--mysql-dsn", testenv.MySQLDatabase(t)}
			}
			chaosKill(t, backend, args)
		})
	}
}

func chaosKill(t *testing.T, backend string, args []string) {
	a := startAllInOne(t, append([]string{"--receipt-timeout", "3s"}, args...)...)
	names, ids := chaosUsers(t, a.proc(), "k", 4)
	tl := newTally(3*time.Second + 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*chaosClient
	for i := range names {
		cc := newChaosClient(t, names[i], ids[i], tl, a.cfg(t), a.loginAddr)
		clients = append(clients, cc)
		go cc.run(ctx)
		cc.waitConnected(t)
	}
	n := 1500 * chaosScale()
	wg := streamAll(clients[1:], frame.CmdMsg, ids[0], ids[:1], n, 32)
	for kill := range 2 {
		testenv.WaitFor(t, 120*time.Second, "a third of the stream acked", func() bool {
			return tl.report().acked >= (kill+1)*len(clients[1:])*n/3
		})
		a.killAndRestart(t)
	}
	wg.Wait()
	tl.waitShown(30 * time.Second)
	tl.report().check(t, "kill -9 all-in-one ("+backend+")")
}

// TestChaosGroupMemberDrops sends bursts of QoS 1 group messages from two
// members of a six-member group while the other members' connections
// drop and come back at random: every member is shown every acked message
// once, in sequence order.
func TestChaosGroupMemberDrops(t *testing.T) {
	var args []string
	if os.Getenv("MYIM_CHAOS_GROUP_MYSQL") != "" {
		args = []string{"--mysql-dsn", testenv.MySQLDatabase(t)}
	}
	a := startAllInOne(t, args...)
	names, ids := chaosUsers(t, a.proc(), "g", 6)
	tl := newTally(15 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*chaosClient
	for i := range names {
		cc := newChaosClient(t, names[i], ids[i], tl, a.cfg(t), a.loginAddr)
		clients = append(clients, cc)
		go cc.run(ctx)
	}
	owner := clients[0].waitConnected(t)
	req, err := owner.Group(frame.GroupCreate, 0, []byte(`{"name":"chaos","open":true}`))
	if err != nil {
		t.Fatal(err)
	}
	group := waitGroupAnswer(t, clients[0], req)
	for _, cc := range clients[1:] {
		c := cc.waitConnected(t)
		req, err := c.Group(frame.GroupJoin, group, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitGroupAnswer(t, cc, req)
	}
	n := 600 * chaosScale()
	stop := make(chan struct{})
	var dropper sync.WaitGroup
	dropper.Add(1)
	go func() { // members 2..5 drop in the middle of the bursts
		defer dropper.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(150+rand.IntN(300)) * time.Millisecond):
				clients[2+rand.IntN(4)].drop()
			}
		}
	}()
	streamAll(clients[:2], frame.CmdGroupMsg, group, ids, n, 16).Wait()
	close(stop)
	dropper.Wait()
	tl.waitShown(30 * time.Second)
	tl.report().check(t, "group member drops")
}

// waitGroupAnswer waits for the GROUP answer to req on cc's connection and
// returns its group id.
func waitGroupAnswer(t *testing.T, cc *chaosClient, req uint32) uint64 {
	t.Helper()
	var group uint64
	testenv.WaitFor(t, 30*time.Second, "group answer", func() bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		group = cc.groupAns[req]
		return group != 0
	})
	return group
}

// TestChaosSkewedClocks streams to one recipient from three senders whose
// clocks are a minute ahead, right, and a minute behind, fast enough to
// fill the recipient's window so that messages go through the store: the
// store's order is the center's, so nobody's clock holds anybody's
// messages back, and nothing waits for a reconnect.
func TestChaosSkewedClocks(t *testing.T) {
	a := startAllInOne(t)
	names, ids := chaosUsers(t, a.proc(), "c", 4)
	tl := newTally(15 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	skews := []time.Duration{0, time.Minute, 0, -time.Minute}
	var clients []*chaosClient
	for i := range names {
		skew := skews[i]
		base := a.cfg(t)
		cfg := func() client.Config {
			c := base()
			c.Now = func() time.Time { return time.Now().Add(skew) }
			return c
		}
		cc := newChaosClient(t, names[i], ids[i], tl, cfg, a.loginAddr)
		clients = append(clients, cc)
		go cc.run(ctx)
		cc.waitConnected(t)
	}
	clients[0].ackDelay = 5 * time.Millisecond // slow enough for the window to fill
	clients[0].drop()                          // reconnect with the slow acks
	n := 1000 * chaosScale()
	streamAll(clients[1:], frame.CmdMsg, ids[0], ids[:1], n, 48).Wait()
	tl.waitShown(30 * time.Second)
	tl.report().check(t, "senders' clocks +-60 s")
}

// TestChaosSlowAcker drives ten senders into one recipient that acks every
// message 1.5 s after it came, with a receipt timeout of 1 s, and no
// Dedupe: every push times out and is stored, yet none is shown twice or
// out of order, and once the recipient has acked all it got, nothing is
// left in the store.
func TestChaosSlowAcker(t *testing.T) {
	a := startAllInOne(t, "--receipt-timeout", "1s")
	names, ids := chaosUsers(t, a.proc(), "s", 11)
	// The recipient takes 64 messages per 1.5 s: the last are shown about
	// 12 s after they were stored, which is not late.
	tl := newTally(30 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*chaosClient
	for i := range names {
		cc := newChaosClient(t, names[i], ids[i], tl, a.cfg(t), a.loginAddr)
		if i == 0 {
			cc.ackDelay, cc.dedupe = 1500*time.Millisecond, nil
			if os.Getenv("MYIM_CHAOS_BIN") != "" {
				cc.ackDelay = 10500 * time.Millisecond // past the older build's fixed timeout
			}
		}
		clients = append(clients, cc)
		go cc.run(ctx)
		cc.waitConnected(t)
	}
	n := 50 * chaosScale()
	streamAll(clients[1:], frame.CmdMsg, ids[0], ids[:1], n, 16).Wait()
	tl.waitShown(120 * time.Second)
	r := tl.report()
	r.check(t, "slow acker")
	// Every message shown was acked 1.5 s later: give the last receipts
	// time, then look in the store with the server stopped.
	time.Sleep(3 * time.Second)
	cancel()
	a.proc().stop(t)
	st, err := bolt.Open(bolt.Config{Dir: a.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	left, err := st.CountOffline(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos slow acker: %d messages left in the store after every receipt", left)
	if left != 0 && !chaosMeasureOnly() {
		t.Errorf("%d messages left in the store once the recipient acked all it got", left)
	}
}

// TestChaosCenterKilledUnderEndpoint runs two centers (MariaDB, Redis) and
// an endpoint process linked to the first with the second as fallback.
// Two users on that endpoint and one on the second center stream p2p and
// group QoS 1 messages; the first center is killed with SIGKILL in the
// middle. Every send is answered (the endpoint resends what the dead center
// did not confirm, group messages included), every acked message is shown
// once, in order, and what was stored for the endpoint's users reaches
// them on the fallback center, not at failback.
func TestChaosCenterKilledUnderEndpoint(t *testing.T) {
	first, second, _ := startCenters(t)
	startMyimdDir(t, t.TempDir(), append([]string{"--role", "endpoint", "--server-id", "3",
		"--join-file", joinFile(t, first.dir, "endpoint", 3), "--join-url", "https://" + first.addrs["join"],
		"--center-link", first.addrs["center"] + "," + second.addrs["center"]},
		second.flags("--redis-addr", "--redis-prefix")...)...)
	// e0 and e3 send (p2p, group) from the endpoint process, e2 from the
	// second center's endpoint; e1 receives on the endpoint process. One
	// stream per user: a user's acks are read by its one stream.
	names, ids := chaosUsers(t, first, "e", 4)
	tl := newTally(10*time.Second + 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := func() client.Config { return first.cfg(t, nil) }
	login := func() string { return second.addrs["login"] }
	var clients []*chaosClient
	for i := range names {
		cc := newChaosClient(t, names[i], ids[i], tl, cfg, login)
		want := uint32(3) // the endpoint process, e2 on the second center's own
		if i == 2 {
			want = 2
		}
		cc.pick = func(r *client.LoginResult) client.Server {
			for _, s := range r.Servers {
				if s.ID == want {
					return s
				}
			}
			return r.Servers[0]
		}
		clients = append(clients, cc)
	}
	testenv.WaitFor(t, 30*time.Second, "three endpoints listed", func() bool {
		c := cfg()
		c.Device = clients[0].dev
		res, err := client.Login(context.Background(), c, login(), names[0], []byte("password-"+names[0]))
		return err == nil && len(res.Servers) == 3
	})
	for _, cc := range clients {
		go cc.run(ctx)
		cc.waitConnected(t)
	}
	req, err := clients[3].waitConnected(t).Group(frame.GroupCreate, 0, []byte(`{"name":"failover","open":true}`))
	if err != nil {
		t.Fatal(err)
	}
	group := waitGroupAnswer(t, clients[3], req)
	for _, cc := range clients[1:3] {
		req, err := cc.waitConnected(t).Group(frame.GroupJoin, group, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitGroupAnswer(t, cc, req)
	}
	n := 800 * chaosScale()
	var wg sync.WaitGroup
	for _, run := range []func(){
		func() { clients[0].stream(frame.CmdMsg, ids[1], ids[1:2], n, 32, 60*time.Second) },
		func() { clients[2].stream(frame.CmdMsg, ids[1], ids[1:2], n, 32, 60*time.Second) },
		func() { clients[3].stream(frame.CmdGroupMsg, group, ids[1:], n, 32, 60*time.Second) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	testenv.WaitFor(t, 120*time.Second, "a third acked", func() bool { return tl.report().acked >= n })
	if os.Getenv("MYIM_CHAOS_NOKILL") == "" {
		first.kill()
	}
	wg.Wait()
	tl.waitShown(30 * time.Second)
	tl.report().check(t, "center killed under an endpoint")
}
