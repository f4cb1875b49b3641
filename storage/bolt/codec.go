package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/myim/myim/storage"
)

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func pair(a, b uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, a)
	binary.BigEndian.PutUint64(k[8:], b)
	return k
}

func triple(a, b, c uint64) []byte {
	k := make([]byte, 24)
	binary.BigEndian.PutUint64(k, a)
	binary.BigEndian.PutUint64(k[8:], b)
	binary.BigEndian.PutUint64(k[16:], c)
	return k
}

// putTime appends t so that byte order matches int64 order.
func putTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t)^1<<63)
}

func getTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ 1<<63) }

func offlineKey(to, mid uint64) []byte {
	return pair(to, mid)
}

// expKey is expiresAt|group|seq; its last 16 bytes are the gmsgs key.
func expKey(expiresAt int64, group, seq uint64) []byte {
	k := make([]byte, 0, 24)
	k = putTime(k, expiresAt)
	k = binary.BigEndian.AppendUint64(k, group)
	return binary.BigEndian.AppendUint64(k, seq)
}

func errCorrupt(bucket string) error {
	return fmt.Errorf("storage: corrupt record in bucket %s", bucket)
}

// reader decodes a record; the first failure sticks, checked once in err.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// bytes returns a copy of a uvarint-prefixed field (nil when empty).
func (r *reader) bytes() []byte {
	n, w := binary.Uvarint(r.b)
	if w <= 0 || uint64(len(r.b)-w) < n {
		r.bad = true
		return nil
	}
	v := r.b[w : w+int(n)]
	r.b = r.b[w+int(n):]
	if n == 0 {
		return nil
	}
	return bytes.Clone(v)
}

func (r *reader) str() string {
	n, w := binary.Uvarint(r.b)
	if w <= 0 || uint64(len(r.b)-w) < n {
		r.bad = true
		return ""
	}
	v := string(r.b[w : w+int(n)])
	r.b = r.b[w+int(n):]
	return v
}

// rest returns a copy of the remaining bytes (nil when empty).
func (r *reader) rest() []byte {
	if len(r.b) == 0 {
		return nil
	}
	v := bytes.Clone(r.b)
	r.b = nil
	return v
}

