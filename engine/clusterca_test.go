package engine_test

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

	"github.com/myim/myim/engine"
)

func TestClusterJoinAndRenew(t *testing.T) {
	ctx := context.Background()
	caDir := t.TempDir()
	token, err := engine.InitCluster(caDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.IssueNodeCert(caDir, 1, engine.RoleCenter); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cluster-ca.key", "link.key", "cluster-join.json"} {
		fi, err := os.Stat(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	_, secret, err := engine.ParseJoinToken(token)
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
	if err := engine.Join(ctx, url, bad, t.TempDir(), 2, engine.RoleEndpoint); !errors.Is(err, engine.ErrJoinRefused) {
		t.Fatalf("wrong secret: %v, want ErrJoinRefused", err)
	}
	other, err := engine.InitCluster(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Join([]string{"myimjoin1", strings.Split(other, ".")[1], strings.Split(token, ".")[2]}, ".")
	if err := engine.Join(ctx, url, forged, t.TempDir(), 2, engine.RoleEndpoint); !errors.Is(err, engine.ErrCAMismatch) {
		t.Fatalf("other CA: %v, want ErrCAMismatch", err)
	}
	if err := engine.Join(ctx, url, "myimjoin1.zz.zz", t.TempDir(), 2, engine.RoleEndpoint); !errors.Is(err, engine.ErrJoinToken) {
		t.Fatalf("malformed token: %v", err)
	}

	dir := t.TempDir()
	if err := engine.Join(ctx, url, token, dir, 2, engine.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	id, err := engine.ReadNodeCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.Role != engine.RoleEndpoint || id.NodeID != 2 {
		t.Fatalf("identity %+v", id)
	}
	if left := time.Until(id.NotAfter); left > engine.NodeCertValidity || left < engine.NodeCertValidity-time.Hour {
		t.Fatalf("certificate valid for %v", left)
	}
	oldCert, _ := os.ReadFile(filepath.Join(dir, "link.pem"))
	oldKey, _ := os.ReadFile(filepath.Join(dir, "link.key"))
	// The renewal authenticates with the current certificate: no secret.
	if err := engine.Renew(ctx, url, dir); err != nil {
		t.Fatal(err)
	}
	newCert, _ := os.ReadFile(filepath.Join(dir, "link.pem"))
	newKey, _ := os.ReadFile(filepath.Join(dir, "link.key"))
	if bytes.Equal(oldCert, newCert) || bytes.Equal(oldKey, newKey) {
		t.Fatal("renewal kept the certificate or the key")
	}
	// A renewal with a certificate of another cluster is refused.
	otherDir := t.TempDir()
	if _, err := engine.InitCluster(otherDir); err != nil {
		t.Fatal(err)
	}
	if err := engine.IssueNodeCert(otherDir, 2, engine.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	if err := engine.Renew(ctx, url, otherDir); err == nil {
		t.Fatal("renewal with a foreign certificate succeeded")
	}
	// An expired join token no longer admits anyone.
	expired, err := engine.NewJoinToken(caDir, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.Join(ctx, url, expired, t.TempDir(), 5, engine.RoleEndpoint); !errors.Is(err, engine.ErrJoinRefused) {
		t.Fatalf("expired token: %v", err)
	}
}

// TestNodeTLS: nodes of one cluster complete the mutual handshake and see
// each other's role and id; a node of another cluster, or without a
// certificate, does not.
func TestNodeTLS(t *testing.T) {
	caDir := t.TempDir()
	if _, err := engine.InitCluster(caDir); err != nil {
		t.Fatal(err)
	}
	if err := engine.IssueNodeCert(caDir, 1, engine.RoleCenter); err != nil {
		t.Fatal(err)
	}
	if _, _, err := engine.LoadNodeTLS(t.TempDir()); !errors.Is(err, engine.ErrNoNodeCert) {
		t.Fatalf("empty dir: %v, want ErrNoNodeCert", err)
	}
	url := startJoinService(t, caDir)
	token, err := engine.NewJoinToken(caDir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	epDir := t.TempDir()
	if err := engine.Join(context.Background(), url, token, epDir, 7, engine.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if _, err := engine.InitCluster(otherDir); err != nil {
		t.Fatal(err)
	}
	if err := engine.IssueNodeCert(otherDir, 7, engine.RoleEndpoint); err != nil {
		t.Fatal(err)
	}
	serverCfg, _, err := engine.LoadNodeTLS(caDir)
	if err != nil {
		t.Fatal(err)
	}
	_, epCfg, _ := engine.LoadNodeTLS(epDir)
	_, otherCfg, _ := engine.LoadNodeTLS(otherDir)

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
				p, err := engine.PeerNode(tc.ConnectionState())
				if err == nil && (p.Role != engine.RoleEndpoint || p.NodeID != 7) {
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
		p, err := engine.PeerNode(c.ConnectionState())
		if err == nil && (p.Role != engine.RoleCenter || p.NodeID != 1) {
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
