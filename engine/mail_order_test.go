package engine

import (
	"testing"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// postThenExec, on each frame, posts "mail" to the connection and then
// queues a job that writes "job!" to it, both from the read callback, so
// that the loop takes them in one drain.
type postThenExec struct{}

func (postThenExec) OnOpen(*Conn) error { return nil }
func (postThenExec) OnFrame(c *Conn, _ frame.Frame) error {
	b := bytebufferpool.Get()
	b.B = append(b.B, "mail"...)
	if err := c.Post(b); err != nil {
		return err
	}
	return c.Exec(func() {
		if !c.Closed() {
			c.Write([]byte("job!"))
		}
	})
}
func (postThenExec) OnClose(*Conn, CloseReason) {}

// A job queued after a buffer was posted to a connection writes after it:
// per connection, posted buffers and jobs keep the order they came in.
func TestExecAfterPostKeepsOrder(t *testing.T) {
	s := startLoopServer(t, postThenExec{})
	c := dialServer(t, s)
	f, _ := frame.Append(nil, frame.CmdPresence, frame.QoS0, []byte{1})
	for i := 0; i < 20; i++ {
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
		if got := string(readFull(t, c, 8)); got != "mailjob!" {
			t.Fatalf("round %d: the connection got %q, want the posted buffer first: %q", i, got, "mailjob!")
		}
	}
}

// postThenRelease, on each frame, posts "mail" and then, in a job that runs
// once the mail is handed over, releases the empty mailbox and reports
// whether it went.
type postThenRelease struct{ released chan bool }

func (postThenRelease) OnOpen(*Conn) error { return nil }
func (h postThenRelease) OnFrame(c *Conn, _ frame.Frame) error {
	b := bytebufferpool.Get()
	b.B = append(b.B, "mail"...)
	if err := c.Post(b); err != nil {
		return err
	}
	return c.Exec(func() {
		c.ReleaseMailbox()
		c.mu.Lock()
		gone := c.box == nil
		c.mu.Unlock()
		h.released <- gone
	})
}
func (postThenRelease) OnClose(*Conn, CloseReason) {}

// A released mailbox goes once it is empty, and the next Post makes a new
// one: every post still arrives.
func TestReleaseMailboxThenPost(t *testing.T) {
	h := postThenRelease{released: make(chan bool, 1)}
	s := startLoopServer(t, h)
	c := dialServer(t, s)
	f, _ := frame.Append(nil, frame.CmdPresence, frame.QoS0, []byte{1})
	for i := 0; i < 5; i++ {
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
		if got := string(readFull(t, c, 4)); got != "mail" {
			t.Fatalf("round %d: the connection got %q, want %q", i, got, "mail")
		}
		if !<-h.released {
			t.Fatalf("round %d: the empty mailbox was kept", i)
		}
	}
}
