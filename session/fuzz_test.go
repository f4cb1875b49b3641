package session

import (
	"testing"

	"github.com/myim/myim/frame"
)

// FuzzHandshake feeds arbitrary bytes to server-side handshakes: msg1 as
// message 1 of both a login (XX) and an endpoint (IK) server, and msg3 as
// the login server's message 3 when message 1 passed. Each is tried as a
// HANDSHAKE frame body and as a raw frame. Nothing may panic, and nothing
// but a real client's message passes (IK message 1 replays, by design).
func FuzzHandshake(f *testing.F) {
	p := newPKI(f)
	xx := must(NewLoginClient(p.cfg, p.device, p.roots))(f)
	ik := must(NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), p.token(f)))(f)
	xx1 := frame.Frame(must(xx.WriteFrame(nil, nil))(f))
	ik1 := frame.Frame(must(ik.WriteFrame(nil, nil))(f))
	f.Add([]byte(xx1.Body()), []byte(nil))
	f.Add([]byte(ik1.Body()), []byte(nil))
	f.Add([]byte(xx1), make([]byte, 64))
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 32), make([]byte, 80))
	f.Add(make([]byte, 96), []byte(ik1))

	f.Fuzz(func(t *testing.T, msg1, msg3 []byte) {
		for _, body := range [][]byte{msg1, msg3} {
			if len(body) > 4096 {
				return
			}
		}
		asFrame := func(b []byte) frame.Frame {
			out, _ := frame.Append(nil, frame.CmdHandshake, frame.QoS0, b)
			return frame.Frame(out)
		}
		for _, m1 := range []frame.Frame{asFrame(msg1), frame.Frame(msg1)} {
			ep := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
			if _, err := ep.ReadFrame(nil, m1); err == nil && string(m1) != string(ik1) {
				t.Fatal("endpoint accepted a forged message 1")
			}

			ls := must(NewLoginServer(p.cfg, p.loginKey, p.loginCert))(t)
			if _, err := ls.ReadFrame(nil, m1); err != nil {
				continue
			}
			if _, err := ls.WriteFrame(nil, nil); err != nil {
				continue // e.g. a low-order ephemeral key: refused at the DH
			}
			for _, m3 := range []frame.Frame{asFrame(msg3), frame.Frame(msg3)} {
				if _, err := ls.ReadFrame(nil, m3); err == nil {
					t.Fatal("login server accepted a forged message 3")
				}
			}
		}
	})
}

// FuzzVerifyToken: arbitrary strings must not panic, and only the genuine
// token may verify.
func FuzzVerifyToken(f *testing.F) {
	p := newPKI(f)
	good := p.token(f)
	now := p.clock.Now()
	f.Add(good)
	f.Add(tamperPayload(f, good))
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := VerifyToken(p.tokenKeys, tok, p.audience, now)
		if err == nil && (tok != good || c == nil) {
			t.Fatalf("verified %q", tok)
		}
	})
}

// FuzzOpen: arbitrary frames must not panic Open or RecvRekey nor open.
func FuzzOpen(f *testing.F) {
	cfg := (&Config{}).withDefaults()
	key := [32]byte{7}
	seed := must(must(newKeys(&cfg, &key, &key))(f).Seal(nil, frame.CmdMsg, frame.QoS1, []byte("hi")))(f)
	f.Add(seed)
	f.Add(frame.Ping)
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		k := must(newKeys(&cfg, &key, &key))(t)
		if string(b) == string(seed) {
			return
		}
		if _, err := k.Open(nil, frame.Frame(b)); err == nil {
			t.Fatalf("opened %x", b)
		}
		k = must(newKeys(&cfg, &key, &key))(t)
		if err := k.RecvRekey(frame.Frame(b)); err == nil {
			t.Fatalf("rekeyed on %x", b)
		}
	})
}
