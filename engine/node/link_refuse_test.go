package node_test

import (
	"encoding/binary"
	"testing"

	"github.com/myim/myim/frame"
)

// With the center unreachable and the link's queue full, every request the
// command table gives a Req is refused at once with ErrCodeRetry naming
// that Req, as a QoS 1 message is by its CID (TestLinkQueueFull).
func TestLinkQueueFullRefusesRequests(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep := lc.deadEndpoint(t, 2)
	c := lc.dial(t, ep, lc.user(t, "lonely"))
	for cid := uint64(1); cid <= 2; cid++ { // fill the queue
		if err := c.SendMsgCID(frame.CmdMsg, 12345, frame.QoS1, cid, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var refs []uint64
	for i := 1; i < 256; i++ {
		cmd := frame.Cmd(i)
		if cmd.Ref() != frame.RefReq {
			continue
		}
		req := uint32(0x1000 + i)
		body := make([]byte, cmd.MinBody())
		binary.BigEndian.PutUint32(body, req)
		if err := c.Send(cmd, frame.QoS0, body); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, uint64(req))
	}
	if len(refs) == 0 {
		t.Fatal("the command table has no request with a Req")
	}
	for _, ref := range refs {
		e := frame.Error(recvCmd(t, c, frame.CmdError, nil))
		if e.Code() != frame.ErrCodeRetry || e.Ref() != ref {
			t.Fatalf("error code %d ref %#x, want %d ref %#x", e.Code(), e.Ref(), frame.ErrCodeRetry, ref)
		}
	}
}
