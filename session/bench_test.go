package session

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/flynn/noise"

	"github.com/myim/myim/frame"
)

var benchSizes = []int{64, 256, 4096}

// benchKeys returns a connected pair whose limits a long benchmark cannot
// reach.
func benchKeys(b *testing.B) (client, server *Keys) {
	return keyPair(b, &Config{RekeyFrames: math.MaxUint64, MaxFramesPerKey: math.MaxUint64})
}

func BenchmarkSeal(b *testing.B) {
	c, _ := benchKeys(b)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%dB", size), func(b *testing.B) {
			msg := make([]byte, size)
			buf := make([]byte, 0, size+64)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Seal(buf[:0], frame.CmdMsg, frame.QoS1, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// Baseline: noise's own CipherState, header built the same way.
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("baseline=noise/payload=%dB", size), func(b *testing.B) {
			cs := noise.UnsafeNewCipherState(suite, [32]byte{1}, 0)
			msg := make([]byte, size)
			buf := make([]byte, 0, size+64)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				out, _ := frame.AppendHeader(buf[:0], frame.CmdMsg, frame.QoS1, size+TagSize)
				if _, err := cs.Encrypt(out, out, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	c, s := benchKeys(b)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%dB", size), func(b *testing.B) {
			sealed := frame.Frame(must(c.Seal(nil, frame.CmdMsg, frame.QoS1, make([]byte, size)))(b))
			n0 := c.send.n - 1
			out := make([]byte, 0, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				s.recv.n = n0 // reopen the same frame: only the counter moves
				if _, err := s.Open(out[:0], sealed); err != nil {
					b.Fatal(err)
				}
			}
			s.recv.n = c.send.n
		})
	}
}

// BenchmarkHandshakeIK measures the endpoint handshake: "full" runs both
// sides (what a reconnect costs the pair), "server" only the endpoint's
// side, fed the same message 1 each time (IK message 1 replays, which is
// why nothing that is not idempotent may ride in it).
func BenchmarkHandshakeIK(b *testing.B) {
	p := newPKI(b)
	tok := p.token(b)
	epPub := p.epKey.PublicKey().Bytes()
	acc := must((&Accepted{UserID: 42}).AppendBinary(nil))(b)
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		msg := make([]byte, 0, 1024)
		for b.Loop() {
			c, _ := NewEndpointClient(p.cfg, p.device, epPub, tok)
			s, _ := NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience)
			msg, _ = c.WriteFrame(msg[:0], nil)
			if _, err := s.ReadFrame(nil, frame.Frame(msg)); err != nil {
				b.Fatal(err)
			}
			msg, _ = s.WriteFrame(msg[:0], acc)
			if _, err := c.ReadFrame(nil, frame.Frame(msg)); err != nil {
				b.Fatal(err)
			}
			if !c.Done() || !s.Done() {
				b.Fatal("not done")
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	})
	b.Run("server", func(b *testing.B) {
		c, _ := NewEndpointClient(p.cfg, p.device, epPub, tok)
		msg1 := frame.Frame(must(c.WriteFrame(nil, nil))(b))
		out := make([]byte, 0, 256)
		b.ReportAllocs()
		for b.Loop() {
			s, _ := NewEndpointServer(p.cfg, p.epKey, p.tokenKeys, p.audience)
			if _, err := s.ReadFrame(nil, msg1); err != nil {
				b.Fatal(err)
			}
			if _, err := s.WriteFrame(out[:0], acc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	})
}

func BenchmarkHandshakeXX(b *testing.B) {
	p := newPKI(b)
	b.ReportAllocs()
	for b.Loop() {
		p.login(b)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func BenchmarkVerifyToken(b *testing.B) {
	p := newPKI(b)
	tok := p.token(b)
	now := p.clock.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyToken(p.tokenKeys, tok, p.audience, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArgon2id uses the real OWASP parameters: "single" is one
// hash's latency, "hasher" the throughput of a Hasher capped at GOMAXPROCS
// under as many callers.
func BenchmarkArgon2id(b *testing.B) {
	pw := []byte("correct horse battery staple")
	enc := must(HashPassword(pw, DefaultArgon2))(b)
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := VerifyPassword(pw, enc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hashes/s")
	})
	b.Run("hasher", func(b *testing.B) {
		h := must(NewHasher(nil))(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := h.Verify(context.Background(), pw, enc); err != nil {
					b.Error(err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hashes/s")
	})
}
