/**
 * What the handshakes carry: the pinned root key (root.pub), node
 * certificates, the LoginRequest, the Accepted record, and the device
 * fingerprint (docs/protocol.md "Handshakes").
 */
import { ed25519ctxVerify, hmacSHA256 } from "./crypto.js";
import { concat, hex, text, utf8 } from "./frame.js";
import { HandshakeError } from "./errors.js";

/** A pinned cluster root: its key id and Ed25519 public key. */
export interface RootKey {
  keyId: number;
  publicKey: Uint8Array;
}

export function base64urlDecode(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new HandshakeError("bad base64url");
  return base64Decode(s.replace(/-/g, "+").replace(/_/g, "/"));
}

export function base64urlEncode(b: Uint8Array): string {
  return base64Encode(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export function base64Encode(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]!;
    s += i + 1 < b.length ? B64[(n >> 6) & 63]! : "=";
    s += i + 2 < b.length ? B64[n & 63]! : "=";
  }
  return s;
}

export function base64Decode(s: string): Uint8Array {
  const t = s.replace(/=+$/, "");
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const c of t) {
    const v = B64.indexOf(c);
    if (v < 0) throw new HandshakeError("bad base64");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/**
 * Parses root.pub: "<8 hex digits key id>:<43 characters base64url key>"
 * (surrounding white space trimmed). Several keys may be given one a line.
 */
export function parseRootKeys(s: string): RootKey[] {
  const out: RootKey[] = [];
  for (const line of s.split(/\r?\n/)) {
    const t = line.trim();
    if (t === "") continue;
    const m = /^([0-9a-fA-F]{8}):([A-Za-z0-9_-]{43})$/.exec(t);
    if (!m) throw new HandshakeError(`bad root key ${JSON.stringify(t)}`);
    const pub = base64urlDecode(m[2]!);
    if (pub.length !== 32) throw new HandshakeError("bad root key length");
    out.push({ keyId: parseInt(m[1]!, 16), publicKey: pub });
  }
  if (out.length === 0) throw new HandshakeError("no root key");
  return out;
}

/** Formats a root key as root.pub writes it. */
export function formatRootKey(k: RootKey): string {
  return `${k.keyId.toString(16).padStart(8, "0")}:${base64urlEncode(k.publicKey)}`;
}

export const RoleLogin = 1;
export const RoleEndpoint = 2;
const CERT_LEN = 122;
const CERT_CONTEXT = utf8("MYIM node certificate v1");
const LEEWAY_S = 60;

/** A node certificate (122 bytes). */
export interface Cert {
  version: number;
  role: number;
  keyId: number;
  nodeId: number;
  staticKey: Uint8Array;
  notBefore: number;
  notAfter: number;
}

/**
 * Verifies a node certificate against the pinned roots for a role at time
 * now (ms): exact size, version 1, a pinned key id, the Ed25519ctx
 * signature, validity with 60 s of leeway.
 */
export function verifyCert(roots: RootKey[], raw: Uint8Array, role: number, now = Date.now()): Cert {
  if (raw.length !== CERT_LEN) throw new HandshakeError("certificate: bad size");
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const c: Cert = {
    version: raw[0]!,
    role: raw[1]!,
    keyId: v.getUint32(2),
    nodeId: v.getUint32(6),
    staticKey: raw.slice(10, 42),
    notBefore: Number(v.getBigInt64(42)),
    notAfter: Number(v.getBigInt64(50)),
  };
  if (c.version !== 1) throw new HandshakeError("certificate: unknown version");
  const root = roots.find((r) => r.keyId === c.keyId);
  if (!root) throw new HandshakeError("certificate: unknown root");
  if (!ed25519ctxVerify(root.publicKey, raw.subarray(0, 58), raw.subarray(58), CERT_CONTEXT)) {
    throw new HandshakeError("certificate: bad signature");
  }
  const t = Math.floor(now / 1000);
  if (t < c.notBefore - LEEWAY_S || t > c.notAfter + LEEWAY_S) throw new HandshakeError("certificate: expired or not yet valid");
  if (c.role !== role) throw new HandshakeError("certificate: wrong role");
  return c;
}

/** The LoginRequest of XX message 3. */
export interface LoginRequest {
  name: string;
  password: string;
  fingerprint?: string;
  deviceName?: string;
}

function field(b: Uint8Array, max: number, what: string): Uint8Array {
  if (b.length > max) throw new HandshakeError(`${what} too long`);
  const out = new Uint8Array(2 + b.length);
  new DataView(out.buffer).setUint16(0, b.length);
  out.set(b, 2);
  return out;
}

export function encodeLoginRequest(r: LoginRequest): Uint8Array {
  const name = utf8(r.name);
  if (name.length === 0) throw new HandshakeError("empty name");
  return concat(
    Uint8Array.of(1),
    field(name, 128, "name"),
    field(utf8(r.password), 1024, "password"),
    field(utf8(r.fingerprint ?? ""), 128, "fingerprint"),
    field(utf8(r.deviceName ?? ""), 128, "device name"),
  );
}

/** The Accepted record of IK message 2. */
export interface Accepted {
  userId: bigint;
  serverTime: bigint;
}

export function parseAccepted(b: Uint8Array): Accepted {
  if (b.length !== 17 || b[0] !== 1) throw new HandshakeError("bad Accepted record");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { userId: v.getBigUint64(1), serverTime: v.getBigInt64(9) };
}

export function encodeAccepted(a: Accepted): Uint8Array {
  const b = new Uint8Array(17);
  b[0] = 1;
  const v = new DataView(b.buffer);
  v.setBigUint64(1, a.userId);
  v.setBigInt64(9, a.serverTime);
  return b;
}

/** The risk signal sent at login: hex(HMAC-SHA256(key = appSalt, machineId)). */
export function fingerprint(machineId: string, appSalt: string): string {
  return hex(hmacSHA256(utf8(appSalt), utf8(machineId)));
}

/** The claims of an access token, read without verifying (the endpoint verifies). */
export function tokenClaims(token: string): Record<string, unknown> {
  const parts = token.split(".");
  if (parts.length !== 3) throw new HandshakeError("token malformed");
  return JSON.parse(text(base64urlDecode(parts[1]!))) as Record<string, unknown>;
}
