package im

import (
	"errors"

	"github.com/valyala/bytebufferpool"
)

// Roles a node can run.
const (
	RoleAll      = "all"      // login + endpoint + center in one process
	RoleLogin    = "login"    // the login center only
	RoleEndpoint = "endpoint" // client connections only
	RoleCenter   = "center"   // routing, message ids and the offline store
)

// ErrUnknownSession is what Endpoint.Deliver returns for a session the
// endpoint does not hold (gone, or never there).
var ErrUnknownSession = errors.New("im: unknown session")

// The other errors of Endpoint.Deliver. A center tells them apart with
// errors.Is; an endpoint on the reactor returns them for the reactor's
// engine.ErrSlowReader and engine.ErrClosed.
var (
	// ErrSlowReader: the session's queue of frames not yet written is
	// full (its client does not read). QoS 1 then goes to the store.
	ErrSlowReader = errors.New("im: session's outbound queue is full")
	// ErrClosed: the session's connection is closed or closing.
	ErrClosed = errors.New("im: session closed")
)

// SessionRef names one client session: the endpoint that holds it and the
// session's id there (the connection id).
type SessionRef struct {
	Endpoint uint32
	Session  uint64
}

// Center is the center role as an endpoint sees it: routing, message ids,
// the offline store, groups and presence. The all-in-one node passes the
// in-process center; a networked link implements the same interface by
// carrying these calls as frames.
//
// Concurrency: every method is safe for concurrent use and is called on an
// endpoint's event loop (or a link's reader goroutine), so none may block:
// no I/O, no wait for a lock that is held across I/O, no send on a channel
// that can be full. Storage work is queued to the center's goroutines (a
// full queue refuses the request with an ERROR frame rather than wait), and
// answers come back through Endpoint.Deliver.
type Center interface {
	// Attach registers an endpoint the center delivers to. Called once per
	// endpoint, before its first Online.
	Attach(ep Endpoint)
	// Online reports an authenticated session of user: on the session's
	// event loop when its handshake completes, and again by a link's
	// reader when the link re-announces its sessions after a reconnect.
	Online(user uint64, s SessionRef)
	// Offline reports that the session is gone; bye is true for the
	// terminal's own offline confirmation. Called after the session's
	// Online: on its event loop, or by the center's link reader for every
	// session of an endpoint whose link dropped.
	Offline(user uint64, s SessionRef, bye bool)
	// Handle passes one whole plaintext frame from an authenticated session
	// of user, of a command the command table routes to the center
	// (frame.RouteCenter), its body already checked against its command's
	// layout and, for messages (frame.Cmd.Message), its sender already
	// checked to be user. Ownership of buf
	// passes to the center. Called on the session's event loop, in the
	// order the session's frames arrived.
	Handle(user uint64, s SessionRef, buf *bytebufferpool.ByteBuffer)
	// Notify sends a NOTICE to every session of user. Called from any
	// goroutine (the HTTP API, admin).
	Notify(user uint64, code uint16, json []byte)
}

// Endpoint is the endpoint role as a center sees it.
//
// Concurrency: both methods are safe for concurrent use. Deliver is called
// from any goroutine: event loops (a message between two sessions of one
// node is delivered from the sender's loop), the center's storage workers
// and timers, link readers. It must therefore never block: it queues the
// frame on the session's connection (engine.Conn.Post) and the session's
// event loop seals and writes it (the reactor's MailHandler). A full queue
// is an error (ErrSlowReader), not a wait.
type Endpoint interface {
	// ID is the endpoint's server id.
	ID() uint32
	// Deliver queues one whole plaintext frame for a session, which seals it
	// on its event loop. On success ownership of buf passes to the endpoint;
	// on error (ErrClosed, ErrSlowReader, ErrUnknownSession) the caller
	// keeps it.
	Deliver(s SessionRef, buf *bytebufferpool.ByteBuffer) error
}
