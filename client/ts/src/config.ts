import { parseRootKeys, type RootKey } from "./credentials.js";
import type { WebSocketLike, Wire } from "./transport.js";
import { randomBytes } from "./crypto.js";
import { openWebSocket } from "./transport.js";

/** What a device needs to talk to a MyIM cluster. Zero values are documented per field. */
export interface Config {
  /**
   * The WebSocket base URL of the cluster, e.g. "ws://127.0.0.1:5290" or
   * "wss://chat.example.com:5290": login goes to `${url}/login`, and an
   * endpoint whose server list entry names no WebSocket address to
   * `${url}/endpoint`.
   */
  url: string;
  /** The pinned cluster root keys: root.pub's text or parsed keys. */
  roots: RootKey[] | string;
  /** The device's X25519 private key (32 bytes; generateDeviceKey makes one). */
  device: Uint8Array;
  /** A risk signal sent at login (fingerprint()); empty by default. */
  fingerprint?: string;
  /** A name for the device, shown to the user; empty by default. */
  deviceName?: string;
  /** The WebSocket constructor; globalThis.WebSocket by default. */
  WebSocket?: WebSocketLike;
  /** Bounds connecting and each handshake; 10 s by default. */
  timeoutMs?: number;
  /** How long a QoS 1 send waits for its ACK before it is sent again; 30 s by default. */
  sendTimeoutMs?: number;
  /** How long a request (lookup, fetch, group) waits for its answer; 10 s by default. */
  requestTimeoutMs?: number;
  /** How long login keeps retrying after RETRY answers with a hint; 60 s by default, negative never. */
  loginRetryMs?: number;
  /** The device's clock, stamping messages' Time; Date.now by default. */
  now?: () => number;
  /**
   * Opens a connection to a login or endpoint URL; a WebSocket by default.
   * Another transport carrying the same frames (raw TCP in a Node program)
   * plugs in here.
   */
  openWire?: (url: string, timeoutMs: number) => Promise<Wire>;
}

/** Config with its defaults filled in: the one place defaults live. */
export interface Resolved {
  url: string;
  roots: RootKey[];
  device: Uint8Array;
  fingerprint: string;
  deviceName: string;
  WebSocket?: WebSocketLike;
  timeoutMs: number;
  sendTimeoutMs: number;
  requestTimeoutMs: number;
  loginRetryMs: number;
  now: () => number;
  openWire: (url: string, timeoutMs: number) => Promise<Wire>;
}

export function resolve(c: Config): Resolved {
  return {
    url: c.url.replace(/\/+$/, ""),
    roots: typeof c.roots === "string" ? parseRootKeys(c.roots) : c.roots,
    device: c.device,
    fingerprint: c.fingerprint ?? "",
    deviceName: c.deviceName ?? "",
    WebSocket: c.WebSocket,
    timeoutMs: c.timeoutMs ?? 10_000,
    sendTimeoutMs: c.sendTimeoutMs ?? 30_000,
    requestTimeoutMs: c.requestTimeoutMs ?? 10_000,
    loginRetryMs: c.loginRetryMs ?? 60_000,
    now: c.now ?? Date.now,
    openWire: c.openWire ?? ((url, t) => openWebSocket(url, t, c.WebSocket)),
  };
}

/** A new random device key. Keep it: tokens are bound to it. */
export function generateDeviceKey(): Uint8Array {
  return randomBytes(32);
}
