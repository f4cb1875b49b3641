package clusterca

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/session"
)

// IdentityPath is where the cluster's first node hands a joined node the
// session-layer keys it needs, over mutual TLS with its link certificate.
const IdentityPath = "/v1/cluster/identity"

// identityRequest is what a joined node asks with: its Noise static key.
type identityRequest struct {
	StaticKey []byte `json:"static_key"`
}

// identityReply carries the cluster's public keys, a certificate of the
// node's static key for its role, and, for a login node or a center, the
// token signing key (they sign tokens; no other role gets it). A center
// runs an endpoint and a login service beside it, so it gets a certificate
// for each: Cert for the endpoint, LoginCert for the login service.
type identityReply struct {
	Roots     []string `json:"roots"`
	TokenKeys []string `json:"token_keys"`
	Audience  string   `json:"audience"`
	Cert      []byte   `json:"cert"`
	LoginCert []byte   `json:"login_cert,omitempty"`
	TokenKey  []byte   `json:"token_key,omitempty"` // Ed25519 seed
	TokenKID  uint32   `json:"token_kid,omitempty"`
}

// IdentityHandler serves IdentityPath on the join listener (JoinService's
// TLS config): the peer must present a link certificate from the cluster CA,
// whose role says which session certificate it gets, and be enrolled in
// js's registry and not removed. The token-signing key goes only to a
// center enrolled by a center token (or by `cluster init`).
func IdentityHandler(id *Identity, js *JoinService, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "a cluster certificate is required", http.StatusForbidden)
			return
		}
		node, err := identityOf(r.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, "a cluster certificate is required", http.StatusForbidden)
			return
		}
		enrolled, ok, err := enrolment(js.dir, node.NodeID)
		switch {
		case err != nil:
			log.Error("cluster identity: registry", "err", err)
			http.Error(w, "registry unreadable", http.StatusInternalServerError)
			return
		case !ok || enrolled.Role != node.Role:
			http.Error(w, "node not enrolled: enrol it again with a join token", http.StatusForbidden)
			return
		case enrolled.Removed:
			http.Error(w, "node removed from the cluster", http.StatusForbidden)
			return
		}
		var req identityRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || len(req.StaticKey) != 32 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		role := session.RoleEndpoint
		if node.Role == im.RoleLogin {
			role = session.RoleLogin
		} else if node.Role != im.RoleEndpoint && node.Role != im.RoleCenter {
			http.Error(w, "only endpoint, login and center nodes take session keys", http.StatusForbidden)
			return
		}
		cert, err := session.IssueCert(id.Root, node.NodeID, role, req.StaticKey, time.Now().Add(-time.Minute), CertValidity)
		if err != nil {
			http.Error(w, "cannot certify that key", http.StatusBadRequest)
			return
		}
		raw, _ := cert.MarshalBinary()
		rep := identityReply{Audience: id.Audience, Cert: raw}
		if node.Role == im.RoleCenter {
			lc, err := session.IssueCert(id.Root, node.NodeID, session.RoleLogin, req.StaticKey, time.Now().Add(-time.Minute), CertValidity)
			if err != nil {
				http.Error(w, "cannot certify that key", http.StatusBadRequest)
				return
			}
			rep.LoginCert, _ = lc.MarshalBinary()
		}
		for _, k := range id.Roots() {
			rep.Roots = append(rep.Roots, k.String())
		}
		for _, k := range id.TokenKeys() {
			rep.TokenKeys = append(rep.TokenKeys, k.String())
		}
		if signs := node.Role == im.RoleCenter && (enrolled.By == im.RoleCenter || enrolled.By == enrolledByInit); signs ||
			(node.Role == im.RoleLogin && enrolled.By == im.RoleLogin) {
			rep.TokenKey, rep.TokenKID = id.TokenKey.Private.Seed(), id.TokenKey.ID
		}
		log.Info("cluster identity issued", "role", node.Role, "node", node.NodeID, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// FetchIdentity gets a joined node's session identity from the cluster's
// first node at baseURL (its join listener), authenticating with the link
// certificate in dataDir. The node's static key is made once and kept in
// dataDir/node.key.
func FetchIdentity(ctx context.Context, baseURL, dataDir string) (*Identity, error) {
	node, err := ReadNodeCert(dataDir)
	if err != nil {
		return nil, err
	}
	_, client, err := LoadNodeTLS(dataDir)
	if err != nil {
		return nil, err
	}
	static, err := session.LoadOrCreateDeviceKey(filepath.Join(dataDir, "node.key"))
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(identityRequest{StaticKey: static.PublicKey().Bytes()})
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: client}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+IdentityPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clusterca: fetch identity: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clusterca: fetch identity: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var rep identityReply
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("clusterca: fetch identity: %w", err)
	}
	id := &Identity{Static: static, Audience: rep.Audience}
	for _, s := range rep.Roots {
		k, err := session.ParseVerifyKey(s)
		if err != nil {
			return nil, err
		}
		id.RootKeys = append(id.RootKeys, k)
	}
	for _, s := range rep.TokenKeys {
		k, err := session.ParseVerifyKey(s)
		if err != nil {
			return nil, err
		}
		id.TokenVerify = append(id.TokenVerify, k)
	}
	want := session.RoleEndpoint
	if node.Role == im.RoleLogin {
		want = session.RoleLogin
	}
	cert, err := session.VerifyCert(id.RootKeys, rep.Cert, time.Now(), want)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cert.StaticKey[:], static.PublicKey().Bytes()) {
		return nil, session.ErrCertStaticKey
	}
	if want == session.RoleLogin {
		id.LoginCert = cert
	} else {
		id.EndpointCert = cert
	}
	if node.Role == im.RoleCenter {
		if id.LoginCert, err = session.VerifyCert(id.RootKeys, rep.LoginCert, time.Now(), session.RoleLogin); err != nil {
			return nil, err
		}
		if !bytes.Equal(id.LoginCert.StaticKey[:], static.PublicKey().Bytes()) {
			return nil, session.ErrCertStaticKey
		}
	}
	if node.Role == im.RoleLogin || node.Role == im.RoleCenter {
		if len(rep.TokenKey) != ed25519.SeedSize {
			return nil, errors.New("clusterca: fetch identity: no token key for a login node or center")
		}
		id.TokenKey = &session.SigningKey{ID: rep.TokenKID, Private: ed25519.NewKeyFromSeed(rep.TokenKey)}
	}
	return id, nil
}
