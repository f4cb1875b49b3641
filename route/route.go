// Package route owns MyIM's user→address lookups and the registry of online
// servers.
//
// A user's address is the endpoint holding the connection plus the center
// that routes the user's messages; a user with several devices online has
// several addresses, told apart by the session id the endpoint assigned.
// Two views exist:
//
//   - Local is this process's own sessions: a sharded in-memory map the
//     center consults on every delivery, built to answer without allocating.
//   - Table is the cluster-wide view: Memory when MyIM runs as one process
//     with no Redis, the Redis table of route/redis otherwise (a package of
//     its own, so that code which needs the interface does not link a
//     Redis client). Entries carry a TTL that the owning endpoint
//     refreshes, so a crashed endpoint's routes disappear on their own.
//     The same Table also keeps the server registry (Server) the login
//     center uses to hand out endpoints and centers. Every backend passes
//     the conformance suite in route/routetest.
//
// This package must not do frame I/O, session handling or message storage:
// it maps ids to addresses and nothing else.
package route

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"
)

// Sentinel errors. Callers classify with errors.Is; backend failures are
// wrapped, so the underlying cause is still reachable with errors.As.
var (
	// ErrUnavailable: the backend could not be reached or failed the
	// command (network error, timeout, Redis error reply). It wraps the
	// cause, including context.DeadlineExceeded when the caller's deadline
	// ran out.
	ErrUnavailable = errors.New("route: backend unavailable")
	// ErrNotFound: Refresh found no live entry for the address; the caller
	// should Set it again.
	ErrNotFound = errors.New("route: entry not found")
	// ErrClosed: the table was used after Close.
	ErrClosed = errors.New("route: table closed")
	// ErrInvalidTTL: a TTL was zero or negative. Every cluster entry must
	// expire, so that a crashed node cannot leave routes behind forever.
	ErrInvalidTTL = errors.New("route: ttl must be positive")
	// ErrInvalidServer: a Server without an ID or a Role was registered.
	ErrInvalidServer = errors.New("route: server needs an id and a role")
)

// Addr is where one session of a user is online: the endpoint that holds the
// connection, the center that routes for it, and the session id the endpoint
// gave the connection, plus the session's presence status.
//
// Endpoint, Center and Session name the address: a Table holds at most one
// entry per (Endpoint, Center, Session), and Set, Refresh and Del find the
// entry by those three whatever its Status. Addr is a plain value, safe to
// copy and comparable; == compares the Status too.
type Addr struct {
	Endpoint uint32
	Center   uint32
	Session  uint64
	// Status is the session's presence (one of frame's Status* values) as
	// its center last wrote it, so that other centers can answer presence
	// lookups for the user. This package stores it and does not interpret
	// it. Zero means "not reported": entries written before the table
	// carried a status read back with zero, and readers take it as plainly
	// online. Local keeps whatever it was given.
	Status byte
}

// same reports whether a and b name the same session, whatever their
// Status.
func (a Addr) same(b Addr) bool {
	return a.Endpoint == b.Endpoint && a.Center == b.Center && a.Session == b.Session
}

// Server is one entry of the online-server registry.
type Server struct {
	// ID is the server's cluster-unique id; it must not be zero.
	ID uint32
	// Role is the kind of server ("endpoint", "center", "login", …); it must
	// not be empty. Registering the same ID under a new Role moves it.
	Role string
	// Addr is the address clients or peers dial, e.g. "10.0.0.7:7000".
	Addr string
	// WSAddr is an endpoint's WebSocket listener (host:port, an empty
	// host meaning the host the client logged in at), or empty.
	WSAddr string
	// Priority orders servers of a role; lower is preferred.
	Priority int
	// Load breaks ties between equal priorities; lower is preferred.
	Load int
	// StaticKey is the server's long-term public key handed to clients.
	StaticKey []byte
	// Cert is the server's certificate for StaticKey, from the cluster
	// root, which clients check before they trust the key.
	Cert []byte
	// Updated is the registration time in Unix milliseconds. It is set by
	// RegisterServer; the value passed in is ignored.
	Updated int64
	// Info is what the server publishes about itself for operators (a
	// node's figures for the status page); opaque to the table.
	Info []byte
}

// Table is the cluster-wide route table and server registry.
//
// Implementations are safe for concurrent use. Every entry expires after the
// TTL it was last written with; expired entries are never returned, even
// before a backend gets round to deleting them. Errors are ErrUnavailable
// (wrapping the cause), ErrClosed after Close, the context's error when ctx
// is done (Redis wraps it in ErrUnavailable), or the validation errors
// ErrInvalidTTL, ErrInvalidServer and ErrNotFound documented per method.
type Table interface {
	// Set records that user is online at a, with a.Status, for ttl.
	// Setting an address that is already present moves its expiry and
	// replaces its Status, so a center rewrites a session's route when the
	// session's presence changes.
	Set(ctx context.Context, user uint64, a Addr, ttl time.Duration) error
	// Del removes one address of user, whatever its Status. Deleting a
	// missing address is not an error.
	Del(ctx context.Context, user uint64, a Addr) error
	// Get returns the live addresses of user in no particular order, each
	// with the Status last written for it; an offline user gives an empty
	// result and a nil error. The slice is the caller's.
	Get(ctx context.Context, user uint64) ([]Addr, error)
	// GetMulti is Get for many users in one round trip, for group fan-out.
	// Users with no live address are absent from the map; duplicates in
	// users are allowed.
	GetMulti(ctx context.Context, users []uint64) (map[uint64][]Addr, error)
	// Refresh moves the expiry of an existing live address to now+ttl and
	// records a.Status, like Set. It returns ErrNotFound when the address
	// is missing or already expired, so the caller knows to Set it again.
	Refresh(ctx context.Context, user uint64, a Addr, ttl time.Duration) error

	// RegisterServer adds or replaces s (keyed by s.ID) for ttl and stamps
	// s.Updated. Re-registering refreshes the entry; a changed Role moves
	// it to the new role.
	RegisterServer(ctx context.Context, s Server, ttl time.Duration) error
	// Servers returns the live servers of role, ordered by Priority then
	// Load (lower first), then ID.
	Servers(ctx context.Context, role string) ([]Server, error)
	// UnregisterServer removes server id. Removing a missing id is not an
	// error.
	UnregisterServer(ctx context.Context, id uint32) error

	// Close releases the table's resources. Later calls return ErrClosed.
	Close() error
}

// SortServers puts servers in the order Table.Servers promises: Priority,
// then Load, then ID, each ascending. Backends call it; so may callers that
// merge lists.
func SortServers(s []Server) {
	slices.SortFunc(s, func(a, b Server) int {
		if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Load, b.Load); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// ValidServer reports whether s may be registered: it needs an ID and a
// Role (Table.RegisterServer returns ErrInvalidServer otherwise).
func ValidServer(s *Server) bool { return s.ID != 0 && s.Role != "" }
