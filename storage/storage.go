// Package storage owns MyIM's durable state: users, devices, friends, groups,
// point-to-point offline messages, group messages and file metadata
// (files.go).
//
// It must not know about connections, sessions or frames. Every Store method
// may block on disk or network I/O and must never be called on an event
// loop: callers hand the work to a worker goroutine and bring the result
// back through the engine's asynchronous write path.
//
// Two backends sit behind the one Store interface: MySQL (mysql.go), chosen
// when Config.MySQLDSN is set, and an embedded single-file bbolt store
// (embedded.go) for single-node deployments. Both pass the same conformance
// suite (suite_test.go), so callers cannot tell them apart except by speed
// and operations.
//
// All times are Unix milliseconds (int64).
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Backends wrap them with %w; classify with errors.Is.
var (
	// ErrNotFound: the user, group, member, friend request or other record
	// named by the call does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists: the record to create already exists (a duplicate user
	// name, a friendship that is already accepted).
	ErrExists = errors.New("storage: already exists")
	// ErrUnavailable: the backend could not be reached or did not answer in
	// time (connection refused or lost, timeout, deadlock or lock wait
	// timeout, server shutting down or read-only, store closed). The
	// operation did not happen, or, if the connection was lost during the
	// commit, may have happened. StoreOffline, DeleteOffline, AckGroup,
	// JoinGroup and LeaveGroup are idempotent and safe to retry; a retried
	// AppendGroupMsg may store the message twice. Callers map it to a
	// retryable refusal.
	ErrUnavailable = errors.New("storage: unavailable")
	// ErrClosed: the Store was closed. It matches ErrUnavailable too.
	ErrClosed = fmt.Errorf("%w: store closed", ErrUnavailable)
	// ErrInvalid: an argument breaks a documented limit (empty or oversized
	// name, invalid UTF-8, zero MID, befriending oneself...).
	ErrInvalid = errors.New("storage: invalid argument")
)

// Group roles (Member.Role). The owner is Group.Owner: the creator, never
// stored as a member row's role, so it cannot drift from the group record.
const (
	RoleMember uint8 = 0
	RoleAdmin  uint8 = 1
	RoleOwner  uint8 = 2
)

// Limits shared by both backends, so that a value one accepts the other
// accepts too. The MySQL column sizes follow from them.
const (
	// MaxNameLen bounds a user or group name, in bytes.
	MaxNameLen = 128
	// MaxShortText bounds PassHash, Signature, Device.Fingerprint and
	// Device.Addr, in bytes.
	MaxShortText = 255
	// MaxProfileLen bounds User.Profile (a BLOB column holds 64 KiB).
	MaxProfileLen = 1<<16 - 1
	// MaxContentLen bounds a message's Content (a MEDIUMBLOB holds 16 MiB;
	// frames are capped far below that).
	MaxContentLen = 1<<24 - 1
	// DefaultFetchLimit is used when a fetch is given limit <= 0.
	DefaultFetchLimit = 100
	// MaxFetchLimit caps one fetch, so one call cannot pull a whole mailbox
	// into memory.
	MaxFetchLimit = 1000
)

// Store is MyIM's durable state. Implementations are safe for concurrent use
// by many goroutines. Every method may block on I/O and honours ctx
// cancellation (the embedded backend checks ctx before it starts and before
// it commits; a bbolt transaction cannot be interrupted half way).
// MaxSIDLen bounds a revoked token's session id (tokens carry 22).
const MaxSIDLen = 64

