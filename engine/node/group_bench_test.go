package node_test

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
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
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage/bolt"
)

// sinkChildEnv makes the test binary a sink process (TestGroupSinkChild)
// instead of running tests.
const sinkChildEnv = "MYIM_GROUP_SINK_CHILD"

// fanoutNode is a node (embedded store, center, endpoint, two loops) with a
// group of members users of which the first online have a session held by
// a child process that only drains its sockets, so that this process's CPU
// time is the server's (and the one sending client's) alone.
type fanoutNode struct {
	srv    *engine.Server
	ep     *endpoint.Handler
	group  uint64
	online int
	sender *client.Conn
	acks   chan struct{}
	echoes atomic.Int64
	child  *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	closer []func() // run in reverse by close
}

// close stops what startFanoutNode started, last first.
func (n *fanoutNode) close() {
	for i := len(n.closer) - 1; i >= 0; i-- {
		n.closer[i]()
	}
}

// startFanoutNode starts a node for the sub-benchmarks of the caller,
// which closes it, also when this fails.
func startFanoutNode(b *testing.B, n *fanoutNode, members, online int) {
	b.Helper()
	dir, err := os.MkdirTemp("", "fanout")
	if err != nil {
		b.Fatal(err)
	}
	n.closer = append(n.closer, func() { os.RemoveAll(dir) })
	st, err := bolt.Open(bolt.Config{Dir: dir, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	n.closer = append(n.closer, func() { st.Close() })
	id, err := clusterca.LoadIdentity(dir, 1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctr := center.NewLocalCenter(center.Config{ID: 1, Store: st})
	n.closer = append(n.closer, ctr.Close)
	n.ep = endpoint.New(endpoint.Config{ID: 1, Identity: id, Center: ctr, HandshakeRate: -1})
	n.srv = engine.New(n.ep, engine.WithAddr("tcp://127.0.0.1:0"), engine.WithLoops(2), engine.WithIdleTimeout(10*time.Minute))
	if err := n.srv.Start(); err != nil {
		b.Fatal(err)
	}
	n.closer = append(n.closer, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.srv.Stop(ctx)
	})
	n.online, n.acks = online, make(chan struct{}, 1024)
	ctx := context.Background()
	if n.group, err = st.CreateGroup(ctx, 1, "bench"); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := uint64(2 + w); u <= uint64(members); u += 8 {
				if _, err := st.JoinGroup(ctx, n.group, u); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	dev, _ := session.NewStaticKey()
	token := func(u uint64) string {
		tok, err := session.IssueToken(id.TokenKey, session.TokenRequest{UserID: u, Audience: id.Audience,
			DeviceKey: dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		return tok
	}
	if n.sender, err = client.Dial(ctx, client.Config{Device: dev}, n.srv.Addr().String(), id.Static.PublicKey().Bytes(), token(1)); err != nil {
		b.Fatal(err)
	}
	n.closer = append(n.closer, func() { n.sender.Close() })
	go func() {
		for f := range n.sender.Frames() {
			switch {
			case f.Cmd == frame.CmdGroupMsg:
				n.echoes.Add(1)
			case f.Cmd == frame.CmdAck && frame.Ack(f.Body).Status() == frame.AckStored:
				n.acks <- struct{}{}
			}
		}
	}()

	// The other online members live in the child.
	n.child = exec.Command(os.Args[0], "-test.run=^TestGroupSinkChild$", "-test.bench=^$")
	n.child.Env = append(os.Environ(), sinkChildEnv+"=1")
	n.child.Stderr = os.Stderr
	if n.in, err = n.child.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := n.child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	n.out = bufio.NewScanner(stdout)
	if err := n.child.Start(); err != nil {
		b.Fatal(err)
	}
	n.closer = append(n.closer, func() {
		n.in.Close()
		_ = n.child.Wait()
	})
	w := bufio.NewWriter(n.in)
	fmt.Fprintf(w, "%s %x %x %d\n", n.srv.Addr(), id.Static.PublicKey().Bytes(), dev.Bytes(), online-1)
	for u := uint64(2); u <= uint64(online); u++ {
		fmt.Fprintln(w, token(u))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if line := n.line(b); line != "ready" {
		b.Fatalf("sink process: %s", line)
	}
}

func (n *fanoutNode) line(b *testing.B) string {
	if !n.out.Scan() {
		b.Fatalf("sink process ended: %v", n.out.Err())
	}
	return n.out.Text()
}

// BenchmarkGroupFanout measures one group message (QoS 1, 256 bytes, from
// one sender with window messages in flight) through a running node: the
// members read, the store's append, the ack and the push to every online
// member, one sealed copy each. The members' sessions are held by a child
// process that only drains them, so cpu-ns/delivery is this process's CPU
// time (the server's and the sender's client's) per sealed copy;
// allocs/delivery and writes/delivery (the server's write calls) are per
// copy too. members=10000/online=2000 is the large group of
// docs/scaling.md. The window bounds how many messages queue on the
// group's lane while it stores the previous ones, and so how many of them
// a member gets in one write.
func BenchmarkGroupFanout(b *testing.B) {
	for _, c := range []struct{ members, online int }{{200, 200}, {10000, 2000}} {
		b.Run(fmt.Sprintf("members=%d/online=%d", c.members, c.online), func(b *testing.B) {
			n := &fanoutNode{}
			defer n.close()
			startFanoutNode(b, n, c.members, c.online)
			for _, window := range []int{8, 64} {
				b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { n.run(b, window) })
			}
		})
	}
}

func (n *fanoutNode) run(b *testing.B, window int) {
	content := make([]byte, 256)
	_, out := n.ep.FramesByCommand()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	echo0, writes0, sealed0, cpu0 := n.echoes.Load(), n.srv.Stats().Writes.Load(), out[frame.CmdGroupMsg].Load(), processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	inFlight := 0
	for i := 1; i <= b.N; i++ {
		for inFlight >= window {
			<-n.acks
			inFlight--
		}
		if err := n.sender.SendMsgCID(frame.CmdGroupMsg, n.group, frame.QoS1, uint64(time.Now().UnixNano()), content); err != nil {
			b.Fatal(err)
		}
		inFlight++
	}
	for ; inFlight > 0; inFlight-- {
		<-n.acks
	}
	// Every member's socket gets every sealed copy, each the same size.
	sealed, _ := frame.Append(nil, frame.CmdGroupMsg, frame.QoS1, make([]byte, frame.MsgHeaderLen+len(content)+16))
	fmt.Fprintf(n.in, "%d\n", int64(b.N)*int64(len(sealed)))
	if line := n.line(b); line != "done" {
		b.Fatalf("sink process: %s", line)
	}
	for deadline := time.Now().Add(time.Minute); n.echoes.Load()-echo0 < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	cpu := float64(processCPU() - cpu0)
	runtime.ReadMemStats(&ms1)
	deliveries := float64(out[frame.CmdGroupMsg].Load() - sealed0)
	if want := float64(b.N * n.online); deliveries < want {
		b.Fatalf("sealed %.0f copies, want %.0f", deliveries, want)
	}
	b.ReportMetric(cpu/deliveries, "cpu-ns/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/deliveries, "allocs/delivery")
	b.ReportMetric(float64(n.srv.Stats().Writes.Load()-writes0)/deliveries, "writes/delivery")
}

// TestGroupSinkChild is BenchmarkGroupFanout's child process: it reads
// "addr server-key device-key n" and n tokens on stdin, opens a session
// for each, answers "ready" once every one has answered a PING, and then
// drains their sockets; for each number of bytes read on stdin it answers
// "done" once every socket has read that many more since the last. It
// runs only as that child.
func TestGroupSinkChild(t *testing.T) {
	if os.Getenv(sinkChildEnv) == "" {
		t.Skip("runs as BenchmarkGroupFanout's child process")
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	in.Scan()
	var addr, srvHex, devHex string
	var n int
	if _, err := fmt.Sscan(in.Text(), &addr, &srvHex, &devHex, &n); err != nil {
		t.Fatal(err)
	}
	srvKey, _ := hex.DecodeString(srvHex)
	devKey, _ := hex.DecodeString(devHex)
	dev, err := ecdh.X25519().NewPrivateKey(devKey)
	if err != nil {
		t.Fatal(err)
	}
	tokens := make([]string, n)
	for i := range tokens {
		in.Scan()
		tokens[i] = in.Text()
	}
	sinks := make([]*sinkConn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				cfg := client.Config{Device: dev, DialTimeout: time.Minute, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					var d net.Dialer
					nc, err := d.DialContext(ctx, network, a)
					if err == nil {
						sinks[i] = &sinkConn{Conn: nc}
						return sinks[i], nil
					}
					return nil, err
				}}
				c, err := client.Dial(context.Background(), cfg, addr, srvKey, tokens[i])
				if err == nil {
					_, err = c.Ping(context.Background())
				}
				if err != nil {
					errs <- err
					return
				}
				sinks[i].sunk.Store(true)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		fmt.Println("dial:", err)
		return
	}
	base := make([]int64, n)
	for i, s := range sinks {
		base[i] = s.bytes.Load()
	}
	fmt.Println("ready")
	for in.Scan() {
		want, _ := strconv.ParseInt(strings.TrimSpace(in.Text()), 10, 64)
		deadline := time.Now().Add(time.Minute)
		short := 0
		for i := 0; i < n; {
			if sinks[i].bytes.Load()-base[i] >= want {
				i++
				continue
			}
			if time.Now().After(deadline) {
				short = n - i
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		if short > 0 {
			fmt.Printf("%d sockets short of %d bytes\n", short, want)
			return
		}
		for i := range base {
			base[i] += want
		}
		fmt.Println("done")
	}
}
