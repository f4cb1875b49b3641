package ws_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/ws"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func startTLSServer(t testing.TB, cfg ws.Config) (*engine.Server, *x509.CertPool) {
	t.Helper()
	cert, pool := selfSigned(t)
	tl := ws.NewTLS(ws.TLSConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if cfg.Paths == nil {
		cfg.Paths = []string{"/endpoint"}
	}
	s := engine.New(echo{}, engine.WithAddr("127.0.0.1:0"), engine.WithWrapListener(tl.Listener), engine.WithTransport(tl.Wrap(ws.New(cfg))), engine.WithLoops(1))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s, pool
}

// TestSecureWebSocket runs wss:// through the TLS listener: the handshake
// before the loop, the records opened and sealed on it.
func TestSecureWebSocket(t *testing.T) {
	s, pool := startTLSServer(t, ws.Config{PreAuthMaxMessage: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		nc, err := wswire.Dial(ctx, "wss://"+s.Addr().String()+"/endpoint", wswire.DialConfig{TLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		// 40,000 bytes span three TLS records each way.
		f, _ := frame.Append(nil, frame.CmdMsg, frame.QoS0, bytes.Repeat([]byte{byte(i)}, 40_000))
		want := append(bytes.Clone(frame.Pong), f...)
		for _, b := range [][]byte{frame.Ping, f} {
			if _, err := nc.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(nc, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("echo over wss differs")
		}
		nc.Close()
	}
	// Plain ws:// on the TLS port is not a TLS handshake: no upgrade.
	if _, err := wswire.Dial(ctx, "ws://"+s.Addr().String()+"/endpoint", wswire.DialConfig{}); err == nil {
		t.Fatal("ws:// upgraded on the wss:// listener")
	}
}
