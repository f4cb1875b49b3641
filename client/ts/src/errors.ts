/**
 * Typed errors of the SDK. Every error it throws is a MyIMError; `kind`
 * says which family, so callers can switch on it without instanceof chains.
 */

/** The base class of every error the SDK throws. */
export class MyIMError extends Error {
  readonly kind: string;
  constructor(kind: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = "MyIMError";
  }
}

/** Reasons a frame is refused, in the order docs/protocol.md "Errors" checks them. */
export type FrameErrorReason =
  | "length-overflow"
  | "non-minimal"
  | "too-small"
  | "too-large"
  | "unknown-cmd"
  | "bad-qos"
  | "short-body"
  | "truncated"
  | "content-too-large";

/** A malformed frame. The connection that carried it cannot go on. */
export class FrameError extends MyIMError {
  readonly reason: FrameErrorReason;
  constructor(reason: FrameErrorReason, message?: string) {
    super("frame", `frame: ${message ?? reason}`);
    this.reason = reason;
    this.name = "FrameError";
  }
}

/** A Noise handshake, certificate or token check failed. */
export class HandshakeError extends MyIMError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("handshake", `handshake: ${message}`, options);
    this.name = "HandshakeError";
  }
}

/** A sealed frame failed to open, or a key ran out of its frame budget. */
export class CryptoError extends MyIMError {
  constructor(message: string) {
    super("crypto", `crypto: ${message}`);
    this.name = "CryptoError";
  }
}

/** ERROR codes of docs/protocol.md (0x10 ERROR). */
export const ErrorCode = {
  Malformed: 1,
  TooLarge: 2,
  Unauthorized: 3,
  Forbidden: 4,
  Retry: 5,
  NotFound: 6,
  Idle: 7,
  SlowReader: 8,
  Crypto: 9,
  Internal: 10,
  BadRequest: 11,
  Shutdown: 12,
  AuthFailed: 13,
  Conflict: 14,
} as const;

/** An ERROR frame from the server. `ref` is the CID or request id it is about. */
export class ServerError extends MyIMError {
  readonly code: number;
  readonly ref: bigint;
  readonly text: string;
  constructor(code: number, ref: bigint, text: string) {
    super("server", `myim: server error ${code}: ${text}`);
    this.code = code;
    this.ref = ref;
    this.text = text;
    this.name = "ServerError";
  }
  /** Only RETRY asks for the same thing to be sent again. */
  get retryable(): boolean {
    return this.code === ErrorCode.Retry;
  }
}

/** The connection ended; `cause` says why when known. */
export class ClosedError extends MyIMError {
  constructor(message = "connection closed", options?: { cause?: unknown }) {
    super("closed", `client: ${message}`, options);
    this.name = "ClosedError";
  }
}

/** The server asked the session to move to another server (NOTICE code 2). */
export class MovedError extends MyIMError {
  constructor() {
    super("moved", "client: the server asked to move to another server");
    this.name = "MovedError";
  }
}

/** A request or send that got no answer in time. */
export class TimeoutError extends MyIMError {
  constructor(what: string) {
    super("timeout", `client: ${what} timed out`);
    this.name = "TimeoutError";
  }
}

/** A QoS 1 send that did not end in an ACK. `retryable` says whether sending it again may help. */
export class SendError extends MyIMError {
  readonly cid: bigint;
  constructor(cid: bigint, cause: unknown) {
    super("send", `client: message ${cid}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.cid = cid;
    this.name = "SendError";
  }
  get retryable(): boolean {
    const c = this.cause;
    if (c instanceof ServerError) return c.retryable;
    return c instanceof ClosedError || c instanceof TimeoutError || c instanceof MovedError;
  }
}

/** An HTTP API answer outside 2xx: `status` and the API's `error` text. */
export class HTTPError extends MyIMError {
  readonly status: number;
  readonly retryAfter?: number;
  constructor(status: number, message: string, retryAfter?: number) {
    super("http", `http ${status}: ${message}`);
    this.status = status;
    this.retryAfter = retryAfter;
    this.name = "HTTPError";
  }
}
