package session

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token errors, classified with errors.Is. VerifyToken returns exactly one
// of them (possibly wrapped with detail).
var (
	// ErrTokenMalformed: not a well-formed token of ours: bad encoding,
	// missing or ill-typed claims, or a lifetime over MaxTokenTTL.
	ErrTokenMalformed = errors.New("session: malformed token")
	// ErrTokenSignature: wrong algorithm, unknown key id, or a signature
	// that does not verify (a token of another cluster lands here).
	ErrTokenSignature = errors.New("session: token signature invalid")
	// ErrTokenExpired: now is past exp (plus Leeway).
	ErrTokenExpired = errors.New("session: token expired")
	// ErrTokenNotYetValid: now is before nbf or iat (minus Leeway).
	ErrTokenNotYetValid = errors.New("session: token not yet valid")
	// ErrTokenAudience: the token is for another audience.
	ErrTokenAudience = errors.New("session: token audience mismatch")
	// ErrTokenDeviceKey: the token is bound to another device's key.
	ErrTokenDeviceKey = errors.New("session: token bound to another device key")
	// ErrTokenTTL: IssueToken was asked for a lifetime outside (0, MaxTokenTTL].
	ErrTokenTTL = errors.New("session: token lifetime must be in (0, 24h]")
)

// MaxTokenTTL is the longest access token lifetime: IssueToken refuses
// longer, VerifyToken rejects tokens claiming longer (exp - iat).
const MaxTokenTTL = 24 * time.Hour

// maxTokenLen bounds what VerifyToken parses. Our tokens are about 400
// bytes; the bound keeps hostile input from costing JSON work.
const maxTokenLen = 2048

// tokenAlg is the only algorithm accepted: pinning it rules out "none" and
// key-confusion attacks.
var tokenAlg = jwt.SigningMethodEdDSA

// TokenRequest describes an access token to issue.
type TokenRequest struct {
	UserID    uint64        // becomes "sub", in decimal
	Audience  string        // "aud": the endpoint cluster, e.g. "myim-endpoints:prod"
	DeviceKey []byte        // device's X25519 static public key; "dk" = base64url(SHA-256(DeviceKey))
	TTL       time.Duration // lifetime, at most MaxTokenTTL
	SessionID string        // "sid"; empty means the token id ("jti")
	// Rand is the source of the random token id ("jti"). Nil means
	// crypto/rand.Reader; tests set a fixed reader for reproducible tokens.
	Rand io.Reader
}

// TokenClaims are the checked contents of an access token.
type TokenClaims struct {
	UserID        uint64
	Audience      string
	SessionID     string // "sid": stable across refreshes of one login
	TokenID       string // "jti": unique per token
	DeviceKeyHash [32]byte
	IssuedAt      time.Time
	NotBefore     time.Time
	ExpiresAt     time.Time
	KeyID         uint32 // id of the key that signed it
}

// BoundTo reports, in constant time, whether the token is bound to the
// device static public key pub.
func (c *TokenClaims) BoundTo(pub []byte) bool {
	h := DeviceKeyHash(pub)
	return subtle.ConstantTimeCompare(h[:], c.DeviceKeyHash[:]) == 1
}

// jwtClaims is the JSON shape of our tokens.
type jwtClaims struct {
	jwt.RegisteredClaims
	SID string `json:"sid,omitempty"`
	DK  string `json:"dk,omitempty"`
}

// IssueToken signs an access token with key (the login service's token key,
// not the cluster root), issued at now. Safe for concurrent use.
func IssueToken(key *SigningKey, req TokenRequest, now time.Time) (string, error) {
	if req.TTL <= 0 || req.TTL > MaxTokenTTL {
		return "", ErrTokenTTL
	}
	if req.Audience == "" {
		return "", fmt.Errorf("%w: empty audience", ErrTokenAudience)
	}
	if err := checkX25519Public(req.DeviceKey); err != nil {
		return "", err
	}
	jti, err := randomID(req.Rand)
	if err != nil {
		return "", err
	}
	sid := req.SessionID
	if sid == "" {
		sid = jti
	}
	now = now.Truncate(time.Second)
	claims := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.FormatUint(req.UserID, 10),
			Audience:  jwt.ClaimStrings{req.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(req.TTL)),
			ID:        jti,
		},
		SID: sid,
		DK:  deviceKeyClaim(req.DeviceKey),
	}
	t := jwt.NewWithClaims(tokenAlg, claims)
	t.Header["kid"] = fmt.Sprintf("%08x", key.ID)
	return t.SignedString(key.Private)
}

