package center

import (
	"testing"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
)

// TestClusterDevicesOnSeveralCenters gives a user devices on two centers:
// a message from a third center, and one from the center of one of the
// devices, reaches both devices; the first receipt acks it Delivered.
func TestClusterDevicesOnSeveralCenters(t *testing.T) {
	addr := testenv.RedisAddr(t)
	tables := redisTables(addr, testenv.RedisPrefix(t, addr))
	cs, eps := startCenters(t, 3, tables, nil)
	routes := tables(t)
	s1, s2, s3 := im.SessionRef{Endpoint: 1, Session: 1}, im.SessionRef{Endpoint: 2, Session: 1}, im.SessionRef{Endpoint: 3, Session: 1}
	online(t, cs[0], 20, s1)
	online(t, cs[1], 20, s2)
	online(t, cs[2], 10, s3)
	online(t, cs[0], 30, im.SessionRef{Endpoint: 1, Session: 2})
	eventuallyRouted(t, routes, 20, 1)
	eventuallyRouted(t, routes, 20, 2)

	// From center 3: forwarded to one center, copied to the other.
	sendMsg(cs[2], 10, 20, 1, s3)
	m1 := frame.Msg(eps[0].waitFor(t, frame.CmdMsg, func(f frame.Frame) bool { return frame.Msg(f.Body()).CID() == 1 }).Body())
	m2 := frame.Msg(eps[1].waitFor(t, frame.CmdMsg, func(f frame.Frame) bool { return frame.Msg(f.Body()).CID() == 1 }).Body())
	if m1.MID() != m2.MID() {
		t.Fatalf("two message ids for one message: %x, %x", m1.MID(), m2.MID())
	}
	receipt(cs[0], 20, s1, m1)
	receipt(cs[1], 20, s2, m2)
	eps[2].waitDelivered(t, 1)

	// From center 1, where one device is: pushed there, copied to center 2.
	sendMsg(cs[0], 30, 20, 2, im.SessionRef{Endpoint: 1, Session: 2})
	m1 = frame.Msg(eps[0].waitFor(t, frame.CmdMsg, func(f frame.Frame) bool { return frame.Msg(f.Body()).CID() == 2 }).Body())
	m2 = frame.Msg(eps[1].waitFor(t, frame.CmdMsg, func(f frame.Frame) bool { return frame.Msg(f.Body()).CID() == 2 }).Body())
	if m1.MID() != m2.MID() || m2.From() != 30 {
		t.Fatalf("copy differs: mid %x and %x, from %d", m1.MID(), m2.MID(), m2.From())
	}
	receipt(cs[0], 20, s1, m1)
	eps[0].waitDelivered(t, 2)
}
