package engine

import "github.com/valyala/bytebufferpool"

// SessionRef names one client session: the endpoint that holds it and the
// session's id there (the connection id).
type SessionRef struct {
	Endpoint uint32
	Session  uint64
}

// Center is the center role as an endpoint sees it: routing, message ids,
// the offline store, groups and presence. The all-in-one node passes the
// in-process *LocalCenter; a networked link implements the same interface
// by carrying these calls as frames. Every method is safe for concurrent use
// and returns at once: storage work runs on the center's goroutines and
// answers come back through Endpoint.Deliver.
type Center interface {
	// Attach registers an endpoint the center delivers to.
	Attach(ep Endpoint)
	// Online reports an authenticated session of user.
	Online(user uint64, s SessionRef)
	// Offline reports that the session is gone; bye is true for the
	// terminal's own offline confirmation.
	Offline(user uint64, s SessionRef, bye bool)
	// Handle passes one whole plaintext frame from an authenticated session
	// of user, its body already checked against its command's layout and,
	// for messages, its sender already checked to be user. Ownership of buf
	// passes to the center.
	Handle(user uint64, s SessionRef, buf *bytebufferpool.ByteBuffer)
	// Notify sends a NOTICE to every session of user.
	Notify(user uint64, code uint16, json []byte)
}

// Endpoint is the endpoint role as a center sees it.
type Endpoint interface {
	// ID is the endpoint's server id.
	ID() uint32
	// Deliver queues one whole plaintext frame for a session, which seals it
	// on its event loop. On success ownership of buf passes to the endpoint;
	// on error (ErrClosed, ErrSlowReader, or an unknown session) the caller
	// keeps it.
	Deliver(s SessionRef, buf *bytebufferpool.ByteBuffer) error
}
