package engine

import (
	"context"
	"errors"
	"io"
	"net"
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

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
