package link

import (
	"encoding/binary"

	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/frame"
)

// Item is one link frame, built by one of the New functions and handed to
// a Queue: a small head (the envelope and fixed fields) and an optional
// pooled tail (a client frame, ids or JSON), written back to back so that
// the tail is never copied. An Item is a value owned by one goroutine until
// Queue.Push takes it; if Push refuses it, the caller still owns its tail
// and calls Release.
type Item struct {
	head [headMax]byte
	n    uint8
	op   Op
	// data marks traffic that counts against the queue's bounds.
	data bool
	// Retain marks a QoS 1 message the sender keeps after writing it
	// until the peer confirms reading it (a PONG's received count), and
	// writes again first after Queue.Reset. Set it before Push.
	Retain bool
	// rerouting: only a peer center whose HELLO set HelloRerouting takes
	// it.
	rerouting bool
	buf       *bytebufferpool.ByteBuffer
}

// Op returns the item's op. Read-only: safe wherever the item is.
func (it *Item) Op() Op { return it.op }

// Rerouting reports whether only a peer center whose HELLO set
// HelloRerouting takes the item (RESULT moved, STORED, FORWARD of a FILE).
// Read-only: safe wherever the item is.
func (it *Item) Rerouting() bool { return it.rerouting }

// Release returns the item's tail to the pool: for an item Push refused,
// or one that was never pushed. The item must not be used afterwards; only
// its owner calls it.
func (it *Item) Release() {
	if it.buf != nil {
		bytebufferpool.Put(it.buf)
		it.buf = nil
	}
}

// AppendTo appends the item's encoding to b, as the queue's writer writes
// it, and returns the extended slice. The item stays the caller's; it must
// not be in a queue.
func (it *Item) AppendTo(b []byte) []byte {
	b = append(b, it.head[:it.n]...)
	if it.buf != nil {
		b = append(b, it.buf.B...)
	}
	return b
}

func (it *Item) size() int {
	n := int(it.n)
	if it.buf != nil {
		n += len(it.buf.B)
	}
	return n
}

// begin writes the envelope and op for fixed field bytes plus tail bytes
// and returns the head so far; the caller appends the fixed fields and
// calls end.
func (it *Item) begin(op Op, tail int) []byte {
	it.op = op
	h, _ := frame.AppendHeader(it.head[:0], Cmd, frame.QoS0, 1+fixedLen[op]+tail)
	return append(h, byte(op))
}

func (it *Item) end(h []byte) { it.n = uint8(len(h)) }

// NewHello is a HELLO of node id with flags (HelloCenter, HelloMany,
// HelloRerouting).
// Safe for concurrent use: it returns a new Item the caller owns.
func NewHello(id uint32, flags byte) Item {
	var it Item
	h := it.begin(OpHello, 0)
	h = append(h, Version, flags)
	it.end(binary.BigEndian.AppendUint32(h, id))
	return it
}

func sessItem(op Op, user, session uint64, flag byte) Item {
	var it Item
	h := it.begin(op, 0)
	h = binary.BigEndian.AppendUint64(h, user)
	h = binary.BigEndian.AppendUint64(h, session)
	it.end(append(h, flag))
	return it
}

// NewOnline is an ONLINE of user's session; flags is 0 or Resumed.
// Safe for concurrent use: it returns a new Item the caller owns.
func NewOnline(user, session uint64, flags byte) Item {
	return sessItem(OpOnline, user, session, flags)
}

// NewOffline is an OFFLINE of user's session; bye says the client said
// goodbye. Safe for concurrent use: it returns a new Item the caller owns.
func NewOffline(user, session uint64, bye bool) Item {
	var b byte
	if bye {
		b = 1
	}
	return sessItem(OpOffline, user, session, b)
}

// NewHandle is a HANDLE of user's session carrying the client frame in
// buf, which the item takes. Safe for concurrent use: it returns a new Item the caller owns.
func NewHandle(user, session uint64, buf *bytebufferpool.ByteBuffer) Item {
	var it Item
	h := it.begin(OpHandle, len(buf.B))
	h = binary.BigEndian.AppendUint64(h, user)
	it.end(binary.BigEndian.AppendUint64(h, session))
	it.buf, it.data = buf, true
	return it
}

