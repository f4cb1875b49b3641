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
	"context"
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
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	ErrNoClusterCA  = errors.New("engine: no cluster CA in the data directory")
	ErrNoNodeCert   = errors.New("engine: no node certificate; join the cluster first")
	ErrJoinToken    = errors.New("engine: malformed join token")
	ErrJoinRefused  = errors.New("engine: join refused")
	ErrCAMismatch   = errors.New("engine: server's CA does not match the join token")
	ErrPeerIdentity = errors.New("engine: peer certificate names no cluster node")
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
		return fmt.Errorf("engine: bad node identity %s/%d", role, nodeID)
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

// joinRequest is the body of POST /v1/cluster/join.
type joinRequest struct {
	// Secret is the token's secret, base64url; empty when renewing with
	// the current certificate.
	Secret string `json:"secret,omitempty"`
	NodeID uint32 `json:"node_id"`
	Role   string `json:"role"`
	CSR    []byte `json:"csr"` // DER
}

// joinReply is its answer.
type joinReply struct {
	Cert string `json:"cert"` // PEM
	CA   string `json:"ca"`   // PEM bundle
}

// JoinService is the CA holder's join endpoint: an http.Handler for POST
// JoinPath on an HTTPS listener configured with TLSConfig. A request is
// admitted by a live join secret, or, for a renewal, by the node's current
// certificate for the same role and id. Safe for concurrent use.
type JoinService struct {
	dir string
	is  *issuer
	log *slog.Logger

	// Stats.
	Joined, Renewed, Refused atomic.Uint64
}

// JoinHandler loads the CA from dataDir and returns the join endpoint.
func JoinHandler(dataDir string, logger *slog.Logger) (*JoinService, error) {
	is, err := loadIssuer(dataDir)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &JoinService{dir: dataDir, is: is, log: logger}, nil
}

// TLSConfig is the HTTPS listener's configuration for the join endpoint:
// the CA holder's own link certificate with the CA in its chain (so that a
// joining node can find the CA it pinned), and client certificates
// verified when given (renewals), not required (first joins).
func (j *JoinService) TLSConfig() (*tls.Config, error) {
	src, err := newCertSource(j.dir)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return src.get() },
		ClientAuth:     tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return src.verify(cs, x509.ExtKeyUsageClientAuth)
		},
	}, nil
}

// ServeHTTP handles a join or a renewal.
func (j *JoinService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.TLS == nil {
		j.refuse(w, r, http.StatusForbidden, "join requires TLS")
		return
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if req.NodeID == 0 || !validRole(req.Role) {
		http.Error(w, "bad node identity", http.StatusBadRequest)
		return
	}
	var secret []byte
	var err error
	renewal := false
	if len(r.TLS.PeerCertificates) > 0 { // verified by TLSConfig, deny list included
		peer, err := identityOf(r.TLS.PeerCertificates[0])
		if err != nil || peer.Role != req.Role || peer.NodeID != req.NodeID {
			j.refuse(w, r, http.StatusForbidden, "certificate is for another node")
			return
		}
		renewal = true
	} else if secret, err = base64.RawURLEncoding.DecodeString(req.Secret); err != nil || len(secret) < 16 {
		j.refuse(w, r, http.StatusForbidden, "join token not valid")
		return
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, "bad certificate request", http.StatusBadRequest)
		return
	}
	id := NodeIdentity{Role: req.Role, NodeID: req.NodeID}
	var der []byte
	var refusal string
	err = withStateLock(j.dir, func() error {
		reg, err := readRegistry(j.dir)
		if err != nil {
			return err
		}
		by := ""
		if renewal {
			n := reg.Nodes[nodeKey(id.NodeID)]
			switch {
			case n == nil || n.Role != id.Role:
				refusal = "node not enrolled: enrol it again with a join token"
				return nil
			case n.Removed:
				refusal = "node removed from the cluster"
				return nil
			}
		} else {
			tok, err := admitToken(j.dir, secret, id.Role, id.NodeID, reg)
			if err != nil {
				refusal = err.Error()
				return nil
			}
			by = tok.Role
		}
		var serial *big.Int
		var notAfter time.Time
		if der, serial, notAfter, err = j.is.issue(csr.PublicKey, id, time.Now()); err != nil {
			return err
		}
		if renewal {
			return addSerial(j.dir, reg, id.NodeID, serial, notAfter)
		}
		return enrol(j.dir, reg, id.NodeID, id.Role, by, serial, notAfter)
	})
	if refusal != "" {
		j.refuse(w, r, http.StatusForbidden, refusal)
		return
	}
	if err != nil {
		j.log.Error("cluster join: issue", "err", err)
		http.Error(w, "cannot issue", http.StatusInternalServerError)
		return
	}
	if renewal {
		j.Renewed.Add(1)
	} else {
		j.Joined.Add(1)
	}
	j.log.Info("cluster join: certificate issued", "role", id.Role, "node", id.NodeID, "renewal", renewal,
		"remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(joinReply{Cert: string(pemCert(der)), CA: string(j.is.caPEM)})
}

// ServeDenied answers GET DenyPath with the deny list, to cluster nodes
// only (the TLS layer verified the certificate, and refuses removed ones).
func (j *JoinService) ServeDenied(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "a cluster certificate is required", http.StatusForbidden)
		return
	}
	var dl denyList
	if err := readStateFile(filepath.Join(j.dir, denyFile), &dl); err != nil {
		http.Error(w, "cannot read the deny list", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(dl)
}

func (j *JoinService) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	j.Refused.Add(1)
	j.log.Warn("cluster join refused", "remote", r.RemoteAddr, "reason", why)
	http.Error(w, why, code)
}

