package session

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

func TestLoginHandshake(t *testing.T) {
	p := newPKI(t)
	c, s, req := p.login(t)
	if !c.Done() || !s.Done() {
		t.Fatal("handshake not done on both sides")
	}
	if req.Name != "alice" || string(req.Password) != "correct horse" || req.DeviceName != "laptop" {
		t.Fatalf("login request = %+v", req)
	}
	if got := c.PeerCert(); got == nil || got.NodeID != p.loginNodeID || got.Role != RoleLogin {
		t.Fatalf("client's PeerCert = %+v", got)
	}
	if !bytes.Equal(s.PeerStatic(), p.device.PublicKey().Bytes()) {
		t.Fatal("server's PeerStatic is not the device key")
	}
	if !bytes.Equal(c.PeerStatic(), p.loginKey.PublicKey().Bytes()) {
		t.Fatal("client's PeerStatic is not the login key")
	}
	if cb := c.ChannelBinding(); len(cb) != 32 || !bytes.Equal(cb, s.ChannelBinding()) {
		t.Fatal("channel bindings differ")
	}
	exchange(t, must(c.Keys())(t), must(s.Keys())(t))
}

func TestEndpointHandshake(t *testing.T) {
	p := newPKI(t)
	c, s := p.endpoint(t, p.token(t))
	if cl := s.TokenClaims(); cl == nil || cl.UserID != 42 || !cl.BoundTo(p.device.PublicKey().Bytes()) {
		t.Fatalf("server's TokenClaims = %+v", cl)
	}
	exchange(t, must(c.Keys())(t), must(s.Keys())(t))
}

func TestEndpointAcceptedPayload(t *testing.T) {
	p := newPKI(t)
	c := must(NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), p.token(t)))(t)
	s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
	if _, err := step(t, c, s, nil); err != nil {
		t.Fatal(err)
	}
	want := Accepted{UserID: 42, ServerTime: p.clock.Now()}
	got, err := step(t, s, c, must(want.AppendBinary(nil))(t))
	if err != nil {
		t.Fatal(err)
	}
	acc := must(ParseAccepted(got))(t)
	if acc.UserID != 42 || !acc.ServerTime.Equal(want.ServerTime) {
		t.Fatalf("accepted = %+v", acc)
	}
}

// ReadAccepted is the client's last step in one call; a tampered or
// malformed answer fails it and gives no keys.
func TestReadAccepted(t *testing.T) {
	p := newPKI(t)
	want := Accepted{UserID: 42, ServerTime: p.clock.Now()}
	// answer runs a fresh handshake up to the endpoint's answer, carrying
	// payload and passed through edit.
	answer := func(payload []byte, edit func([]byte)) (*Handshake, *Handshake, frame.Frame) {
		c := must(NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), p.token(t)))(t)
		s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
		must(s.ReadFrame(nil, frame.Frame(must(c.WriteFrame(nil, nil))(t))))(t)
		m2 := must(s.WriteFrame(nil, payload))(t)
		edit(m2)
		return c, s, frame.Frame(m2)
	}
	keep := func([]byte) {}
	c, _, f := answer(must(want.AppendBinary(nil))(t), func(b []byte) { b[len(b)-1] ^= 1 })
	if _, k, err := c.ReadAccepted(f); err == nil || k != nil {
		t.Fatalf("a tampered answer gave keys %v, err %v", k, err)
	}
	c, _, f = answer([]byte{1, 2}, keep)
	if _, k, err := c.ReadAccepted(f); !errors.Is(err, ErrPayload) || k != nil {
		t.Fatalf("a short Accepted gave keys %v, err %v", k, err)
	}
	c, s, f := answer(must(want.AppendBinary(nil))(t), keep)
	acc, keys, err := c.ReadAccepted(f)
	if err != nil || acc.UserID != 42 || !acc.ServerTime.Equal(want.ServerTime) {
		t.Fatalf("ReadAccepted = %+v, %v", acc, err)
	}
	exchange(t, keys, must(s.Keys())(t))
}

