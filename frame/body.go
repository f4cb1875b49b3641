package frame

import "encoding/binary"

// Body layouts. Every integer is big-endian and every fixed field sits at a
// fixed offset, so a field is read without scanning. A view type is a body
// slice whose length the caller has checked (Check or CheckBody); its
// accessors alias the slice and its setters write in place, which is how a
// hop adds its fields without moving the content.

// Fixed body sizes.
const (
	MsgHeaderLen    = 48 // MSG, GROUP_MSG, and the start of FILE
	FileHeaderLen   = 17 // after MsgHeader in FILE: op, transfer id, offset
	FileFrameLen    = MsgHeaderLen + FileHeaderLen
	PresenceLen     = 17 // PRESENCE, FRIEND_NOTIFY
	FileServerLen   = 21 // FILE_SERVER
	FetchLen        = 16 // FETCH
	LookupLen       = 12 // SIGNATURE, FRIEND_INFO, FRIENDS_ONLINE, SERVER_LIST, PROFILE
	AckLen          = 25 // ACK
	ErrorLen        = 10 // ERROR
	HandshakeMinLen = 32 // HANDSHAKE: a Noise message holds at least one key
	NoticeLen       = 2  // NOTICE
	GroupLen        = 13 // GROUP
)

var be = binary.BigEndian

// Msg is the body of MSG and GROUP_MSG (and the first part of FILE), in the
// design note's element order followed by the slots the hops fill:
//
//	off size field
//	  0    8 From    sender's user id
//	  8    8 To      receiver's user id (MSG) or group id (GROUP_MSG)
//	 16    8 Time    send time, Unix milliseconds, set by the sender
//	 24    8 CID     the sender's own id for the message (idempotent resend)
//	 32    4 Srv     id of the endpoint the sender is on (set by that endpoint)
//	 36    8 MID     message id (set by the center; group: per-group sequence)
//	 44    4 DSrv    id of the delivering endpoint (set by it)
//	 48    -  Content
type Msg []byte

// MsgHeader holds Msg's fixed fields, for encoding.
type MsgHeader struct {
	From, To uint64
	Time     int64
	CID      uint64
	Srv      uint32
	MID      uint64
	DSrv     uint32
}

func (m Msg) From() uint64     { return be.Uint64(m[0:]) }
func (m Msg) To() uint64       { return be.Uint64(m[8:]) }
func (m Msg) Time() int64      { return int64(be.Uint64(m[16:])) }
func (m Msg) CID() uint64      { return be.Uint64(m[24:]) }
func (m Msg) Srv() uint32      { return be.Uint32(m[32:]) }
func (m Msg) MID() uint64      { return be.Uint64(m[36:]) }
func (m Msg) DSrv() uint32     { return be.Uint32(m[44:]) }
func (m Msg) Content() []byte  { return m[MsgHeaderLen:] }
func (m Msg) SetSrv(v uint32)  { be.PutUint32(m[32:], v) }
func (m Msg) SetMID(v uint64)  { be.PutUint64(m[36:], v) }
func (m Msg) SetDSrv(v uint32) { be.PutUint32(m[44:], v) }

// Header returns the fixed fields as a struct.
func (m Msg) Header() MsgHeader {
	return MsgHeader{From: m.From(), To: m.To(), Time: m.Time(), CID: m.CID(),
		Srv: m.Srv(), MID: m.MID(), DSrv: m.DSrv()}
}

// AppendMsgHeader appends h's 48 bytes.
func AppendMsgHeader(dst []byte, h MsgHeader) []byte {
	dst = be.AppendUint64(dst, h.From)
	dst = be.AppendUint64(dst, h.To)
	dst = be.AppendUint64(dst, uint64(h.Time))
	dst = be.AppendUint64(dst, h.CID)
	dst = be.AppendUint32(dst, h.Srv)
	dst = be.AppendUint64(dst, h.MID)
	return be.AppendUint32(dst, h.DSrv)
}

// AppendMsg appends a whole MSG or GROUP_MSG frame.
func AppendMsg(dst []byte, c Cmd, q QoS, h MsgHeader, content []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, c, q, MsgHeaderLen+len(content))
	if err != nil {
		return dst, err
	}
	dst = AppendMsgHeader(dst, h)
	return append(dst, content...), nil
}

