package clusterca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

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
		return fmt.Errorf("clusterca: deny list: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var dl denyList
	if err := json.Unmarshal(b, &dl); err != nil {
		return fmt.Errorf("clusterca: deny list: %w", err)
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
