package session

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Key file errors.
var (
	// ErrKeyFile: a key file does not hold the expected PEM block and key.
	ErrKeyFile = errors.New("session: malformed key file")
	// ErrKeyFileMode: a private key file is readable by group or others.
	// Like ssh, the key is refused rather than used: it may be leaked already.
	ErrKeyFileMode = errors.New("session: key file permissions too open (want 0600)")
	// ErrVerifyKey: a verify key's text form is malformed.
	ErrVerifyKey = errors.New("session: malformed verify key")
)

// SigningKey is an Ed25519 private key with a key id. Two kinds exist and
// must be distinct keys: the cluster root, kept offline, which signs node
// certificates (IssueCert), and the login service's token key, which signs
// access tokens (IssueToken). The id travels in what the key signs so that a
// verifier holding several keys (old and new, during a rotation) picks the
// right one. A SigningKey is immutable and safe for concurrent use.
type SigningKey struct {
	ID      uint32
	Private ed25519.PrivateKey
}

// VerifyKey is the public half of a SigningKey: what clients pin (roots) and
// endpoints hold (token keys). Immutable, safe for concurrent use.
type VerifyKey struct {
	ID     uint32
	Public ed25519.PublicKey
}

// NewSigningKey makes a fresh Ed25519 key with a random id.
func NewSigningKey() (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return &SigningKey{ID: binary.BigEndian.Uint32(id[:]), Private: priv}, nil
}

// Verify returns the public half of k, with its id: the VerifyKey that
// checks what k signs.
func (k *SigningKey) Verify() VerifyKey {
	return VerifyKey{ID: k.ID, Public: k.Private.Public().(ed25519.PublicKey)}
}

// String returns the text form "kid:base64url(public key)", kid in 8 hex
// digits, which ParseVerifyKey reads: the form configs and client builds
// carry pinned keys in.
func (k VerifyKey) String() string {
	return fmt.Sprintf("%08x:%s", k.ID, base64.RawURLEncoding.EncodeToString(k.Public))
}

// ParseVerifyKey reads the text form written by VerifyKey.String.
func ParseVerifyKey(s string) (VerifyKey, error) {
	idHex, b64, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(idHex) != 8 {
		return VerifyKey{}, ErrVerifyKey
	}
	id, err := strconv.ParseUint(idHex, 16, 32)
	if err != nil {
		return VerifyKey{}, ErrVerifyKey
	}
	pub, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return VerifyKey{}, ErrVerifyKey
	}
	return VerifyKey{ID: uint32(id), Public: ed25519.PublicKey(pub)}, nil
}

// findKey returns the key with the given id.
func findKey(keys []VerifyKey, id uint32) (ed25519.PublicKey, bool) {
	for _, k := range keys {
		if k.ID == id && len(k.Public) == ed25519.PublicKeySize {
			return k.Public, true
		}
	}
	return nil, false
}

const keyIDHeader = "Key-Id"

// SaveSigningKey writes k to a new file at path: PKCS#8 in a PEM block with a
// Key-Id header, mode 0600. It never overwrites: an existing file is an error
// (fs.ErrExist), so a second `init` cannot destroy the cluster root.
func SaveSigningKey(path string, k *SigningKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return err
	}
	block := &pem.Block{
		Type:    "PRIVATE KEY",
		Headers: map[string]string{keyIDHeader: fmt.Sprintf("%08x", k.ID)},
		Bytes:   der,
	}
	data := pem.EncodeToMemory(block)
	defer clear(data)
	clear(der)
	return writeKeyFile(path, data)
}

// LoadSigningKey reads a file written by SaveSigningKey. It refuses a file
// readable by group or others (ErrKeyFileMode).
func LoadSigningKey(path string) (*SigningKey, error) {
	block, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(block.Bytes)
	id, err := strconv.ParseUint(block.Headers[keyIDHeader], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: bad %s header", ErrKeyFile, path, keyIDHeader)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not an Ed25519 key", ErrKeyFile, path)
	}
	return &SigningKey{ID: uint32(id), Private: priv}, nil
}

// writeKeyFile creates path with data, mode 0600, atomically and without
// overwriting: the bytes go to a temporary file in the same directory, are
// synced, and the file is then hard-linked into place (link fails if path
// exists). A crash leaves either no key file or a complete one.
func writeKeyFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".key-*") // CreateTemp uses mode 0600
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: make the new directory entry durable
		d.Close()
	}
	return nil
}

// readKeyFile reads the single PEM block of a private key file after
// checking its permissions.
func readKeyFile(path string) (*pem.Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if runtime.GOOS != "windows" {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%w: %s is %v", ErrKeyFileMode, path, st.Mode().Perm())
		}
	}
	data, err := readAllLimited(f, 1<<16)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s: no PRIVATE KEY block", ErrKeyFile, path)
	}
	return block, nil
}

// readAllLimited reads r whole, failing past limit bytes: a key file is
// tiny, and a huge one is not a key file.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		clear(data)
		return nil, ErrKeyFile
	}
	return data, nil
}
