package center

import (
	"bytes"
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// Setting one's own signature and profile: the PROFILE frame and
// PUT /v1/me take the same JSON and give the same answer (UserJSON). Friends
// see the change on their next SIGNATURE or FRIEND_INFO lookup, which reads
// the store; nothing is pushed to them.

// Limits of PROFILE and PUT /v1/me.
const (
	// MaxSignature bounds the signature, in bytes (the store's short-text
	// column).
	MaxSignature = storage.MaxShortText
	// MaxProfile bounds the profile, a JSON object, in bytes: it travels in
	// every FRIEND_INFO answer, so it stays small.
	MaxProfile = 4096
)

// ProfileJSON is the body of PROFILE and PUT /v1/me. A field left out keeps
// its value; "profile": null clears the profile.
type ProfileJSON struct {
	Signature *string  `json:"signature,omitempty"`
	Profile   rawField `json:"profile,omitempty"`
}

// rawField keeps a JSON value as it came, and tells a null apart from
// a missing field (set is false when the field was absent).
type rawField struct {
	raw []byte
	set bool
}

func (v *rawField) UnmarshalJSON(b []byte) error {
	v.raw, v.set = append([]byte(nil), b...), true
	return nil
}

// ParseProfile checks a PROFILE or PUT /v1/me body against the limits.
// The error matches storage.ErrInvalid and says what is wrong.
func ParseProfile(js []byte) (ProfileJSON, error) {
	var in ProfileJSON
	if err := sonic.Unmarshal(js, &in); err != nil {
		return in, fmt.Errorf("%w: body must be a JSON object {signature, profile}", storage.ErrInvalid)
	}
	if in.Signature != nil {
		if s := *in.Signature; len(s) > MaxSignature || !utf8.ValidString(s) {
			return in, fmt.Errorf("%w: signature must be UTF-8, at most %d bytes", storage.ErrInvalid, MaxSignature)
		}
	}
	if in.Profile.set {
		raw := bytes.TrimSpace(in.Profile.raw)
		switch {
		case len(raw) > MaxProfile:
			return in, fmt.Errorf("%w: profile longer than %d bytes", storage.ErrInvalid, MaxProfile)
		case bytes.Equal(raw, []byte("null")):
			in.Profile.raw = nil
		case len(raw) == 0 || raw[0] != '{' || !sonic.Valid(raw):
			return in, fmt.Errorf("%w: profile must be a JSON object", storage.ErrInvalid)
		default:
			in.Profile.raw = raw
		}
	}
	return in, nil
}

// UpdateProfile applies in to user's record and returns the user as
// SIGNATURE answers it for oneself. It blocks on the store: not for an
// event loop.
func (c *LocalCenter) UpdateProfile(ctx context.Context, user uint64, in ProfileJSON) (UserJSON, error) {
	u, err := c.cfg.Store.UserByID(ctx, user)
	if err != nil {
		return UserJSON{}, err
	}
	if in.Signature != nil {
		u.Signature = *in.Signature
	}
	if in.Profile.set {
		u.Profile = in.Profile.raw
	}
	if err := c.cfg.Store.UpdateProfile(ctx, user, u.Signature, u.Profile); err != nil {
		return UserJSON{}, err
	}
	st, text := c.presenceOf(ctx, user)
	j := UserJSON{User: u.ID, Name: u.Name, Signature: u.Signature, Status: &st, Text: text}
	if len(u.Profile) > 0 {
		var p any
		if sonic.Unmarshal(u.Profile, &p) == nil {
			j.Profile = p
		}
	}
	return j, nil
}

// profileFrame answers a PROFILE request. Runs on a center worker.
func (c *LocalCenter) profileFrame(user uint64, s im.SessionRef, req uint32, target uint64, js []byte) {
	if target != 0 && target != user {
		c.errorTo(s, frame.ErrCodeForbidden, uint64(req), "a profile can only be set by its user")
		return
	}
	in, err := ParseProfile(js)
	if err != nil {
		c.refuseErr(s, uint64(req), err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := c.UpdateProfile(ctx, user, in)
	if err != nil {
		c.refuseErr(s, uint64(req), err)
		return
	}
	out, _ := sonic.Marshal(j)
	b, _ := frame.AppendLookup(nil, frame.CmdProfile, req, user, out)
	c.sendRef(s, b)
}
