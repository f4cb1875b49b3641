package node_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/frame"
)

// linkFrame builds a LINK frame (command 0x40): op, then fields.
func linkFrame(op byte, fields ...[]byte) []byte {
	body := []byte{op}
	for _, f := range fields {
		body = append(body, f...)
	}
	b, _ := frame.Append(nil, 0x40, frame.QoS0, body)
	return b
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// forgeLink dials the center's link listener as a fake endpoint id,
// proving the link secret first when one is given (as docs/operations.md
// describes the exchange), and sends HELLO and then frames. It returns the
// connection and whether the center answered with a HELLO.
func forgeLink(t *testing.T, addr string, secret []byte, id uint32, frames ...[]byte) (net.Conn, bool) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if secret != nil {
		nd := make([]byte, 32)
		_, _ = rand.Read(nd)
		if _, err := nc.Write(nd); err != nil {
			return nc, false
		}
		in := make([]byte, 64)
		if _, err := io.ReadFull(nc, in); err != nil {
			return nc, false
		}
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("myim link dialer"))
		m.Write(nd)
		m.Write(in[:32])
		if _, err := nc.Write(m.Sum(nil)); err != nil {
			return nc, false
		}
	}
	out := linkFrame(0x01, []byte{1, 2}, u32(id)) // HELLO v1, takes DELIVER_MANY
	for _, f := range frames {
		out = append(out, f...)
	}
	if _, err := nc.Write(out); err != nil {
		return nc, false
	}
	hello := make([]byte, 10) // Length (one byte here), Cmd, QoS, op, version, flags, id
	if _, err := io.ReadFull(nc, hello); err != nil {
		return nc, false
	}
	return nc, hello[1] == 0x40 && hello[3] == 0x01
}

// TestPlaintextLinkAttacks performs the link attacks against a real link
// listener running plain TCP: a process that does not hold the link secret
// cannot link at all, so it can neither send a message as another user
// (HANDLE) nor claim a user's session (ONLINE) to receive their messages;
// and a process that does hold it cannot take over a live endpoint's id.
func TestPlaintextLinkAttacks(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep1 := lc.endpoint(t, 1, nil, "", 0)
	a, b := lc.user(t, "a"), lc.user(t, "b")
	ca, cb := lc.dial(t, ep1, a), lc.dial(t, ep1, b)
	roundTrip(t, ca)
	roundTrip(t, cb)
	addr := lc.ls.Addr().String()

	// No secret: a HANDLE forging a message from a to b, and an ONLINE
	// claiming a session of b.
	msg, _ := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS0,
		frame.MsgHeader{From: a, To: b, Time: time.Now().UnixMilli(), CID: 77}, []byte("forged"))
	handle := linkFrame(0x04, u64(a), u64(12345), msg)
	online := linkFrame(0x02, u64(b), u64(999), []byte{0})
	rejected := lc.ls.Rejected.Load()
	if _, ok := forgeLink(t, addr, nil, 9, online, handle); ok {
		t.Fatal("a process without the link secret was answered with HELLO")
	}
	if _, ok := forgeLink(t, addr, []byte("a guessed secret, 32 bytes long!"), 9, online, handle); ok {
		t.Fatal("a process with a wrong link secret was answered with HELLO")
	}
	eventually(t, 10*time.Second, func() bool { return lc.ls.Rejected.Load() >= rejected+2 })
	if len(lc.ls.Links()) != 1 {
		t.Fatalf("links %v, want only endpoint 1", lc.ls.Links())
	}
	// Whatever the forger sent was not handled: b gets the real message
	// below and nothing before it.
	cid, err := ca.SendMsg(b, frame.QoS1, []byte("real"))
	if err != nil {
		t.Fatal(err)
	}
	got := frame.Msg(recvCmd(t, cb, frame.CmdMsg, nil))
	if string(got.Content()) != "real" || got.CID() != cid {
		t.Fatalf("b got %q first, want the real message", got.Content())
	}

	// With the secret, endpoint 1's id is refused while endpoint 1 is
	// linked, and endpoint 1 keeps its link and sessions.
	rejected = lc.ls.Rejected.Load()
	if _, ok := forgeLink(t, addr, testLinkSecret, 1, online); ok {
		t.Fatal("a second endpoint with a live id was answered with HELLO")
	}
	eventually(t, 10*time.Second, func() bool { return lc.ls.Rejected.Load() >= rejected+1 })
	cid, err = cb.SendMsg(a, frame.QoS1, []byte("still here"))
	if err != nil {
		t.Fatal(err)
	}
	recvCmd(t, ca, frame.CmdMsg, func(m []byte) bool { return frame.Msg(m).CID() == cid })
	recvCmd(t, cb, frame.CmdAck, func(m []byte) bool { return frame.Ack(m).CID() == cid })
	if !ep1.rc.Connected() {
		t.Fatal("endpoint 1 lost its link")
	}
	// Nor the id of the center's own in-process endpoint.
	local := endpoint.New(endpoint.Config{ID: 7, Identity: lc.id, Center: lc.ctr})
	_ = startServer(t, local)
	if _, ok := forgeLink(t, addr, testLinkSecret, 7, online); ok {
		t.Fatal("a link took the id of the center's own endpoint")
	}
	// A link with the secret and a free id is accepted: the secret, not
	// the address, is what admits a plain-text link.
	if _, ok := forgeLink(t, addr, testLinkSecret, 2); !ok {
		t.Fatal("an endpoint holding the secret was refused")
	}
}
