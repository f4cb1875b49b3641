// Package chat serves the /chat page: a small chat client (register or log
// in, friends with presence, one-to-one and group chat) built from the
// TypeScript SDK in client/ts. The page is one HTML file with its script
// inlined, built by `npm run chat` in client/ts and committed, so that the
// server builds without Node; client/ts's tests check that the committed
// file is the build of its sources.
package chat

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"net/http"
)

//go:embed chat.html
var page []byte

// Config is what the page needs to know about the server that serves it.
type Config struct {
	// Roots is the text of root.pub: the cluster root keys the page pins,
	// one "<key id>:<public key>" a line. The page trusts the server that
	// serves it for these, so serve it over HTTPS outside loopback.
	Roots string
	// WebSocket returns the WebSocket listener: a port ("5290", on the
	// host the page was loaded from) or a whole ws:// or wss:// URL. It is
	// asked on every request, so that a listener bound to port 0 is known.
	WebSocket func() string
}

// Handler returns the page with cfg written into it. Safe for concurrent
// use.
func Handler(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js, _ := json.Marshal(struct {
			Roots string `json:"roots"`
			WS    string `json:"ws"`
		}{cfg.Roots, cfg.WebSocket()})
		body := bytes.Replace(page, []byte("__MYIM_CONFIG__"), js, 1)
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(body)
	})
}
