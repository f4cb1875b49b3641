package session

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTokenRoundTrip(t *testing.T) {
	p := newPKI(t)
	now := p.clock.Now()
	dev := p.device.PublicKey().Bytes()
	tok := must(IssueToken(p.tokenKey, TokenRequest{UserID: 1 << 60, Audience: p.audience, DeviceKey: dev, TTL: 2 * time.Hour, SessionID: "s-1"}, now))(t)
	c, err := VerifyToken(p.tokenKeys, tok, p.audience, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != 1<<60 || c.SessionID != "s-1" || c.TokenID == "" || c.KeyID != p.tokenKey.ID ||
		!c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) || !c.ExpiresAt.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("claims = %+v", c)
	}
	if !c.BoundTo(dev) || c.BoundTo(p.epKey.PublicKey().Bytes()) {
		t.Fatal("BoundTo wrong")
	}
	h := DeviceKeyHash(dev)
	if !strings.Contains(decodeClaims(t, tok), `"dk":"`+base64.RawURLEncoding.EncodeToString(h[:])+`"`) {
		t.Fatal("dk claim is not base64url(SHA-256(device key))")
	}
	// A fresh sid when none is asked for.
	tok2 := must(IssueToken(p.tokenKey, TokenRequest{UserID: 1, Audience: p.audience, DeviceKey: dev, TTL: time.Hour}, now))(t)
	c2 := must(VerifyToken(p.tokenKeys, tok2, p.audience, now))(t)
	if c2.SessionID == "" || c2.TokenID == c.TokenID {
		t.Fatalf("ids: %+v", c2)
	}
}

func decodeClaims(tb testing.TB, tok string) string {
	tb.Helper()
	parts := strings.Split(tok, ".")
	return string(must(base64.RawURLEncoding.DecodeString(parts[1]))(tb))
}

func TestIssueTokenRejects(t *testing.T) {
	p := newPKI(t)
	dev := p.device.PublicKey().Bytes()
	for _, ttl := range []time.Duration{0, -time.Second, MaxTokenTTL + time.Second} {
		if _, err := IssueToken(p.tokenKey, TokenRequest{UserID: 1, Audience: p.audience, DeviceKey: dev, TTL: ttl}, time.Now()); !errors.Is(err, ErrTokenTTL) {
			t.Fatalf("ttl %v: %v", ttl, err)
		}
	}
	if _, err := IssueToken(p.tokenKey, TokenRequest{UserID: 1, Audience: p.audience, DeviceKey: dev, TTL: MaxTokenTTL}, time.Now()); err != nil {
		t.Fatalf("24h: %v", err)
	}
	if _, err := IssueToken(p.tokenKey, TokenRequest{UserID: 1, DeviceKey: dev, TTL: time.Hour}, time.Now()); !errors.Is(err, ErrTokenAudience) {
		t.Fatalf("no audience: %v", err)
	}
	if _, err := IssueToken(p.tokenKey, TokenRequest{UserID: 1, Audience: p.audience, DeviceKey: dev[:16], TTL: time.Hour}, time.Now()); !errors.Is(err, ErrStaticKey) {
		t.Fatalf("bad device key: %v", err)
	}
}

// signRaw signs arbitrary claims with key, for tokens IssueToken refuses to
// make.
func signRaw(tb testing.TB, key *SigningKey, method jwt.SigningMethod, kid string, claims jwt.Claims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	var k any = key.Private
	if method == jwt.SigningMethodNone {
		k = jwt.UnsafeAllowNoneSignatureType
	}
	return must(tok.SignedString(k))(tb)
}

func TestVerifyTokenRejects(t *testing.T) {
	p := newPKI(t)
	now := p.clock.Now()
	dev := p.device.PublicKey().Bytes()
	good := p.token(t)
	kid := func(k *SigningKey) string { return strings.SplitN(k.Verify().String(), ":", 2)[0] }
	base := func() jwtClaims {
		return jwtClaims{
			RegisteredClaims: jwt.RegisteredClaims{
				Subject: "42", Audience: jwt.ClaimStrings{p.audience}, ID: "j",
				IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			},
			SID: "s", DK: deviceKeyClaim(dev),
		}
	}
	with := func(f func(*jwtClaims)) jwtClaims { c := base(); f(&c); return c }
	other := must(NewSigningKey())(t)
	sameID := &SigningKey{ID: p.tokenKey.ID, Private: other.Private}

	cases := []struct {
		name  string
		token string
		now   time.Time
		aud   string
		want  error
	}{
		{"valid", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), base()), now, p.audience, nil},
		{"expired", good, now.Add(time.Hour + Leeway + time.Second), p.audience, ErrTokenExpired},
		{"within leeway", good, now.Add(time.Hour + Leeway - time.Second), p.audience, nil},
		{"not yet", good, now.Add(-Leeway - time.Second), p.audience, ErrTokenNotYetValid},
		{"audience", good, now, "myim-endpoints:other", ErrTokenAudience},
		{"empty audience", good, now, "", ErrTokenAudience},
		{"other cluster", signRaw(t, other, jwt.SigningMethodEdDSA, kid(other), base()), now, p.audience, ErrTokenSignature},
		{"same kid other key", signRaw(t, sameID, jwt.SigningMethodEdDSA, kid(p.tokenKey), base()), now, p.audience, ErrTokenSignature},
		{"no kid", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, "", base()), now, p.audience, ErrTokenSignature},
		{"alg none", signRaw(t, p.tokenKey, jwt.SigningMethodNone, kid(p.tokenKey), base()), now, p.audience, ErrTokenSignature},
		{"tampered payload", tamperPayload(t, good), now, p.audience, ErrTokenSignature},
		{"no exp", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.ExpiresAt = nil })), now, p.audience, ErrTokenMalformed},
		{"no nbf", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.NotBefore = nil })), now, p.audience, ErrTokenMalformed},
		{"no iat", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.IssuedAt = nil })), now, p.audience, ErrTokenMalformed},
		{"lifetime", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(25 * time.Hour)) })), now, p.audience, ErrTokenMalformed},
		{"sub", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.Subject = "alice" })), now, p.audience, ErrTokenMalformed},
		{"no dk", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.DK = "" })), now, p.audience, ErrTokenMalformed},
		{"no sid", signRaw(t, p.tokenKey, jwt.SigningMethodEdDSA, kid(p.tokenKey), with(func(c *jwtClaims) { c.SID = "" })), now, p.audience, ErrTokenMalformed},
		{"garbage", "a.b.c", now, p.audience, ErrTokenMalformed},
		{"empty", "", now, p.audience, ErrTokenMalformed},
		{"huge", strings.Repeat("a", maxTokenLen+1), now, p.audience, ErrTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyToken(p.tokenKeys, tc.token, tc.aud, tc.now)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// tamperPayload changes the user id in a token without re-signing it.
func tamperPayload(tb testing.TB, tok string) string {
	tb.Helper()
	parts := strings.Split(tok, ".")
	claims := strings.Replace(decodeClaims(tb, tok), `"sub":"42"`, `"sub":"43"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(claims))
	return strings.Join(parts, ".")
}
