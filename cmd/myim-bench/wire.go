package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// Payload layout, the same for every protocol: the send time (Unix
// nanoseconds, this process's clock), the sender's index and the sender's
// sequence number, then filler up to --size.
const (
	payloadMin = 24
)

func putPayload(p []byte, sender int, seq uint64) {
	binary.BigEndian.PutUint64(p[0:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(p[8:], uint64(sender))
	binary.BigEndian.PutUint64(p[16:], seq)
}

func payloadFields(p []byte) (sent int64, sender int, seq uint64, ok bool) {
	if len(p) < payloadMin {
		return 0, 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(p)), int(binary.BigEndian.Uint64(p[8:])), binary.BigEndian.Uint64(p[16:]), true
}

// evKind is what one received frame means to the bench.
type evKind uint8

const (
	evNone  evKind = iota // handled inside the codec (rekey) or of no interest
	evMsg                 // a pushed message
	evAck                 // a receipt for a message this client sent
	evPong                // answer to a ping
	evPing                // the server pings: answer with a pong
	evError               // an ERROR from the server
	evFetch               // end of a FETCH page (MyIM)
	evGroup               // answer to a GROUP operation (MyIM)
)

// event is one decoded frame. Slices alias the codec's scratch and are
// valid until its next call to next.
type event struct {
	kind    evKind
	qos     frame.QoS
	group   bool
	from    uint64 // MyIM: sender's user id; mqtt/fwd: unused
	to      uint64 // MyIM group messages: the group
	cid     uint64 // sender's id for the message (ack: which of ours)
	mid     uint64 // server's id (MyIM), packet id (mqtt)
	status  byte
	code    uint16
	req     uint32
	flags   byte
	cursor  uint64
	count   uint16
	payload []byte
	text    string
}

// codec is one connection's protocol state. The send half (append*) and
// the receive half (next) may run on different goroutines; each half must
// be serialised by its caller.
type codec interface {
	// appendMsg appends one message frame to dst.
	appendMsg(dst []byte, group bool, to uint64, q frame.QoS, cid uint64, payload []byte) ([]byte, error)
	// appendPing appends a ping carrying payload (protocols that cannot
	// carry one drop it).
	appendPing(dst, payload []byte) ([]byte, error)
	// appendReceipt appends the recipient's receipt for ev (QoS 1).
	appendReceipt(dst []byte, ev *event) ([]byte, error)
	// appendPong answers a server's ping.
	appendPong(dst []byte) ([]byte, error)
	// next decodes the frame at the start of b: n is 0 while b holds no
	// whole frame.
	next(b []byte) (n int, ev event, err error)
}

// errServer is an ERROR frame that ends a session.
var errServer = errors.New("bench: server closed the session with an error")

// --- MyIM -----------------------------------------------------------------

type myimCodec struct {
	keys *session.Keys
	user uint64
	pt   []byte // send half: plaintext scratch
	rb   []byte // receive half: opened bodies
}

// myimHandshake runs the endpoint's Noise IK handshake with token on nc and
// returns the session's codec. It reads exactly the server's answer, so the
// socket holds nothing the caller has not seen.
func myimHandshake(nc net.Conn, dev *sessionDevice, serverKey []byte, token string) (*myimCodec, error) {
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	hs, err := session.NewEndpointClient(nil, dev.key, serverKey, token)
	if err != nil {
		return nil, err
	}
	msg1, err := hs.WriteFrame(nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(msg1); err != nil {
		return nil, err
	}
	f, err := frame.Read(nc, frame.MaxEncodable)
	if err != nil {
		return nil, err
	}
	if f.Cmd() == frame.CmdError && len(f.Body()) >= frame.ErrorLen {
		e := frame.Error(f.Body())
		return nil, fmt.Errorf("%w: code %d: %s", errServer, e.Code(), e.Text())
	}
	acc, keys, err := hs.ReadAccepted(f)
	if err != nil {
		return nil, err
	}
	return &myimCodec{keys: keys, user: acc.UserID}, nil
}

// myimOpen runs the handshake, then proves the session keys with a sealed
// frame (the endpoint announces a session only after its first sealed
// frame opens) and waits for the PONG of a PING sent behind it, so the
// session is online before the scenario starts. Frames that arrive before
// that PONG (stored messages drained at connect) are kept, in order, for
// the connection's reader: the returned net.Conn yields them first.
func myimOpen(nc net.Conn, dev *sessionDevice, serverKey []byte, token string) (net.Conn, *myimCodec, error) {
	m, err := myimHandshake(nc, dev, serverKey, token)
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	out, err := m.seal(nil, frame.CmdPong, frame.QoS0, nil)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, frame.Ping...)
	if _, err := nc.Write(out); err != nil {
		return nil, nil, err
	}
	var early []byte
	for {
		f, err := frame.Read(nc, frame.MaxEncodable)
		if err != nil {
			return nil, nil, err
		}
		if f.Cmd() == frame.CmdPong && len(f.Body()) == 0 {
			break
		}
		if f.Cmd() == frame.CmdError && len(f.Body()) >= frame.ErrorLen {
			e := frame.Error(f.Body())
			return nil, nil, fmt.Errorf("%w: code %d: %s", errServer, e.Code(), e.Text())
		}
		early = append(early, f...)
	}
	if len(early) == 0 {
		return nc, m, nil
	}
	return &prefixConn{Conn: nc, pre: early}, m, nil
}

// prefixConn is a net.Conn whose first reads return pre.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes the connection underneath, when it can.
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

func (m *myimCodec) seal(dst []byte, c frame.Cmd, q frame.QoS, pt []byte) ([]byte, error) {
	dst, err := m.keys.Seal(dst, c, q, pt)
	if err != nil {
		return dst, err
	}
	if now := time.Now(); m.keys.NeedRekey(now) {
		return m.keys.SendRekey(dst, now)
	}
	return dst, nil
}

func (m *myimCodec) appendMsg(dst []byte, group bool, to uint64, q frame.QoS, cid uint64, payload []byte) ([]byte, error) {
	cmd := frame.CmdMsg
	if group {
		cmd = frame.CmdGroupMsg
	}
	m.pt = frame.AppendMsgHeader(m.pt[:0], frame.MsgHeader{From: m.user, To: to, Time: time.Now().UnixMilli(), CID: cid})
	m.pt = append(m.pt, payload...)
	return m.seal(dst, cmd, q, m.pt)
}

func (m *myimCodec) appendPing(dst, payload []byte) ([]byte, error) {
	return frame.Append(dst, frame.CmdPing, frame.QoS0, payload)
}

func (m *myimCodec) appendPong(dst []byte) ([]byte, error) { return append(dst, frame.Pong...), nil }

func (m *myimCodec) appendReceipt(dst []byte, ev *event) ([]byte, error) {
	var b [frame.AckLen + 4]byte
	var f []byte
	if ev.group {
		f, _ = frame.AppendAck(b[:0], 0, ev.mid, ev.to, frame.AckGroupRead)
	} else {
		f, _ = frame.AppendAck(b[:0], 0, ev.mid, ev.from, frame.AckReceived)
	}
	return m.seal(dst, frame.CmdAck, frame.QoS0, frame.Frame(f).Body())
}

// appendFetch asks for a page of offline p2p messages.
func (m *myimCodec) appendFetch(dst []byte, req uint32, cursor uint64, count uint16) ([]byte, error) {
	var b [frame.FetchLen + 4]byte
	f, _ := frame.AppendFetch(b[:0], req, frame.FetchP2P, 0, cursor, count)
	return m.seal(dst, frame.CmdFetch, frame.QoS0, frame.Frame(f).Body())
}

// appendGroupOp sends a GROUP operation.
func (m *myimCodec) appendGroupOp(dst []byte, req uint32, op byte, group uint64, js []byte) ([]byte, error) {
	f, _ := frame.AppendGroup(nil, req, op, group, js)
	return m.seal(dst, frame.CmdGroup, frame.QoS0, frame.Frame(f).Body())
}

func (m *myimCodec) next(b []byte) (int, event, error) {
	size, err := frame.Split(b, frame.MaxEncodable)
	if err != nil || size == 0 || size > len(b) {
		return 0, event{}, err
	}
	f := frame.Frame(b[:size])
	if err := frame.CheckEnvelope(f); err != nil {
		return 0, event{}, err
	}
	switch f.Cmd() {
	case frame.CmdPong:
		return size, event{kind: evPong, payload: f.Body()}, nil
	case frame.CmdPing:
		return size, event{kind: evPing}, nil
	case frame.CmdRekey:
		return size, event{}, m.keys.RecvRekey(f)
	}
	body, err := m.keys.Open(m.rb[:0], f)
	if err != nil {
		if f.Cmd() == frame.CmdError && len(f.Body()) >= frame.ErrorLen { // sent before sealing
			e := frame.Error(f.Body())
			return 0, event{}, fmt.Errorf("%w: code %d: %s", errServer, e.Code(), e.Text())
		}
		return 0, event{}, err
	}
	m.rb = body
	if err := frame.CheckBody(f.Cmd(), body); err != nil {
		return 0, event{}, err
	}
	switch f.Cmd() {
	case frame.CmdMsg, frame.CmdGroupMsg:
		msg := frame.Msg(body)
		return size, event{kind: evMsg, qos: f.QoS(), group: f.Cmd() == frame.CmdGroupMsg, from: msg.From(), to: msg.To(),
			cid: msg.CID(), mid: msg.MID(), payload: msg.Content()}, nil
	case frame.CmdAck:
		a := frame.Ack(body)
		return size, event{kind: evAck, cid: a.CID(), mid: a.MID(), from: a.Peer(), status: a.Status()}, nil
	case frame.CmdError:
		e := frame.Error(body)
		return size, event{kind: evError, code: e.Code(), cid: e.Ref(), text: string(e.Text())}, nil
	case frame.CmdFetch:
		fe := frame.Fetch(body)
		return size, event{kind: evFetch, req: fe.Req(), flags: fe.Flags(), cursor: fe.Cursor(), count: fe.Count()}, nil
	case frame.CmdGroup:
		g := frame.Group(body)
		return size, event{kind: evGroup, req: g.Req(), to: g.Group(), payload: g.JSON()}, nil
	}
	return size, event{}, nil
}

// --- fwd: the length-prefixed frames of benchmarks/cmd/gnetfwd and
// benchmarks/cmd/connfwd -----------------------------------------------------
//
// A frame is Length (4 bytes, big-endian, the bytes after it), Type (1),
// Peer (8), CID (8), payload. HELLO's Peer is the sender's own id and the
// server answers with the same HELLO; MSG and RCPT carry the destination,
// which the server replaces by the source before relaying; PING comes back
// as PONG with its payload. Type's top bit on MSG asks for a receipt.

const (
	fwdHeader = 4 + 1 + 8 + 8

	fwdHello byte = 1
	fwdMsg   byte = 2
	fwdRcpt  byte = 3
	fwdPing  byte = 4
	fwdPong  byte = 5
	fwdQoS1  byte = 0x80
	fwdMax        = 1 << 20
)

type fwdCodec struct{ id uint64 }

func appendFwd(dst []byte, typ byte, peer, cid uint64, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(fwdHeader-4+len(payload)))
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint64(dst, peer)
	dst = binary.BigEndian.AppendUint64(dst, cid)
	return append(dst, payload...)
}

func fwdHandshake(nc net.Conn, id uint64) (*fwdCodec, error) {
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	if _, err := nc.Write(appendFwd(nil, fwdHello, id, 0, nil)); err != nil {
		return nil, err
	}
	var b [fwdHeader]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		return nil, err
	}
	if b[4] != fwdHello || binary.BigEndian.Uint64(b[5:]) != id {
		return nil, errors.New("fwd: bad HELLO answer")
	}
	return &fwdCodec{id: id}, nil
}

