package session

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Certificate errors, classified with errors.Is.
var (
	// ErrCertMalformed: the bytes are not a certificate of this version.
	ErrCertMalformed = errors.New("session: malformed node certificate")
	// ErrCertUnknownRoot: no trusted root has the certificate's key id.
	ErrCertUnknownRoot = errors.New("session: node certificate signed by an unknown root")
	// ErrCertSignature: the signature does not verify under the root.
	ErrCertSignature = errors.New("session: node certificate signature invalid")
	// ErrCertExpired: now is past NotAfter (plus Leeway).
	ErrCertExpired = errors.New("session: node certificate expired")
	// ErrCertNotYetValid: now is before NotBefore (minus Leeway).
	ErrCertNotYetValid = errors.New("session: node certificate not yet valid")
	// ErrCertRole: the certificate is for another role.
	ErrCertRole = errors.New("session: node certificate has the wrong role")
	// ErrCertStaticKey: the certificate's static key is not the key the
	// peer proved in the handshake (or, at issue, not a valid X25519 key).
	ErrCertStaticKey = errors.New("session: node certificate static key mismatch")
)

// Role is what a node certificate lets its key act as. A certificate for one
// role is refused where another is wanted: an endpoint key cannot pose as
// the login service.
type Role byte

// Node roles.
const (
	RoleLogin    Role = 1 // login service: takes passwords, issues tokens
	RoleEndpoint Role = 2 // endpoint: takes tokens, carries messages
)

// String returns the role's name.
func (r Role) String() string {
	switch r {
	case RoleLogin:
		return "login"
	case RoleEndpoint:
		return "endpoint"
	}
	return fmt.Sprintf("role(%d)", byte(r))
}

// Leeway is the clock skew tolerated when checking certificate and token
// validity times (design notes §1.4: at most 60 s).
const Leeway = 60 * time.Second

// Certificate layout. Integers are big-endian, times are Unix seconds.
//
//	off size field
//	  0    1 version (1)
//	  1    1 role
//	  2    4 key id of the signing root
//	  6    4 node id
//	 10   32 X25519 static public key
//	 42    8 not before
//	 50    8 not after
//	 58   64 Ed25519ctx signature over bytes 0..57, context certContext
const (
	certVersion = 1
	certBodyLen = 58
	// CertLen is the size of an encoded certificate.
	CertLen = certBodyLen + ed25519.SignatureSize
)

// certContext separates certificate signatures from anything else a root
// might ever sign (Ed25519ctx, RFC 8032 §5.1).
const certContext = "MYIM node certificate v1"

// Cert is a node certificate: the cluster root's statement that StaticKey is
// node NodeID's X25519 key for Role between NotBefore and NotAfter. Values
// are immutable once issued or parsed and safe for concurrent use.
type Cert struct {
	NodeID    uint32
	Role      Role
	StaticKey [32]byte
	NotBefore time.Time
	NotAfter  time.Time
	KeyID     uint32 // id of the root that signed it
	Signature [ed25519.SignatureSize]byte
}

// IssueCert makes a certificate for nodeID's static X25519 public key,
// valid from notBefore for validity, signed by root.
func IssueCert(root *SigningKey, nodeID uint32, role Role, staticPub []byte, notBefore time.Time, validity time.Duration) (*Cert, error) {
	if role != RoleLogin && role != RoleEndpoint {
		return nil, ErrCertRole
	}
	if err := checkX25519Public(staticPub); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertStaticKey, err)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("%w: validity must be positive", ErrCertMalformed)
	}
	c := &Cert{
		NodeID:    nodeID,
		Role:      role,
		NotBefore: time.Unix(notBefore.Unix(), 0),
		NotAfter:  time.Unix(notBefore.Add(validity).Unix(), 0),
		KeyID:     root.ID,
	}
	copy(c.StaticKey[:], staticPub)
	body := c.appendBody(make([]byte, 0, CertLen))
	sig, err := root.Private.Sign(nil, body, &ed25519.Options{Context: certContext})
	if err != nil {
		return nil, err
	}
	copy(c.Signature[:], sig)
	return c, nil
}

// appendBody appends the signed part of c.
func (c *Cert) appendBody(dst []byte) []byte {
	dst = append(dst, certVersion, byte(c.Role))
	dst = binary.BigEndian.AppendUint32(dst, c.KeyID)
	dst = binary.BigEndian.AppendUint32(dst, c.NodeID)
	dst = append(dst, c.StaticKey[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.NotBefore.Unix()))
	return binary.BigEndian.AppendUint64(dst, uint64(c.NotAfter.Unix()))
}

// AppendBinary appends c's CertLen-byte encoding to dst.
func (c *Cert) AppendBinary(dst []byte) ([]byte, error) {
	dst = c.appendBody(dst)
	return append(dst, c.Signature[:]...), nil
}

// MarshalBinary returns c's CertLen-byte encoding.
func (c *Cert) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, CertLen))
}

// ParseCert decodes a certificate without verifying it (see VerifyCert).
func ParseCert(b []byte) (*Cert, error) {
	if len(b) != CertLen || b[0] != certVersion {
		return nil, ErrCertMalformed
	}
	be := binary.BigEndian
	c := &Cert{
		Role:      Role(b[1]),
		KeyID:     be.Uint32(b[2:]),
		NodeID:    be.Uint32(b[6:]),
		NotBefore: time.Unix(int64(be.Uint64(b[42:])), 0),
		NotAfter:  time.Unix(int64(be.Uint64(b[50:])), 0),
	}
	copy(c.StaticKey[:], b[10:42])
	copy(c.Signature[:], b[certBodyLen:])
	return c, nil
}

// VerifyCert parses raw and checks it: signed by the root in roots whose id
// it names, valid at now (with Leeway), and for the wanted role. It returns
// the certificate, or nil and an error matching one of the ErrCert values.
// Safe for concurrent use.
func VerifyCert(roots []VerifyKey, raw []byte, now time.Time, want Role) (*Cert, error) {
	c, err := ParseCert(raw)
	if err != nil {
		return nil, err
	}
	pub, ok := findKey(roots, c.KeyID)
	if !ok {
		return nil, fmt.Errorf("%w: key id %08x", ErrCertUnknownRoot, c.KeyID)
	}
	if err := ed25519.VerifyWithOptions(pub, raw[:certBodyLen], c.Signature[:], &ed25519.Options{Context: certContext}); err != nil {
		return nil, ErrCertSignature
	}
	if now.After(c.NotAfter.Add(Leeway)) {
		return nil, fmt.Errorf("%w: not after %v", ErrCertExpired, c.NotAfter.UTC())
	}
	if now.Before(c.NotBefore.Add(-Leeway)) {
		return nil, fmt.Errorf("%w: not before %v", ErrCertNotYetValid, c.NotBefore.UTC())
	}
	if c.Role != want {
		return nil, fmt.Errorf("%w: %v, want %v", ErrCertRole, c.Role, want)
	}
	return c, nil
}