// File operations (FILE body, FileOp field).
const (
	FileOffer    byte = 1 // data: JSON {name,size,sha256,chunk}
	FileAccept   byte = 2 // Offset: where the receiver wants the sender to start
	FileReject   byte = 3
	FileChunk    byte = 4 // data: bytes at Offset
	FileChunkAck byte = 5 // Offset: bytes received so far (opens the window)
	FileDone     byte = 6 // data: hex SHA-256 as checked by the receiver
	FileCancel   byte = 7
)

// File is the body of FILE: a Msg header (so chunks route like messages)
// followed by
//
//	off size field
//	 48    1 Op      one of the File* operations
//	 49    8 Xfer    transfer id chosen by the sender
//	 57    8 Offset  byte offset in the file
//	 65    -  Data
type File []byte

func (f File) Msg() Msg       { return Msg(f) }
func (f File) Op() byte       { return f[48] }
func (f File) Xfer() uint64   { return be.Uint64(f[49:]) }
func (f File) Offset() uint64 { return be.Uint64(f[57:]) }
func (f File) Data() []byte   { return f[FileFrameLen:] }

// AppendFile appends a whole FILE frame.
func AppendFile(dst []byte, q QoS, h MsgHeader, op byte, xfer, offset uint64, data []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdFile, q, FileFrameLen+len(data))
	if err != nil {
		return dst, err
	}
	dst = AppendMsgHeader(dst, h)
	dst = append(dst, op)
	dst = be.AppendUint64(dst, xfer)
	dst = be.AppendUint64(dst, offset)
	return append(dst, data...), nil
}

// Presence states (Presence body, Status field).
const (
	StatusOffline   byte = 0
	StatusOnline    byte = 1
	StatusAway      byte = 2
	StatusBusy      byte = 3
	StatusInvisible byte = 4
)

// Presence is the body of PRESENCE (client sets its own status) and of
// FRIEND_NOTIFY (server tells a friend's status):
//
//	off size field
//	  0    8 User
//	  8    8 Time    Unix milliseconds
//	 16    1 Status  one of the Status* values
//	 17    -  Text   optional status text, UTF-8
type Presence []byte

func (p Presence) User() uint64 { return be.Uint64(p[0:]) }
func (p Presence) Time() int64  { return int64(be.Uint64(p[8:])) }
func (p Presence) Status() byte { return p[16] }
func (p Presence) Text() []byte { return p[PresenceLen:] }

// AppendPresence appends a whole PRESENCE or FRIEND_NOTIFY frame.
func AppendPresence(dst []byte, c Cmd, user uint64, t int64, status byte, text []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, c, QoS0, PresenceLen+len(text))
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint64(dst, user)
	dst = be.AppendUint64(dst, uint64(t))
	dst = append(dst, status)
	return append(dst, text...), nil
}

// FileServer is the body of FILE_SERVER, request and response alike:
//
//	off size field
//	  0    4 Req     request id chosen by the client, echoed in the answer
//	  4    1 Op      operation (defined with the file server)
//	  5    8 FileID
//	 13    8 Offset
//	 21    -  Data   chunk bytes or JSON
type FileServer []byte

func (f FileServer) Req() uint32    { return be.Uint32(f[0:]) }
func (f FileServer) Op() byte       { return f[4] }
func (f FileServer) FileID() uint64 { return be.Uint64(f[5:]) }
func (f FileServer) Offset() uint64 { return be.Uint64(f[13:]) }
func (f FileServer) Data() []byte   { return f[FileServerLen:] }

// AppendFileServer appends a whole FILE_SERVER frame.
func AppendFileServer(dst []byte, q QoS, req uint32, op byte, file, offset uint64, data []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdFileServer, q, FileServerLen+len(data))
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint32(dst, req)
	dst = append(dst, op)
	dst = be.AppendUint64(dst, file)
	dst = be.AppendUint64(dst, offset)
	return append(dst, data...), nil
}

