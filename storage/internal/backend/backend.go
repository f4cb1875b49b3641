// Package backend holds what every storage backend shares: the argument
// checks that make both backends accept and refuse the same values, the
// fetch limit clamp and the mapping of context errors. Only the backends
// under storage/ import it.
package backend

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/myim/myim/storage"
)

// ClampLimit applies DefaultFetchLimit and MaxFetchLimit.
func ClampLimit(limit int) int {
	if limit <= 0 {
		return storage.DefaultFetchLimit
	}
	return min(limit, storage.MaxFetchLimit)
}

// CheckText reports an ErrInvalid error when s is longer than max bytes
// or not valid UTF-8.
func CheckText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", storage.ErrInvalid, what, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", storage.ErrInvalid, what)
	}
	return nil
}

// CheckName is CheckText for a required name of at most MaxNameLen bytes.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", storage.ErrInvalid, what)
	}
	return CheckText(what, s, storage.MaxNameLen)
}

// CheckUser checks a user to be created against the documented limits.
func CheckUser(u *storage.User) error {
	if err := CheckName("user name", u.Name); err != nil {
		return err
	}
	if err := CheckText("password hash", u.PassHash, storage.MaxShortText); err != nil {
		return err
	}
	return CheckProfile(u.Signature, u.Profile)
}

// CheckProfile checks a signature and profile against the documented limits.
func CheckProfile(signature string, profile []byte) error {
	if err := CheckText("signature", signature, storage.MaxShortText); err != nil {
		return err
	}
	if len(profile) > storage.MaxProfileLen {
		return fmt.Errorf("%w: profile longer than %d bytes", storage.ErrInvalid, storage.MaxProfileLen)
	}
	return nil
}

// CheckDevice checks a device to be touched against the documented limits.
func CheckDevice(d *storage.Device) error {
	if d.User == 0 {
		return fmt.Errorf("%w: device without user", storage.ErrInvalid)
	}
	if err := CheckText("fingerprint", d.Fingerprint, storage.MaxShortText); err != nil {
		return err
	}
	return CheckText("device address", d.Addr, storage.MaxShortText)
}

// CheckMessages checks offline messages to be stored: To and MID set,
// content within MaxContentLen.
func CheckMessages(msgs []storage.Message) error {
	for i := range msgs {
		m := &msgs[i]
		if m.To == 0 || m.MID == 0 {
			return fmt.Errorf("%w: offline message needs To and MID", storage.ErrInvalid)
		}
		if len(m.Content) > storage.MaxContentLen {
			return fmt.Errorf("%w: content longer than %d bytes", storage.ErrInvalid, storage.MaxContentLen)
		}
	}
	return nil
}

// CheckGroupMsg checks a group message to be appended.
func CheckGroupMsg(m *storage.GroupMessage) error {
	if m.ExpiresAt < 0 {
		return fmt.Errorf("%w: negative ExpiresAt", storage.ErrInvalid)
	}
	if len(m.Content) > storage.MaxContentLen {
		return fmt.Errorf("%w: content longer than %d bytes", storage.ErrInvalid, storage.MaxContentLen)
	}
	return nil
}

// CheckFriends checks that a and b are two distinct users.
func CheckFriends(a, b uint64) error {
	if a == 0 || b == 0 || a == b {
		return fmt.Errorf("%w: friendship needs two distinct users", storage.ErrInvalid)
	}
	return nil
}

// CtxErr reports a context error: a passed deadline also matches
// ErrUnavailable (the store did not answer in time), a cancellation stays
// just context.Canceled (the caller gave up; nothing is wrong with the store).
func CtxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// NowMilli returns the current time in Unix milliseconds.
func NowMilli() int64 { return time.Now().UnixMilli() }

// CheckUpload checks an upload to be created: an owner, a size and a
// valid file name.
func CheckUpload(u *storage.Upload) error {
	if u.Owner == 0 {
		return fmt.Errorf("%w: upload without owner", storage.ErrInvalid)
	}
	if u.Size < 0 {
		return fmt.Errorf("%w: negative file size", storage.ErrInvalid)
	}
	return storage.CheckFileName(u.Name)
}

// CheckShare checks that a share names a file and exactly one user or group.
func CheckShare(s *storage.Share) error {
	if s.File == 0 || (s.User == 0) == (s.Group == 0) {
		return fmt.Errorf("%w: a share names a file and one user or one group", storage.ErrInvalid)
	}
	return nil
}
