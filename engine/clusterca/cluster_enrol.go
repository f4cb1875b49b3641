package clusterca

// Enrolment state of the cluster CA: what each join token may enrol, which
// nodes are enrolled and by what kind of token, and which certificates are
// denied because their node was removed.
//
// Files in the CA holder's data directory, each rewritten whole through a
// rename under an exclusive lock on cluster.lock, so that `myimd cluster`
// commands and the running node can both change them:
//
//	cluster-join.json   join tokens: hash of the secret, role, node id,
//	                    uses left, expiry (0600)
//	cluster-nodes.json  enrolled nodes: role, the role of the token that
//	                    enrolled them, the serials of their certificates,
//	                    removed or not (0600)
//
// and in every node's data directory:
//
//	link-deny.json      serials of certificates of removed nodes, with
//	                    their expiry; the CA holder writes it, the other
//	                    nodes fetch it (DenyPath) every DenyPollInterval

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	nodesFile = "cluster-nodes.json"
	denyFile  = "link-deny.json"
	lockFile  = "cluster.lock"
	// enrolledByInit marks the CA holder's own node, made by `cluster init`.
	enrolledByInit = "init"
)

// Enrolment errors.
var (
	ErrNodeEnrolled = errors.New("clusterca: node id already enrolled")
	ErrNodeRemoved  = errors.New("clusterca: node removed from the cluster")
	ErrNoSuchToken  = errors.New("clusterca: no such join token")
	ErrNoSuchNode   = errors.New("clusterca: no such node")
)

// JoinTokenSpec says what a join token admits. Zero values are the
// defaults: one use, JoinTokenTTL, any node id not yet enrolled.
type JoinTokenSpec struct {
	// Role is the one role the token enrols (required).
	Role string
	// NodeID, when set, is the only node id the token enrols.
	NodeID uint32
	// Uses is how many nodes the token enrols. Default 1.
	Uses int
	// TTL is how long the token lives. Default JoinTokenTTL.
	TTL time.Duration
	// Replace lets the token enrol NodeID even though a node of that id is
	// enrolled already (a rebuilt machine): the old node's certificates
	// are denied. Requires NodeID.
	Replace bool
}

// joinSecret is one join token, as cluster-join.json keeps it.
type joinSecret struct {
	ID      string    `json:"id"`     // what `cluster token --revoke` takes
	SHA256  string    `json:"sha256"` // hex of the secret's hash
	Expires time.Time `json:"expires"`
	Role    string    `json:"role"`
	NodeID  uint32    `json:"node_id,omitempty"`
	Uses    int       `json:"uses"` // uses left
	Replace bool      `json:"replace,omitempty"`
}

// joinSecrets is cluster-join.json.
type joinSecrets struct {
	Secrets []joinSecret `json:"secrets"`
}

// enrolledNode is one node of cluster-nodes.json.
type enrolledNode struct {
	Role string `json:"role"`
	// By is the role of the token that enrolled the node ("init" for the
	// CA holder's own): only a center enrolled by a center token or init
	// gets the token-signing key.
	By      string       `json:"by"`
	Serials []serialInfo `json:"serials"`
	Removed bool         `json:"removed,omitempty"`
}

type serialInfo struct {
	Serial   string    `json:"serial"` // hex
	NotAfter time.Time `json:"not_after"`
}

type nodeRegistry struct {
	Nodes map[string]*enrolledNode `json:"nodes"`
}

// denyList is link-deny.json.
type denyList struct {
	Serials []serialInfo `json:"serials"`
}

// stateMu serialises this process's changes; cluster.lock the processes'.
var stateMu sync.Mutex

// withStateLock runs f holding the cluster state lock of dir.
func withStateLock(dir string, f func() error) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) //nolint:errcheck // released at close anyway
	return f()
}

func readStateFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeStateFile(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, perm)
}

// liveSecrets drops expired and used-up tokens.
func liveSecrets(js *joinSecrets, now time.Time) {
	live := js.Secrets[:0]
	for _, s := range js.Secrets {
		if s.Expires.After(now) && s.Uses > 0 && s.Role != "" {
			live = append(live, s)
		}
	}
	js.Secrets = live
}

