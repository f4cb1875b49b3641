package session

import (
	"encoding/binary"
	"errors"
	"time"
	"unicode/utf8"
)

// ErrPayload: a handshake payload (login request, accepted record) is
// malformed or has a field out of bounds.
var ErrPayload = errors.New("session: malformed handshake payload")

// Bounds on login request fields. The password bound keeps the request,
// with the Noise overhead, inside the default MaxHandshakeMessage.
const (
	MaxUserName    = 128
	MaxPassword    = 1024
	MaxFingerprint = 128
	MaxDeviceName  = 128
)

// LoginRequest is the payload of XX message 3 to the login service.
//
// Encoding: version byte 1, then Name, Password, Fingerprint, DeviceName,
// each as a big-endian uint16 length and the bytes.
type LoginRequest struct {
	Name        string
	Password    []byte // a []byte so that callers can zero it after use
	Fingerprint string // see Fingerprint; a risk signal only
	DeviceName  string
}

const payloadVersion = 1

// AppendBinary appends r's encoding to dst.
func (r *LoginRequest) AppendBinary(dst []byte) ([]byte, error) {
	if err := r.check(); err != nil {
		return dst, err
	}
	dst = append(dst, payloadVersion)
	dst = appendField(dst, []byte(r.Name))
	dst = appendField(dst, r.Password)
	dst = appendField(dst, []byte(r.Fingerprint))
	return appendField(dst, []byte(r.DeviceName)), nil
}

func (r *LoginRequest) check() error {
	if r.Name == "" || len(r.Name) > MaxUserName || !utf8.ValidString(r.Name) ||
		len(r.Password) > MaxPassword ||
		len(r.Fingerprint) > MaxFingerprint ||
		len(r.DeviceName) > MaxDeviceName || !utf8.ValidString(r.DeviceName) {
		return ErrPayload
	}
	return nil
}

func appendField(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// ParseLoginRequest decodes a login request. The result does not alias b
// (Password is a copy), so the caller may zero b at once.
func ParseLoginRequest(b []byte) (*LoginRequest, error) {
	if len(b) < 1 || b[0] != payloadVersion {
		return nil, ErrPayload
	}
	b = b[1:]
	var f [4][]byte
	for i := range f {
		if len(b) < 2 {
			return nil, ErrPayload
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, ErrPayload
		}
		f[i], b = b[2:2+n], b[2+n:]
	}
	if len(b) != 0 {
		return nil, ErrPayload
	}
	r := &LoginRequest{
		Name:        string(f[0]),
		Password:    append([]byte(nil), f[1]...),
		Fingerprint: string(f[2]),
		DeviceName:  string(f[3]),
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// Accepted is the payload of IK message 2: the endpoint's answer to a valid
// token.
//
// Encoding (17 bytes): version byte 1, UserID as big-endian uint64,
// ServerTime as big-endian int64 Unix milliseconds.
type Accepted struct {
	UserID     uint64
	ServerTime time.Time
}

// AcceptedLen is the size of an encoded Accepted.
const AcceptedLen = 17

// AppendBinary appends a's encoding to dst.
func (a *Accepted) AppendBinary(dst []byte) ([]byte, error) {
	dst = append(dst, payloadVersion)
	dst = binary.BigEndian.AppendUint64(dst, a.UserID)
	return binary.BigEndian.AppendUint64(dst, uint64(a.ServerTime.UnixMilli())), nil
}

// ParseAccepted decodes an Accepted record.
func ParseAccepted(b []byte) (Accepted, error) {
	if len(b) != AcceptedLen || b[0] != payloadVersion {
		return Accepted{}, ErrPayload
	}
	return Accepted{
		UserID:     binary.BigEndian.Uint64(b[1:]),
		ServerTime: time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:]))),
	}, nil
}
