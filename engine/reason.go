package engine

import "errors"

// CloseReason says why a connection was closed. Logs and metrics use it; it
// is the typed enum behind every close the engine or a handler makes.
type CloseReason uint8

// Close reasons.
const (
	ReasonNone       CloseReason = iota // still open
	ReasonPeer                          // the peer closed or the socket failed
	ReasonMalformed                     // a frame failed to parse
	ReasonTooLarge                      // a frame's length exceeded the maximum
	ReasonFirstFrame                    // no frame within the first-frame deadline
	ReasonIdle                          // no frame within the idle timeout
	ReasonDeadline                      // a deadline set by the handler passed
	ReasonSlowReader                    // outbound bytes over the per-connection cap
	ReasonMaxConns                      // the server holds its maximum connections
	ReasonHandler                       // the handler returned an error
	ReasonCrypto                        // a sealed frame failed to open
	ReasonAuth                          // authentication failed
	ReasonKicked                        // an operator or a newer session closed it
	ReasonShutdown                      // the server is stopping
	ReasonDone                          // the exchange completed (a login)
	reasonCount
)

// NumReasons is the number of close reasons: every CloseReason is below it,
// so that a table indexed by reason has NumReasons entries.
const NumReasons = reasonCount

var reasonNames = [reasonCount]string{
	"none", "peer", "malformed", "too_large", "first_frame_timeout", "idle",
	"deadline", "slow_reader", "max_conns", "handler", "crypto", "auth",
	"kicked", "shutdown", "done",
}

// String returns the reason's metric label.
func (r CloseReason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "unknown"
}

// Errors returned by Conn methods.
var (
	// ErrClosed: the connection is closed or closing.
	ErrClosed = errors.New("engine: connection closed")
	// ErrSlowReader: the connection's queued outbound bytes are over the cap.
	ErrSlowReader = errors.New("engine: outbound queue full")
	// ErrNotLoop: a loop-only method was called off the event loop.
	ErrNotLoop = errors.New("engine: not on the event loop")
)

// ReasonError is returned by a Handler to close a connection with a
// specific reason; any other error closes with ReasonHandler.
type ReasonError struct {
	Reason CloseReason
	Err    error
}

func (e *ReasonError) Error() string { return e.Reason.String() + ": " + e.Err.Error() }
func (e *ReasonError) Unwrap() error { return e.Err }

// CloseWith wraps err so that the connection closes with reason r.
func CloseWith(r CloseReason, err error) error { return &ReasonError{Reason: r, Err: err} }