type Store interface {
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
	// AppendGroupMsg atomically assigns m the group's next seq
	// (HighestSeq+1), stores it with SentCount 0, MemberCount = the current
	// number of members (the sender included if it is one) and m.ExpiresAt
	// (0: never expires), and returns the seq. m.Seq, m.SentCount and
	// m.MemberCount are ignored. ErrNotFound for an unknown group.
	AppendGroupMsg(ctx context.Context, m GroupMessage) (seq uint64, err error)
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
	// PurgeExpiredGroupMsgs deletes group messages with
	// 0 < ExpiresAt <= now and returns how many.
	PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error)
	// CountGroupMsgs returns how many messages of the group are stored,
	// expired ones not yet purged included.
	CountGroupMsgs(ctx context.Context, group uint64) (int, error)

	// RevokeToken records that access tokens with session id sid are
	// refused until until (unix milliseconds; the token's expiry). Revoking
	// again keeps the later time. ErrInvalid for an empty sid or one longer
	// than MaxSIDLen.
	RevokeToken(ctx context.Context, sid string, until int64) error
	// RevokedTokens returns the revocations still in force at now (unix
	// milliseconds), sid -> until, and forgets those that are not.
	RevokedTokens(ctx context.Context, now int64) (map[string]int64, error)

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

	// Ping reports whether the store is usable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Close releases the store. Later calls fail with ErrClosed. Close must
	// not race with calls still in flight.
	Close() error
}

// User is an account. PassHash is opaque to the store.
type User struct {
	ID        uint64
	Name      string
	PassHash  string
	Signature string
	Profile   []byte // JSON, stored as given
	CreatedAt int64
}

// Device is a terminal a user logged in from, keyed by (User, KeyHash).
type Device struct {
	User        uint64
	KeyHash     [32]byte // hash of the terminal's public key
	Fingerprint string
	FirstSeen   int64
	LastSeen    int64
	Addr        string // remote address of the last login
}

// Message is an undelivered point-to-point message.
type Message struct {
	MID     uint64 // center-assigned, unique per recipient, never 0
	From    uint64
	To      uint64
	Time    int64  // the sender's clock: data, never an order
	CID     uint64 // sender's client id for deduplication; 0: none
	Srv     uint32 // id of the server that accepted it
	QoS     uint8
	Content []byte
}

// GroupMessage is a group message kept until every member counted in
// MemberCount has acknowledged it (or left), or until it expires.
type GroupMessage struct {
	Group       uint64
	Seq         uint64 // assigned by AppendGroupMsg, from 1
	From        uint64
	Time        int64
	CID         uint64
	MID         uint64
	SentCount   uint32
	MemberCount uint32
	ExpiresAt   int64 // 0: never expires
	Content     []byte
}

// Group describes a group. Members is the current member count. Open
// groups take anyone who asks to join; closed ones (the default) only
// those a member with the right invites.
type Group struct {
	ID         uint64
	Name       string
	Owner      uint64
	HighestSeq uint64
	Members    int
	Open       bool
}

// Member is a user's membership of a group. JoinSeq is the group's
// HighestSeq when the user joined: messages up to it are history the member
// may not fetch. AckedSeq is the highest seq the member acknowledged (0 until
// the first AckGroup); the member's delivery floor is max(JoinSeq, AckedSeq).
type Member struct {
	User     uint64
	JoinSeq  uint64
	AckedSeq uint64
	JoinedAt int64
	Role     uint8 // RoleMember, RoleAdmin, or RoleOwner for Group.Owner
}

// Config selects and tunes the backend. The zero value opens an embedded
// store in ./data.
type Config struct {
	// MySQLDSN selects the MySQL backend when non-empty, in
	// go-sql-driver/mysql form ("user:pass@tcp(host:3306)/myim"). The
	// database must exist; tables are created and migrated by Open. Options
	// the store relies on are forced: see openMySQL.
	MySQLDSN string
	// DataDir holds the embedded store's file, myim.db; it is created if
	// missing. Default "data". Ignored when MySQLDSN is set.
	DataDir string
	// MaxConns is the MySQL pool size, open and idle alike. Default 16.
	MaxConns int
	// DialTimeout bounds connecting to MySQL (default 5 s; Open gives its
	// first connection, dial and handshake, twice that) and waiting for
	// the embedded file's lock (default 1 s: the file belongs to one
	// process, a second one should fail fast, not hang).
	DialTimeout time.Duration
	// IOTimeout is MySQL's per-read/per-write network timeout, unless the
	// DSN sets its own. Default 30 s.
	IOTimeout time.Duration
	// OpenTimeout bounds Open for MySQL: connect and migrate. Default 60 s.
	OpenTimeout time.Duration
	// NoSync turns off fsync in the embedded store. Tests and benchmarks
	// only: a crash loses recent commits.
	NoSync bool
	// Logger receives rare events (schema migrations). Default: discard.
	Logger *slog.Logger
}

