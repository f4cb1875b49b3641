package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

type pingOnly struct{}

func (pingOnly) OnOpen(*Conn) error               { return nil }
func (pingOnly) OnFrame(*Conn, frame.Frame) error { return nil }
func (pingOnly) OnClose(*Conn, CloseReason)       {}

// Issue 11, attack 3: an accept that failed for want of file descriptors
// stopped gnet's engine, and the listener with it, for good. The server
// now counts the failure, backs off and accepts the connection once
// descriptors are free again.
func TestAcceptSurvivesFileExhaustion(t *testing.T) {
	s := New(pingOnly{}, WithAddr("tcp://127.0.0.1:0"), WithLoops(1))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// Room for a few dozen more files, then fill them all but one.
	low := old
	low.Cur = uint64(countFDs(t) + 40)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	var fill []*os.File
	release := func() {
		for _, f := range fill {
			f.Close()
		}
		fill = nil
	}
	t.Cleanup(release)
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fill = append(fill, f)
	}
	fill[len(fill)-1].Close() // the client's socket takes the last one
	fill = fill[:len(fill)-1]
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		release()
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().AcceptErrors.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	errs := s.Stats().AcceptErrors.Load()
	release()
	if errs == 0 {
		t.Fatal("no accept failed with the file table full")
	}
	if _, err := c.Write(frame.Ping); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	pong := make([]byte, 3)
	if _, err := io.ReadFull(c, pong); err != nil {
		t.Fatalf("no PONG once descriptors were free (%d accept errors): %v", errs, err)
	}
	if err := s.FailErr(); err != nil {
		t.Fatalf("server failed: %v", err)
	}
	t.Logf("%d accept errors while the file table was full; the connection was served after", errs)
}

// A listener that stops anyway turns /readyz to 503 and is reported on
// Node.Fatal, for the process to exit.
func TestStoppedListenerFailsReadiness(t *testing.T) {
	n, err := NewNode(NodeConfig{Role: RoleLogin, LoginAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Limits: Config{Loops: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	ready := func() int {
		resp, err := http.Get("http://" + n.Addrs()["http"].String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz %d before", code)
	}
	_ = n.Server("login").ln.Close() // the listener dies under the server
	select {
	case err := <-n.Fatal():
		t.Logf("fatal: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no fatal error reported")
	}
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d after the listener stopped", code)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
