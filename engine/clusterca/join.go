package clusterca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

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
		return fmt.Errorf("clusterca: bad node identity %s/%d", req.Role, req.NodeID)
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
