// Package session owns MyIM's per-connection cryptographic state and the
// credentials that authenticate it:
//
//   - Handshake: the Noise handshakes, XX for login and IK for endpoints,
//     carried as frame.CmdHandshake frames (handshake.go);
//   - Keys: the transport state a finished handshake yields, which seals and
//     opens whole frames with one AES-256-GCM key per direction (keys.go);
//   - node certificates signed by the cluster's offline Ed25519 root
//     (cert.go), Ed25519 signing keys and their files (signing.go);
//   - device static keys and fingerprints (device.go);
//   - access tokens bound to a device key (token.go);
//   - argon2id password hashing with a concurrency cap (password.go);
//   - the small payloads the handshakes carry (payload.go).
//
// The package does no network I/O and touches no storage beyond the key files
// its Load/Save functions are given: callers move the frames, look users up,
// and decide what to do with an error (close the connection, with the error
// as its reason).
//
// Concurrency: a Handshake and its Keys belong to one connection (Keys
// allows one sender and one receiver at a time); everything else here,
// certificates, tokens, Hasher and the key file functions, is safe for
// concurrent use.
//
// Every primitive and the handshake state machine come from libraries:
// github.com/flynn/noise for Noise, crypto/ecdh for X25519 keys,
// crypto/ed25519 for signatures, crypto/aes + crypto/cipher for the
// transport AEAD, golang.org/x/crypto/argon2 for passwords and
// github.com/golang-jwt/jwt/v5 (EdDSA only) for tokens. This package adds
// the checks around them: turn and size checks before every Noise call,
// nonce and rekey limits, certificate and token validation.
package session
