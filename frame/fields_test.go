package frame_test

import (
	"math/rand/v2"

	"github.com/myim/myim/frame"
)

// bodyFields is the decoded form of one body layout: a comparable struct
// holding every field, variable parts as strings. The vector, round-trip and
// fuzz tests all go through it, so each layout's Append function and view
// accessors are exercised in one place.
type bodyFields interface {
	// appendFrame encodes a whole frame with the layout's Append function.
	// Layouts whose Append function fixes the command or QoS ignore c or q.
	appendFrame(dst []byte, c frame.Cmd, q frame.QoS) ([]byte, error)
	// readBody reads the fields back through the view's accessors. body
	// must have passed frame.Check or frame.CheckBody.
	readBody(body []byte) bodyFields
	// random returns random fields whose variable part is n bytes long.
	random(r *rand.Rand, n int) bodyFields
}

// layoutOf returns the zero value of c's layout, or nil for unknown codes.
func layoutOf(c frame.Cmd) bodyFields {
	switch c {
	case frame.CmdPing, frame.CmdPong, frame.CmdBye, frame.CmdHandshake, frame.CmdAuth, frame.CmdRekey:
		return raw{}
	case frame.CmdMsg, frame.CmdGroupMsg:
		return msgFields{}
	case frame.CmdPresence, frame.CmdFriendNotify:
		return presenceFields{}
	case frame.CmdFile:
		return fileFields{}
	case frame.CmdFileServer:
		return fileServerFields{}
	case frame.CmdFetch:
		return fetchFields{}
	case frame.CmdSignature, frame.CmdFriendInfo, frame.CmdFriendsOnline, frame.CmdServerList, frame.CmdProfile:
		return lookupFields{}
	case frame.CmdAck:
		return ackFields{}
	case frame.CmdError:
		return errorFields{}
	case frame.CmdNotice:
		return noticeFields{}
	case frame.CmdGroup:
		return groupFields{}
	}
	return nil
}

