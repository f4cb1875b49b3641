package storage

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// File metadata: what the private file server keeps about uploads in
// progress, finished files, their shares and each user's quota usage. The
// bytes themselves live in a BlobStore (blob.go), addressed by SHA-256; the
// Store counts how many files reference each content, so that the blob is
// removed only with its last file.
//
// Quota: a user's usage is the sum of the sizes of the files they own plus
// the sizes announced by their open uploads, reserved when the upload is
// created (so that many uploads at once cannot overrun it) and released when
// the upload is deleted. Committing an upload turns its reservation into the
// file's share of the usage. A file counts in full for its owner even when
// the same content is stored once for several files.

// ErrQuota: the user's quota cannot hold the new upload.
var ErrQuota = errors.New("storage: quota exceeded")

// QoSFileFrame is set in Message.QoS for a stored FILE frame (a file offer
// that waits for its offline receiver): Content then holds the FILE body
// after its message header (op, transfer id, offset, data). The low bit is
// still the frame's QoS. Both backends store QoS as given.
const QoSFileFrame uint8 = 0x80

// MaxFileName bounds File.Name and Upload.Name, in bytes.
const MaxFileName = 255

// Upload is a file being uploaded: the size and SHA-256 the client
// announced, which the finished content must match.
type Upload struct {
	ID      uint64
	Owner   uint64
	Name    string
	Size    int64
	SHA256  [32]byte
	Created int64
}

// File is a finished file of the private file server.
type File struct {
	ID      uint64
	Owner   uint64
	Name    string
	Size    int64
	SHA256  [32]byte
	Created int64
}

// Share lets a user, or every member of a group, read a file: exactly one of
// User and Group is set.
type Share struct {
	File  uint64
	User  uint64
	Group uint64
}

// CheckFileName reports why name cannot name a file, or nil. A file name is
// 1 to MaxFileName bytes of UTF-8 with no control character (NUL, the C0 and
// C1 ranges, DEL), no path separator ('/' or '\\') and is not "." or "..":
// a name is shown and saved by clients, and must never lead one outside the
// folder it saves to. The error matches ErrInvalid.
func CheckFileName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty file name", ErrInvalid)
	case len(name) > MaxFileName:
		return fmt.Errorf("%w: file name longer than %d bytes", ErrInvalid, MaxFileName)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: file name is not valid UTF-8", ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("%w: file name %q is a path, not a name", ErrInvalid, name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%w: file name contains a path separator", ErrInvalid)
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("%w: file name contains a control character", ErrInvalid)
	}
	return nil
}