func readRegistry(dir string) (*nodeRegistry, error) {
	reg := &nodeRegistry{}
	if err := readStateFile(filepath.Join(dir, nodesFile), reg); err != nil {
		return nil, err
	}
	if reg.Nodes == nil {
		reg.Nodes = map[string]*enrolledNode{}
	}
	return reg, nil
}

func nodeKey(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// NewJoinToken adds a join token for spec and returns it,
// "myimjoin1.<CA fingerprint, hex>.<secret, base64url>", and its id (what
// RevokeJoinToken takes). Only the secret's hash is stored; expired and
// used-up tokens are pruned.
func NewJoinToken(dataDir string, spec JoinTokenSpec) (token, id string, err error) {
	if !validRole(spec.Role) {
		return "", "", fmt.Errorf("clusterca: join token: role %q: want center, endpoint, login or all", spec.Role)
	}
	if spec.Replace && spec.NodeID == 0 {
		return "", "", errors.New("clusterca: join token: replacing needs the node id")
	}
	if spec.Uses <= 0 {
		spec.Uses = 1
	}
	if spec.TTL == 0 {
		spec.TTL = JoinTokenTTL
	}
	caDER, err := readCertDER(filepath.Join(dataDir, caCertFile))
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoClusterCA, err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(secret)
	id = hex.EncodeToString(sum[:6])
	err = withStateLock(dataDir, func() error {
		var js joinSecrets
		if err := readStateFile(filepath.Join(dataDir, joinFile), &js); err != nil {
			return err
		}
		liveSecrets(&js, time.Now())
		js.Secrets = append(js.Secrets, joinSecret{ID: id, SHA256: hex.EncodeToString(sum[:]),
			Expires: time.Now().Add(spec.TTL), Role: spec.Role, NodeID: spec.NodeID, Uses: spec.Uses, Replace: spec.Replace})
		return writeStateFile(filepath.Join(dataDir, joinFile), js, 0o600)
	})
	if err != nil {
		return "", "", err
	}
	fp := Fingerprint(caDER)
	return tokenPrefix + "." + hex.EncodeToString(fp[:]) + "." + base64.RawURLEncoding.EncodeToString(secret), id, nil
}

// RevokeJoinToken makes a join token, named by its id or given whole,
// admit no one from now on.
func RevokeJoinToken(dataDir, idOrToken string) error {
	id := strings.TrimSpace(idOrToken)
	if _, secret, err := ParseJoinToken(id); err == nil {
		sum := sha256.Sum256(secret)
		id = hex.EncodeToString(sum[:6])
	}
	return withStateLock(dataDir, func() error {
		var js joinSecrets
		if err := readStateFile(filepath.Join(dataDir, joinFile), &js); err != nil {
			return err
		}
		liveSecrets(&js, time.Now())
		n := len(js.Secrets)
		js.Secrets = filterSecrets(js.Secrets, func(s joinSecret) bool { return s.ID != id })
		if len(js.Secrets) == n {
			return fmt.Errorf("%w: %s", ErrNoSuchToken, id)
		}
		return writeStateFile(filepath.Join(dataDir, joinFile), js, 0o600)
	})
}

func filterSecrets(s []joinSecret, keep func(joinSecret) bool) []joinSecret {
	out := s[:0]
	for _, x := range s {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// admit finds the live token whose secret is secret and, if it admits node
// id with role, uses it up by one and returns it. The comparison runs
// against every live token in constant time.
func admitToken(dataDir string, secret []byte, role string, id uint32, reg *nodeRegistry) (joinSecret, error) {
	sum := sha256.Sum256(secret)
	var js joinSecrets
	if err := readStateFile(filepath.Join(dataDir, joinFile), &js); err != nil {
		return joinSecret{}, err
	}
	liveSecrets(&js, time.Now())
	found := -1
	for i, s := range js.Secrets {
		want, err := hex.DecodeString(s.SHA256)
		if err == nil && subtle.ConstantTimeCompare(want, sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return joinSecret{}, errors.New("join token not valid (unknown, expired, used up or revoked)")
	}
	tok := js.Secrets[found]
	if tok.Role != role {
		return joinSecret{}, fmt.Errorf("join token is for a %s, not a %s", tok.Role, role)
	}
	if tok.NodeID != 0 && tok.NodeID != id {
		return joinSecret{}, fmt.Errorf("join token is for node %d, not %d", tok.NodeID, id)
	}
	if n := reg.Nodes[nodeKey(id)]; n != nil && !tok.Replace {
		return joinSecret{}, fmt.Errorf("%v: node %d (a %s): a token made with --replace for it is needed", ErrNodeEnrolled, id, n.Role)
	}
	js.Secrets[found].Uses--
	liveSecrets(&js, time.Now())
	if err := writeStateFile(filepath.Join(dataDir, joinFile), js, 0o600); err != nil {
		return joinSecret{}, err
	}
	return tok, nil
}

// enrol records node id with role, enrolled by a token of role by, and a
// certificate serial; a node it replaces has its certificates denied.
func enrol(dataDir string, reg *nodeRegistry, id uint32, role, by string, serial *big.Int, notAfter time.Time) error {
	now := time.Now()
	if old := reg.Nodes[nodeKey(id)]; old != nil {
		if err := denySerials(dataDir, old.Serials, now); err != nil {
			return err
		}
	}
	reg.Nodes[nodeKey(id)] = &enrolledNode{Role: role, By: by,
		Serials: []serialInfo{{Serial: serial.Text(16), NotAfter: notAfter}}}
	return writeStateFile(filepath.Join(dataDir, nodesFile), reg, 0o600)
}

// addSerial records a renewed certificate of an enrolled node.
func addSerial(dataDir string, reg *nodeRegistry, id uint32, serial *big.Int, notAfter time.Time) error {
	n := reg.Nodes[nodeKey(id)]
	now := time.Now()
	live := n.Serials[:0]
	for _, s := range n.Serials {
		if s.NotAfter.After(now) {
			live = append(live, s)
		}
	}
	n.Serials = append(live, serialInfo{Serial: serial.Text(16), NotAfter: notAfter})
	return writeStateFile(filepath.Join(dataDir, nodesFile), reg, 0o600)
}

// denySerials adds serials to this node's deny list.
func denySerials(dataDir string, serials []serialInfo, now time.Time) error {
	var dl denyList
	if err := readStateFile(filepath.Join(dataDir, denyFile), &dl); err != nil {
		return err
	}
	live := dl.Serials[:0]
	for _, s := range dl.Serials {
		if s.NotAfter.After(now) {
			live = append(live, s)
		}
	}
	dl.Serials = append(live, serials...)
	return writeStateFile(filepath.Join(dataDir, denyFile), dl, 0o644)
}

// RemoveNode takes node id out of the cluster: its certificates go on the
// deny list, which every node fetches within DenyPollInterval and then
// refuses links from, and it can neither renew nor fetch keys. Run on the
// CA holder.
func RemoveNode(dataDir string, id uint32) error {
	if _, err := os.Stat(filepath.Join(dataDir, caKeyFile)); err != nil {
		return fmt.Errorf("%w: %v", ErrNoClusterCA, err)
	}
	return withStateLock(dataDir, func() error {
		reg, err := readRegistry(dataDir)
		if err != nil {
			return err
		}
		n := reg.Nodes[nodeKey(id)]
		if n == nil {
			return fmt.Errorf("%w: %d", ErrNoSuchNode, id)
		}
		if err := denySerials(dataDir, n.Serials, time.Now()); err != nil {
			return err
		}
		n.Removed = true
		return writeStateFile(filepath.Join(dataDir, nodesFile), reg, 0o600)
	})
}

// enrolment returns what the registry says of node id.
func enrolment(dataDir string, id uint32) (enrolledNode, bool, error) {
	var out enrolledNode
	var ok bool
	err := withStateLock(dataDir, func() error {
		reg, err := readRegistry(dataDir)
		if err != nil {
			return err
		}
		if n := reg.Nodes[nodeKey(id)]; n != nil {
			out, ok = *n, true
		}
		return nil
	})
	return out, ok, err
}
