package session

import (
	"bytes"
	"errors"
	"testing"

	"github.com/flynn/noise"

	"github.com/myim/myim/frame"
)

// suite is flynn/noise's own Noise_*_25519_AESGCM_SHA256, the reference the
// handshake's suite must match byte for byte.
var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// The ecdh-based DH function gives noise.DH25519's bytes: the same key pair
// from the same random bytes, the same shared secret for keys it holds
// parsed and for keys it must parse, and the same suite name.
func TestX25519DHMatchesNoise(t *testing.T) {
	if got, want := (handshakeSuite{&x25519DH{}}).Name(), suite.Name(); !bytes.Equal(got, want) {
		t.Fatalf("suite name %q, want %q", got, want)
	}
	for i := range 8 {
		seed := bytes.Repeat([]byte{byte(i*37 + 1)}, 64)
		ref := must(noise.DH25519.GenerateKeypair(bytes.NewReader(seed)))(t)
		static := must(NewStaticKey())(t)
		d := &x25519DH{static: static, staticBytes: static.Bytes()}
		eph := must(d.GenerateKeypair(bytes.NewReader(seed)))(t)
		if !bytes.Equal(eph.Private, ref.Private) || !bytes.Equal(eph.Public, ref.Public) {
			t.Fatalf("key pair %d differs from noise.DH25519's", i)
		}
		peer := must(NewStaticKey())(t).PublicKey().Bytes()
		for _, priv := range [][]byte{d.staticBytes, eph.Private, bytes.Clone(eph.Private)} {
			got := must(d.DH(priv, peer))(t)
			want := must(noise.DH25519.DH(priv, peer))(t)
			if !bytes.Equal(got, want) {
				t.Fatalf("DH differs from noise.DH25519's")
			}
		}
		if d.parsed != 1 { // only the clone was not recognised
			t.Fatalf("parsed %d keys, want 1", d.parsed)
		}
	}
}

// A low-order peer key (all-zero result) fails the DH, as it does in
// noise.DH25519, instead of yielding a predictable secret.
func TestX25519DHLowOrder(t *testing.T) {
	static := must(NewStaticKey())(t)
	d := &x25519DH{static: static, staticBytes: static.Bytes()}
	for _, pub := range [][]byte{make([]byte, 32), append([]byte{1}, make([]byte, 31)...)} {
		if _, err := noise.DH25519.DH(d.staticBytes, pub); err == nil {
			t.Fatal("reference accepted a low-order point")
		}
		if _, err := d.DH(d.staticBytes, pub); !errors.Is(err, errLowOrder) {
			t.Fatalf("low-order point: err %v, want errLowOrder", err)
		}
	}
	if _, err := d.DH(d.staticBytes, make([]byte, 31)); err == nil {
		t.Fatal("short public key accepted")
	}
}

// Every DH of both handshakes, on both sides, runs on a key parsed once:
// the static key as the caller passed it, the ephemeral key as generated.
func TestHandshakeDHUsesParsedKeys(t *testing.T) {
	p := newPKI(t)
	var sides []*Handshake
	c, s, _ := p.login(t)
	sides = append(sides, c, s)
	c, s = p.endpoint(t, p.token(t))
	sides = append(sides, c, s)
	for i, h := range sides {
		if !h.Done() {
			t.Fatalf("side %d not done", i)
		}
		if h.dh.parsed != 0 {
			t.Errorf("side %d parsed a private key %d times", i, h.dh.parsed)
		}
		if h.dh.eph != nil || h.dh.static != nil || h.dh.ephBytes != nil {
			t.Errorf("side %d kept its parsed keys after the handshake", i)
		}
	}
	// The static key the caller passed is the one used, not a copy.
	h := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
	if h.dh.key(h.static.Private) != p.epKey {
		t.Fatal("static key re-parsed instead of used as passed")
	}
}

// A handshake against a peer running flynn/noise's own DH25519 completes:
// the wire is unchanged, not merely self-consistent.
func TestHandshakeAgainstNoiseDH25519(t *testing.T) {
	p := newPKI(t)
	ref := must(noise.NewHandshakeState(noise.Config{
		CipherSuite:   suite,
		Pattern:       noise.HandshakeIK,
		Initiator:     true,
		Prologue:      prologueIK,
		StaticKeypair: noise.DHKey{Private: p.device.Bytes(), Public: p.device.PublicKey().Bytes()},
		PeerStatic:    p.epKey.PublicKey().Bytes(),
	}))(t)
	body, _, _, err := ref.WriteMessage(nil, []byte(p.token(t)))
	if err != nil {
		t.Fatal(err)
	}
	msg1 := append(must(frame.AppendHeader(nil, frame.CmdHandshake, frame.QoS0, len(body)))(t), body...)
	s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
	if _, err := s.ReadFrame(nil, frame.Frame(msg1)); err != nil {
		t.Fatalf("server read reference message 1: %v", err)
	}
	acc := must((&Accepted{UserID: 42}).AppendBinary(nil))(t)
	msg2 := must(s.WriteFrame(nil, acc))(t)
	got, cs1, _, err := ref.ReadMessage(nil, frame.Frame(msg2).Body())
	if err != nil || cs1 == nil || !bytes.Equal(got, acc) {
		t.Fatalf("reference read message 2: %v", err)
	}
	if !bytes.Equal(ref.ChannelBinding(), s.ChannelBinding()) {
		t.Fatal("handshake hashes differ")
	}
}

// The lazily keyed AESGCM seals and opens as noise.CipherAESGCM does, for
// the counters a handshake uses and Noise's rekey nonce.
func TestLazyAESGCMMatchesNoise(t *testing.T) {
	key := [32]byte{7, 1, 2, 3}
	ref := noise.CipherAESGCM.Cipher(key)
	c := (handshakeSuite{}).Cipher(key)
	for _, n := range []uint64{0, 1, 2, 1 << 40, ^uint64(0)} {
		ad, pt := []byte("ad"), []byte("plaintext of a handshake payload")
		got, want := c.Encrypt(nil, n, ad, pt), ref.Encrypt(nil, n, ad, pt)
		if !bytes.Equal(got, want) {
			t.Fatalf("nonce %d: sealed bytes differ", n)
		}
		if back, err := c.Decrypt(nil, n, ad, want); err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("nonce %d: open: %v", n, err)
		}
		if _, err := c.Decrypt(nil, n+1, ad, want); err == nil {
			t.Fatalf("nonce %d: opened under the wrong counter", n)
		}
	}
}

// Handshakes on many goroutines share one parsed static key, as an
// endpoint's worker pool does: the key is only read (run under -race).
func TestHandshakesShareStaticKey(t *testing.T) {
	p := newPKI(t)
	tok := p.token(t)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 4 {
				c, err := NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), tok)
				if err != nil {
					errs <- err
					return
				}
				s, err := NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience)
				if err != nil {
					errs <- err
					return
				}
				m1, err := c.WriteFrame(nil, nil)
				if err == nil {
					_, err = s.ReadFrame(nil, frame.Frame(m1))
				}
				var m2 []byte
				if err == nil {
					m2, err = s.WriteFrame(nil, []byte{})
				}
				if err == nil {
					_, err = c.ReadFrame(nil, frame.Frame(m2))
				}
				if err == nil && !bytes.Equal(c.ChannelBinding(), s.ChannelBinding()) {
					err = errors.New("channel bindings differ")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
