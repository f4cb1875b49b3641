package session

import (
	"crypto/ecdh"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"

	"github.com/myim/myim/frame"
)

// testClock is a settable clock for Config.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// pki is a cluster's keys for tests: a root, the login service's and an
// endpoint's static keys and certificates, a token key, and a device.
type pki struct {
	clock       *testClock
	cfg         *Config
	root        *SigningKey
	roots       []VerifyKey
	loginKey    *ecdh.PrivateKey
	loginCert   *Cert
	epKey       *ecdh.PrivateKey
	epCert      *Cert
	tokenKey    *SigningKey
	tokenKeys   []VerifyKey
	device      *ecdh.PrivateKey
	audience    string
	validFor    time.Duration
	loginNodeID uint32
}

const testAudience = "myim-endpoints:test"

func newPKI(tb testing.TB) *pki {
	tb.Helper()
	p := &pki{clock: newTestClock(), audience: testAudience, validFor: 90 * 24 * time.Hour, loginNodeID: 7}
	p.cfg = &Config{Now: p.clock.Now}
	p.root = must(NewSigningKey())(tb)
	p.roots = []VerifyKey{p.root.Verify()}
	p.loginKey = must(NewStaticKey())(tb)
	p.epKey = must(NewStaticKey())(tb)
	p.loginCert = must(IssueCert(p.root, p.loginNodeID, RoleLogin, p.loginKey.PublicKey().Bytes(), p.clock.Now(), p.validFor))(tb)
	p.epCert = must(IssueCert(p.root, 11, RoleEndpoint, p.epKey.PublicKey().Bytes(), p.clock.Now(), p.validFor))(tb)
	p.tokenKey = must(NewSigningKey())(tb)
	p.tokenKeys = []VerifyKey{p.tokenKey.Verify()}
	p.device = must(NewStaticKey())(tb)
	return p
}

// must turns (v, err) into a function that fails tb on err.
func must[T any](v T, err error) func(testing.TB) T {
	return func(tb testing.TB) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}

// token issues a token for p.device, user 42, 1 hour.
func (p *pki) token(tb testing.TB) string {
	tb.Helper()
	return must(IssueToken(p.tokenKey, TokenRequest{
		UserID: 42, Audience: p.audience, DeviceKey: p.device.PublicKey().Bytes(), TTL: time.Hour,
	}, p.clock.Now()))(tb)
}

// step moves one message from w to r: w writes with payload, r reads.
// It returns what r read and r's error.
func step(tb testing.TB, w, r *Handshake, payload []byte) ([]byte, error) {
	tb.Helper()
	msg, err := w.WriteFrame(nil, payload)
	if err != nil {
		tb.Fatalf("write message %d: %v", w.idx, err)
	}
	checkFrame(tb, msg, frame.CmdHandshake)
	return r.ReadFrame(nil, frame.Frame(msg))
}

// checkFrame fails tb unless b is one whole valid frame of command c.
func checkFrame(tb testing.TB, b []byte, c frame.Cmd) {
	tb.Helper()
	f, n, err := frame.Decode(b, frame.DefaultMaxFrame)
	if err != nil || n != len(b) || f.Cmd() != c {
		tb.Fatalf("not one whole %v frame: n=%d len=%d err=%v", c, n, len(b), err)
	}
}

// login runs the XX handshake to the end and returns both sides.
func (p *pki) login(tb testing.TB) (client, server *Handshake, req *LoginRequest) {
	tb.Helper()
	c := must(NewLoginClient(p.cfg, p.device, p.roots))(tb)
	s := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(tb)
	if _, err := step(tb, c, s, nil); err != nil {
		tb.Fatalf("msg 1: %v", err)
	}
	if _, err := step(tb, s, c, nil); err != nil {
		tb.Fatalf("msg 2: %v", err)
	}
	want := &LoginRequest{Name: "alice", Password: []byte("correct horse"), Fingerprint: Fingerprint("m-1", "salt"), DeviceName: "laptop"}
	enc := must(want.AppendBinary(nil))(tb)
	got, err := step(tb, c, s, enc)
	if err != nil {
		tb.Fatalf("msg 3: %v", err)
	}
	req = must(ParseLoginRequest(got))(tb)
	return c, s, req
}

// endpoint runs the IK handshake to the end with token and returns both
// sides' Keys.
func (p *pki) endpoint(tb testing.TB, token string) (client, server *Handshake) {
	tb.Helper()
	c := must(NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), token))(tb)
	s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(tb)
	if _, err := step(tb, c, s, nil); err != nil {
		tb.Fatalf("msg 1: %v", err)
	}
	acc := Accepted{UserID: s.TokenClaims().UserID, ServerTime: p.clock.Now()}
	if _, err := step(tb, s, c, must(acc.AppendBinary(nil))(tb)); err != nil {
		tb.Fatalf("msg 2: %v", err)
	}
	return c, s
}

// keyPair returns connected client and server Keys from an IK handshake.
func keyPair(tb testing.TB, cfg *Config) (client, server *Keys) {
	tb.Helper()
	p := newPKI(tb)
	if cfg != nil {
		c := *cfg
		c.Now = p.clock.Now
		p.cfg = &c
	}
	c, s := p.endpoint(tb, p.token(tb))
	return must(c.Keys())(tb), must(s.Keys())(tb)
}

func noiseXX() noise.HandshakePattern { return noise.HandshakeXX }