// File server operations (FILE_SERVER body, Op field). An answer echoes Req
// and has the request's Op, except that the WRITE completing an upload is
// answered with DONE; a refusal is an ERROR whose Ref is Req.
const (
	// FileServerUpload starts an upload (FileID 0, data JSON {name, size,
	// sha256}) or resumes one (FileID = upload id). Answer: FileID = upload
	// id, Offset = bytes the server has, i.e. where to write next.
	FileServerUpload byte = 1
	// FileServerWrite writes data at Offset of upload FileID; Offset must
	// be what the server has. Answer: Offset = bytes the server has now.
	FileServerWrite byte = 2
	// FileServerDone answers the write that completed an upload, once the
	// content matched its SHA-256: FileID = the new file id, data = the
	// file's JSON (docs/files.md).
	FileServerDone byte = 3
	// FileServerRead reads file FileID at Offset; data: optional 4-byte
	// big-endian length (default and maximum MaxFileChunk). Answer: the
	// bytes, fewer at the end of the file, none at or past it.
	FileServerRead byte = 4
	// FileServerStat answers the file's JSON (docs/files.md).
	FileServerStat byte = 5
	// FileServerDelete deletes one of the user's files.
	FileServerDelete byte = 6
	// FileServerList answers JSON {"files": [FileJSON...], "used": bytes,
	// "quota": bytes} for the user's own files.
	FileServerList byte = 7
	// FileServerShare shares file FileID; data JSON {"user": id} (a
	// friend) or {"group": id} (a group the owner is in).
	FileServerShare byte = 8
	// FileServerUnshare removes such a share.
	FileServerUnshare byte = 9
	// FileServerAbort discards upload FileID and its partial content.
	FileServerAbort byte = 10
)

// MaxFileChunk is the largest chunk a FILE or FILE_SERVER frame carries.
const MaxFileChunk = 256 << 10

// Fetch kinds and flags.
const (
	FetchP2P   byte = 0
	FetchGroup byte = 1
	FetchMore  byte = 1 // flag in the answer: more messages remain
)

// Fetch is the body of FETCH. The client asks with Count = page size and
// Cursor = 0; the server sends the page as MSG/GROUP_MSG frames and then a
// FETCH answer with the same Req, Count = messages sent, and FetchMore set
// when another page remains.
//
//	off size field
//	  0    4 Req
//	  4    1 Kind    FetchP2P or FetchGroup
//	  5    1 Flags
//	  6    8 Cursor
//	 14    2 Count
type Fetch []byte

func (f Fetch) Req() uint32    { return be.Uint32(f[0:]) }
func (f Fetch) Kind() byte     { return f[4] }
func (f Fetch) Flags() byte    { return f[5] }
func (f Fetch) Cursor() uint64 { return be.Uint64(f[6:]) }
func (f Fetch) Count() uint16  { return be.Uint16(f[14:]) }

// AppendFetch appends a whole FETCH frame.
func AppendFetch(dst []byte, req uint32, kind, flags byte, cursor uint64, count uint16) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdFetch, QoS0, FetchLen)
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint32(dst, req)
	dst = append(dst, kind, flags)
	dst = be.AppendUint64(dst, cursor)
	return be.AppendUint16(dst, count), nil
}

// Lookup is the body of SIGNATURE, FRIEND_INFO, FRIENDS_ONLINE and
// SERVER_LIST: the request carries Req and Target (a user id; 0 for "me"),
// the answer the same two fields and a JSON document. PROFILE has the same
// layout, its request carrying the JSON to set.
//
//	off size field
//	  0    4 Req
//	  4    8 Target
//	 12    -  JSON
type Lookup []byte

func (l Lookup) Req() uint32    { return be.Uint32(l[0:]) }
func (l Lookup) Target() uint64 { return be.Uint64(l[4:]) }
func (l Lookup) JSON() []byte   { return l[LookupLen:] }

// AppendLookup appends a whole lookup frame of command c.
func AppendLookup(dst []byte, c Cmd, req uint32, target uint64, json []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, c, QoS0, LookupLen+len(json))
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint32(dst, req)
	dst = be.AppendUint64(dst, target)
	return append(dst, json...), nil
}

// Ack statuses.
const (
	AckDelivered byte = 0 // the recipient acked it
	AckStored    byte = 1 // durably stored offline
	AckReceived  byte = 2 // recipient's receipt of a push (client to server)
	AckDuplicate byte = 3 // a resend of a message already accepted
	AckGroupRead byte = 4 // recipient's receipt of group messages up to MID (client to server)
)

// Ack is the body of ACK:
//
//	off size field
//	  0    8 CID     the sender's id for the message (0 on recipient acks)
//	  8    8 MID     message id, or group sequence
//	 16    8 Peer    the other user, or the group
//	 24    1 Status  one of the Ack* values
type Ack []byte

func (a Ack) CID() uint64  { return be.Uint64(a[0:]) }
func (a Ack) MID() uint64  { return be.Uint64(a[8:]) }
func (a Ack) Peer() uint64 { return be.Uint64(a[16:]) }
func (a Ack) Status() byte { return a[24] }

// AppendAck appends a whole ACK frame.
func AppendAck(dst []byte, cid, mid, peer uint64, status byte) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdAck, QoS0, AckLen)
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint64(dst, cid)
	dst = be.AppendUint64(dst, mid)
	dst = be.AppendUint64(dst, peer)
	return append(dst, status), nil
}

