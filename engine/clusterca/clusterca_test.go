package clusterca_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/im"
)

func TestClusterJoinAndRenew(t *testing.T) {
	ctx := context.Background()
	caDir := t.TempDir()
	if err := clusterca.InitCluster(caDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(caDir, 1, im.RoleCenter); err != nil {
		t.Fatal(err)
	}
	token := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint})
	for _, f := range []string{"cluster-ca.key", "link.key", "cluster-join.json"} {
		fi, err := os.Stat(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	_, secret, err := clusterca.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := os.ReadFile(filepath.Join(caDir, "cluster-join.json"))
	if bytes.Contains(stored, []byte(strings.Split(token, ".")[2])) || bytes.Contains(stored, secret) {
		t.Fatal("the join secret is stored in clear")
	}
	url := startJoinService(t, caDir)

	// A wrong secret, and a token pinning another CA, are refused.
	bad := token[:len(token)-4] + "AAAA"
	if err := clusterca.Join(ctx, url, bad, t.TempDir(), 2, im.RoleEndpoint); !errors.Is(err, clusterca.ErrJoinRefused) {
		t.Fatalf("wrong secret: %v, want ErrJoinRefused", err)
	}
	otherCA := t.TempDir()
	if err := clusterca.InitCluster(otherCA); err != nil {
		t.Fatal(err)
	}
	other := newToken(t, otherCA, clusterca.JoinTokenSpec{Role: im.RoleEndpoint})
	forged := strings.Join([]string{"myimjoin1", strings.Split(other, ".")[1], strings.Split(token, ".")[2]}, ".")
	if err := clusterca.Join(ctx, url, forged, t.TempDir(), 2, im.RoleEndpoint); !errors.Is(err, clusterca.ErrCAMismatch) {
		t.Fatalf("other CA: %v, want ErrCAMismatch", err)
	}
	if err := clusterca.Join(ctx, url, "myimjoin1.zz.zz", t.TempDir(), 2, im.RoleEndpoint); !errors.Is(err, clusterca.ErrJoinToken) {
		t.Fatalf("malformed token: %v", err)
	}

	dir := t.TempDir()
	if err := clusterca.Join(ctx, url, token, dir, 2, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	id, err := clusterca.ReadNodeCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.Role != im.RoleEndpoint || id.NodeID != 2 {
		t.Fatalf("identity %+v", id)
	}
	if left := time.Until(id.NotAfter); left > clusterca.NodeCertValidity || left < clusterca.NodeCertValidity-time.Hour {
		t.Fatalf("certificate valid for %v", left)
	}
	oldCert, _ := os.ReadFile(filepath.Join(dir, "link.pem"))
	oldKey, _ := os.ReadFile(filepath.Join(dir, "link.key"))
	// The renewal authenticates with the current certificate: no secret.
	if err := clusterca.Renew(ctx, url, dir); err != nil {
		t.Fatal(err)
	}
	newCert, _ := os.ReadFile(filepath.Join(dir, "link.pem"))
	newKey, _ := os.ReadFile(filepath.Join(dir, "link.key"))
	if bytes.Equal(oldCert, newCert) || bytes.Equal(oldKey, newKey) {
		t.Fatal("renewal kept the certificate or the key")
	}
	// A renewal with a certificate of another cluster is refused.
	otherDir := t.TempDir()
	if err := clusterca.InitCluster(otherDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(otherDir, 2, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.Renew(ctx, url, otherDir); err == nil {
		t.Fatal("renewal with a foreign certificate succeeded")
	}
	// An expired join token no longer admits anyone.
	expired := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint, TTL: -time.Second})
	if err := clusterca.Join(ctx, url, expired, t.TempDir(), 5, im.RoleEndpoint); !errors.Is(err, clusterca.ErrJoinRefused) {
		t.Fatalf("expired token: %v", err)
	}
}

// TestNodeTLS: nodes of one cluster complete the mutual handshake and see
// each other's role and id; a node of another cluster, or without a
// certificate, does not.
func TestNodeTLS(t *testing.T) {
	caDir := t.TempDir()
	if err := clusterca.InitCluster(caDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(caDir, 1, im.RoleCenter); err != nil {
		t.Fatal(err)
	}
	if _, _, err := clusterca.LoadNodeTLS(t.TempDir()); !errors.Is(err, clusterca.ErrNoNodeCert) {
		t.Fatalf("empty dir: %v, want ErrNoNodeCert", err)
	}
	url := startJoinService(t, caDir)
	token := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint})
	epDir := t.TempDir()
	if err := clusterca.Join(context.Background(), url, token, epDir, 7, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if err := clusterca.InitCluster(otherDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(otherDir, 7, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	serverCfg, _, err := clusterca.LoadNodeTLS(caDir)
	if err != nil {
		t.Fatal(err)
	}
	_, epCfg, _ := clusterca.LoadNodeTLS(epDir)
	_, otherCfg, _ := clusterca.LoadNodeTLS(otherDir)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan error, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					peers <- err
					return
				}
				p, err := clusterca.PeerNode(tc.ConnectionState())
				if err == nil && (p.Role != im.RoleEndpoint || p.NodeID != 7) {
					err = errors.New("wrong peer identity")
				}
				peers <- err
				_, _ = tc.Write([]byte{1})
			}()
		}
	}()
	handshake := func(cfg *tls.Config) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return err
		}
		p, err := clusterca.PeerNode(c.ConnectionState())
		if err == nil && (p.Role != im.RoleCenter || p.NodeID != 1) {
			err = errors.New("wrong server identity")
		}
		return err
	}
	if err := handshake(epCfg); err != nil {
		t.Fatalf("same cluster: %v", err)
	}
	if err := <-peers; err != nil {
		t.Fatalf("same cluster, server side: %v", err)
	}
	if err := handshake(otherCfg); err == nil {
		t.Fatal("a node of another cluster completed the handshake")
	}
	if err := <-peers; err == nil {
		t.Fatal("the server accepted a node of another cluster")
	}
	if err := handshake(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); err == nil {
		t.Fatal("a node without a certificate completed the handshake")
	}
	if err := <-peers; err == nil {
		t.Fatal("the server accepted a node without a certificate")
	}
}