// exchange checks that a and b talk both ways.
func exchange(tb testing.TB, a, b *Keys) {
	tb.Helper()
	for i, pair := range [][2]*Keys{{a, b}, {b, a}, {a, b}} {
		msg := []byte("hello #" + string(rune('0'+i)))
		sealed := must(pair[0].Seal(nil, frame.CmdMsg, frame.QoS1, msg))(tb)
		got, err := pair[1].Open(nil, frame.Frame(sealed))
		if err != nil || !bytes.Equal(got, msg) {
			tb.Fatalf("exchange %d: %q, %v", i, got, err)
		}
	}
}

func TestLoginWrongRoot(t *testing.T) {
	p := newPKI(t)
	other := must(NewSigningKey())(t)
	c := must(NewLoginClient(p.cfg, p.device, []VerifyKey{other.Verify()}))(t)
	s := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)
	must(step(t, c, s, nil))(t)
	_, err := step(t, s, c, nil)
	if !errors.Is(err, ErrCertUnknownRoot) {
		t.Fatalf("err = %v, want ErrCertUnknownRoot", err)
	}
	// A root with the same id but another key: the signature fails.
	forged := VerifyKey{ID: p.root.ID, Public: other.Verify().Public}
	c = must(NewLoginClient(p.cfg, p.device, []VerifyKey{forged}))(t)
	s = must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)
	must(step(t, c, s, nil))(t)
	if _, err := step(t, s, c, nil); !errors.Is(err, ErrCertSignature) {
		t.Fatalf("err = %v, want ErrCertSignature", err)
	}
	// The client aborted: it will not send message 3.
	if _, err := c.WriteFrame(nil, []byte("x")); !errors.Is(err, ErrHandshakeFailed) || !errors.Is(err, ErrCertSignature) {
		t.Fatalf("write after abort: %v", err)
	}
	if _, err := c.Keys(); !errors.Is(err, ErrHandshakeFailed) {
		t.Fatalf("Keys after abort: %v", err)
	}
}

func TestLoginCertExpired(t *testing.T) {
	p := newPKI(t)
	c := must(NewLoginClient(p.cfg, p.device, p.roots))(t)
	s := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)
	must(step(t, c, s, nil))(t)
	p.clock.Advance(p.validFor + Leeway + time.Second)
	if _, err := step(t, s, c, nil); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("err = %v, want ErrCertExpired", err)
	}
}

// A certified key that is not the key the server proves in the handshake:
// a server that replays another node's certificate.
func TestLoginCertOtherKey(t *testing.T) {
	p := newPKI(t)
	impostor := must(NewStaticKey())(t)
	c := must(NewLoginClient(p.cfg, p.device, p.roots))(t)
	// NewLoginServer refuses this pairing; build the impostor by hand.
	s := &Handshake{kind: loginServer, cert: must(p.loginCert.MarshalBinary())(t)}
	if err := s.start(p.cfg, impostor, noiseXX(), prologueXX, nil); err != nil {
		t.Fatal(err)
	}
	must(step(t, c, s, nil))(t)
	if _, err := step(t, s, c, nil); !errors.Is(err, ErrCertStaticKey) {
		t.Fatalf("err = %v, want ErrCertStaticKey", err)
	}
}

func TestLoginServerRefusesWrongCert(t *testing.T) {
	p := newPKI(t)
	if _, err := NewLoginServer(p.cfg, p.epKey, p.epCert); !errors.Is(err, ErrCertRole) {
		t.Fatalf("endpoint cert: %v", err)
	}
	if _, err := NewLoginServer(p.cfg, p.epKey, p.loginCert); !errors.Is(err, ErrCertStaticKey) {
		t.Fatalf("other key: %v", err)
	}
}

