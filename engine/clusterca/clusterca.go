package clusterca

// The cluster CA: certificates for links that negotiate themselves.
//
// The first center runs InitCluster, which creates a CA in its data
// directory and returns a join token: the SHA-256 fingerprint of the CA
// certificate plus a random secret, of which only a hash is kept. Any other
// node runs Join with the token: it reaches the CA holder's join endpoint
// over TLS, accepts the server only if its chain holds the CA with that
// fingerprint (no system roots, no trust on first use), proves the secret
// inside that channel, sends a certificate request for a key that never
// leaves it, and gets a short-lived certificate naming its role and id.
// Renewal goes through the same endpoint with the current certificate
// instead of the secret. Links then use mutual TLS 1.3 under the CA
// (LoadNodeTLS); a peer without a valid certificate of the cluster fails
// the handshake.
//
// Files in the data directory:
//
//	cluster-ca.pem     CA certificate (the CA holder only)
//	cluster-ca.key     CA private key, 0600 (the CA holder only)
//	cluster-join.json  SHA-256 of each join secret, with its expiry, 0600
//	link-ca.pem        the CA bundle this node trusts (during a rotation,
//	                   old and new CA)
//	link.pem, link.key this node's certificate and key (0600)

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/myim/myim/engine/im"
)

// Lifetimes of cluster certificates and join tokens.
const (
	// ClusterCAValidity: the CA outlives any node certificate by far;
	// rotating it is an operator's planned step (docs/operations.md).
	ClusterCAValidity = 10 * 365 * 24 * time.Hour
	// NodeCertValidity is short so that a stolen node key or a removed
	// node stops working on its own, without revocation lists.
	NodeCertValidity = 30 * 24 * time.Hour
	// RenewBefore: a node renews once less than this is left, at 2/3 of
	// its certificate's life, which leaves 10 days to notice a failing
	// renewal.
	RenewBefore = NodeCertValidity / 3
	// JoinTokenTTL is how long a join token from NewJoinToken admits
	// new nodes unless told otherwise: short, since whoever holds it can
	// enrol a node.
	JoinTokenTTL = time.Hour
	// DenyPollInterval is how often a node fetches the deny list from the
	// CA holder: a removed node is refused everywhere within about this.
	DenyPollInterval = 20 * time.Second
	// JoinPath is where JoinHandler is mounted on the CA holder's HTTPS
	// API.
	JoinPath = "/v1/cluster/join"
	// DenyPath serves the deny list (link-deny.json) to cluster nodes on
	// the join listener.
	DenyPath = "/v1/cluster/denied"
)

const (
	caCertFile   = "cluster-ca.pem"
	caKeyFile    = "cluster-ca.key"
	joinFile     = "cluster-join.json"
	linkCAFile   = "link-ca.pem"
	linkCertFile = "link.pem"
	linkKeyFile  = "link.key"
	tokenPrefix  = "myimjoin1"
	nodeScheme   = "myim"
)

// Cluster CA errors.
var (
	ErrNoClusterCA  = errors.New("clusterca: no cluster CA in the data directory")
	ErrNoNodeCert   = errors.New("clusterca: no node certificate; join the cluster first")
	ErrJoinToken    = errors.New("clusterca: malformed join token")
	ErrJoinRefused  = errors.New("clusterca: join refused")
	ErrCAMismatch   = errors.New("clusterca: server's CA does not match the join token")
	ErrPeerIdentity = errors.New("clusterca: peer certificate names no cluster node")
)

// NodeIdentity is what a node certificate says: the node's role and id,
// carried as the URI SAN myim://<role>/<id>.
type NodeIdentity struct {
	Role     string
	NodeID   uint32
	NotAfter time.Time
}

func (n NodeIdentity) uri() *url.URL {
	return &url.URL{Scheme: nodeScheme, Host: n.Role, Path: "/" + strconv.FormatUint(uint64(n.NodeID), 10)}
}

// identityOf reads the node identity from a certificate.
func identityOf(c *x509.Certificate) (NodeIdentity, error) {
	for _, u := range c.URIs {
		if u.Scheme != nodeScheme {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(u.Path, "/"), 10, 32)
		if err != nil || id == 0 || !validRole(u.Host) {
			break
		}
		return NodeIdentity{Role: u.Host, NodeID: uint32(id), NotAfter: c.NotAfter}, nil
	}
	return NodeIdentity{}, ErrPeerIdentity
}

func validRole(r string) bool {
	switch r {
	case im.RoleCenter, im.RoleEndpoint, im.RoleLogin, im.RoleAll:
		return true
	}
	return false
}

// PeerNode returns the identity in the verified peer certificate of a TLS
// connection set up with LoadNodeTLS's configurations.
func PeerNode(cs tls.ConnectionState) (NodeIdentity, error) {
	if len(cs.PeerCertificates) == 0 {
		return NodeIdentity{}, ErrPeerIdentity
	}
	return identityOf(cs.PeerCertificates[0])
}

// Fingerprint is the SHA-256 of a certificate's DER, as join tokens carry it.
func Fingerprint(der []byte) [32]byte { return sha256.Sum256(der) }

// InitCluster creates the cluster CA in dataDir, unless one is there
// already. The CA holder gets its own link certificate with IssueNodeCert;
// other nodes enrol with tokens from NewJoinToken.
func InitCluster(dataDir string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dataDir, caKeyFile)); errors.Is(err, os.ErrNotExist) {
		return createCA(dataDir)
	}
	return nil
}

