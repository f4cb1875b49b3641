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

// MaxSIDLen bounds a revoked token's session id (tokens carry 22).
const MaxSIDLen = 64

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