func TestEndpointTokenRejected(t *testing.T) {
	p := newPKI(t)
	otherDevice := must(NewStaticKey())(t)
	otherCluster := must(NewSigningKey())(t)
	tok := func(key *SigningKey, dev []byte, aud string) string {
		return must(IssueToken(key, TokenRequest{UserID: 42, Audience: aud, DeviceKey: dev, TTL: time.Hour}, p.clock.Now()))(t)
	}
	devPub := p.device.PublicKey().Bytes()
	cases := []struct {
		name    string
		token   string
		advance time.Duration
		want    error
	}{
		{"other device", tok(p.tokenKey, otherDevice.PublicKey().Bytes(), p.audience), 0, ErrTokenDeviceKey},
		{"expired", tok(p.tokenKey, devPub, p.audience), time.Hour + Leeway + time.Second, ErrTokenExpired},
		{"other cluster", tok(otherCluster, devPub, p.audience), 0, ErrTokenSignature},
		{"audience", tok(p.tokenKey, devPub, "myim-endpoints:other"), 0, ErrTokenAudience},
		{"garbage", "not.a.token", 0, ErrTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := *p
			p.clock = newTestClock()
			p.cfg = &Config{Now: p.clock.Now}
			c := must(NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), tc.token))(t)
			s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
			p.clock.Advance(tc.advance)
			_, err := step(t, c, s, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if s.TokenClaims() != nil {
				t.Fatal("claims exposed after rejection")
			}
			if _, err := s.WriteFrame(nil, nil); !errors.Is(err, ErrHandshakeFailed) {
				t.Fatalf("server wrote after rejecting: %v", err)
			}
		})
	}
}

// The endpoint client must reach the endpoint whose key it holds: another
// endpoint cannot read message 1.
func TestEndpointWrongServerKey(t *testing.T) {
	p := newPKI(t)
	other := must(NewStaticKey())(t)
	c := must(NewEndpointClient(p.cfg, p.device, other.PublicKey().Bytes(), p.token(t)))(t)
	s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
	if _, err := step(t, c, s, nil); !errors.Is(err, ErrHandshakeMessage) {
		t.Fatalf("err = %v, want ErrHandshakeMessage", err)
	}
}

// The prologue binds version and pattern: a tampered prologue fails.
func TestPrologueMismatch(t *testing.T) {
	p := newPKI(t)
	c := must(NewLoginClient(p.cfg, p.device, p.roots))(t)
	s := &Handshake{kind: loginServer, cert: must(p.loginCert.MarshalBinary())(t)}
	if err := s.start(p.cfg, p.loginKey, noiseXX(), []byte("MYIM\x02X"), nil); err != nil {
		t.Fatal(err)
	}
	must(step(t, c, s, nil))(t)
	if _, err := step(t, s, c, nil); !errors.Is(err, ErrHandshakeMessage) {
		t.Fatalf("err = %v, want ErrHandshakeMessage", err)
	}
}

