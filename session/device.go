package session

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
)

// ErrStaticKey: a byte string is not an X25519 public key.
var ErrStaticKey = errors.New("session: invalid X25519 public key")

// NewStaticKey makes a random X25519 static key pair: a device's (see
// LoadOrCreateDeviceKey) or a node's, whose public half IssueCert certifies.
func NewStaticKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// LoadOrCreateDeviceKey returns the X25519 static key stored at path,
// creating it on first use: random, never derived from hardware ids, written
// as PKCS#8 PEM with mode 0600 (see SaveSigningKey for the atomic,
// no-overwrite write). A file readable by group or others is refused with
// ErrKeyFileMode. Two processes racing to create the key end up with the
// same one: the loser of the race loads the winner's file. Nodes may keep
// their static key the same way.
func LoadOrCreateDeviceKey(path string) (*ecdh.PrivateKey, error) {
	k, err := loadStaticKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = NewStaticKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	err = writeKeyFile(path, data)
	clear(data)
	if errors.Is(err, fs.ErrExist) {
		return loadStaticKey(path)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

func loadStaticKey(path string) (*ecdh.PrivateKey, error) {
	block, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(block.Bytes)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, path, err)
	}
	k, ok := key.(*ecdh.PrivateKey)
	if !ok || k.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: %s: not an X25519 key", ErrKeyFile, path)
	}
	return k, nil
}

// DeviceKeyHash returns SHA-256 of a device's static public key: the device
// id, and what an access token's "dk" claim carries (base64url-encoded).
func DeviceKeyHash(pub []byte) [32]byte {
	return sha256.Sum256(pub)
}

// deviceKeyClaim returns the "dk" claim for pub.
func deviceKeyClaim(pub []byte) string {
	h := DeviceKeyHash(pub)
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// Fingerprint returns hex(HMAC-SHA256(appSalt, machineID)): a stable,
// app-specific hint that the same machine is back, sent in the login request
// as a risk signal for the new-device alert. It is never key material and
// never proof of identity: machine ids are readable by other software and
// collide on cloned images. The HMAC keeps the raw machine id off the wire
// and unlinkable across apps with different salts.
func Fingerprint(machineID, appSalt string) string {
	m := hmac.New(sha256.New, []byte(appSalt))
	m.Write([]byte(machineID))
	return hex.EncodeToString(m.Sum(nil))
}

// checkX25519Public reports whether pub is usable as an X25519 public key.
func checkX25519Public(pub []byte) error {
	if _, err := ecdh.X25519().NewPublicKey(pub); err != nil {
		return ErrStaticKey
	}
	var zero [32]byte
	if hmac.Equal(pub, zero[:]) {
		return ErrStaticKey
	}
	return nil
}