func (r *reader) err(bucket string) error {
	if r.bad || len(r.b) != 0 {
		return errCorrupt(bucket)
	}
	return nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendStr(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func encodeUser(u *storage.User) []byte {
	b := make([]byte, 0, 8+len(u.Name)+len(u.PassHash)+len(u.Signature)+len(u.Profile)+8)
	b = binary.BigEndian.AppendUint64(b, uint64(u.CreatedAt))
	b = appendStr(b, u.Name)
	b = appendStr(b, u.PassHash)
	b = appendStr(b, u.Signature)
	return appendBytes(b, u.Profile)
}

func decodeUser(id uint64, v []byte, u *storage.User) error {
	r := reader{b: v}
	*u = storage.User{ID: id}
	u.CreatedAt = int64(r.u64())
	u.Name = r.str()
	u.PassHash = r.str()
	u.Signature = r.str()
	u.Profile = r.bytes()
	return r.err("users")
}

func encodeDevice(d *storage.Device) []byte {
	b := make([]byte, 0, 16+len(d.Fingerprint)+len(d.Addr)+4)
	b = binary.BigEndian.AppendUint64(b, uint64(d.FirstSeen))
	b = binary.BigEndian.AppendUint64(b, uint64(d.LastSeen))
	b = appendStr(b, d.Fingerprint)
	return appendStr(b, d.Addr)
}

func decodeDevice(k, v []byte, d *storage.Device) error {
	if len(k) != 40 {
		return errCorrupt("devices")
	}
	r := reader{b: v}
	*d = storage.Device{User: binary.BigEndian.Uint64(k)}
	copy(d.KeyHash[:], k[8:])
	d.FirstSeen = int64(r.u64())
	d.LastSeen = int64(r.u64())
	d.Fingerprint = r.str()
	d.Addr = r.str()
	return r.err("devices")
}

// Offline message value: from(8) cid(8) srv(4) qos(1) content.
func encodeMessage(m *storage.Message) []byte {
	b := make([]byte, 0, 21+len(m.Content))
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.CID)
	b = binary.BigEndian.AppendUint32(b, m.Srv)
	b = append(b, m.QoS)
	return append(b, m.Content...)
}

// decodeMessage reads an offline record: k is to|mid, ref its offmid
// value (time|from|cid), which holds the sender's time.
func decodeMessage(k, v, ref []byte, m *storage.Message) error {
	if len(k) != 16 || len(ref) != 24 {
		return errCorrupt("offline")
	}
	r := reader{b: v}
	*m = storage.Message{To: binary.BigEndian.Uint64(k), Time: getTime(ref), MID: binary.BigEndian.Uint64(k[8:])}
	m.From = r.u64()
	m.CID = r.u64()
	m.Srv = r.u32()
	m.QoS = r.u8()
	m.Content = r.rest()
	return r.err("offline")
}

func encodeGroup(g *groupRec) []byte {
	b := make([]byte, 0, 28+len(g.name)+2)
	b = binary.BigEndian.AppendUint64(b, g.owner)
	b = binary.BigEndian.AppendUint64(b, g.highest)
	b = binary.BigEndian.AppendUint32(b, g.members)
	b = binary.BigEndian.AppendUint64(b, uint64(g.createdAt))
	b = appendStr(b, g.name)
	var flags byte
	if g.open {
		flags |= groupOpen
	}
	return append(b, flags)
}

// groupOpen is bit 0 of a group record's flags byte.
const groupOpen = 1

func decodeGroup(v []byte, g *groupRec) error {
	r := reader{b: v}
	g.owner = r.u64()
	g.highest = r.u64()
	g.members = r.u32()
	g.createdAt = int64(r.u64())
	g.name = r.str()
	if len(r.b) > 0 { // absent before schema version 2: closed
		g.open = r.u8()&groupOpen != 0
	}
	return r.err("groups")
}

func decodeMember(user uint64, v []byte) (storage.Member, error) {
	r := reader{b: v}
	m := storage.Member{User: user, JoinSeq: r.u64(), AckedSeq: r.u64(), JoinedAt: int64(r.u64())}
	if len(r.b) > 0 { // absent before schema version 2: a plain member
		m.Role = r.u8()
	}
	return m, r.err("gmembers")
}

// Group message value: from(8) time(8) cid(8) mid(8) sent(4) count(4)
// expires(8, sign-flipped) content. countDelivered patches sent in place.
const (
	gmsgSentOff  = 32
	gmsgCountOff = 36
	gmsgExpOff   = 40
	gmsgFixed    = 48
)

func encodeGroupMsg(m *storage.GroupMessage) []byte {
	b := make([]byte, 0, gmsgFixed+len(m.Content))
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
	b = binary.BigEndian.AppendUint64(b, m.CID)
	b = binary.BigEndian.AppendUint64(b, m.MID)
	b = binary.BigEndian.AppendUint32(b, m.SentCount)
	b = binary.BigEndian.AppendUint32(b, m.MemberCount)
	b = putTime(b, m.ExpiresAt)
	return append(b, m.Content...)
}

func decodeGroupMsg(k, v []byte, m *storage.GroupMessage) error {
	if len(k) != 16 {
		return errCorrupt("gmsgs")
	}
	r := reader{b: v}
	*m = storage.GroupMessage{Group: binary.BigEndian.Uint64(k), Seq: binary.BigEndian.Uint64(k[8:])}
	m.From = r.u64()
	m.Time = int64(r.u64())
	m.CID = r.u64()
	m.MID = r.u64()
	m.SentCount = r.u32()
	m.MemberCount = r.u32()
	exp := r.u64()
	m.ExpiresAt = int64(exp ^ 1<<63)
	m.Content = r.rest()
	return r.err("gmsgs")
}
