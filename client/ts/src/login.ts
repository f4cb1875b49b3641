/**
 * Login over Noise XX (docs/protocol.md "Login: Noise XX"): the service's
 * certificate is checked against the pinned roots before the password
 * leaves, and the answer is a sealed AUTH with the token and server list.
 */
import { type Config, type Resolved, resolve } from "./config.js";
import { encodeLoginRequest, RoleLogin, verifyCert } from "./credentials.js";
import { ErrorCode, HandshakeError, MyIMError, ServerError } from "./errors.js";
import { Cmd, encode, type Frame, parseError, parseJSON } from "./frame.js";
import { Keys } from "./keys.js";
import { HandshakeState, XX } from "./noise.js";
import type { Wire } from "./transport.js";
import { base64Decode } from "./credentials.js";
import { wipe } from "./crypto.js";

export const PrologueXX = Uint8Array.of(0x4d, 0x59, 0x49, 0x4d, 1, 0x58);
export const PrologueIK = Uint8Array.of(0x4d, 0x59, 0x49, 0x4d, 1, 0x4b);

/** One entry of the server list: an endpoint, lower priority first, then lower load. */
export interface Server {
  id: number;
  addr: string;
  priority: number;
  load: number;
  /** The endpoint's X25519 static key. */
  key: Uint8Array;
  /** Its certificate (role endpoint), checked before the IK handshake. */
  cert: Uint8Array;
  /** The endpoint's WebSocket URL or address, when the server names one. */
  ws?: string;
}

/** The login service's answer. */
export interface LoginResult {
  user: bigint;
  token: string;
  expiresAt: number;
  newDevice: boolean;
  servers: Server[];
}

interface RawServer {
  id: number;
  addr: string;
  priority: number;
  load: number;
  key: string;
  cert: string;
  ws?: string;
}

/** Parses a server list (the login reply's or SERVER_LIST's JSON), sorted as a client tries it. */
export function parseServers(list: RawServer[]): Server[] {
  return list
    .map((s) => ({ id: s.id, addr: s.addr, priority: s.priority, load: s.load, key: base64Decode(s.key), cert: base64Decode(s.cert), ws: s.ws }))
    .sort((a, b) => a.priority - b.priority || a.load - b.load);
}

export function serverError(body: Uint8Array): ServerError {
  if (body.length < 10) return new ServerError(ErrorCode.Malformed, 0n, "malformed error frame");
  const e = parseError(body);
  return new ServerError(e.code, e.ref, e.text);
}

async function recvHandshake(w: Wire, timeoutMs: number): Promise<Frame> {
  const f = await w.recv(timeoutMs);
  if (f.cmd === Cmd.Error) throw serverError(f.body); // refused before keys exist: plaintext
  if (f.cmd !== Cmd.Handshake || f.qos !== 0) throw new HandshakeError("not a handshake frame");
  return f;
}

async function loginOnce(c: Resolved, name: string, password: string): Promise<LoginResult> {
  const w = await c.openWire(`${c.url}/login`, c.timeoutMs);
  try {
    const hs = new HandshakeState({ pattern: XX, initiator: true, prologue: PrologueXX, static: c.device });
    w.send(encode(Cmd.Handshake, 0, hs.write()));
    const m2 = await recvHandshake(w, c.timeoutMs);
    const cert = verifyCert(c.roots, hs.read(m2.body), RoleLogin, c.now());
    const rs = hs.remoteStatic!;
    if (cert.staticKey.some((x, i) => x !== rs[i])) throw new HandshakeError("certificate: not the key the service proved");
    const req = encodeLoginRequest({ name, password, fingerprint: c.fingerprint, deviceName: c.deviceName });
    w.send(encode(Cmd.Handshake, 0, hs.write(req)));
    wipe(req);
    const { c2s, s2c } = hs.split();
    const keys = new Keys(c2s, s2c);
    const f = await w.recv(c.timeoutMs);
    let body: Uint8Array;
    try {
      body = keys.open(f);
    } catch (e) {
      if (f.cmd === Cmd.Error) throw serverError(f.body); // the service could not open message 3
      throw e;
    } finally {
      keys.wipe();
    }
    if (f.cmd === Cmd.Error) throw serverError(body);
    if (f.cmd !== Cmd.Auth) throw new MyIMError("protocol", "client: unexpected frame from the login service");
    const r = parseJSON<{ user: number | bigint; token: string; expires_at: number; new_device: boolean; servers: RawServer[] }>(body);
    return { user: BigInt(r.user), token: r.token, expiresAt: r.expires_at, newDevice: r.new_device, servers: parseServers(r.servers ?? []) };
  } finally {
    w.close();
  }
}

/**
 * Logs in. A RETRY answer carrying a hint (ERROR Ref, in ms) is tried again
 * after the hint plus up to half of it at random, within Config.loginRetryMs.
 * A wrong name or password is a ServerError with code 13.
 */
export async function login(config: Config, name: string, password: string): Promise<LoginResult> {
  const c: Resolved = resolve(config);
  const until = Date.now() + c.loginRetryMs;
  for (;;) {
    try {
      return await loginOnce(c, name, password);
    } catch (e) {
      if (!(e instanceof ServerError) || e.code !== ErrorCode.Retry || e.ref === 0n || c.loginRetryMs < 0) throw e;
      let wait = Math.min(Number(e.ref), 3_600_000);
      wait += Math.random() * (wait / 2);
      if (Date.now() + wait > until) throw e;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