// Join obtains this node's link certificate from the CA holder's join
// endpoint at baseURL (https://host:port; JoinPath is appended) with a
// join token, and stores it with a fresh key and the CA bundle in dataDir.
func Join(ctx context.Context, baseURL, token, dataDir string, nodeID uint32, role string) error {
	fp, secret, err := ParseJoinToken(token)
	if err != nil {
		return err
	}
	pin := func(cs tls.ConnectionState) error { return verifyPinned(cs, fp) }
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The server is verified by VerifyConnection against the pinned
		// CA found in its chain, not by the system roots or a host name.
		InsecureSkipVerify: true,
		VerifyConnection:   pin,
	}
	req := joinRequest{Secret: base64.RawURLEncoding.EncodeToString(secret), NodeID: nodeID, Role: role}
	return requestCert(ctx, baseURL, dataDir, cfg, req, &fp)
}

// Renew replaces this node's link certificate, and key, before it expires,
// authenticating with the current one at the CA holder's join endpoint.
func Renew(ctx context.Context, baseURL, dataDir string) error {
	cur, err := ReadNodeCert(dataDir)
	if err != nil {
		return err
	}
	src, err := newCertSource(dataDir)
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return src.get() },
		InsecureSkipVerify:   true, // verified against the CA bundle below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return src.verify(cs, x509.ExtKeyUsageServerAuth)
		},
	}
	return requestCert(ctx, baseURL, dataDir, cfg, joinRequest{NodeID: cur.NodeID, Role: cur.Role}, nil)
}