// TestJoinTokenAttacks performs the enrolment attacks against a real join
// listener: a token made for one role enrols no other role (a center least
// of all, which would get the token-signing key), a token is used once, a
// token for one node enrols no other, a revoked token admits no one, a node
// id already enrolled (the first node's own) is refused unless the token
// says it replaces it, and a removed node can neither renew, nor fetch
// keys, nor link to another node once that node has fetched the deny list.
func TestJoinTokenAttacks(t *testing.T) {
	ctx := context.Background()
	caDir := t.TempDir()
	if err := clusterca.InitCluster(caDir); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.IssueNodeCert(caDir, 1, im.RoleCenter); err != nil {
		t.Fatal(err)
	}
	id, err := clusterca.LoadIdentity(caDir, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	url := startJoinServiceWith(t, caDir, id)
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, clusterca.ErrJoinRefused) {
			t.Fatalf("%s: %v, want ErrJoinRefused", what, err)
		}
	}

	// An endpoint token does not enrol a center.
	epToken := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint})
	attacker := t.TempDir()
	refused("center with an endpoint token", clusterca.Join(ctx, url, epToken, attacker, 9, im.RoleCenter))
	if _, err := clusterca.FetchIdentity(ctx, url, attacker); err == nil {
		t.Fatal("a node refused at join fetched the cluster's keys")
	}
	// It enrols one endpoint, once.
	epDir := t.TempDir()
	if err := clusterca.Join(ctx, url, epToken, epDir, 2, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	refused("token used twice", clusterca.Join(ctx, url, epToken, t.TempDir(), 3, im.RoleEndpoint))
	epID, err := clusterca.FetchIdentity(ctx, url, epDir)
	if err != nil {
		t.Fatal(err)
	}
	if epID.TokenKey != nil {
		t.Fatal("an endpoint got the token-signing key")
	}
	// --uses allows more; a token for node 5 enrols no other node.
	multi := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint, Uses: 2})
	for _, n := range []uint32{3, 4} {
		if err := clusterca.Join(ctx, url, multi, t.TempDir(), n, im.RoleEndpoint); err != nil {
			t.Fatalf("use %d of 2: %v", n, err)
		}
	}
	refused("third use of a two-use token", clusterca.Join(ctx, url, multi, t.TempDir(), 6, im.RoleEndpoint))
	for5 := newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint, NodeID: 5})
	refused("token of node 5 for node 6", clusterca.Join(ctx, url, for5, t.TempDir(), 6, im.RoleEndpoint))
	// A revoked token admits no one, whether named by id or given whole.
	_, tid, err := clusterca.NewJoinToken(caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint})
	if err != nil {
		t.Fatal(err)
	}
	if err := clusterca.RevokeJoinToken(caDir, tid); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.RevokeJoinToken(caDir, for5); err != nil {
		t.Fatal(err)
	}
	refused("revoked token", clusterca.Join(ctx, url, for5, t.TempDir(), 5, im.RoleEndpoint))
	if err := clusterca.RevokeJoinToken(caDir, tid); !errors.Is(err, clusterca.ErrNoSuchToken) {
		t.Fatalf("revoking twice: %v", err)
	}

	// A center token cannot take the first node's id (nor an enrolled
	// endpoint's) without --replace.
	refused("the first node's id", clusterca.Join(ctx, url, newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleCenter}),
		t.TempDir(), 1, im.RoleCenter))
	refused("an enrolled endpoint's id", clusterca.Join(ctx, url, newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint}),
		t.TempDir(), 2, im.RoleEndpoint))
	// A center enrolled by a center token gets the signing key.
	cDir := t.TempDir()
	if err := clusterca.Join(ctx, url, newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleCenter, NodeID: 8}), cDir, 8, im.RoleCenter); err != nil {
		t.Fatal(err)
	}
	cID, err := clusterca.FetchIdentity(ctx, url, cDir)
	if err != nil {
		t.Fatal(err)
	}
	if cID.TokenKey == nil || !cID.TokenKey.Private.Equal(id.TokenKey.Private) {
		t.Fatal("a center enrolled by a center token got no signing key")
	}

	// Node 2 is replaced: the operator's token says so. The old node's
	// certificate is refused from then on.
	newDir := t.TempDir()
	if err := clusterca.Join(ctx, url, newToken(t, caDir, clusterca.JoinTokenSpec{Role: im.RoleEndpoint, NodeID: 2, Replace: true}),
		newDir, 2, im.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.Renew(ctx, url, epDir); err == nil {
		t.Fatal("the replaced node renewed its certificate")
	}

	// Node 8 is removed: it cannot renew or fetch keys, and a node that
	// fetched the deny list refuses its links.
	if err := clusterca.RemoveNode(caDir, 8); err != nil {
		t.Fatal(err)
	}
	if err := clusterca.Renew(ctx, url, cDir); err == nil {
		t.Fatal("a removed node renewed its certificate")
	}
	if _, err := clusterca.FetchIdentity(ctx, url, cDir); err == nil {
		t.Fatal("a removed node fetched the cluster's keys")
	}
	if err := clusterca.FetchDenyList(ctx, url, newDir); err != nil {
		t.Fatal(err)
	}
	srv, _, err := clusterca.LoadNodeTLS(newDir)
	if err != nil {
		t.Fatal(err)
	}
	_, removed, _ := clusterca.LoadNodeTLS(cDir)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_, _ = c.Write([]byte{1})
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), removed)
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("a node that fetched the deny list accepted a link from the removed node")
	}
	// The node it replaced: still fine.
	_, fresh, _ := clusterca.LoadNodeTLS(newDir)
	c, err = tls.Dial("tcp", ln.Addr().String(), fresh)
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err != nil {
		t.Fatalf("an enrolled node's link refused: %v", err)
	}
}
