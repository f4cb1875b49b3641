package session

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

// The handshake vectors of docs/protocol.md ("Handshakes"): every handshake
// message, credential, payload and sealed frame of one login and one
// endpoint session made from fixed inputs. TestHandshakeVectors runs both
// handshakes again with the same inputs and checks, block by block, that
// the reference shows exactly the bytes the code produces; each side then
// reads the reference's bytes (not its peer's) through the real code path,
// so every vector is also shown to be accepted.
//
// A vector is an "HS-Vector: <name>" line followed, on the next non-blank
// line, by an ```hs-hex block (hex digits; "#" starts a comment that runs
// to the end of the line) or an ```hs-text block (the exact text, lines
// joined by "\n"). The frame package's vector test reads only "Vector:"
// lines and ```hex blocks, so it does not see these.
//
// After a deliberate change, run
//
//	go test ./session -run TestHandshakeVectors -hsvectors=/tmp/hs.json
//
// to get every block as the reference should show it (a JSON object from
// vector name to Markdown).

const hsDoc = "../docs/protocol.md"

var hsDump = flag.String("hsvectors", "", "write the handshake vectors, as Markdown blocks keyed by name, to this JSON file")

// Fixed inputs. Every secret is SHA-256 of a label (see hsInput), so that
// another implementation can rebuild them.
var (
	hsTime     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // 1767225600
	hsAudience = "myim:5eed0001"                             // "myim:" + the root's key id
)

const (
	hsRootID     = 0x5eed0001
	hsTokenKeyID = 0x70ce0001
	hsNodeID     = 1
	hsUser       = 1 // alice
	hsBob        = 2
	hsTeam       = 16
	hsCertValid  = 30 * 24 * time.Hour // engine.CertValidity
	hsTokenTTL   = MaxTokenTTL         // the login service's default
	hsPassword   = "correct horse battery staple"
)

// hsInput returns the first n bytes of SHA-256("MYIM handshake vector " + label).
func hsInput(label string, n int) []byte {
	h := sha256.Sum256([]byte("MYIM handshake vector " + label))
	return h[:n]
}

// hsFixed holds the keys and credentials built from the fixed inputs.
type hsFixed struct {
	root, tokenKey       *SigningKey
	node, device         *ecdh.PrivateKey
	loginCert, epCert    *Cert
	roots, tokenKeys     []VerifyKey
	ephLoginC, ephLoginS []byte
	ephEpC, ephEpS       []byte
	tokenRand            []byte
}

func newHSFixed(tb testing.TB) *hsFixed {
	tb.Helper()
	f := &hsFixed{
		root:      &SigningKey{ID: hsRootID, Private: ed25519.NewKeyFromSeed(hsInput("root-seed", 32))},
		tokenKey:  &SigningKey{ID: hsTokenKeyID, Private: ed25519.NewKeyFromSeed(hsInput("token-key-seed", 32))},
		node:      must(ecdh.X25519().NewPrivateKey(hsInput("node-static", 32)))(tb),
		device:    must(ecdh.X25519().NewPrivateKey(hsInput("device-static", 32)))(tb),
		ephLoginC: hsInput("login-client-ephemeral", 32),
		ephLoginS: hsInput("login-server-ephemeral", 32),
		ephEpC:    hsInput("endpoint-client-ephemeral", 32),
		ephEpS:    hsInput("endpoint-server-ephemeral", 32),
		tokenRand: hsInput("token-id", 16),
	}
	f.roots = []VerifyKey{f.root.Verify()}
	f.tokenKeys = []VerifyKey{f.tokenKey.Verify()}
	pub := f.node.PublicKey().Bytes()
	f.loginCert = must(IssueCert(f.root, hsNodeID, RoleLogin, pub, hsTime, hsCertValid))(tb)
	f.epCert = must(IssueCert(f.root, hsNodeID, RoleEndpoint, pub, hsTime, hsCertValid))(tb)
	return f
}

// cfg returns a Config at the fixed time whose Rand yields exactly eph: a
// handshake side that read more randomness than its one ephemeral key
// would fail.
func (f *hsFixed) cfg(eph []byte) *Config {
	return &Config{Now: func() time.Time { return hsTime }, Rand: bytes.NewReader(eph)}
}

// hsBlock is one vector of the reference.
type hsBlock struct {
	name string
	line int
	text bool // an hs-text block
	b    []byte
}