// Error codes (Error body, Code field).
const (
	ErrCodeMalformed    uint16 = 1  // frame could not be parsed; connection closes
	ErrCodeTooLarge     uint16 = 2  // frame over the maximum; connection closes
	ErrCodeUnauthorized uint16 = 3  // frame not allowed before the handshake
	ErrCodeForbidden    uint16 = 4  // e.g. a sender that is not the session's user
	ErrCodeRetry        uint16 = 5  // temporarily refused; retry later (QoS 1)
	ErrCodeNotFound     uint16 = 6  // unknown user, group or file
	ErrCodeIdle         uint16 = 7  // idle timeout
	ErrCodeSlowReader   uint16 = 8  // outbound queue over its limit
	ErrCodeCrypto       uint16 = 9  // frame failed to open
	ErrCodeInternal     uint16 = 10 // server-side failure
	ErrCodeBadRequest   uint16 = 11 // well-formed frame, invalid request
	ErrCodeShutdown     uint16 = 12 // server is stopping
	ErrCodeAuthFailed   uint16 = 13 // wrong name or password, bad token
	ErrCodeConflict     uint16 = 14 // the record to create exists (already friends...)
)

// Error is the body of ERROR:
//
//	off size field
//	  0    2 Code    one of the ErrCode* values
//	  2    8 Ref     what it refers to: a CID or a request id, else 0
//	 10    -  Text   human-readable reason, UTF-8
type Error []byte

func (e Error) Code() uint16 { return be.Uint16(e[0:]) }
func (e Error) Ref() uint64  { return be.Uint64(e[2:]) }
func (e Error) Text() []byte { return e[ErrorLen:] }

// AppendError appends a whole ERROR frame.
func AppendError(dst []byte, code uint16, ref uint64, text string) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdError, QoS0, ErrorLen+len(text))
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint16(dst, code)
	dst = be.AppendUint64(dst, ref)
	return append(dst, text...), nil
}

// Notice codes (NOTICE body, Code field).
const (
	NoticeNewDevice uint16 = 1 // a login from a device the user had not used
	NoticeMove      uint16 = 2 // the endpoint drains: move to the next server
	NoticeKicked    uint16 = 3 // an operator closed the session
)

// Notice is the body of NOTICE: Code (2 bytes) then JSON.
type Notice []byte

func (n Notice) Code() uint16 { return be.Uint16(n[0:]) }
func (n Notice) JSON() []byte { return n[NoticeLen:] }

// AppendNotice appends a whole NOTICE frame.
func AppendNotice(dst []byte, code uint16, json []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdNotice, QoS0, NoticeLen+len(json))
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint16(dst, code)
	return append(dst, json...), nil
}

// Group operations (GROUP body, Op field).
const (
	GroupCreate  byte = 1 // JSON {"name":...}; answer carries the new Group id
	GroupJoin    byte = 2
	GroupLeave   byte = 3
	GroupMembers byte = 4 // answer JSON: member ids, owner, admins; members only
	GroupList    byte = 5 // answer JSON: the user's groups
	GroupInvite  byte = 6 // JSON {"user":...}: the owner or an admin adds a user
	GroupRemove  byte = 7 // JSON {"user":...}: the owner or an admin removes a member
	GroupOpen    byte = 8 // JSON {"open":bool}: the owner lets anyone join, or not
	GroupRole    byte = 9 // JSON {"user":...,"role":"admin"|"member"}: the owner sets a role
)

// Group is the body of GROUP:
//
//	off size field
//	  0    4 Req
//	  4    1 Op      one of the Group* operations
//	  5    8 Group
//	 13    -  JSON
type Group []byte

func (g Group) Req() uint32   { return be.Uint32(g[0:]) }
func (g Group) Op() byte      { return g[4] }
func (g Group) Group() uint64 { return be.Uint64(g[5:]) }
func (g Group) JSON() []byte  { return g[GroupLen:] }

// AppendGroup appends a whole GROUP frame.
func AppendGroup(dst []byte, req uint32, op byte, group uint64, json []byte) ([]byte, error) {
	dst, err := AppendHeader(dst, CmdGroup, QoS0, GroupLen+len(json))
	if err != nil {
		return dst, err
	}
	dst = be.AppendUint32(dst, req)
	dst = append(dst, op)
	dst = be.AppendUint64(dst, group)
	return append(dst, json...), nil
}
