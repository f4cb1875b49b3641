//go:build !race

package session

import (
	"bytes"
	"testing"

	"github.com/myim/myim/frame"
)

// Seal and Open into buffers with room must not allocate: they run for
// every frame on the event loop.
func TestSealOpenAllocs(t *testing.T) {
	c, s := keyPair(t, nil)
	for _, size := range []int{0, 64, 4096} {
		msg := make([]byte, size)
		buf := make([]byte, 0, size+64)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := c.Seal(buf[:0], frame.CmdMsg, frame.QoS1, msg); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Seal %dB: %v allocs/op", size, n)
		}

		sealed := frame.Frame(must(c.Seal(nil, frame.CmdMsg, frame.QoS1, msg))(t))
		n0 := c.send.n - 1
		out := make([]byte, 0, size)
		if n := testing.AllocsPerRun(100, func() {
			s.recv.n = n0 // open the same frame again: the counter is all that changes
			if _, err := s.Open(out[:0], sealed); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Open %dB: %v allocs/op", size, n)
		}
		s.recv.n = c.send.n
	}
}

// The server side of each handshake stays within its allocation budget
// (IK 242 and XX 147 before the handshake's own DH function and lazy
// ciphers). Most of what is left is noise's HKDF (an hmac.New per step)
// and golang-jwt's JSON decoding.
func TestHandshakeAllocs(t *testing.T) {
	p := newPKI(t)
	tok := p.token(t)
	c := must(NewEndpointClient(p.cfg, p.device, p.epKey.PublicKey().Bytes(), tok))(t)
	msg1 := frame.Frame(must(c.WriteFrame(nil, nil))(t))
	acc := must((&Accepted{UserID: 42}).AppendBinary(nil))(t)
	out := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(50, func() {
		s := must(NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience))(t)
		if _, err := s.ReadFrame(nil, msg1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteFrame(out[:0], acc); err != nil || !s.Done() {
			t.Fatal(err)
		}
	}); n > 213 {
		t.Errorf("IK responder: %v allocs, budget 213", n)
	}

	// XX: the client's messages come from a recorded run; message 3
	// answers one message 2, so the server's ephemeral key is fixed too.
	eph := bytes.Repeat([]byte{5}, 32)
	cfg := *p.cfg
	cfg.Rand = bytes.NewReader(eph)
	cl := must(NewLoginClient(p.cfg, p.device, p.roots))(t)
	m1 := must(cl.WriteFrame(nil, nil))(t)
	sv := must(NewLoginServer(&cfg, p.loginKey, p.loginCert))(t)
	must(sv.ReadFrame(nil, frame.Frame(m1)))(t)
	m2 := must(sv.WriteFrame(nil, nil))(t)
	must(cl.ReadFrame(nil, frame.Frame(m2)))(t)
	req := must((&LoginRequest{Name: "alice", Password: []byte("pw"), DeviceName: "laptop"}).AppendBinary(nil))(t)
	m3 := must(cl.WriteFrame(nil, req))(t)
	rd := bytes.NewReader(eph)
	cfg.Rand = rd
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(50, func() {
		rd.Reset(eph)
		s := must(NewLoginServer(&cfg, p.loginKey, p.loginCert))(t)
		if _, err := s.ReadFrame(nil, frame.Frame(m1)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteFrame(buf[:0], nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadFrame(nil, frame.Frame(m3)); err != nil || !s.Done() {
			t.Fatal(err)
		}
	}); n > 125 {
		t.Errorf("XX responder: %v allocs, budget 125", n)
	}
}