// VerifyToken checks token offline: EdDSA signature by one of keys (chosen by
// the "kid" header), audience, and validity at now with Leeway. It does not
// check the device binding, which needs the handshake's peer key (see
// TokenClaims.BoundTo; the endpoint handshake does it). Safe for concurrent
// use.
func VerifyToken(keys []VerifyKey, token, audience string, now time.Time) (*TokenClaims, error) {
	if len(token) > maxTokenLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrTokenMalformed, len(token))
	}
	if audience == "" {
		return nil, fmt.Errorf("%w: empty expected audience", ErrTokenAudience)
	}
	var kid uint32
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{tokenAlg.Alg()}),
		jwt.WithAudience(audience),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	var jc jwtClaims
	_, err := p.ParseWithClaims(token, &jc, func(t *jwt.Token) (any, error) {
		s, _ := t.Header["kid"].(string)
		id, err := strconv.ParseUint(s, 16, 32)
		if err != nil || len(s) != 8 {
			return nil, errors.New("bad kid")
		}
		pub, ok := findKey(keys, uint32(id))
		if !ok {
			return nil, errors.New("unknown kid")
		}
		kid = uint32(id)
		return pub, nil
	})
	if err != nil {
		return nil, classifyJWTError(err)
	}
	return claimsFrom(&jc, audience, kid)
}

// classifyJWTError maps jwt's errors onto ours. Signature problems come
// first: jwt checks claims only after the signature, but a malformed token
// may carry both kinds.
func classifyJWTError(err error) error {
	var e error
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		e = ErrTokenMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		e = ErrTokenSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		e = ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		e = ErrTokenNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		e = ErrTokenAudience
	default:
		e = ErrTokenMalformed
	}
	return fmt.Errorf("%w: %v", e, err)
}

// claimsFrom checks what jwt does not: sub, jti, dk and the lifetime.
func claimsFrom(jc *jwtClaims, audience string, kid uint32) (*TokenClaims, error) {
	uid, err := strconv.ParseUint(jc.Subject, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: sub is not a user id", ErrTokenMalformed)
	}
	if jc.IssuedAt == nil || jc.NotBefore == nil || jc.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: missing iat, nbf or exp", ErrTokenMalformed)
	}
	if jc.ID == "" || jc.SID == "" {
		return nil, fmt.Errorf("%w: missing jti or sid", ErrTokenMalformed)
	}
	c := &TokenClaims{
		UserID:    uid,
		Audience:  audience,
		SessionID: jc.SID,
		TokenID:   jc.ID,
		IssuedAt:  jc.IssuedAt.Time,
		NotBefore: jc.NotBefore.Time,
		ExpiresAt: jc.ExpiresAt.Time,
		KeyID:     kid,
	}
	if c.ExpiresAt.Sub(c.IssuedAt) > MaxTokenTTL {
		return nil, fmt.Errorf("%w: lifetime over %v", ErrTokenMalformed, MaxTokenTTL)
	}
	dk, err := base64.RawURLEncoding.DecodeString(jc.DK)
	if err != nil || len(dk) != len(c.DeviceKeyHash) {
		return nil, fmt.Errorf("%w: bad dk claim", ErrTokenMalformed)
	}
	copy(c.DeviceKeyHash[:], dk)
	return c, nil
}

// randomID returns 128 random bits from r (nil means crypto/rand),
// base64url-encoded.
func randomID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