// loadHSVectors parses the reference's handshake vectors.
func loadHSVectors(tb testing.TB) map[string]hsBlock {
	tb.Helper()
	doc, err := os.ReadFile(hsDoc)
	if err != nil {
		tb.Fatalf("read protocol reference: %v", err)
	}
	out := make(map[string]hsBlock)
	var (
		pending *hsBlock
		fence   string // "hs-hex" or "hs-text" while inside a block
		body    []string
	)
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case fence != "" && line == "```":
			b := pending
			if fence == "hs-text" {
				b.text = true
				b.b = []byte(strings.Join(body, "\n"))
			} else {
				var digits strings.Builder
				for _, l := range body {
					l, _, _ = strings.Cut(l, "#")
					digits.WriteString(strings.Join(strings.Fields(l), ""))
				}
				if b.b, err = hex.DecodeString(digits.String()); err != nil {
					tb.Fatalf("%s:%d: HS-Vector %q: %v", hsDoc, b.line, b.name, err)
				}
			}
			if _, dup := out[b.name]; dup {
				tb.Fatalf("%s:%d: HS-Vector %q appears twice", hsDoc, b.line, b.name)
			}
			out[b.name] = *b
			pending, fence, body = nil, "", nil
		case fence != "":
			body = append(body, raw)
		case line == "```hs-hex" || line == "```hs-text":
			if pending == nil {
				tb.Fatalf("%s:%d: %s block without an HS-Vector: line before it", hsDoc, n, line[3:])
			}
			fence = line[3:]
		case strings.HasPrefix(line, "HS-Vector:"):
			if pending != nil {
				tb.Fatalf("%s:%d: HS-Vector %q has no block", hsDoc, pending.line, pending.name)
			}
			pending = &hsBlock{name: strings.TrimSpace(strings.TrimPrefix(line, "HS-Vector:")), line: n}
			if pending.name == "" {
				tb.Fatalf("%s:%d: HS-Vector: line without a name", hsDoc, n)
			}
		case pending != nil && line != "":
			tb.Fatalf("%s:%d: HS-Vector %q must be followed by an hs-hex or hs-text block", hsDoc, pending.line, pending.name)
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read protocol reference: %v", err)
	}
	if fence != "" || pending != nil {
		tb.Fatalf("%s: unterminated HS-Vector at the end of the file", hsDoc)
	}
	return out
}

// part is a labelled piece of a vector, for the comments of its hs-hex block.
type part struct {
	label string
	b     []byte
}

// hsRun compares generated vectors with the reference as they are made.
type hsRun struct {
	t     *testing.T
	doc   map[string]hsBlock
	seen  map[string]bool
	dump  map[string]string
	order []string
}

// hex records a generated hex vector made of parts and returns the
// reference's bytes for it, which the caller then feeds to the real code
// path. A mismatch or a missing block fails the test (and the generated
// bytes are returned instead, so that the run goes on).
func (r *hsRun) hex(name string, parts ...part) []byte {
	r.t.Helper()
	var b []byte
	for _, p := range parts {
		b = append(b, p.b...)
	}
	return r.check(name, b, false, hexBlock(parts))
}

// text records a generated text vector; see hex.
func (r *hsRun) text(name, s string) string {
	r.t.Helper()
	return string(r.check(name, []byte(s), true, "```hs-text\n"+s+"\n```"))
}

// frame records a whole generated frame whose body is split into the
// labelled sizes (the last label takes the rest); see hex. The reference's
// bytes must also be one whole, well-formed frame.
func (r *hsRun) frame(name string, f []byte, labels []string, sizes ...int) frame.Frame {
	r.t.Helper()
	fr := frame.Frame(f)
	parts := []part{{fmt.Sprintf("Length %d, %v, QoS %d", len(f), fr.Cmd(), fr.QoS()), fr.Header()}}
	body := fr.Body()
	for i, l := range labels {
		n := len(body)
		if i < len(sizes) {
			n = sizes[i]
		}
		parts = append(parts, part{l, body[:n]})
		body = body[n:]
	}
	if len(body) != 0 {
		r.t.Fatalf("%s: %d body bytes left unlabelled", name, len(body))
	}
	got := r.hex(name, parts...)
	if _, n, err := frame.Decode(got, frame.DefaultMaxFrame); err != nil || n != len(got) {
		r.t.Errorf("HS-Vector %q is not one whole frame: n=%d of %d, %v", name, n, len(got), err)
	}
	return frame.Frame(got)
}

