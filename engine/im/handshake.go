package im

import "sync/atomic"

// HandshakeFailure says why a handshake (endpoint or login) failed. Metrics
// label them with String.
type HandshakeFailure uint8

// Handshake failures.
const (
	HandshakeNoHandshake    HandshakeFailure = iota // another frame came first
	HandshakeCrypto                                 // the Noise exchange failed
	HandshakeTokenExpired                           // the token's time is up
	HandshakeTokenAudience                          // a token for another cluster
	HandshakeTokenSignature                         // a token not signed by this cluster
	HandshakeTokenDevice                            // a token bound to another device
	HandshakeBadRequest                             // a malformed login request
	HandshakePassword                               // wrong name or password
	HandshakeRateLimited                            // too many failed logins
	HandshakeUnavailable                            // store or hasher busy or down
	HandshakeDraining                               // the endpoint is draining
	HandshakeTokenRevoked                           // an operator revoked the token
	HandshakeReplayed                               // an IK first message seen before
	handshakeFailureCount
)

// NumHandshakeFailures is the number of failure kinds: every
// HandshakeFailure is below it.
const NumHandshakeFailures = handshakeFailureCount

var handshakeFailureNames = [handshakeFailureCount]string{
	"no_handshake", "crypto", "token_expired", "token_audience", "token_signature",
	"token_device", "bad_request", "password", "rate_limited", "unavailable", "draining",
	"token_revoked", "replayed",
}

// String returns the failure's metric label.
func (f HandshakeFailure) String() string {
	if f < NumHandshakeFailures {
		return handshakeFailureNames[f]
	}
	return "unknown"
}

// HandshakeStats count a role's handshakes (the endpoint's or the login's).
// Safe for concurrent use.
type HandshakeStats struct {
	OK     atomic.Uint64
	Failed [handshakeFailureCount]atomic.Uint64
}

// Fail counts one failed handshake.
func (h *HandshakeStats) Fail(f HandshakeFailure) { h.Failed[f].Add(1) }
