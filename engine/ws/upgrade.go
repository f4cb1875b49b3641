package ws

import (
	"bytes"
	"encoding/base64"
	"errors"

	"github.com/myim/myim/internal/wswire"
)

// Upgrade errors, each answered with an HTTP status before the close.
var (
	ErrRequestTooLarge = errors.New("ws: upgrade request over the maximum size") // 431
	ErrBadRequest      = errors.New("ws: malformed upgrade request")             // 400
	ErrMethod          = errors.New("ws: upgrade request not a GET")             // 405
	ErrNotUpgrade      = errors.New("ws: request is not a WebSocket upgrade")    // 400
	ErrVersion         = errors.New("ws: unsupported WebSocket version")         // 426
	ErrKey             = errors.New("ws: bad Sec-WebSocket-Key")                 // 400
	ErrPath            = errors.New("ws: no such path")                          // 404
	ErrOrigin          = errors.New("ws: origin not allowed")                    // 403
)

// Request is a parsed upgrade request. Its fields alias the buffer it was
// parsed from.
type Request struct {
	Path     []byte // request target without the query
	Host     []byte
	Origin   []byte // nil when absent (not a browser)
	Key      []byte
	Protocol []byte // Sec-WebSocket-Protocol as sent, nil when absent
	Size     int    // bytes of the request, through the blank line
}

// headerEnd returns the size of the request head at the start of b
// (through "\r\n\r\n"), or 0 when it is not complete.
func headerEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return 0
}

// ParseRequest parses a complete upgrade request head (as found by a
// "\r\n\r\n") without copying it, and checks what RFC 6455 section 4.2.1
// requires of it: GET, HTTP/1.1, Upgrade: websocket, Connection: Upgrade,
// a 16-byte base64 key and version 13.
func ParseRequest(head []byte) (Request, error) {
	var r Request
	r.Size = len(head)
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return r, ErrBadRequest
	}
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || len(target) == 0 {
		return r, ErrBadRequest
	}
	if string(method) != "GET" {
		return r, ErrMethod
	}
	if string(proto) != "HTTP/1.1" {
		return r, ErrBadRequest
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	r.Path = target
	var upgrade, connection bool
	var version []byte
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(l) == 0 {
			break
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || name[len(name)-1] == ' ' || name[len(name)-1] == '\t' {
			return r, ErrBadRequest
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			r.Host = value
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = hasToken(value, "websocket")
		case bytes.EqualFold(name, []byte("Connection")):
			connection = hasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Key")):
			r.Key = value
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Version")):
			version = value
		case bytes.EqualFold(name, []byte("Origin")):
			r.Origin = value
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			r.Protocol = value
		}
	}
	switch {
	case len(r.Host) == 0 || !upgrade || !connection:
		return r, ErrNotUpgrade
	case string(version) != "13":
		return r, ErrVersion
	case !validKey(r.Key):
		return r, ErrKey
	}
	return r, nil
}

// hasToken reports whether the comma-separated list v holds tok, without
// regard to case.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}

// validKey reports whether k is the base64 of 16 bytes.
func validKey(k []byte) bool {
	if len(k) != 24 {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], k)
	return err == nil && n == 16
}

// Subprotocol is the WebSocket subprotocol the server selects when a
// client offers it; a client may also offer none.
const Subprotocol = "myim"

// AppendResponse appends the 101 answer to r.
func AppendResponse(dst []byte, r *Request) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = wswire.AppendAccept(dst, r.Key)
	if hasToken(r.Protocol, Subprotocol) {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "+Subprotocol...)
	}
	return append(dst, "\r\n\r\n"...)
}

// AppendError appends an HTTP error answer with status code and text.
func AppendError(dst []byte, code int, text string) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = appendInt(dst, code)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	if code == 426 {
		dst = append(dst, "\r\nSec-WebSocket-Version: 13"...)
	}
	dst = append(dst, "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"...)
	return dst
}

func appendInt(dst []byte, v int) []byte {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// statusFor returns the HTTP status and text that answer an upgrade error.
func statusFor(err error) (int, string) {
	switch {
	case errors.Is(err, ErrRequestTooLarge):
		return 431, "Request Header Fields Too Large"
	case errors.Is(err, ErrMethod):
		return 405, "Method Not Allowed"
	case errors.Is(err, ErrVersion):
		return 426, "Upgrade Required"
	case errors.Is(err, ErrPath):
		return 404, "Not Found"
	case errors.Is(err, ErrOrigin):
		return 403, "Forbidden"
	}
	return 400, "Bad Request"
}