func (c *fwdCodec) appendMsg(dst []byte, _ bool, to uint64, q frame.QoS, cid uint64, payload []byte) ([]byte, error) {
	t := fwdMsg
	if q == frame.QoS1 {
		t |= fwdQoS1
	}
	return appendFwd(dst, t, to, cid, payload), nil
}

func (c *fwdCodec) appendPing(dst, payload []byte) ([]byte, error) {
	return appendFwd(dst, fwdPing, 0, 0, payload), nil
}

func (c *fwdCodec) appendPong(dst []byte) ([]byte, error) { return dst, nil }

func (c *fwdCodec) appendReceipt(dst []byte, ev *event) ([]byte, error) {
	return appendFwd(dst, fwdRcpt, ev.from, ev.cid, nil), nil
}

func (c *fwdCodec) next(b []byte) (int, event, error) {
	if len(b) < 4 {
		return 0, event{}, nil
	}
	size := 4 + int(binary.BigEndian.Uint32(b))
	if size < fwdHeader || size > fwdMax {
		return 0, event{}, errors.New("fwd: bad frame length")
	}
	if size > len(b) {
		return 0, event{}, nil
	}
	t, peer, cid, p := b[4], binary.BigEndian.Uint64(b[5:]), binary.BigEndian.Uint64(b[13:]), b[fwdHeader:size]
	switch t &^ fwdQoS1 {
	case fwdMsg:
		q := frame.QoS0
		if t&fwdQoS1 != 0 {
			q = frame.QoS1
		}
		return size, event{kind: evMsg, qos: q, from: peer, cid: cid, payload: p}, nil
	case fwdRcpt:
		return size, event{kind: evAck, from: peer, cid: cid, status: frame.AckDelivered}, nil
	case fwdPong:
		return size, event{kind: evPong, payload: p}, nil
	}
	return size, event{}, nil
}

