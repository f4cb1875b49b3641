/**
 * Session keeps a user connected: it logs in, connects to the first server
 * of the list that answers, reconnects with jittered backoff when the
 * connection ends, follows move notices to another server, and resends
 * QoS 1 messages with their original CIDs until they are acknowledged.
 */
import { type Config, type Resolved, resolve } from "./config.js";
import { type Acked, Conn, type ConnEvents, cidBase, connect } from "./conn.js";
import { Dedupe } from "./delivery.js";
import { Emitter } from "./emitter.js";
import { ClosedError, ErrorCode, MovedError, MyIMError, SendError, ServerError } from "./errors.js";
import { type LoginResult, type Server, login } from "./login.js";

export interface SessionEvents extends ConnEvents {
  /** A connection is up (the first, or a new one after a reconnect). */
  connected: Conn;
  /** The current connection ended; the session reconnects unless stopped. */
  disconnected: Error;
  /** The session stopped for good: close() or a wrong password. */
  stopped: Error;
}

const MIN_BACKOFF = 100;
const MAX_BACKOFF = 30_000;
/** Reuse a token that has at least this long to live instead of logging in again. */
const TOKEN_MARGIN = 60_000;

export class Session extends Emitter<SessionEvents> {
  private readonly c: Resolved;
  private current: Conn | null = null;
  private res: LoginResult | null = null;
  private stopped: Error | null = null;
  private waiters: Array<{ resolve: (c: Conn) => void; reject: (e: Error) => void }> = [];
  private nextCID = cidBase();
  private movedFrom = -1;
  private wake: (() => void) | null = null;
  /** Shared by every connection, so that a message resent across reconnects is shown once. */
  readonly dedupe = new Dedupe();
  /** How many times the session connected again after the first. */
  renewals = 0;

  constructor(
    config: Config,
    private readonly name: string,
    private password: string,
  ) {
    super();
    this.c = resolve(config);
  }

  /** Starts the session; resolves with the first connection, rejects on a wrong password. */
  start(): Promise<Conn> {
    const first = this.connected();
    void this.run();
    return first;
  }

  /** The current connection, or null between connections. */
  get conn(): Conn | null {
    return this.current;
  }

  /** The latest login result (token, server list). */
  get login(): LoginResult | null {
    return this.res;
  }

  /** The session's user, once logged in. */
  get user(): bigint {
    return this.res?.user ?? 0n;
  }

  /** The server of the current connection, from the server list (null between connections). */
  get server(): Server | null {
    return this.current && this.res ? (this.res.servers[this.lastServer] ?? null) : null;
  }

  /** The current access token (for the HTTP API). */
  get token(): string | undefined {
    return this.res?.token;
  }

  /** Resolves with a live connection, waiting for the next one if needed. */
  connected(): Promise<Conn> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.current && !this.current.closed) return Promise.resolve(this.current);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops the session and closes its connection (after a BYE when bye is true). */
  close(bye = true): void {
    if (this.stopped) return;
    this.stop(new ClosedError("session closed"));
    this.current?.close(bye);
    this.wake?.();
  }

  private stop(e: Error): void {
    this.stopped = e;
    this.password = "";
    for (const w of this.waiters.splice(0)) w.reject(e);
    this.emit("stopped", e);
  }

  private async run(): Promise<void> {
    let backoff = MIN_BACKOFF;
    while (!this.stopped) {
      let c: Conn;
      try {
        c = await this.dial();
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof ServerError && e.code === ErrorCode.AuthFailed && !this.usableToken()) {
          this.stop(e); // a wrong password: retrying cannot help
          return;
        }
        if (e instanceof ServerError && e.code === ErrorCode.AuthFailed) this.res = null; // a refused token: log in again
        const wait = Math.random() * backoff + 1; // full jitter, so that many clients do not come back at once
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
        await new Promise<void>((r) => {
          const t = setTimeout(r, wait);
          this.wake = () => {
            clearTimeout(t);
            r();
          };
        });
        continue;
      }
      if (this.stopped) {
        c.close(true);
        return;
      }
      backoff = MIN_BACKOFF;
      this.current = c;
      const offs = [
        c.on("message", (v) => this.emit("message", v)),
        c.on("presence", (v) => this.emit("presence", v)),
        c.on("notice", (v) => this.emit("notice", v)),
        c.on("error", (v) => this.emit("error", v)),
      ];
      const ended = new Promise<Error>((r) => c.on("close", r));
      this.emit("connected", c);
      for (const w of this.waiters.splice(0)) w.resolve(c);
      const err = await ended;
      for (const off of offs) off();
      this.current = null;
      if (this.stopped) return;
      this.renewals++;
      if (err instanceof MovedError) this.movedFrom = this.serverIndex(c);
      this.emit("disconnected", err);
    }
  }

  private lastServer = -1;

  private serverIndex(_c: Conn): number {
    return this.lastServer;
  }

  private usableToken(): boolean {
    return this.res !== null && this.res.expiresAt - Date.now() > TOKEN_MARGIN;
  }

  /** Connects with the current token when it has time left, else logs in first. */
  private async dial(): Promise<Conn> {
    if (!this.usableToken()) this.res = await login(this.c, this.name, this.password);
    const res = this.res!;
    const order = res.servers.map((s, i) => i);
    if (this.movedFrom >= 0 && order.length > 1) {
      // Follow the move: the server we left goes last.
      order.splice(order.indexOf(this.movedFrom), 1);
      order.push(this.movedFrom);
    }
    this.movedFrom = -1;
    let last: Error = new MyIMError("config", "client: empty server list");
    for (const i of order) {
      try {
        const conn = await connect(this.c, res, res.servers[i]!, { dedupe: this.dedupe, cidBase: this.nextCID + 1_000_000n });
        this.lastServer = i;
        return conn;
      } catch (e) {
        last = e as Error;
        if (e instanceof ServerError && e.code === ErrorCode.AuthFailed) throw e;
      }
    }
    throw last;
  }

  /** A fresh client message id, for a send whose CID the caller wants to know first (its group echo carries it). */
  newCID(): bigint {
    return ++this.nextCID;
  }

  /**
   * Sends a MSG (or GROUP_MSG with group: true). QoS 1 (the default) is
   * sent again with the same CID on the next connection when the current
   * one ends, after a retry ERROR, or when an attempt has no ACK within
   * Config.sendTimeoutMs, until the ACK or a final refusal; the server
   * shows it once whatever the number of attempts. signal ends the
   * attempts (the last SendError is thrown).
   */
  async send(to: bigint | number, content: Uint8Array | string, opts: { qos?: 0 | 1; group?: boolean; cid?: bigint; signal?: AbortSignal } = {}): Promise<Acked | null> {
    const cid = opts.cid ?? this.newCID();
    let last: Error | null = null;
    for (;;) {
      if (opts.signal?.aborted) throw last ?? new SendError(cid, new ClosedError("aborted"));
      const c = await this.connected();
      try {
        return await c.sendMessage(BigInt(to), content, { qos: opts.qos ?? 1, group: opts.group, cid });
      } catch (e) {
        last = e as Error;
        if (!(e instanceof SendError) || !e.retryable) throw e;
        if (e.cause instanceof ServerError) await new Promise((r) => setTimeout(r, 100)); // the server is busy
      }
    }
  }
}
