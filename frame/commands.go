package frame

// The command table: every fact about a command that more than one part of
// the server (or the server and its clients) must agree on lives in one row
// of it. Adding a command is adding its Cmd constant, its body layout and
// its row; the endpoint, the center and the center links read the rest from
// here, and the table's tests check each row against docs/protocol.md.

// Direction says which side of a session sends a command.
type Direction uint8

const (
	// ClientToServer: only clients send it.
	ClientToServer Direction = 1 << iota
	// ServerToClient: only servers send it.
	ServerToClient
	// BothWays: clients send it and servers send it back (an answer) or on
	// (a relayed message).
	BothWays = ClientToServer | ServerToClient
)

// String returns the name the command table of docs/protocol.md uses.
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client→server"
	case ServerToClient:
		return "server→client"
	case BothWays:
		return "both"
	}
	return "none"
}

// QoSRule says which QoS a command is sent with.
type QoSRule uint8

const (
	// QoSOnly0: always QoS 0; its answer, matched by Req, or the frame
	// that follows it is the confirmation.
	QoSOnly0 QoSRule = iota
	// QoSOnly1: always QoS 1 (PING, whose receipt is its PONG).
	QoSOnly1
	// QoSEither: the sender chooses; QoS 1 asks for a receipt (an ACK
	// carrying the message's CID).
	QoSEither
)

// String returns the name the command table of docs/protocol.md uses.
func (q QoSRule) String() string {
	switch q {
	case QoSOnly1:
		return "1"
	case QoSEither:
		return "0 or 1"
	}
	return "0"
}

// Route says which part of a server takes a command a client sends on its
// session.
type Route uint8

const (
	// RouteRefuse: a client may not send it; an endpoint answers ERROR
	// code ErrCodeBadRequest ("unexpected CMD") and the session goes on.
	// Unknown codes have this route, though the reactor already closes
	// the connection on them (ErrUnknownCmd).
	RouteRefuse Route = iota
	// RouteEnvelope: handled on its plaintext envelope, never opened:
	// PING (the reactor answers it) and HANDSHAKE (which opens a session;
	// once one is open a HANDSHAKE is refused like RouteRefuse).
	RouteEnvelope
	// RouteEndpoint: the endpoint takes it itself: BYE, PONG (the SDK's
	// first sealed frame, which only proves the keys) and REKEY (read
	// before the frame is opened).
	RouteEndpoint
	// RouteCenter: the endpoint opens it and passes it to its center.
	RouteCenter
)

// RefKind says where a client's request carries the number that the
// server's answers echo: an ACK's CID, an ERROR's Ref, the answer's Req.
type RefKind uint8

const (
	// RefNone: nothing answers it (receipts, presence, BYE), or it is not
	// a request.
	RefNone RefKind = iota
	// RefCID: the CID of its MsgHeader.
	RefCID
	// RefReq: the 32-bit Req that starts its body.
	RefReq
)

// String returns the name the command table of docs/protocol.md uses.
func (r RefKind) String() string {
	switch r {
	case RefCID:
		return "CID"
	case RefReq:
		return "Req"
	}
	return "none"
}

// CmdInfo is one row of the command table; see Cmd.Info.
type CmdInfo struct {
	// Name is the command's name in docs/protocol.md.
	Name string
	// MinBody is the size of the body's fixed fields (check 8 of
	// docs/protocol.md, "Errors").
	MinBody int
	Dir     Direction
	QoS     QoSRule
	// Sealed: the body is sealed once a session has keys.
	Sealed bool
	// Route: who takes it from a client (RouteRefuse when a client may not
	// send it).
	Route Route
	// Ref: where a client's request carries its reference.
	Ref RefKind
	// Message: the body starts with a MsgHeader. The server checks its
	// From against the session's user, relays it between users and, at
	// QoS 1, confirms it with an ACK or refuses it with an ERROR that
	// carries its CID; the endpoint↔center link keeps a QoS 1 message
	// until the center has it.
	Message bool
	// Pooled: the center answers it from the store, on its worker pool,
	// off the event loops; when that pool's queue is full the request is
	// refused with ERROR code ErrCodeRetry and its Ref.
	Pooled bool
}