// --- MQTT 3.1.1, the few packets a client needs ---------------------------
//
// Each bench client is client id "bench<i>" subscribed at QoS 1 to its own
// topic "u/<i>"; a message to user j is a PUBLISH to "u/<j>".

type mqttCodec struct {
	idx  int
	topt []byte
}

func mqttTopic(dst []byte, id uint64) []byte {
	return strconv.AppendUint(append(dst, "u/"...), id, 10)
}

func appendMQTT(dst []byte, typ byte, body ...[]byte) []byte {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	dst = append(dst, typ)
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if n == 0 {
			break
		}
	}
	for _, b := range body {
		dst = append(dst, b...)
	}
	return dst
}

func mqttString(dst []byte, s []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// readMQTT reads one whole packet.
func readMQTT(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, err
	}
	n, mul, i := 0, 1, 1
	for {
		n += int(hdr[i]&0x7f) * mul
		if hdr[i]&0x80 == 0 {
			break
		}
		if i == 4 {
			return nil, errors.New("mqtt: bad remaining length")
		}
		mul <<= 7
		i++
		if _, err := io.ReadFull(r, hdr[i:i+1]); err != nil {
			return nil, err
		}
	}
	buf := make([]byte, i+1+n)
	copy(buf, hdr[:i+1])
	_, err := io.ReadFull(r, buf[i+1:])
	return buf, err
}

