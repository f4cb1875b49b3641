package session

import (
	"errors"
	"testing"
	"time"
)

func TestVerifyCert(t *testing.T) {
	p := newPKI(t)
	now := p.clock.Now()
	raw := must(p.epCert.MarshalBinary())(t)
	if len(raw) != CertLen {
		t.Fatalf("cert is %d bytes, want %d", len(raw), CertLen)
	}
	c, err := VerifyCert(p.roots, raw, now, RoleEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != 11 || c.Role != RoleEndpoint || c.KeyID != p.root.ID ||
		string(c.StaticKey[:]) != string(p.epKey.PublicKey().Bytes()) ||
		!c.NotAfter.Equal(c.NotBefore.Add(p.validFor)) {
		t.Fatalf("cert = %+v", c)
	}

	second := must(NewSigningKey())(t)
	rotated := []VerifyKey{second.Verify(), p.root.Verify()} // old and new root during a rotation
	if _, err := VerifyCert(rotated, raw, now, RoleEndpoint); err != nil {
		t.Fatalf("with two roots: %v", err)
	}

	flip := func(i int) []byte {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return b
	}
	cases := []struct {
		name  string
		roots []VerifyKey
		raw   []byte
		now   time.Time
		role  Role
		want  error
	}{
		{"role", p.roots, raw, now, RoleLogin, ErrCertRole},
		{"expired", p.roots, raw, now.Add(p.validFor + Leeway + time.Second), RoleEndpoint, ErrCertExpired},
		{"not yet", p.roots, raw, now.Add(-Leeway - time.Second), RoleEndpoint, ErrCertNotYetValid},
		{"unknown root", []VerifyKey{second.Verify()}, raw, now, RoleEndpoint, ErrCertUnknownRoot},
		{"no roots", nil, raw, now, RoleEndpoint, ErrCertUnknownRoot},
		{"flipped role", p.roots, flip(1), now, RoleEndpoint, ErrCertSignature},
		{"flipped node", p.roots, flip(9), now, RoleEndpoint, ErrCertSignature},
		{"flipped key", p.roots, flip(20), now, RoleEndpoint, ErrCertSignature},
		{"flipped not after", p.roots, flip(57), now, RoleEndpoint, ErrCertSignature},
		{"flipped sig", p.roots, flip(CertLen - 1), now, RoleEndpoint, ErrCertSignature},
		{"version", p.roots, flip(0), now, RoleEndpoint, ErrCertMalformed},
		{"short", p.roots, raw[:CertLen-1], now, RoleEndpoint, ErrCertMalformed},
		{"long", p.roots, append(append([]byte(nil), raw...), 0), now, RoleEndpoint, ErrCertMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyCert(tc.roots, tc.raw, tc.now, tc.role); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Within the leeway on both ends.
	for _, at := range []time.Time{now.Add(-Leeway + time.Second), c.NotAfter.Add(Leeway - time.Second)} {
		if _, err := VerifyCert(p.roots, raw, at, RoleEndpoint); err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
	}
}

func TestIssueCertRejects(t *testing.T) {
	p := newPKI(t)
	pub := p.epKey.PublicKey().Bytes()
	if _, err := IssueCert(p.root, 1, Role(9), pub, time.Now(), time.Hour); !errors.Is(err, ErrCertRole) {
		t.Fatalf("bad role: %v", err)
	}
	if _, err := IssueCert(p.root, 1, RoleLogin, pub[:31], time.Now(), time.Hour); !errors.Is(err, ErrCertStaticKey) {
		t.Fatalf("short key: %v", err)
	}
	if _, err := IssueCert(p.root, 1, RoleLogin, make([]byte, 32), time.Now(), time.Hour); !errors.Is(err, ErrCertStaticKey) {
		t.Fatalf("zero key: %v", err)
	}
	if _, err := IssueCert(p.root, 1, RoleLogin, pub, time.Now(), 0); !errors.Is(err, ErrCertMalformed) {
		t.Fatalf("zero validity: %v", err)
	}
}
