// Package im is the contract between the server's roles: the endpoint,
// which holds client connections, and the center, which routes, stores and
// receipts their messages, code against Center and Endpoint, whether they
// share a process or talk over a link. It also holds the names both sides
// share: node roles, session references and handshake failure counts.
package im
