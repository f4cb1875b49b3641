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
		WebSocket: func() string { return strings.Join(boundPorts(n, "ws"), "") },
	}))
}

// boundPorts returns the port the node's listener name is bound to, once
// it is (nil before, or when the node has no such listener).
func boundPorts(n *node.Node, name string) []string {
	if n == nil {
		return nil
	}
	a := n.Addrs()[name]
	if a == nil {
		return nil
	}
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil
	}
	return []string{port}
}
