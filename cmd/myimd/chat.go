package main

import (
	"net"
	"strings"

	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/node"
	"github.com/myim/myim/web/chat"
)

// serveChat adds the /chat page to the public HTTP listener: a chat client
// built from the TypeScript SDK that logs in and holds its session over the
// WebSocket listener, pinning this cluster's root keys. Only a node that
// runs both the login and endpoint roles over WebSocket serves it.
func serveChat(n *node.Node, id *clusterca.Identity) {
	var roots []string
	for _, k := range id.Roots() {
		roots = append(roots, k.String())
	}
	n.HandleHTTP("GET /chat", chat.Handler(chat.Config{
		Roots:     strings.Join(roots, "\n"),
		WebSocket: func() string { return wsPort(n) },
	}))
}

// wsPort returns the port the WebSocket listener is bound to ("" before).
// The HTTP listener, which asks, starts after it.
func wsPort(n *node.Node) string {
	s := n.Server("ws")
	if s == nil || s.Addr() == nil {
		return ""
	}
	_, port, _ := net.SplitHostPort(s.Addr().String())
	return port
}
