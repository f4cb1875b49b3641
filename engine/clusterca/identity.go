package clusterca

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/myim/myim/session"
)

// Identity is a node's key material: the cluster root (signs node
// certificates), the login service's token key (signs access tokens), and
// the node's static X25519 key with a certificate for each role it serves.
// Loaded once at start, immutable afterwards, safe for concurrent use.
type Identity struct {
	// Root signs node certificates: only the node that bootstrapped the
	// cluster holds it; nodes that joined have nil here and RootKeys set.
	Root *session.SigningKey
	// TokenKey signs access tokens: the login service holds it; endpoints
	// that joined have nil here and TokenVerify set.
	TokenKey     *session.SigningKey
	RootKeys     []session.VerifyKey
	TokenVerify  []session.VerifyKey
	Static       *ecdh.PrivateKey
	LoginCert    *session.Cert
	EndpointCert *session.Cert
	// Audience is what tokens of this cluster carry in "aud".
	Audience string
}

// CertValidity is how long the certificates made at start stay valid;
// nodes reissue them at every start.
const CertValidity = 30 * 24 * time.Hour

// LoadIdentity reads the keys in dir, creating any that are missing (a
// fresh node bootstraps its own cluster), and certifies the node's static
// key for the login and endpoint roles. It writes root.pub, the text form
// of the root public key that clients pin.
func LoadIdentity(dir string, nodeID uint32, now time.Time) (*Identity, error) {
	id := &Identity{}
	var err error
	if id.Root, err = loadOrCreateSigning(filepath.Join(dir, "root.key")); err != nil {
		return nil, err
	}
	if id.TokenKey, err = loadOrCreateSigning(filepath.Join(dir, "token.key")); err != nil {
		return nil, err
	}
	if id.Static, err = session.LoadOrCreateDeviceKey(filepath.Join(dir, "node.key")); err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	pub := id.Static.PublicKey().Bytes()
	notBefore := now.Add(-time.Minute)
	if id.LoginCert, err = session.IssueCert(id.Root, nodeID, session.RoleLogin, pub, notBefore, CertValidity); err != nil {
		return nil, err
	}
	if id.EndpointCert, err = session.IssueCert(id.Root, nodeID, session.RoleEndpoint, pub, notBefore, CertValidity); err != nil {
		return nil, err
	}
	id.Audience = fmt.Sprintf("myim:%08x", id.Root.ID)
	if err := os.WriteFile(filepath.Join(dir, "root.pub"), []byte(id.Root.Verify().String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	return id, nil
}

func loadOrCreateSigning(path string) (*session.SigningKey, error) {
	k, err := session.LoadSigningKey(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k, err = session.NewSigningKey(); err != nil {
		return nil, err
	}
	if err := session.SaveSigningKey(path, k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// TokenKeys returns the keys endpoints accept tokens from.
func (id *Identity) TokenKeys() []session.VerifyKey {
	if len(id.TokenVerify) > 0 {
		return id.TokenVerify
	}
	return []session.VerifyKey{id.TokenKey.Verify()}
}

// Roots returns the root keys clients pin.
func (id *Identity) Roots() []session.VerifyKey {
	if len(id.RootKeys) > 0 {
		return id.RootKeys
	}
	return []session.VerifyKey{id.Root.Verify()}
}
