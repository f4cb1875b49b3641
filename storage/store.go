package storage

import "context"

// Store is MyIM's durable state: the union of the role interfaces below,
// which both backends implement in full. Code that needs one role asks for
// that role (a login needs Users, a revocation list Revocations), so that
// what it touches is visible in its signature.
//
// Every method of every role is safe for concurrent use by many goroutines,
// may block on disk or network I/O (never call one on an event loop) and
// honours ctx cancellation: the embedded backend checks ctx before it starts
// and before it commits; a bbolt transaction cannot be interrupted half way.
type Store interface {
	Users
	Social
	Offline
	Groups
	GroupMessages
	Revocations
	Invites
	Files

	// Ping reports whether the store is usable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Close releases the store. Later calls fail with ErrClosed. Close must
	// not race with calls still in flight.
	Close() error
}

// Users keeps accounts and the devices they log in from.
type Users interface {
	// CreateUser stores u with a new ID (IDs start at 1) and returns it.
	// u.ID is ignored; CreatedAt 0 means now. ErrExists if the name is
	// taken (names compare byte for byte).
	CreateUser(ctx context.Context, u User) (uint64, error)
	// UserByName returns the user called name, or ErrNotFound.
	UserByName(ctx context.Context, name string) (User, error)
	// UserByID returns the user with this ID, or ErrNotFound.
	UserByID(ctx context.Context, id uint64) (User, error)
	// UpdateProfile replaces the signature and the profile (JSON bytes,
	// stored as given). ErrNotFound for an unknown user.
	UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error
	// TouchDevice records a successful login from d.KeyHash by d.User.
	// LastSeen 0 means now. The first time a (User, KeyHash) is seen, it is
	// stored with FirstSeen = LastSeen (d.FirstSeen is ignored) and isNew is
	// true; later calls update LastSeen, Fingerprint and Addr and return
	// false.
	TouchDevice(ctx context.Context, d Device) (isNew bool, err error)
	// Devices returns the user's devices ordered by KeyHash (none: empty).
	Devices(ctx context.Context, user uint64) ([]Device, error)
}

// Social keeps friendships and pending friend requests.
type Social interface {
	// RequestFriend records a pending request from -> to. ErrNotFound if
	// to is not a user, ErrExists if they are already friends, ErrInvalid
	// if from == to. Repeating a pending request is a no-op.
	RequestFriend(ctx context.Context, from, to uint64) error
	// AcceptFriend turns requester's pending request to user into a
	// friendship (both directions) and drops any request between the two.
	// ErrNotFound if there is no pending request.
	AcceptFriend(ctx context.Context, user, requester uint64) error
	// RemoveFriend ends the friendship of a and b and drops pending
	// requests in both directions (so it also declines a request). Removing
	// what does not exist is a no-op.
	RemoveFriend(ctx context.Context, a, b uint64) error
	// Friends returns the user's accepted friends in ascending order.
	Friends(ctx context.Context, user uint64) ([]uint64, error)
	// PendingFriendRequests returns who asked user, in ascending order.
	PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error)
}

// Offline keeps point-to-point messages until their recipient
// acknowledges them.
type Offline interface {
	// StoreOffline stores undelivered point-to-point messages, all or none.
	// Each needs To != 0 and MID != 0 (MIDs are assigned by the center and
	// unique per recipient). A message is silently skipped if one with the
	// same (To, MID), or with CID != 0 and the same (To, From, CID), is
	// still stored, duplicates inside msgs included. Content is copied.
	StoreOffline(ctx context.Context, msgs []Message) error
	// FetchOffline returns up to limit of user's messages ordered by MID,
	// strictly after afterMID. Start with 0, then pass the last message's
	// MID. The order is the center's (MIDs grow with the center's clock
	// and counter), never the sender's Time, which is data: a sender whose
	// clock is off cannot put its messages ahead of, or behind, another's.
	// limit <= 0 means DefaultFetchLimit; it is capped at MaxFetchLimit.
	FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]Message, error)
	// DeleteOffline deletes user's messages with these MIDs (after the
	// client acknowledged them); unknown MIDs are ignored.
	DeleteOffline(ctx context.Context, user uint64, mids []uint64) error
	// CountOffline returns how many offline messages user has.
	CountOffline(ctx context.Context, user uint64) (int, error)
}