// randBytes returns n random bytes as a string.
func randBytes(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

func randHeader(r *rand.Rand) frame.MsgHeader {
	return frame.MsgHeader{From: r.Uint64(), To: r.Uint64(), Time: r.Int64() - r.Int64(),
		CID: r.Uint64(), Srv: r.Uint32(), MID: r.Uint64(), DSrv: r.Uint32()}
}

// raw is an opaque body: PING, PONG, BYE, HANDSHAKE, AUTH, REKEY.
type raw struct{ Body string }

func (v raw) appendFrame(dst []byte, c frame.Cmd, q frame.QoS) ([]byte, error) {
	return frame.Append(dst, c, q, []byte(v.Body))
}

func (raw) readBody(b []byte) bodyFields { return raw{string(b)} }

func (raw) random(r *rand.Rand, n int) bodyFields { return raw{randBytes(r, n)} }

// msgFields is the MSG and GROUP_MSG body.
type msgFields struct {
	H       frame.MsgHeader
	Content string
}

func (v msgFields) appendFrame(dst []byte, c frame.Cmd, q frame.QoS) ([]byte, error) {
	return frame.AppendMsg(dst, c, q, v.H, []byte(v.Content))
}

func (msgFields) readBody(b []byte) bodyFields {
	m := frame.Msg(b)
	h := frame.MsgHeader{From: m.From(), To: m.To(), Time: m.Time(), CID: m.CID(),
		Srv: m.Srv(), MID: m.MID(), DSrv: m.DSrv()}
	return msgFields{h, string(m.Content())}
}

func (msgFields) random(r *rand.Rand, n int) bodyFields {
	return msgFields{randHeader(r), randBytes(r, n)}
}

// fileFields is the FILE body.
type fileFields struct {
	H            frame.MsgHeader
	Op           byte
	Xfer, Offset uint64
	Data         string
}

func (v fileFields) appendFrame(dst []byte, _ frame.Cmd, q frame.QoS) ([]byte, error) {
	return frame.AppendFile(dst, q, v.H, v.Op, v.Xfer, v.Offset, []byte(v.Data))
}

func (fileFields) readBody(b []byte) bodyFields {
	f := frame.File(b)
	return fileFields{f.Msg().Header(), f.Op(), f.Xfer(), f.Offset(), string(f.Data())}
}

func (fileFields) random(r *rand.Rand, n int) bodyFields {
	return fileFields{randHeader(r), byte(r.Uint32()), r.Uint64(), r.Uint64(), randBytes(r, n)}
}

// presenceFields is the PRESENCE and FRIEND_NOTIFY body.
type presenceFields struct {
	User   uint64
	Time   int64
	Status byte
	Text   string
}

func (v presenceFields) appendFrame(dst []byte, c frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendPresence(dst, c, v.User, v.Time, v.Status, []byte(v.Text))
}

func (presenceFields) readBody(b []byte) bodyFields {
	p := frame.Presence(b)
	return presenceFields{p.User(), p.Time(), p.Status(), string(p.Text())}
}

func (presenceFields) random(r *rand.Rand, n int) bodyFields {
	return presenceFields{r.Uint64(), r.Int64() - r.Int64(), byte(r.Uint32()), randBytes(r, n)}
}

// fileServerFields is the FILE_SERVER body.
type fileServerFields struct {
	Req            uint32
	Op             byte
	FileID, Offset uint64
	Data           string
}

func (v fileServerFields) appendFrame(dst []byte, _ frame.Cmd, q frame.QoS) ([]byte, error) {
	return frame.AppendFileServer(dst, q, v.Req, v.Op, v.FileID, v.Offset, []byte(v.Data))
}

func (fileServerFields) readBody(b []byte) bodyFields {
	f := frame.FileServer(b)
	return fileServerFields{f.Req(), f.Op(), f.FileID(), f.Offset(), string(f.Data())}
}

func (fileServerFields) random(r *rand.Rand, n int) bodyFields {
	return fileServerFields{r.Uint32(), byte(r.Uint32()), r.Uint64(), r.Uint64(), randBytes(r, n)}
}

// fetchFields is the FETCH body; it has no variable part.
type fetchFields struct {
	Req         uint32
	Kind, Flags byte
	Cursor      uint64
	Count       uint16
}

func (v fetchFields) appendFrame(dst []byte, _ frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendFetch(dst, v.Req, v.Kind, v.Flags, v.Cursor, v.Count)
}

func (fetchFields) readBody(b []byte) bodyFields {
	f := frame.Fetch(b)
	return fetchFields{f.Req(), f.Kind(), f.Flags(), f.Cursor(), f.Count()}
}

func (fetchFields) random(r *rand.Rand, _ int) bodyFields {
	return fetchFields{r.Uint32(), byte(r.Uint32()), byte(r.Uint32()), r.Uint64(), uint16(r.Uint32())}
}

// lookupFields is the SIGNATURE, FRIEND_INFO, FRIENDS_ONLINE and SERVER_LIST body.
type lookupFields struct {
	Req    uint32
	Target uint64
	JSON   string
}

func (v lookupFields) appendFrame(dst []byte, c frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendLookup(dst, c, v.Req, v.Target, []byte(v.JSON))
}

func (lookupFields) readBody(b []byte) bodyFields {
	l := frame.Lookup(b)
	return lookupFields{l.Req(), l.Target(), string(l.JSON())}
}

func (lookupFields) random(r *rand.Rand, n int) bodyFields {
	return lookupFields{r.Uint32(), r.Uint64(), randBytes(r, n)}
}

// ackFields is the ACK body; it has no variable part.
type ackFields struct {
	CID, MID, Peer uint64
	Status         byte
}

func (v ackFields) appendFrame(dst []byte, _ frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendAck(dst, v.CID, v.MID, v.Peer, v.Status)
}

func (ackFields) readBody(b []byte) bodyFields {
	a := frame.Ack(b)
	return ackFields{a.CID(), a.MID(), a.Peer(), a.Status()}
}

func (ackFields) random(r *rand.Rand, _ int) bodyFields {
	return ackFields{r.Uint64(), r.Uint64(), r.Uint64(), byte(r.Uint32())}
}

// errorFields is the ERROR body.
type errorFields struct {
	Code uint16
	Ref  uint64
	Text string
}

func (v errorFields) appendFrame(dst []byte, _ frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendError(dst, v.Code, v.Ref, v.Text)
}

func (errorFields) readBody(b []byte) bodyFields {
	e := frame.Error(b)
	return errorFields{e.Code(), e.Ref(), string(e.Text())}
}

func (errorFields) random(r *rand.Rand, n int) bodyFields {
	return errorFields{uint16(r.Uint32()), r.Uint64(), randBytes(r, n)}
}

// noticeFields is the NOTICE body.
type noticeFields struct {
	Code uint16
	JSON string
}

func (v noticeFields) appendFrame(dst []byte, _ frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendNotice(dst, v.Code, []byte(v.JSON))
}

func (noticeFields) readBody(b []byte) bodyFields {
	n := frame.Notice(b)
	return noticeFields{n.Code(), string(n.JSON())}
}

func (noticeFields) random(r *rand.Rand, n int) bodyFields {
	return noticeFields{uint16(r.Uint32()), randBytes(r, n)}
}

// groupFields is the GROUP body.
type groupFields struct {
	Req   uint32
	Op    byte
	Group uint64
	JSON  string
}

func (v groupFields) appendFrame(dst []byte, _ frame.Cmd, _ frame.QoS) ([]byte, error) {
	return frame.AppendGroup(dst, v.Req, v.Op, v.Group, []byte(v.JSON))
}

func (groupFields) readBody(b []byte) bodyFields {
	g := frame.Group(b)
	return groupFields{g.Req(), g.Op(), g.Group(), string(g.JSON())}
}

func (groupFields) random(r *rand.Rand, n int) bodyFields {
	return groupFields{r.Uint32(), byte(r.Uint32()), r.Uint64(), randBytes(r, n)}
}
