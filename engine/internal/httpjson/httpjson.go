// Package httpjson is the JSON in and out of the server's HTTP handlers
// (the API, admin, the file routes): one encoding, one error shape,
// {"error": "..."}, and one bound on request bodies.
package httpjson

import (
	"io"
	"net/http"
	"strconv"

	"github.com/bytedance/sonic"
)

// MaxBody bounds a JSON request body.
const MaxBody = 64 << 10

// Write answers with status code and v as JSON.
func Write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := sonic.Marshal(v)
	_, _ = w.Write(b)
}

// Error answers with status code and {"error": msg}.
func Error(w http.ResponseWriter, code int, msg string) {
	Write(w, code, map[string]string{"error": msg})
}

// Read decodes the request's JSON body (at most MaxBody bytes) into v. On
// failure it answers 400 and returns false.
func Read(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	if err != nil || sonic.Unmarshal(b, v) != nil {
		Error(w, http.StatusBadRequest, "body must be a JSON object")
		return false
	}
	return true
}

// PathID parses the request's {id} path value, a positive integer. On
// failure it answers 400 and returns false.
func PathID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		Error(w, http.StatusBadRequest, "bad id")
		return 0, false
	}
	return id, true
}