// Groups keeps groups, their settings and their members.
type Groups interface {
	// CreateGroup creates a group whose HighestSeq is 0 and whose first
	// member is owner (JoinSeq 0), and returns its ID (IDs start at 1).
	CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error)
	// JoinGroup makes user a member (RoleMember) with JoinSeq = the group's
	// current HighestSeq and returns it; the member never receives messages
	// with seq <= JoinSeq. Joining again returns the existing JoinSeq.
	// ErrNotFound for an unknown group. It does not check who may join:
	// callers do (the engine lets in invited users, and anyone to an open
	// group).
	JoinGroup(ctx context.Context, group, user uint64) (joinSeq uint64, err error)
	// LeaveGroup removes user from the group. The messages still waiting for
	// that member count as delivered to it, so they are deleted once every
	// remaining member has them. Leaving a group one is not in is a no-op;
	// ErrNotFound for an unknown group.
	LeaveGroup(ctx context.Context, group, user uint64) error
	// GroupMembers returns the members ordered by user ID. ErrNotFound for
	// an unknown group.
	GroupMembers(ctx context.Context, group uint64) ([]Member, error)
	// UserGroups returns the groups user belongs to, ascending.
	UserGroups(ctx context.Context, user uint64) ([]uint64, error)
	// GroupInfo returns the group, or ErrNotFound.
	GroupInfo(ctx context.Context, group uint64) (Group, error)
	// SetGroupOpen sets whether the group takes members without an invite.
	// Groups are created closed. ErrNotFound for an unknown group.
	SetGroupOpen(ctx context.Context, group uint64, open bool) error
	// SetGroupRole makes a member an admin (RoleAdmin) or a plain member
	// (RoleMember) again. ErrNotFound if the group is unknown or user is not
	// a member; ErrInvalid for another role or for the owner, whose role
	// does not change.
	SetGroupRole(ctx context.Context, group, user uint64, role uint8) error
}

// GroupMessages keeps each group's message log until every member has
// acknowledged a message or it expires.
type GroupMessages interface {
	// AppendGroupMsg atomically assigns m the group's next seq
	// (HighestSeq+1), stores it with SentCount 0, MemberCount = the current
	// number of members (the sender included if it is one) and m.ExpiresAt
	// (0: never expires), and returns the seq. m.Seq, m.SentCount and
	// m.MemberCount are ignored. ErrNotFound for an unknown group.
	AppendGroupMsg(ctx context.Context, m GroupMessage) (seq uint64, err error)
	// AppendGroupMsgs appends ms, of one group or several, in one write
	// (one transaction), as AppendGroupMsg would one after the other in
	// slice order, and sets each ms[i].Seq (and SentCount and MemberCount
	// as stored): a group's messages get consecutive seqs in their order in
	// ms. All or nothing: if one is refused (ErrNotFound for an unknown
	// group, ErrInvalid) or the write fails, none is stored and the seqs
	// are not to be used. An empty ms stores nothing (but fails on a
	// closed store or a done context like any call).
	AppendGroupMsgs(ctx context.Context, ms []GroupMessage) error
	// FetchGroup returns up to limit of the group's stored, unexpired
	// messages with seq > max(afterSeq, member.JoinSeq, member.AckedSeq),
	// ascending. ErrNotFound if the group is unknown or user is not a
	// member. limit as in FetchOffline.
	FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]GroupMessage, error)
	// AckGroup records that user received every message of the group up to
	// seq (capped at HighestSeq): each stored message in
	// (max(JoinSeq, AckedSeq), seq] gets SentCount+1, those whose SentCount
	// reaches MemberCount are deleted, and AckedSeq becomes seq. Acking the
	// same or a lower seq again changes nothing. ErrNotFound if the group is
	// unknown or user is not a member.
	AckGroup(ctx context.Context, group, user, seq uint64) error
	// AckGroups applies acks in one write (one transaction) as AckGroup
	// would one after the other, except that an ack of an unknown group or
	// of a user who is not a member is skipped, so that one member gone
	// does not fail the others' acks. A message acked by several members
	// of the batch counts each of them.
	AckGroups(ctx context.Context, acks []GroupAck) error
	// PurgeExpiredGroupMsgs deletes group messages with
	// 0 < ExpiresAt <= now and returns how many.
	PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error)
	// CountGroupMsgs returns how many messages of the group are stored,
	// expired ones not yet purged included.
	CountGroupMsgs(ctx context.Context, group uint64) (int, error)
}