func (c *Config) ensureDefaults() {
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 16
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = 30 * time.Second
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = 60 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = time.Second
		if c.MySQLDSN != "" {
			c.DialTimeout = 5 * time.Second
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Open opens the backend cfg selects: MySQL if cfg.MySQLDSN is set (tables
// are created or migrated first), else the embedded store in cfg.DataDir. A
// MySQL server that cannot be reached, or an embedded file locked by another
// process, yields an error matching ErrUnavailable. The Store is safe for
// concurrent use; Open itself blocks on I/O like every Store method.
func Open(cfg Config) (Store, error) {
	cfg.ensureDefaults()
	if cfg.MySQLDSN != "" {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.OpenTimeout)
		defer cancel()
		return openMySQL(ctx, cfg)
	}
	return openEmbedded(cfg)
}

// clampLimit applies DefaultFetchLimit and MaxFetchLimit.
func clampLimit(limit int) int {
	if limit <= 0 {
		return DefaultFetchLimit
	}
	return min(limit, MaxFetchLimit)
}

func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	return nil
}

func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	return checkText(what, s, MaxNameLen)
}

func checkUser(u *User) error {
	if err := checkName("user name", u.Name); err != nil {
		return err
	}
	if err := checkText("password hash", u.PassHash, MaxShortText); err != nil {
		return err
	}
	return checkProfile(u.Signature, u.Profile)
}

func checkProfile(signature string, profile []byte) error {
	if err := checkText("signature", signature, MaxShortText); err != nil {
		return err
	}
	if len(profile) > MaxProfileLen {
		return fmt.Errorf("%w: profile longer than %d bytes", ErrInvalid, MaxProfileLen)
	}
	return nil
}

func checkDevice(d *Device) error {
	if d.User == 0 {
		return fmt.Errorf("%w: device without user", ErrInvalid)
	}
	if err := checkText("fingerprint", d.Fingerprint, MaxShortText); err != nil {
		return err
	}
	return checkText("device address", d.Addr, MaxShortText)
}

func checkMessages(msgs []Message) error {
	for i := range msgs {
		m := &msgs[i]
		if m.To == 0 || m.MID == 0 {
			return fmt.Errorf("%w: offline message needs To and MID", ErrInvalid)
		}
		if len(m.Content) > MaxContentLen {
			return fmt.Errorf("%w: content longer than %d bytes", ErrInvalid, MaxContentLen)
		}
	}
	return nil
}

func checkGroupMsg(m *GroupMessage) error {
	if m.ExpiresAt < 0 {
		return fmt.Errorf("%w: negative ExpiresAt", ErrInvalid)
	}
	if len(m.Content) > MaxContentLen {
		return fmt.Errorf("%w: content longer than %d bytes", ErrInvalid, MaxContentLen)
	}
	return nil
}

func checkFriends(a, b uint64) error {
	if a == 0 || b == 0 || a == b {
		return fmt.Errorf("%w: friendship needs two distinct users", ErrInvalid)
	}
	return nil
}

// ctxErr reports a context error: a passed deadline also matches
// ErrUnavailable (the store did not answer in time), a cancellation stays
// just context.Canceled (the caller gave up; nothing is wrong with the store).
func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func nowMilli() int64 { return time.Now().UnixMilli() }

// Invite is a single-use registration code, kept as the SHA-256 of the
// code so that a copy of the store does not hand out codes.
type Invite struct {
	Hash      [32]byte // SHA-256 of the code
	Issuer    uint64   // the user who issued it; 0 for the admin API
	ExpiresAt int64    // unix milliseconds; the code is refused from then on
}
