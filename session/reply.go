package session

// LoginReply is the JSON document of the AUTH frame the login service sends,
// sealed, after a successful login. Both the server and the SDK use this
// type, so the two cannot drift apart.
type LoginReply struct {
	UserID    uint64       `json:"user"`
	Token     string       `json:"token"`
	ExpiresAt int64        `json:"expires_at"` // Unix milliseconds
	NewDevice bool         `json:"new_device"`
	Servers   []ServerInfo `json:"servers"`
}

// ServerInfo is one entry of the server list: an endpoint a client may use,
// lower Priority first, then lower Load. Key is the endpoint's static X25519
// public key and Cert its certificate from the cluster root, which a client
// checks (VerifyCert) before its IK handshake. An Addr with an empty or
// wildcard host means "the host you reached the login service at"; so does
// WS's, the endpoint's WebSocket listener (empty when it has none).
type ServerInfo struct {
	ID       uint32 `json:"id"`
	Addr     string `json:"addr"`
	WS       string `json:"ws,omitempty"`
	Priority int    `json:"priority"`
	Load     int    `json:"load"`
	Key      []byte `json:"key"`
	Cert     []byte `json:"cert"`
}