// requestCert posts a certificate request and stores the answer. With fp,
// the CA bundle returned must hold the pinned CA.
func requestCert(ctx context.Context, baseURL, dataDir string, cfg *tls.Config, req joinRequest, fp *[32]byte) error {
	if req.NodeID == 0 || !validRole(req.Role) {
		return fmt.Errorf("engine: bad node identity %s/%d", req.Role, req.NodeID)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: fmt.Sprintf("%s-%d", req.Role, req.NodeID)}}, key)
	if err != nil {
		return err
	}
	req.CSR = csr
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+JoinPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %s", ErrJoinRefused, resp.Status, strings.TrimSpace(string(rb)))
	}
	var rep joinReply
	if err := json.Unmarshal(rb, &rep); err != nil {
		return err
	}
	pool, roots := x509.NewCertPool(), parseBundle([]byte(rep.CA))
	pinned := fp == nil
	for _, c := range roots {
		pool.AddCert(c)
		if fp != nil && Fingerprint(c.Raw) == *fp {
			pinned = true
		}
	}
	if !pinned {
		return ErrCAMismatch
	}
	if fp == nil { // a renewal: the bundle must hold a CA this node trusts already
		if err := checkBundleTrusted(dataDir, roots); err != nil {
			return err
		}
	}
	blk, _ := pem.Decode([]byte(rep.Cert))
	if blk == nil {
		return fmt.Errorf("%w: no certificate in the answer", ErrJoinRefused)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: issued certificate does not verify: %v", ErrJoinRefused, err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return fmt.Errorf("%w: issued certificate is for another key", ErrJoinRefused)
	}
	if id, err := identityOf(leaf); err != nil || id.Role != req.Role || id.NodeID != req.NodeID {
		return fmt.Errorf("%w: issued certificate names another node", ErrJoinRefused)
	}
	return writeNodeFiles(dataDir, key, leaf.Raw, []byte(rep.CA))
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

// LoadNodeTLS returns the link configurations of this node: server for the
// center's link listener, client for an endpoint's link. Both are TLS 1.3
// only and mutual: each side must present a certificate issued by a CA in
// link-ca.pem, valid now and naming a cluster node (PeerNode reads it);
// anything else fails the handshake. A renewed certificate or CA bundle on
// disk is picked up at the next handshake, without a restart.
func LoadNodeTLS(dataDir string) (server, client *tls.Config, err error) {
	src, err := newCertSource(dataDir)
	if err != nil {
		return nil, nil, err
	}
	if _, err := src.get(); err != nil {
		return nil, nil, err
	}
	server = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return src.get() },
		// Verified by VerifyConnection against the reloadable bundle.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return src.verify(cs, x509.ExtKeyUsageClientAuth)
		},
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return src.get() },
		// Nodes are named by role and id in their certificate, not by host
		// name: VerifyConnection checks the chain, PeerNode the identity.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return src.verify(cs, x509.ExtKeyUsageServerAuth)
		},
	}
	return server, client, nil
}

// certSource holds a node's certificate and CA bundle, reloaded when the
// files change. Safe for concurrent use.
type certSource struct {
	dir string
	mu  sync.Mutex
	mod [3]time.Time
	crt *tls.Certificate
	cas *x509.CertPool
	// The deny list (link-deny.json) as of denyMod: serials, hex.
	denyMod time.Time
	denied  map[string]struct{}
}

func newCertSource(dir string) (*certSource, error) {
	s := &certSource{dir: dir}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// reload reads the files again when any of them changed.
func (s *certSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := [3]string{linkCertFile, linkKeyFile, linkCAFile}
	var mod [3]time.Time
	for i, n := range names {
		fi, err := os.Stat(filepath.Join(s.dir, n))
		if err != nil {
			if s.crt != nil {
				return nil // keep what works; a half-written renewal is not fatal
			}
			return fmt.Errorf("%w: %v", ErrNoNodeCert, err)
		}
		mod[i] = fi.ModTime()
	}
	if s.crt != nil && mod == s.mod {
		return nil
	}
	crt, err := tls.LoadX509KeyPair(filepath.Join(s.dir, linkCertFile), filepath.Join(s.dir, linkKeyFile))
	if err != nil {
		if s.crt != nil {
			return nil
		}
		return fmt.Errorf("%w: %v", ErrNoNodeCert, err)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, linkCAFile))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoNodeCert, err)
	}
	cas := x509.NewCertPool()
	roots := parseBundle(b)
	for _, c := range roots {
		cas.AddCert(c)
	}
	if len(roots) == 0 {
		return fmt.Errorf("%w: empty CA bundle", ErrNoNodeCert)
	}
	// Send the issuing CA along, so that a joining node finds the CA it
	// pinned in the chain.
	if leaf, err := x509.ParseCertificate(crt.Certificate[0]); err == nil {
		crt.Leaf = leaf
		for _, c := range roots {
			if leaf.CheckSignatureFrom(c) == nil {
				crt.Certificate = append(crt.Certificate, c.Raw)
				break
			}
		}
	}
	s.crt, s.cas, s.mod = &crt, cas, mod
	return nil
}