// Revocations keeps the access tokens an operator revoked, until they
// expire.
type Revocations interface {
	// RevokeToken records that access tokens with session id sid are
	// refused until until (unix milliseconds; the token's expiry). Revoking
	// again keeps the later time. ErrInvalid for an empty sid or one longer
	// than MaxSIDLen.
	RevokeToken(ctx context.Context, sid string, until int64) error
	// RevokedTokens returns the revocations still in force at now (unix
	// milliseconds), sid -> until, and forgets those that are not.
	RevokedTokens(ctx context.Context, now int64) (map[string]int64, error)
}

// Invites keeps single-use registration codes.
type Invites interface {
	// CreateInvite stores a registration invite (see Invite). When limit
	// > 0 the code counts against inv.Issuer's allowance: ErrQuota once
	// the issuer has issued limit codes, used or not (the count never goes
	// down); limit <= 0 counts nothing. ErrExists if the hash is stored.
	CreateInvite(ctx context.Context, inv Invite, limit int) error
	// UseInvite deletes the invite with this hash and returns it, in one
	// transaction: of concurrent callers, one gets it. ErrNotFound if there
	// is none or it expired at now (unix milliseconds; an expired one is
	// deleted too).
	UseInvite(ctx context.Context, hash [32]byte, now int64) (Invite, error)
}

// Files keeps the file server's metadata: uploads in progress, files,
// shares and quota usage (see files.go; the bytes live in a BlobStore).
type Files interface {
	// CreateUpload records an upload of u.Owner with a new ID (IDs start
	// at 1) and reserves u.Size bytes of the owner's quota (see files.go).
	// ErrQuota if the owner's usage plus u.Size would exceed quota; quota
	// <= 0 means no limit. u.ID is ignored; Created 0 means now.
	CreateUpload(ctx context.Context, u Upload, quota int64) (uint64, error)
	// UploadByID returns the upload, or ErrNotFound.
	UploadByID(ctx context.Context, id uint64) (Upload, error)
	// DeleteUpload forgets an upload and releases its reservation.
	// ErrNotFound if there is no such upload.
	DeleteUpload(ctx context.Context, id uint64) error
	// StaleUploads returns up to limit uploads created before before,
	// oldest first (limit as in FetchOffline).
	StaleUploads(ctx context.Context, before int64, limit int) ([]Upload, error)
	// CommitUpload atomically turns an upload into a file with a new ID
	// (IDs start at 1), Created = now, and one more reference to its
	// content. ErrNotFound if there is no such upload.
	CommitUpload(ctx context.Context, upload uint64, now int64) (File, error)
	// FileByID returns the file, or ErrNotFound.
	FileByID(ctx context.Context, id uint64) (File, error)
	// Files returns owner's files ordered by ID.
	Files(ctx context.Context, owner uint64) ([]File, error)
	// DeleteFile deletes owner's file id with its shares, releases its
	// quota and drops its reference to the content; it returns the file
	// and how many files still reference the same content (0: the blob may
	// go). ErrNotFound if there is no such file or owner does not own it.
	DeleteFile(ctx context.Context, owner, id uint64) (f File, refsLeft int64, err error)
	// ShareFile lets s.User, or the members of s.Group, read s.File.
	// Sharing again is a no-op; ErrNotFound for an unknown file.
	ShareFile(ctx context.Context, s Share) error
	// UnshareFile removes a share; removing what does not exist is a no-op.
	UnshareFile(ctx context.Context, s Share) error
	// FileShares returns the file's shares, users first, each kind in
	// ascending order.
	FileShares(ctx context.Context, file uint64) ([]Share, error)
	// UsedBytes returns owner's quota usage: files plus open uploads.
	UsedBytes(ctx context.Context, owner uint64) (int64, error)
}