func mqttHandshake(nc net.Conn, idx int, id uint64) (*mqttCodec, error) {
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	vh := mqttString(nil, []byte("MQTT"))
	vh = append(vh, 4, 0x02, 0, 0) // level 4, clean session, no keepalive
	conn := appendMQTT(nil, 0x10, vh, mqttString(nil, []byte("bench"+strconv.FormatUint(id, 10))))
	if _, err := nc.Write(conn); err != nil {
		return nil, err
	}
	p, err := readMQTT(nc)
	if err != nil {
		return nil, err
	}
	if p[0]>>4 != 2 || len(p) < 4 || p[3] != 0 {
		return nil, fmt.Errorf("mqtt: CONNACK refused: % x", p)
	}
	sub := appendMQTT(nil, 0x82, []byte{0, 1}, mqttString(nil, mqttTopic(nil, id)), []byte{1})
	if _, err := nc.Write(sub); err != nil {
		return nil, err
	}
	if p, err = readMQTT(nc); err != nil {
		return nil, err
	}
	if p[0]>>4 != 9 || p[len(p)-1] > 2 {
		return nil, fmt.Errorf("mqtt: SUBACK refused: % x", p)
	}
	return &mqttCodec{idx: idx}, nil
}

func (c *mqttCodec) appendMsg(dst []byte, _ bool, to uint64, q frame.QoS, cid uint64, payload []byte) ([]byte, error) {
	c.topt = mqttString(c.topt[:0], mqttTopic(nil, to))
	if q == frame.QoS0 {
		return appendMQTT(dst, 0x30, c.topt, payload), nil
	}
	var pid [2]byte
	binary.BigEndian.PutUint16(pid[:], uint16(cid%65535)+1)
	return appendMQTT(dst, 0x32, c.topt, pid[:], payload), nil
}

func (c *mqttCodec) appendPing(dst, _ []byte) ([]byte, error) { return append(dst, 0xC0, 0), nil }

func (c *mqttCodec) appendPong(dst []byte) ([]byte, error) { return dst, nil }

func (c *mqttCodec) appendReceipt(dst []byte, ev *event) ([]byte, error) {
	return append(dst, 0x40, 2, byte(ev.mid>>8), byte(ev.mid)), nil
}

func (c *mqttCodec) next(b []byte) (int, event, error) {
	if len(b) < 2 {
		return 0, event{}, nil
	}
	n, mul, i := 0, 1, 1
	for {
		if i >= len(b) {
			return 0, event{}, nil
		}
		n += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			break
		}
		if i == 4 {
			return 0, event{}, errors.New("mqtt: bad remaining length")
		}
		mul <<= 7
		i++
	}
	size := i + 1 + n
	if size > len(b) {
		return 0, event{}, nil
	}
	p := b[i+1 : size]
	switch b[0] >> 4 {
	case 3: // PUBLISH
		q := frame.QoS((b[0] >> 1) & 3)
		if len(p) < 2 {
			return 0, event{}, errors.New("mqtt: short PUBLISH")
		}
		tl := int(binary.BigEndian.Uint16(p))
		off := 2 + tl
		var pid uint64
		if q > 0 {
			if len(p) < off+2 {
				return 0, event{}, errors.New("mqtt: short PUBLISH")
			}
			pid = uint64(binary.BigEndian.Uint16(p[off:]))
			off += 2
		}
		if len(p) < off {
			return 0, event{}, errors.New("mqtt: short PUBLISH")
		}
		return size, event{kind: evMsg, qos: min(q, frame.QoS1), mid: pid, payload: p[off:]}, nil
	case 4: // PUBACK
		if len(p) < 2 {
			return 0, event{}, errors.New("mqtt: short PUBACK")
		}
		return size, event{kind: evAck, cid: uint64(binary.BigEndian.Uint16(p)), status: frame.AckDelivered}, nil
	case 13: // PINGRESP
		return size, event{kind: evPong}, nil
	}
	return size, event{}, nil
}