func (s *certSource) get() (*tls.Certificate, error) {
	if err := s.reload(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crt, nil
}

// verify checks a peer's chain against the CA bundle and that the leaf
// names a cluster node.
func (s *certSource) verify(cs tls.ConnectionState, usage x509.ExtKeyUsage) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrPeerIdentity
	}
	_ = s.reload()
	s.mu.Lock()
	cas := s.cas
	s.mu.Unlock()
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: cas, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return err
	}
	id, err := identityOf(cs.PeerCertificates[0])
	if err != nil {
		return err
	}
	if s.isDenied(cs.PeerCertificates[0].SerialNumber) {
		return fmt.Errorf("%w: %s %d", ErrNodeRemoved, id.Role, id.NodeID)
	}
	return nil
}

// isDenied reports whether serial is on the deny list, read again when the
// file changed. An unreadable list keeps the last one read.
func (s *certSource) isDenied(serial *big.Int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.dir, denyFile)
	if fi, err := os.Stat(path); err == nil && !fi.ModTime().Equal(s.denyMod) {
		var dl denyList
		if err := readStateFile(path, &dl); err == nil {
			s.denied = make(map[string]struct{}, len(dl.Serials))
			for _, d := range dl.Serials {
				s.denied[d.Serial] = struct{}{}
			}
			s.denyMod = fi.ModTime()
		}
	}
	_, ok := s.denied[serial.Text(16)]
	return ok
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

// FetchDenyList gets the deny list from the CA holder's join listener at
// baseURL with this node's certificate and stores it in dataDir, where the
// link TLS configurations read it.
func FetchDenyList(ctx context.Context, baseURL, dataDir string) error {
	_, client, err := LoadNodeTLS(dataDir)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: client}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+DenyPath, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("engine: deny list: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var dl denyList
	if err := json.Unmarshal(b, &dl); err != nil {
		return fmt.Errorf("engine: deny list: %w", err)
	}
	path := filepath.Join(dataDir, denyFile)
	if old, err := os.ReadFile(path); err == nil {
		var cur denyList
		if json.Unmarshal(old, &cur) == nil && slices.Equal(cur.Serials, dl.Serials) {
			return nil // unchanged: keep the file, and its time, as it is
		}
	}
	return writeStateFile(path, dl, 0o644)
}

// DenyLoop fetches the deny list every DenyPollInterval until ctx ends, so
// that this node refuses links from removed nodes within about a minute.
func DenyLoop(ctx context.Context, baseURL, dataDir string, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(DenyPollInterval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, DenyPollInterval)
		if err := FetchDenyList(rctx, baseURL, dataDir); err != nil && ctx.Err() == nil {
			logger.Warn("cluster deny list", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RenewLoop keeps this node's link certificate fresh until ctx ends: once
// less than RenewBefore is left it renews, locally when dataDir holds the
// CA key (the CA holder), else at the join endpoint baseURL. Failures are
// logged and retried every minute.
func RenewLoop(ctx context.Context, baseURL, dataDir string, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for {
		wait := 12 * time.Hour
		cur, err := ReadNodeCert(dataDir)
		switch {
		case err != nil:
			logger.Error("link certificate unreadable", "err", err)
			wait = time.Minute
		case time.Until(cur.NotAfter) < RenewBefore:
			if _, e := os.Stat(filepath.Join(dataDir, caKeyFile)); e == nil {
				err = IssueNodeCert(dataDir, cur.NodeID, cur.Role)
			} else {
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				err = Renew(rctx, baseURL, dataDir)
				cancel()
			}
			if err != nil {
				logger.Error("link certificate renewal failed", "err", err, "expires", cur.NotAfter)
				wait = time.Minute
			} else {
				logger.Info("link certificate renewed", "role", cur.Role, "node", cur.NodeID)
				wait = time.Minute // re-read the new expiry
			}
		default:
			wait = min(wait, time.Until(cur.NotAfter)-RenewBefore+time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
