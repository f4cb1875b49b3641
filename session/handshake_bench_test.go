package session

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

// floorOps is the public-key work a handshake side cannot avoid, done on
// keys parsed in advance: keygen ephemeral key generations (one X25519
// base-point multiplication each), dh X25519 multiplications, and verify
// Ed25519 signature checks.
type floorOps struct {
	keygen, dh, verify int

	scalar []byte
	priv   *ecdh.PrivateKey
	pub    *ecdh.PublicKey
	vkey   ed25519.PublicKey
	signed []byte
	sig    []byte
}

func newFloorOps(tb testing.TB, keygen, dh, verify int, vkey ed25519.PublicKey, token string) *floorOps {
	tb.Helper()
	f := &floorOps{keygen: keygen, dh: dh, verify: verify, vkey: vkey}
	f.priv = must(NewStaticKey())(tb)
	f.scalar = f.priv.Bytes()
	f.pub = must(NewStaticKey())(tb).PublicKey()
	if verify > 0 {
		i := strings.LastIndexByte(token, '.')
		f.signed = []byte(token[:i])
		f.sig = must(base64.RawURLEncoding.DecodeString(token[i+1:]))(tb)
	}
	f.run(tb)
	return f
}

// run does the operations once and returns the thread CPU time they took.
func (f *floorOps) run(tb testing.TB) time.Duration {
	t0 := threadCPU()
	for range f.keygen {
		if _, err := ecdh.X25519().NewPrivateKey(f.scalar); err != nil {
			tb.Fatal(err)
		}
	}
	for range f.dh {
		if _, err := f.priv.ECDH(f.pub); err != nil {
			tb.Fatal(err)
		}
	}
	for range f.verify {
		if !ed25519.Verify(f.vkey, f.signed, f.sig) {
			tb.Fatal("floor: token signature does not verify")
		}
	}
	return threadCPU() - t0
}

// BenchmarkHandshakeFloor times a server's side of a handshake against the
// public-key operations that side must do (floorOps), interleaved in the
// same loop so that both see the same machine. ns/op and allocs/op are the
// handshake's alone (the timer stops around the floor and the client's
// part). Both are also timed in thread CPU time, which a busy machine does
// not inflate: cpu-ns/op is the handshake's, floor-ns/op the floor's,
// x-floor their ratio, and handshakes/s/core follows from cpu-ns/op.
//
//	IK responder (endpoint): generate e; DH es, ss on message 1; DH ee, se
//	                         on message 2; verify the token: 5 X25519 + 1 Ed25519.
//	XX responder (login):    generate e; DH ee, es on message 2; DH se on
//	                         message 3: 4 X25519.
func BenchmarkHandshakeFloor(b *testing.B) {
	p := newPKI(b)
	tok := p.token(b)
	epPub := p.epKey.PublicKey().Bytes()
	acc := must((&Accepted{UserID: 42}).AppendBinary(nil))(b)

	b.Run("IK/server", func(b *testing.B) {
		floor := newFloorOps(b, 1, 4, 1, p.tokenKeys[0].Public, tok)
		c := must(NewEndpointClient(p.cfg, p.device, epPub, tok))(b)
		msg1 := frame.Frame(must(c.WriteFrame(nil, nil))(b))
		out := make([]byte, 0, 256)
		var spent, cpu time.Duration
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		for b.Loop() {
			t0 := threadCPU()
			s, err := NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.ReadFrame(nil, msg1); err != nil {
				b.Fatal(err)
			}
			if _, err := s.WriteFrame(out[:0], acc); err != nil || !s.Done() {
				b.Fatal(err)
			}
			cpu += threadCPU() - t0
			b.StopTimer()
			spent += floor.run(b)
			b.StartTimer()
		}
		reportFloor(b, cpu, spent)
	})

	b.Run("XX/server", func(b *testing.B) {
		floor := newFloorOps(b, 1, 3, 0, nil, "")
		// The client's messages, recorded once: XX message 1 is a bare
		// ephemeral key, and message 3 answers one particular message 2, so
		// each round needs a live client up to message 3. Its work is
		// excluded by stopping the timer.
		req := must((&LoginRequest{Name: "alice", Password: []byte("correct horse"),
			Fingerprint: Fingerprint("m-1", "salt"), DeviceName: "laptop"}).AppendBinary(nil))(b)
		var m1, m2, m3 []byte
		var spent, cpu time.Duration
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			c, err := NewLoginClient(p.cfg, p.device, p.roots)
			if err != nil {
				b.Fatal(err)
			}
			m1, _ = c.WriteFrame(m1[:0], nil)
			b.StartTimer()

			t0 := threadCPU()
			s, err := NewLoginServer(p.cfg, p.loginKey, p.loginCert)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.ReadFrame(nil, frame.Frame(m1)); err != nil {
				b.Fatal(err)
			}
			m2, _ = s.WriteFrame(m2[:0], nil)
			cpu += threadCPU() - t0

			b.StopTimer()
			if _, err := c.ReadFrame(nil, frame.Frame(m2)); err != nil {
				b.Fatal(err)
			}
			m3, _ = c.WriteFrame(m3[:0], req)
			b.StartTimer()

			t0 = threadCPU()
			if _, err := s.ReadFrame(nil, frame.Frame(m3)); err != nil || !s.Done() {
				b.Fatal(err)
			}
			cpu += threadCPU() - t0
			b.StopTimer()
			spent += floor.run(b)
			b.StartTimer()
		}
		reportFloor(b, cpu, spent)
	})
}

func reportFloor(b *testing.B, cpu, floor time.Duration) {
	n := float64(b.N)
	hs := float64(cpu.Nanoseconds()) / n
	fl := float64(floor.Nanoseconds()) / n
	b.ReportMetric(hs, "cpu-ns/op")
	b.ReportMetric(fl, "floor-ns/op")
	b.ReportMetric(hs/fl, "x-floor")
	b.ReportMetric(1e9/hs, "handshakes/s/core")
}
