/**
 * @myim/client: MyIM's TypeScript SDK for browsers and Node 20. It speaks
 * the binary protocol of docs/protocol.md inside WebSocket messages: Noise
 * XX login with a pinned root key, Noise IK to an endpoint, AES-256-GCM
 * sealed frames, QoS 0/1 messages with acks and dedupe, offline fetch,
 * presence, friends, groups and files over the HTTP API.
 */
export * from "./errors.js";
export * from "./config.js";
export { login, type LoginResult, type Server, parseServers } from "./login.js";
export { Conn, connect, endpointURL, type Acked, type Message, type PresenceEvent, type UserCard, type ConnOptions, type ConnEvents } from "./conn.js";
export { Session, type SessionEvents } from "./session.js";
export { Dedupe } from "./delivery.js";
export { HTTPClient, type FileInfo } from "./http.js";
export { parseRootKeys, formatRootKey, verifyCert, fingerprint, type RootKey, type Cert } from "./credentials.js";
export { Cmd, Status, AckStatus, FetchKind, GroupOp, Notice, FrameReader, encode, decode, parseJSON, hex, fromHex } from "./frame.js";
export { Keys } from "./keys.js";
export { openWebSocket, type Wire, type WebSocketLike } from "./transport.js";
export { HandshakeState, XX, IK } from "./noise.js";
