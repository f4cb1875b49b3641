// Package storage owns MyIM's durable state: users, devices, friends, groups,
// point-to-point offline messages, group messages and file metadata
// (files.go).
//
// It must not know about connections, sessions or frames. Every Store method
// may block on disk or network I/O and must never be called on an event
// loop: callers hand the work to a worker goroutine and bring the result
// back through the engine's asynchronous write path.
//
// This package holds the interfaces (store.go), the records, the limits and
// the errors; it links no database. Two backends implement Store, each in
// its own package: storage/mysql (MySQL or MariaDB, for clusters) and
// storage/bolt (an embedded single-file bbolt store, for single-node
// deployments). Both pass the conformance suite in storage/storagetest, so
// callers cannot tell them apart except by speed and operations.
//
// All times are Unix milliseconds (int64).
package storage

import (
	"errors"
	"fmt"
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

// GroupAck is a member's read of a group up to Seq (AckGroups).
type GroupAck struct {
	Group, User, Seq uint64
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

// Invite is a single-use registration code, kept as the SHA-256 of the
// code so that a copy of the store does not hand out codes.
type Invite struct {
	Hash      [32]byte // SHA-256 of the code
	Issuer    uint64   // the user who issued it; 0 for the admin API
	ExpiresAt int64    // unix milliseconds; the code is refused from then on
}