func (r *hsRun) check(name string, b []byte, text bool, block string) []byte {
	r.t.Helper()
	if r.seen[name] {
		r.t.Fatalf("vector %q generated twice", name)
	}
	r.seen[name] = true
	r.order = append(r.order, name)
	r.dump[name] = "HS-Vector: " + name + "\n\n" + block + "\n"
	d, ok := r.doc[name]
	switch {
	case !ok:
		r.t.Errorf("%s has no HS-Vector %q; it should read:\n\n%s", hsDoc, name, r.dump[name])
		return b
	case d.text != text:
		r.t.Errorf("%s:%d: HS-Vector %q has the wrong block kind; it should read:\n\n%s", hsDoc, d.line, name, r.dump[name])
	case !bytes.Equal(d.b, b):
		r.t.Errorf("%s:%d: HS-Vector %q differs from the generated bytes; it should read:\n\n%s", hsDoc, d.line, name, r.dump[name])
	}
	return d.b
}

// hexBlock formats parts as an hs-hex block: 16 bytes a line, each part on
// lines of its own, its label as a comment on its first line.
func hexBlock(parts []part) string {
	var s strings.Builder
	s.WriteString("```hs-hex\n")
	for _, p := range parts {
		for i := 0; i < len(p.b) || i == 0; i += 16 {
			line := fmt.Sprintf("% x", p.b[i:min(i+16, len(p.b))])
			if i == 0 && p.label != "" {
				line = fmt.Sprintf("%-47s  # %s", line, p.label)
			}
			s.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	s.WriteString("```")
	return s.String()
}

func TestHandshakeVectors(t *testing.T) {
	r := &hsRun{t: t, doc: loadHSVectors(t), seen: map[string]bool{}, dump: map[string]string{}}
	f := newHSFixed(t)

	hsInputs(r, f)
	token := hsLogin(r, f)
	hsEndpoint(r, f, token)

	for name, b := range r.doc {
		if !r.seen[name] {
			t.Errorf("%s:%d: HS-Vector %q is not generated by any test", hsDoc, b.line, name)
		}
	}
	if *hsDump != "" {
		var all strings.Builder
		all.WriteString("{\n")
		for i, name := range r.order {
			k, _ := json.Marshal(name)
			v, _ := json.Marshal(r.dump[name])
			fmt.Fprintf(&all, "%s: %s", k, v)
			if i < len(r.order)-1 {
				all.WriteString(",")
			}
			all.WriteString("\n")
		}
		all.WriteString("}\n")
		if err := os.WriteFile(*hsDump, []byte(all.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hsInputs checks the fixed inputs, their public halves, the prologues and
// the certificates.
func hsInputs(r *hsRun, f *hsFixed) {
	t := r.t
	r.hex("input-root-seed", part{"", f.root.Private.Seed()})
	r.hex("input-root-public", part{"", f.root.Verify().Public})
	r.hex("input-token-key-seed", part{"", f.tokenKey.Private.Seed()})
	r.hex("input-token-key-public", part{"", f.tokenKey.Verify().Public})
	r.hex("input-node-static-private", part{"", f.node.Bytes()})
	r.hex("input-node-static-public", part{"", f.node.PublicKey().Bytes()})
	r.hex("input-device-static-private", part{"", f.device.Bytes()})
	r.hex("input-device-static-public", part{"", f.device.PublicKey().Bytes()})
	r.hex("input-login-client-ephemeral", part{"", f.ephLoginC})
	r.hex("input-login-server-ephemeral", part{"", f.ephLoginS})
	r.hex("input-endpoint-client-ephemeral", part{"", f.ephEpC})
	r.hex("input-endpoint-server-ephemeral", part{"", f.ephEpS})
	r.hex("input-token-id", part{"", f.tokenRand})

	r.hex("prologue-xx", part{`"MYIM", version 1, 'X'`, prologueXX})
	r.hex("prologue-ik", part{`"MYIM", version 1, 'K'`, prologueIK})

	for _, c := range []struct {
		name string
		cert *Cert
		role Role
	}{{"cert-login", f.loginCert, RoleLogin}, {"cert-endpoint", f.epCert, RoleEndpoint}} {
		raw := must(c.cert.MarshalBinary())(t)
		got := r.hex(c.name, certParts(raw)...)
		vc, err := VerifyCert(f.roots, got, hsTime, c.role)
		if err != nil {
			t.Errorf("%s: VerifyCert: %v", c.name, err)
			continue
		}
		if vc.NodeID != hsNodeID || vc.KeyID != hsRootID || !bytes.Equal(vc.StaticKey[:], f.node.PublicKey().Bytes()) ||
			!vc.NotBefore.Equal(hsTime) || !vc.NotAfter.Equal(hsTime.Add(hsCertValid)) {
			t.Errorf("%s: verified certificate is %+v", c.name, vc)
		}
	}
}

func certParts(raw []byte) []part {
	return []part{
		{"version", raw[0:1]}, {"role", raw[1:2]}, {"root key id", raw[2:6]}, {"node id", raw[6:10]},
		{"X25519 static public key", raw[10:42]}, {"not before", raw[42:50]}, {"not after", raw[50:58]},
		{"Ed25519ctx signature", raw[58:]},
	}
}

// hsLogin runs the XX login and returns the token of the login reply as
// the reference shows it.
func hsLogin(r *hsRun, f *hsFixed) string {
	t := r.t
	c := must(NewLoginClient(f.cfg(f.ephLoginC), f.device, f.roots))(t)
	s := must(NewLoginServer(f.cfg(f.ephLoginS), f.node, f.loginCert))(t)

	// Message 1: e.
	m1 := r.frame("login-msg1", must(c.WriteFrame(nil, nil))(t), []string{"e: client ephemeral public key"})
	if p, err := s.ReadFrame(nil, m1); err != nil || len(p) != 0 {
		t.Fatalf("server reads login-msg1: payload %x, %v", p, err)
	}

	// Message 2: e, ee, s, es + certificate.
	m2 := r.frame("login-msg2", must(s.WriteFrame(nil, nil))(t),
		[]string{"e: server ephemeral public key", "s: encrypted server static key + tag", "payload: encrypted login certificate + tag"}, 32, 48)
	p, err := c.ReadFrame(nil, m2)
	if err != nil {
		t.Fatalf("client reads login-msg2: %v", err)
	}
	if !bytes.Equal(p, must(f.loginCert.MarshalBinary())(t)) || c.PeerCert() == nil || c.PeerCert().Role != RoleLogin {
		t.Fatalf("client got certificate %x (%+v)", p, c.PeerCert())
	}

	// Message 3: s, se + login request.
	want := &LoginRequest{Name: "alice", Password: []byte(hsPassword), Fingerprint: Fingerprint("machine-1", "app-salt"), DeviceName: "laptop"}
	enc := must(want.AppendBinary(nil))(t)
	fp := len(want.Fingerprint)
	encDoc := r.hex("login-request",
		part{"version", enc[:1]},
		part{"name length, name", enc[1:8]},
		part{"password length, password", enc[8:38]},
		part{"fingerprint length, fingerprint", enc[38 : 40+fp]},
		part{"device name length, device name", enc[40+fp:]})
	if got, err := ParseLoginRequest(encDoc); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseLoginRequest(login-request) = %+v, %v", got, err)
	}
	m3 := r.frame("login-msg3", must(c.WriteFrame(nil, enc))(t),
		[]string{"s: encrypted device static key + tag", "payload: encrypted login request + tag"}, 48)
	p, err = s.ReadFrame(nil, m3)
	if err != nil {
		t.Fatalf("server reads login-msg3: %v", err)
	}
	if got, err := ParseLoginRequest(p); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("server's login request = %+v, %v", got, err)
	}
	device := f.device.PublicKey().Bytes()
	if !bytes.Equal(s.PeerStatic(), device) {
		t.Error("server's PeerStatic is not the device key")
	}
	ck, sk := hsKeys(r, "login", c, s)

	// The token and the reply.
	tok := must(IssueToken(f.tokenKey, TokenRequest{UserID: hsUser, Audience: hsAudience, DeviceKey: s.PeerStatic(),
		TTL: hsTokenTTL, Rand: bytes.NewReader(f.tokenRand)}, hsTime))(t)
	segs := strings.Split(tok, ".")
	r.text("token-header", string(must(base64.RawURLEncoding.DecodeString(segs[0]))(t)))
	r.text("token-claims", string(must(base64.RawURLEncoding.DecodeString(segs[1]))(t)))
	tokDoc := r.text("token", tok)
	cl, err := VerifyToken(f.tokenKeys, tokDoc, hsAudience, hsTime)
	if err != nil {
		t.Fatalf("VerifyToken(token): %v", err)
	}
	if cl.UserID != hsUser || !cl.BoundTo(device) || cl.KeyID != hsTokenKeyID || cl.SessionID != cl.TokenID ||
		cl.TokenID != base64.RawURLEncoding.EncodeToString(f.tokenRand) || !cl.ExpiresAt.Equal(hsTime.Add(hsTokenTTL)) {
		t.Errorf("token claims = %+v", cl)
	}

	reply := LoginReply{UserID: hsUser, Token: tok, ExpiresAt: hsTime.Add(hsTokenTTL).UnixMilli(), NewDevice: true,
		Servers: []ServerInfo{{ID: hsNodeID, Addr: ":5222", Key: f.node.PublicKey().Bytes(), Cert: must(f.epCert.MarshalBinary())(t)}}}
	js := must(json.Marshal(&reply))(t)
	r.text("login-reply", string(js))

	// The answers: a sealed AUTH, or instead a sealed ERROR. Both are the
	// first frame the server seals (counter 0), so each is opened with its
	// own copy of the client's fresh keys.
	ckErr, skErr := *ck, *sk
	auth := r.frame("login-auth", must(sk.Seal(nil, frame.CmdAuth, frame.QoS0, js))(t),
		[]string{"encrypted login reply JSON", "tag"}, len(js))
	body, err := ck.Open(nil, auth)
	if err != nil || auth.Cmd() != frame.CmdAuth {
		t.Fatalf("client opens login-auth: %v %v", auth.Cmd(), err)
	}
	var got LoginReply
	if err := json.Unmarshal(body, &got); err != nil || !reflect.DeepEqual(got, reply) {
		t.Errorf("login reply = %+v, %v", got, err)
	}
	if len(got.Servers) == 1 {
		ec, err := VerifyCert(f.roots, got.Servers[0].Cert, hsTime, RoleEndpoint)
		if err != nil || !bytes.Equal(ec.StaticKey[:], got.Servers[0].Key) {
			t.Errorf("server list certificate: %v", err)
		}
	}

	eb := must(frame.AppendError(nil, frame.ErrCodeAuthFailed, 0, "wrong name or password"))(t)
	eBody := frame.Frame(eb).Body()
	ef := r.frame("login-error", must(skErr.Seal(nil, frame.CmdError, frame.QoS0, eBody))(t),
		[]string{"encrypted ERROR body: code 13, ref 0, text", "tag"}, len(eBody))
	body, err = ckErr.Open(nil, ef)
	if err != nil || ef.Cmd() != frame.CmdError || frame.CheckBody(frame.CmdError, body) != nil {
		t.Fatalf("client opens login-error: %v %v", ef.Cmd(), err)
	}
	if e := frame.Error(body); e.Code() != frame.ErrCodeAuthFailed || e.Ref() != 0 || string(e.Text()) != "wrong name or password" {
		t.Errorf("login-error opens to code %d ref %d %q", e.Code(), e.Ref(), e.Text())
	}
	return tokDoc
}

// hsKeys checks both sides' handshake hash and traffic keys against the
// reference and returns the client's and the server's Keys.
func hsKeys(r *hsRun, prefix string, c, s *Handshake) (ck, sk *Keys) {
	t := r.t
	if !c.Done() || !s.Done() {
		t.Fatalf("%s handshake not done", prefix)
	}
	h := r.hex(prefix+"-handshake-hash", part{"", c.ChannelBinding()})
	if !bytes.Equal(h, s.ChannelBinding()) {
		t.Errorf("%s: server's handshake hash differs", prefix)
	}
	ck, sk = must(c.Keys())(t), must(s.Keys())(t)
	if k := r.hex(prefix+"-key-c2s", part{"", ck.send.key[:]}); !bytes.Equal(k, sk.recv.key[:]) {
		t.Errorf("%s: client-to-server keys differ", prefix)
	}
	if k := r.hex(prefix+"-key-s2c", part{"", sk.send.key[:]}); !bytes.Equal(k, ck.recv.key[:]) {
		t.Errorf("%s: server-to-client keys differ", prefix)
	}
	return ck, sk
}

// hsEndpoint runs the IK handshake with token and the first frames of the
// session.
func hsEndpoint(r *hsRun, f *hsFixed, token string) {
	t := r.t
	c := must(NewEndpointClient(f.cfg(f.ephEpC), f.device, f.node.PublicKey().Bytes(), token))(t)
	s := must(NewEndpointServer(f.cfg(f.ephEpS), f.node, f.tokenKeys, hsAudience))(t)

	// Message 1: e, es, s, ss + token.
	m1 := r.frame("endpoint-msg1", must(c.WriteFrame(nil, nil))(t),
		[]string{"e: client ephemeral public key", "s: encrypted device static key + tag", "payload: encrypted token + tag"}, 32, 48)
	p, err := s.ReadFrame(nil, m1)
	if err != nil {
		t.Fatalf("server reads endpoint-msg1: %v", err)
	}
	cl := s.TokenClaims()
	if string(p) != token || cl == nil || cl.UserID != hsUser || !cl.BoundTo(f.device.PublicKey().Bytes()) {
		t.Fatalf("server got token %q, claims %+v", p, cl)
	}

	// Message 2: e, ee, se + Accepted.
	acc := Accepted{UserID: cl.UserID, ServerTime: hsTime}
	enc := r.hex("accepted", part{"version", []byte{payloadVersion}},
		part{"user id", binaryU64(hsUser)}, part{"server time, Unix ms", binaryU64(uint64(hsTime.UnixMilli()))})
	if got, err := ParseAccepted(enc); err != nil || got.UserID != hsUser || !got.ServerTime.Equal(hsTime) {
		t.Errorf("ParseAccepted(accepted) = %+v, %v", got, err)
	}
	m2 := r.frame("endpoint-msg2", must(s.WriteFrame(nil, must(acc.AppendBinary(nil))(t)))(t),
		[]string{"e: server ephemeral public key", "payload: encrypted Accepted + tag"}, 32)
	p, err = c.ReadFrame(nil, m2)
	if err != nil {
		t.Fatalf("client reads endpoint-msg2: %v", err)
	}
	if got, err := ParseAccepted(p); err != nil || got.UserID != hsUser || !got.ServerTime.Equal(hsTime) {
		t.Errorf("client's Accepted = %+v, %v", got, err)
	}
	ck, sk := hsKeys(r, "endpoint", c, s)

	// The session: client to server MSG (counter 0), REKEY (1), GROUP_MSG
	// under the next key (2); server to client ACK (counter 0).
	msg := frame.AppendMsgHeader(nil, frame.MsgHeader{From: hsUser, To: hsBob, Time: hsTime.UnixMilli(), CID: 1})
	msg = append(msg, "hi"...)
	sealOpen(r, "session-msg", ck, sk, frame.CmdMsg, frame.QoS1, msg)

	rk := r.frame("session-rekey", must(ck.SendRekey(nil, hsTime))(t), []string{"tag (empty plaintext)"})
	if err := sk.RecvRekey(rk); err != nil {
		t.Fatalf("server's RecvRekey(session-rekey): %v", err)
	}
	if k := r.hex("endpoint-key-c2s-rekeyed", part{"", ck.send.key[:]}); !bytes.Equal(k, sk.recv.key[:]) {
		t.Error("rekeyed client-to-server keys differ")
	}

	gmsg := frame.AppendMsgHeader(nil, frame.MsgHeader{From: hsUser, To: hsTeam, Time: hsTime.UnixMilli(), CID: 4})
	gmsg = append(gmsg, "hello"...)
	sealOpen(r, "session-group-msg", ck, sk, frame.CmdGroupMsg, frame.QoS1, gmsg)

	ack := frame.Frame(must(frame.AppendAck(nil, 1, 1000, hsBob, frame.AckStored))(t)).Body()
	sealOpen(r, "session-ack", sk, ck, frame.CmdAck, frame.QoS0, ack)
}

// sealOpen seals plaintext with from, checks the frame against the
// reference, and opens the reference's frame with to.
func sealOpen(r *hsRun, name string, from, to *Keys, c frame.Cmd, q frame.QoS, plaintext []byte) {
	t := r.t
	f := r.frame(name, must(from.Seal(nil, c, q, plaintext))(t),
		[]string{"encrypted " + c.String() + " body", "tag"}, len(plaintext))
	body, err := to.Open(nil, f)
	if err != nil || f.Cmd() != c || f.QoS() != q {
		t.Fatalf("open %s: %v %d %v", name, f.Cmd(), f.QoS(), err)
	}
	if !bytes.Equal(body, plaintext) || frame.CheckBody(c, body) != nil {
		t.Errorf("%s opens to %x, want %x", name, body, plaintext)
	}
}

func binaryU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