func TestHandshakeMisuse(t *testing.T) {
	p := newPKI(t)
	c := must(NewLoginClient(p.cfg, p.device, p.roots))(t)
	s := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)

	if !c.WantsWrite() || s.WantsWrite() {
		t.Fatal("turns wrong at start")
	}
	// Server writes first: out of turn, state intact.
	if out, err := s.WriteFrame([]byte("keep"), nil); !errors.Is(err, ErrHandshakeTurn) || string(out) != "keep" {
		t.Fatalf("server write first: %q, %v", out, err)
	}
	// Client reads first.
	if _, err := c.ReadFrame(nil, frame.Frame(frame.Ping)); !errors.Is(err, ErrHandshakeTurn) {
		t.Fatalf("client read first: %v", err)
	}
	// A payload in XX message 1, which is unencrypted.
	if _, err := c.WriteFrame(nil, []byte("secret")); !errors.Is(err, ErrUnexpectedPayload) {
		t.Fatalf("payload in msg 1: %v", err)
	}
	msg1 := must(c.WriteFrame(nil, nil))(t)
	// Client writes twice.
	if _, err := c.WriteFrame(nil, nil); !errors.Is(err, ErrHandshakeTurn) {
		t.Fatalf("client writes twice: %v", err)
	}
	must(s.ReadFrame(nil, frame.Frame(msg1)))(t)
	// The server supplies its certificate itself.
	if _, err := s.WriteFrame(nil, []byte("cert")); !errors.Is(err, ErrUnexpectedPayload) {
		t.Fatalf("payload in msg 2: %v", err)
	}
	if _, err := step(t, s, c, nil); err != nil {
		t.Fatal(err)
	}
	// Oversize payloads: above the configured cap, and above Noise's.
	for _, n := range []int{defaultMaxHandshakeMessage, 70000} {
		if _, err := c.WriteFrame(nil, make([]byte, n)); !errors.Is(err, ErrHandshakeTooLarge) {
			t.Fatalf("payload of %d: %v", n, err)
		}
	}
	if _, err := c.Keys(); !errors.Is(err, ErrHandshakeIncomplete) {
		t.Fatalf("Keys before done: %v", err)
	}
	// The rejected writes left the handshake usable.
	if _, err := step(t, c, s, must((&LoginRequest{Name: "a"}).AppendBinary(nil))(t)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Handshake{c, s} {
		if _, err := h.WriteFrame(nil, nil); !errors.Is(err, ErrHandshakeDone) {
			t.Fatalf("write after done: %v", err)
		}
		if _, err := h.ReadFrame(nil, frame.Frame(msg1)); !errors.Is(err, ErrHandshakeDone) {
			t.Fatalf("read after done: %v", err)
		}
	}
}

func TestHandshakeBadFrames(t *testing.T) {
	p := newPKI(t)
	key := must(frame.Append(nil, frame.CmdHandshake, frame.QoS0, make([]byte, 32)))(t)
	cases := []struct {
		name string
		f    []byte
		want error
	}{
		{"empty", nil, ErrHandshakeFrame},
		{"ping", frame.Ping, ErrHandshakeFrame},
		{"truncated", key[:len(key)-1], ErrHandshakeFrame},
		{"trailing", append(bytes.Clone(key), 0), ErrHandshakeFrame},
		{"qos1", must(frame.Append(nil, frame.CmdHandshake, frame.QoS1, make([]byte, 32)))(t), ErrHandshakeFrame},
		{"short", must(frame.Append(nil, frame.CmdHandshake, frame.QoS0, make([]byte, 31)))(t), ErrHandshakeMessage},
		{"payload", must(frame.Append(nil, frame.CmdHandshake, frame.QoS0, make([]byte, 40)))(t), ErrUnexpectedPayload},
		{"huge", must(frame.Append(nil, frame.CmdHandshake, frame.QoS0, make([]byte, 5000)))(t), ErrHandshakeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)
			if _, err := s.ReadFrame(nil, frame.Frame(tc.f)); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := s.ReadFrame(nil, frame.Frame(key)); !errors.Is(err, ErrHandshakeFailed) {
				t.Fatalf("after failure: %v", err)
			}
		})
	}
}

// A flipped bit anywhere in message 2 or 3 fails the reader.
func TestHandshakeTampered(t *testing.T) {
	p := newPKI(t)
	loginReq := must((&LoginRequest{Name: "a"}).AppendBinary(nil))(t)
	for msg := 2; msg <= 3; msg++ {
		for _, pos := range []int{0, 31, 32, 50, 63, -1} {
			c := must(NewLoginClient(p.cfg, p.device, p.roots))(t)
			s := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)
			must(step(t, c, s, nil))(t)
			w, r, payload := s, c, []byte(nil)
			if msg == 3 {
				must(step(t, s, c, nil))(t)
				w, r, payload = c, s, loginReq
			}
			f := frame.Frame(must(w.WriteFrame(nil, payload))(t))
			body := f.Body()
			i := pos
			if i < 0 {
				i = len(body) - 1
			}
			body[i] ^= 0x01
			if _, err := r.ReadFrame(nil, f); !errors.Is(err, ErrHandshakeMessage) {
				t.Fatalf("msg %d with byte %d flipped: %v", msg, i, err)
			}
		}
	}
}