// commands is indexed by the command byte, so that a lookup needs no bounds
// check; codes this version does not define have the zero row (no name,
// RouteRefuse).
var commands = [256]CmdInfo{
	CmdPing: {Name: "PING", MinBody: 0, Dir: ClientToServer, QoS: QoSOnly1, Route: RouteEnvelope},
	CmdPong: {Name: "PONG", MinBody: 0, Dir: BothWays, Route: RouteEndpoint},
	CmdMsg: {Name: "MSG", MinBody: MsgHeaderLen, Dir: BothWays, QoS: QoSEither, Sealed: true,
		Route: RouteCenter, Ref: RefCID, Message: true},
	CmdGroupMsg: {Name: "GROUP_MSG", MinBody: MsgHeaderLen, Dir: BothWays, QoS: QoSEither, Sealed: true,
		Route: RouteCenter, Ref: RefCID, Message: true},
	CmdBye:      {Name: "BYE", MinBody: 0, Dir: ClientToServer, Sealed: true, Route: RouteEndpoint},
	CmdPresence: {Name: "PRESENCE", MinBody: PresenceLen, Dir: ClientToServer, Sealed: true, Route: RouteCenter},
	CmdFile: {Name: "FILE", MinBody: FileFrameLen, Dir: BothWays, QoS: QoSEither, Sealed: true,
		Route: RouteCenter, Ref: RefCID, Message: true},
	CmdFileServer: {Name: "FILE_SERVER", MinBody: FileServerLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq},
	CmdFetch: {Name: "FETCH", MinBody: FetchLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
	CmdSignature: {Name: "SIGNATURE", MinBody: LookupLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
	CmdFriendInfo: {Name: "FRIEND_INFO", MinBody: LookupLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
	CmdFriendsOnline: {Name: "FRIENDS_ONLINE", MinBody: LookupLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
	CmdFriendNotify: {Name: "FRIEND_NOTIFY", MinBody: PresenceLen, Dir: ServerToClient, Sealed: true},
	CmdServerList: {Name: "SERVER_LIST", MinBody: LookupLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
	CmdAck:       {Name: "ACK", MinBody: AckLen, Dir: BothWays, Sealed: true, Route: RouteCenter},
	CmdError:     {Name: "ERROR", MinBody: ErrorLen, Dir: ServerToClient, Sealed: true},
	CmdHandshake: {Name: "HANDSHAKE", MinBody: HandshakeMinLen, Dir: BothWays, Route: RouteEnvelope},
	CmdAuth:      {Name: "AUTH", MinBody: 0, Dir: ServerToClient, Sealed: true},
	CmdRekey:     {Name: "REKEY", MinBody: 0, Dir: BothWays, Sealed: true, Route: RouteEndpoint},
	CmdNotice:    {Name: "NOTICE", MinBody: NoticeLen, Dir: ServerToClient, Sealed: true},
	CmdGroup: {Name: "GROUP", MinBody: GroupLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
	CmdProfile: {Name: "PROFILE", MinBody: LookupLen, Dir: BothWays, Sealed: true,
		Route: RouteCenter, Ref: RefReq, Pooled: true},
}

// hot packs what the per-frame paths ask of a command into one byte per
// code, made from commands: a lookup loads one byte of a 256-byte array
// that stays in cache, not a field of a 40-byte row.
var hot = func() (h [256]uint8) {
	for i, in := range commands {
		h[i] = uint8(in.Route) | uint8(in.Ref)<<hotRefShift
		if in.Message {
			h[i] |= hotMessage
		}
		if in.Pooled {
			h[i] |= hotPooled
		}
	}
	return h
}()

const (
	hotRoute    = 0x03 // Route in bits 0-1
	hotMessage  = 0x04
	hotPooled   = 0x08
	hotRefShift = 4 // RefKind in bits 4-5
)

// Info returns c's row of the command table; the zero CmdInfo for codes
// this version does not define.
func (c Cmd) Info() CmdInfo { return commands[c] }

// Route returns who takes c from a client; see Route.
func (c Cmd) Route() Route { return Route(hot[c] & hotRoute) }

// Message reports whether c's body starts with a MsgHeader (MSG,
// GROUP_MSG, FILE); see CmdInfo.Message.
func (c Cmd) Message() bool { return hot[c]&hotMessage != 0 }

// Pooled reports whether the center answers c on its worker pool; see
// CmdInfo.Pooled.
func (c Cmd) Pooled() bool { return hot[c]&hotPooled != 0 }

// Ref returns where a request of command c carries its reference.
func (c Cmd) Ref() RefKind { return RefKind(hot[c] >> hotRefShift) }

// RequestRef returns the reference of a client's request of command c
// with body body, which must have passed Check or CheckBody: the number an
// ERROR answering it carries in Ref, or 0 when c has none (RefNone).
func RequestRef(c Cmd, body []byte) uint64 {
	switch c.Ref() {
	case RefCID:
		return Msg(body).CID()
	case RefReq:
		return uint64(be.Uint32(body))
	}
	return 0
}

// AnswerRef returns the reference of the client request that a server's
// frame of command c with body body answers, or 0 when it answers none:
// the CID of an ACK that confirms the sender's message (DELIVERED, STORED,
// DUPLICATE; a recipient's receipt answers nothing), the Ref of an ERROR.
// body must have passed Check or CheckBody.
func AnswerRef(c Cmd, body []byte) uint64 {
	switch c {
	case CmdAck:
		switch a := Ack(body); a.Status() {
		case AckDelivered, AckStored, AckDuplicate:
			return a.CID()
		}
	case CmdError:
		return Error(body).Ref()
	}
	return 0
}