// NewDeliver is a DELIVER to session of the client frame in buf, which the
// item takes. Safe for concurrent use: it returns a new Item the caller owns.
func NewDeliver(session uint64, buf *bytebufferpool.ByteBuffer) Item {
	var it Item
	h := it.begin(OpDeliver, len(buf.B))
	it.end(binary.BigEndian.AppendUint64(h, session))
	it.buf, it.data = buf, true
	return it
}

// NewNotify is a NOTIFY of user with code and the JSON in buf, which the
// item takes. Safe for concurrent use: it returns a new Item the caller owns.
func NewNotify(user uint64, code uint16, buf *bytebufferpool.ByteBuffer) Item {
	var it Item
	h := it.begin(OpNotify, len(buf.B))
	h = binary.BigEndian.AppendUint64(h, user)
	it.end(binary.BigEndian.AppendUint16(h, code))
	it.buf, it.data = buf, true
	return it
}

// NewPing is a PING with nonce. Safe for concurrent use: it returns a new Item the caller owns.
func NewPing(nonce uint64) Item {
	var it Item
	it.end(binary.BigEndian.AppendUint64(it.begin(OpPing, 0), nonce))
	return it
}

// NewPong answers a PING's nonce with the count of frames read after HELLO
// on this connection (Reader.Count). Safe for concurrent use: it returns a new Item the caller owns.
func NewPong(nonce, received uint64) Item {
	var it Item
	h := binary.BigEndian.AppendUint64(it.begin(OpPong, 0), nonce)
	it.end(binary.BigEndian.AppendUint64(h, received))
	return it
}

// idsItem builds an item of op whose tail is ids (u64 each) and then frame
// b, in one pooled buffer.
func idsItem(op Op, ids []uint64, b []byte) Item {
	buf := bytebufferpool.Get()
	for _, id := range ids {
		buf.B = binary.BigEndian.AppendUint64(buf.B, id)
	}
	buf.B = append(buf.B, b...)
	var it Item
	h := it.begin(op, len(buf.B))
	it.end(binary.BigEndian.AppendUint32(h, uint32(len(ids))))
	it.buf, it.data = buf, true
	return it
}

// NewDeliverMany is a DELIVER_MANY of client frame b to sessions; b and
// sessions are copied into one pooled buffer. Safe for concurrent use: it returns a new Item the caller owns.
func NewDeliverMany(sessions []uint64, b []byte) Item { return idsItem(OpDeliverMany, sessions, b) }

// NewFanout is a FANOUT of client frame b to users; b and users are copied
// into one pooled buffer. Safe for concurrent use: it returns a new Item the caller owns.
func NewFanout(users []uint64, b []byte) Item { return idsItem(OpFanout, users, b) }

// NewForward is a FORWARD of the client frame in buf, which the item
// takes, for user with flags (ForwardP2P, ForwardFile). A FILE frame needs
// a peer that takes rerouting. Safe for concurrent use: it returns a new Item the caller owns.
func NewForward(user uint64, flags byte, buf *bytebufferpool.ByteBuffer) Item {
	var it Item
	h := it.begin(OpForward, len(buf.B))
	h = binary.BigEndian.AppendUint64(h, user)
	it.end(append(h, flags))
	it.buf, it.data = buf, true
	it.rerouting = flags&ForwardFile != 0 || (flags&ForwardP2P != 0 && frame.Frame(buf.B).Cmd() == frame.CmdFile)
	return it
}

// NewResult is a RESULT for the forwarded message mid to user to: an ACK
// status, ResultRefused or ResultMoved (which needs a peer that takes
// rerouting). Safe for concurrent use: it returns a new Item the caller owns.
func NewResult(to, mid uint64, status byte) Item {
	var it Item
	h := it.begin(OpResult, 0)
	h = binary.BigEndian.AppendUint64(h, to)
	h = binary.BigEndian.AppendUint64(h, mid)
	it.end(append(h, status))
	it.data, it.rerouting = true, status == ResultMoved
	return it
}

// NewStored is a STORED hint naming users whose messages were just stored
// offline; users are copied into one pooled buffer. It needs a peer that
// takes rerouting. Safe for concurrent use: it returns a new Item the caller owns.
func NewStored(users []uint64) Item {
	buf := bytebufferpool.Get()
	for _, u := range users {
		buf.B = binary.BigEndian.AppendUint64(buf.B, u)
	}
	var it Item
	h := it.begin(OpStored, len(buf.B))
	it.end(binary.BigEndian.AppendUint32(h, uint32(len(users))))
	it.buf, it.data, it.rerouting = buf, true, true
	return it
}