func createCA(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"MyIM cluster"}, CommonName: "MyIM cluster CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(ClusterCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, caKeyFile), key); err != nil {
		return err
	}
	ca := pemCert(der)
	if err := writeFileAtomic(filepath.Join(dir, caCertFile), ca, 0o644); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, linkCAFile), ca, 0o644)
}

// ParseJoinToken splits a join token into the CA fingerprint and secret.
func ParseJoinToken(token string) (fp [32]byte, secret []byte, err error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return fp, nil, ErrJoinToken
	}
	h, err := hex.DecodeString(parts[1])
	if err != nil || len(h) != len(fp) {
		return fp, nil, ErrJoinToken
	}
	copy(fp[:], h)
	secret, err = base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(secret) < 16 {
		return fp, nil, ErrJoinToken
	}
	return fp, secret, nil
}

// issuer signs node certificates with the CA key.
type issuer struct {
	ca    *x509.Certificate
	key   crypto.Signer
	caPEM []byte // the CA bundle handed to nodes
	caDER []byte
}

func loadIssuer(dir string) (*issuer, error) {
	der, err := readCertDER(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoClusterCA, err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoClusterCA, err)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, linkCAFile))
	if err != nil {
		bundle = pemCert(der)
	}
	return &issuer{ca: ca, key: key, caPEM: bundle, caDER: der}, nil
}

// issue certifies pub as node id with role, for NodeCertValidity, and
// returns the certificate, its serial and its expiry.
func (is *issuer) issue(pub crypto.PublicKey, id NodeIdentity, now time.Time) ([]byte, *big.Int, time.Time, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	notAfter := now.Add(NodeCertValidity)
	if notAfter.After(is.ca.NotAfter) {
		notAfter = is.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"MyIM cluster"}, CommonName: fmt.Sprintf("%s-%d", id.Role, id.NodeID)},
		NotBefore:    now.Add(-5 * time.Minute), // tolerate clock skew between nodes
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.uri()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.ca, pub, is.key)
	return der, serial, notAfter, err
}

// IssueNodeCert gives the CA holder itself a fresh key and link
// certificate as node id with role; it is also how the CA holder renews.
// The node is recorded as enrolled by `cluster init`.
func IssueNodeCert(dataDir string, nodeID uint32, role string) error {
	if nodeID == 0 || !validRole(role) {
		return fmt.Errorf("clusterca: bad node identity %s/%d", role, nodeID)
	}
	is, err := loadIssuer(dataDir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, serial, notAfter, err := is.issue(&key.PublicKey, NodeIdentity{Role: role, NodeID: nodeID}, time.Now())
	if err != nil {
		return err
	}
	err = withStateLock(dataDir, func() error {
		reg, err := readRegistry(dataDir)
		if err != nil {
			return err
		}
		if n := reg.Nodes[nodeKey(nodeID)]; n != nil && n.Role == role && n.By == enrolledByInit && !n.Removed {
			return addSerial(dataDir, reg, nodeID, serial, notAfter)
		}
		return enrol(dataDir, reg, nodeID, role, enrolledByInit, serial, notAfter)
	})
	if err != nil {
		return err
	}
	return writeNodeFiles(dataDir, key, der, nil)
}

// writeNodeFiles stores a node's key and certificate, and the CA bundle
// when given. The key goes first: a certificate without its key is useless,
// a fresh key with the old certificate is noticed at load.
func writeNodeFiles(dir string, key *ecdsa.PrivateKey, der, bundle []byte) error {
	if bundle != nil {
		if err := writeFileAtomic(filepath.Join(dir, linkCAFile), bundle, 0o644); err != nil {
			return err
		}
	}
	if err := writeKey(filepath.Join(dir, linkKeyFile), key); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, linkCertFile), pemCert(der), 0o644)
}

// ReadNodeCert returns the identity and expiry of this node's certificate.
func ReadNodeCert(dataDir string) (NodeIdentity, error) {
	der, err := readCertDER(filepath.Join(dataDir, linkCertFile))
	if err != nil {
		return NodeIdentity{}, fmt.Errorf("%w: %v", ErrNoNodeCert, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return NodeIdentity{}, err
	}
	return identityOf(c)
}

func checkBundleTrusted(dir string, roots []*x509.Certificate) error {
	b, err := os.ReadFile(filepath.Join(dir, linkCAFile))
	if err != nil {
		return err
	}
	for _, old := range parseBundle(b) {
		for _, c := range roots {
			if bytes.Equal(old.Raw, c.Raw) {
				return nil
			}
		}
	}
	return ErrCAMismatch
}

// verifyPinned accepts a server whose chain holds a CA with fingerprint fp
// and whose leaf that CA signed.
func verifyPinned(cs tls.ConnectionState, fp [32]byte) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrCAMismatch
	}
	pool := x509.NewCertPool()
	found := false
	for _, c := range cs.PeerCertificates[1:] {
		if Fingerprint(c.Raw) == fp && c.IsCA {
			pool.AddCert(c)
			found = true
		}
	}
	if !found {
		return ErrCAMismatch
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCAMismatch, err)
	}
	return nil
}

func parseBundle(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func readCertDER(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return blk.Bytes, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// writeFileAtomic writes through a temporary file and a rename, so that a
// reader never sees half a file.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}
