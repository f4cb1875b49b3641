/**
 * Conn is one authenticated session with an endpoint over Noise IK: it
 * seals what it sends, opens what it receives, acknowledges and dedupes
 * messages, matches answers to requests, and keeps the connection alive.
 */
import { type Config, type Resolved, resolve } from "./config.js";
import { RoleEndpoint, parseAccepted, verifyCert } from "./credentials.js";
import { Dedupe } from "./delivery.js";
import { ClosedError, CryptoError, HandshakeError, MovedError, MyIMError, SendError, ServerError, TimeoutError } from "./errors.js";
import * as F from "./frame.js";
import { Cmd, type Frame } from "./frame.js";
import { Keys } from "./keys.js";
import { type LoginResult, PrologueIK, type Server, parseServers, serverError } from "./login.js";
import { HandshakeState, IK } from "./noise.js";
import type { Wire } from "./transport.js";
import { Emitter } from "./emitter.js";

/** A message received, pushed or fetched. */
export interface Message {
  kind: "p2p" | "group";
  from: bigint;
  /** The recipient (p2p) or the group. */
  to: bigint;
  /** The sender's clock, Unix ms: data to display, not an order. */
  time: number;
  cid: bigint;
  /** The message id (p2p) or the group's sequence number. */
  mid: bigint;
  content: Uint8Array;
  /** The content as UTF-8 text. */
  text: string;
}

/** The ACK that ended a QoS 1 send. */
export interface Acked {
  cid: bigint;
  mid: bigint;
  peer: bigint;
  /** "delivered", "stored" or "duplicate". */
  status: "delivered" | "stored" | "duplicate";
}

/** A friend's presence change (FRIEND_NOTIFY). */
export interface PresenceEvent {
  user: bigint;
  status: number;
  text: string;
  time: number;
}

export interface ConnEvents {
  message: Message;
  presence: PresenceEvent;
  notice: { code: number; json: unknown };
  /** An ERROR that answers nothing pending. */
  error: ServerError;
  close: Error;
}

/** Options of a connection. */
export interface ConnOptions {
  /** Acknowledge messages and ask for offline ones; true by default. */
  autoAck?: boolean;
  autoFetch?: boolean;
  /** Shared across reconnects so that a resent message is shown once. */
  dedupe?: Dedupe;
  /** End the connection with MovedError on a NOTICE move; true by default. */
  followMoves?: boolean;
  /** PING after this long without sending; 45 s by default (the server's idle timeout is 2 min). */
  keepaliveMs?: number;
  /** The first CID; later ones count up. */
  cidBase?: bigint;
}

const STATUS = ["delivered", "stored", "", "duplicate"] as const;

interface Pending {
  resolve: (v: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Returns a fresh CID base: the clock in ns plus randomness, so that devices of one user do not collide. */
export function cidBase(): bigint {
  return BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
}

/** The WebSocket URL of an endpoint from the server list. */
export function endpointURL(base: string, s: Server): string {
  if (s.ws) {
    if (/^wss?:\/\//.test(s.ws)) return s.ws;
    const u = new URL(base);
    const m = /^(.*):(\d+)$/.exec(s.ws);
    const host = m && m[1] !== "" && m[1] !== "0.0.0.0" && m[1] !== "[::]" && m[1] !== "::" ? m[1] : u.hostname;
    return `${u.protocol}//${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${m ? m[2] : u.port}/endpoint`;
  }
  return `${base}/endpoint`;
}

export class Conn extends Emitter<ConnEvents> {
  readonly user: bigint;
  readonly serverTime: bigint;
  private sends = new Map<bigint, Pending>();
  private reqs = new Map<number, Pending>();
  private pongs: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private nextReq = 0;
  private nextCID: bigint;
  private err: Error | null = null;
  private lastSend = Date.now();
  private keepalive: ReturnType<typeof setInterval>;
  private gapFetchAt = 0;
  readonly dedupe: Dedupe;

  private constructor(
    private readonly c: Resolved,
    private readonly wire: Wire,
    private readonly keys: Keys,
    acc: { userId: bigint; serverTime: bigint },
    private readonly o: Required<Omit<ConnOptions, "dedupe" | "cidBase">>,
    dedupe: Dedupe,
    base: bigint,
  ) {
    super();
    this.user = acc.userId;
    this.serverTime = acc.serverTime;
    this.dedupe = dedupe;
    this.nextCID = base;
    this.keepalive = setInterval(() => this.tick(), Math.min(this.o.keepaliveMs, 2000));
    wire.listen(
      (f) => this.onFrame(f),
      (e) => this.ended(e),
    );
  }

  /**
   * Dials an endpoint and runs the IK handshake with token. serverKey is the
   * endpoint's static key from the server list (connect() checks its
   * certificate first). Resolves once the session is announced.
   */
  static async dial(config: Config, url: string, serverKey: Uint8Array, token: string, opts: ConnOptions = {}): Promise<Conn> {
    const c = resolve(config);
    const wire = await c.openWire(url, c.timeoutMs);
    try {
      const hs = new HandshakeState({ pattern: IK, initiator: true, prologue: PrologueIK, static: c.device, remoteStatic: serverKey });
      wire.send(F.encode(Cmd.Handshake, 0, hs.write(F.utf8(token))));
      const f = await wire.recv(c.timeoutMs);
      if (f.cmd === Cmd.Error) throw serverError(f.body);
      if (f.cmd !== Cmd.Handshake || f.qos !== 0) throw new HandshakeError("not a handshake frame");
      const acc = parseAccepted(hs.read(f.body));
      const { c2s, s2c } = hs.split();
      const keys = new Keys(c2s, s2c);
      const o = { autoAck: opts.autoAck ?? true, autoFetch: opts.autoFetch ?? true, followMoves: opts.followMoves ?? true, keepaliveMs: opts.keepaliveMs ?? 45_000 };
      const conn = new Conn(c, wire, keys, acc, o, opts.dedupe ?? new Dedupe(), opts.cidBase ?? cidBase());
      // The first sealed frame proves this side holds the keys: only then
      // does the endpoint announce the session. The PING after it returns
      // once the endpoint handled it.
      wire.send(keys.seal(Cmd.Pong, 0, new Uint8Array(0)));
      await conn.ping();
      if (o.autoFetch) {
        conn.fetch(F.FetchKind.P2P).catch(() => {});
        conn.fetch(F.FetchKind.Group).catch(() => {});
      }
      return conn;
    } catch (e) {
      wire.close(e as Error);
      throw e;
    }
  }

  /** Why the connection ended, or null while it is open. */
  get error(): Error | null {
    return this.err;
  }

  get closed(): boolean {
    return this.err !== null;
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastSend >= this.o.keepaliveMs) this.ping().catch(() => {});
    if (this.gapFetchAt === 0 && this.dedupe.gaps(now - 2000).length > 0) {
      this.gapFetchAt = now;
      this.fetch(F.FetchKind.Group).catch(() => {});
    }
  }

  private ended(e: Error): void {
    if (this.err) return;
    this.err = e;
    clearInterval(this.keepalive);
    this.keys.wipe();
    for (const [cid, p] of this.sends) {
      clearTimeout(p.timer);
      p.reject(new SendError(cid, new ClosedError("connection closed before the ACK", { cause: e })));
    }
    this.sends.clear();
    for (const p of this.reqs.values()) {
      clearTimeout(p.timer);
      p.reject(new ClosedError("connection closed before the answer", { cause: e }));
    }
    this.reqs.clear();
    for (const p of this.pongs.splice(0)) p.reject(new ClosedError("connection closed before the PONG", { cause: e }));
    this.emit("close", e);
  }

  /** Closes the connection (after a BYE when bye is true, which takes the user offline at once). */
  close(bye = false): void {
    if (this.err) return;
    if (bye) {
      try {
        this.send(Cmd.Bye, 0, new Uint8Array(0));
      } catch {
        /* closing anyway */
      }
    }
    this.wire.close(new ClosedError("closed by the client"));
  }

  /** Seals and sends one frame (PING and PONG go in the clear). */
  send(cmd: number, qos: number, body: Uint8Array): void {
    if (this.err) throw new ClosedError("connection closed", { cause: this.err });
    let out = F.sealed(cmd) ? this.keys.seal(cmd, qos, body) : F.encode(cmd, qos, body);
    if (F.sealed(cmd) && this.keys.needRekey()) out = F.concat(out, this.keys.sendRekey());
    this.wire.send(out);
    this.lastSend = Date.now();
  }

  private onFrame(f: Frame): void {
    try {
      this.handle(f);
    } catch (e) {
      this.wire.close(e instanceof Error ? e : new MyIMError("protocol", String(e)));
    }
  }

  private handle(f: Frame): void {
    switch (f.cmd) {
      case Cmd.Pong:
        this.pongs.shift()?.resolve();
        return;
      case Cmd.Ping:
        this.wire.send(F.encode(Cmd.Pong, 0, f.body));
        return;
      case Cmd.Rekey:
        this.keys.recvRekey(f);
        return;
    }
    let body: Uint8Array;
    try {
      body = this.keys.open(f);
    } catch (e) {
      if (f.cmd === Cmd.Error && f.body.length >= F.ErrorLen) throw serverError(f.body); // sent before sealing
      throw e instanceof CryptoError ? e : new CryptoError("cannot open frame");
    }
    F.checkBody(f.cmd, body);
    switch (f.cmd) {
      case Cmd.Msg:
        return this.onMsg(F.parseMsg(body));
      case Cmd.GroupMsg:
        return this.onGroupMsg(F.parseMsg(body));
      case Cmd.Ack:
        return this.onAck(F.parseAck(body));
      case Cmd.Error:
        return this.onError(serverError(body));
      case Cmd.Fetch: {
        const fe = F.parseFetch(body);
        if (fe.flags & F.FetchMore && (this.o.autoFetch || fe.kind === F.FetchKind.Group)) {
          this.fetch(fe.kind, fe.cursor > 0n ? fe.cursor : 1n).catch(() => {});
        } else if (fe.kind === F.FetchKind.Group && this.gapFetchAt !== 0) {
          const { show, acks } = this.dedupe.skipGaps(this.gapFetchAt);
          this.gapFetchAt = 0;
          for (const m of show) this.emitMsg("group", m);
          for (const [g, seq] of acks) this.ackGroup(g, seq);
        }
        return this.answer(fe.req, body);
      }
      case Cmd.Signature:
      case Cmd.FriendInfo:
      case Cmd.FriendsOnline:
      case Cmd.ServerList:
      case Cmd.Profile:
        return this.answer(F.parseLookup(body).req, body);
      case Cmd.Group:
        return this.answer(F.parseGroup(body).req, body);
      case Cmd.FileServer:
        return this.answer(F.parseFileServer(body).req, body);
      case Cmd.FriendNotify: {
        const p = F.parsePresence(body);
        this.emit("presence", { user: p.user, status: p.status, text: p.text, time: Number(p.time) });
        return;
      }
      case Cmd.Notice: {
        const n = F.parseNotice(body);
        let json: unknown = null;
        if (n.json.length > 0) {
          try {
            json = F.parseJSON(n.json);
          } catch {
            json = F.text(n.json);
          }
        }
        this.emit("notice", { code: n.code, json });
        if (n.code === F.Notice.Move && this.o.followMoves) this.wire.close(new MovedError());
        return;
      }
    }
  }

  private emitMsg(kind: "p2p" | "group", m: F.Msg): void {
    this.emit("message", { kind, from: m.from, to: m.to, time: Number(m.time), cid: m.cid, mid: m.mid, content: m.content, text: F.text(m.content) });
  }

  private onMsg(m: F.Msg): void {
    if (this.o.autoAck) this.send(Cmd.Ack, 0, F.ackBody({ cid: 0n, mid: m.mid, peer: m.from, status: F.AckStatus.Received }));
    if (this.dedupe.seenBefore(m.from, m.cid)) return;
    this.emitMsg("p2p", m);
  }

  private onGroupMsg(m: F.Msg): void {
    const { show, ack } = this.dedupe.groupIn(m, Date.now());
    for (const x of show) this.emitMsg("group", x);
    if (ack !== null && this.o.autoAck) this.ackGroup(m.to, ack);
  }

  private ackGroup(group: bigint, seq: bigint): void {
    this.send(Cmd.Ack, 0, F.ackBody({ cid: 0n, mid: seq, peer: group, status: F.AckStatus.GroupRead }));
  }

  private onAck(a: F.Ack): void {
    const p = this.sends.get(a.cid);
    if (!p) return;
    this.sends.delete(a.cid);
    clearTimeout(p.timer);
    p.resolve(F.ackBody(a));
  }

  private onError(e: ServerError): void {
    const s = this.sends.get(e.ref);
    if (s && e.ref !== 0n) {
      this.sends.delete(e.ref);
      clearTimeout(s.timer);
      s.reject(new SendError(e.ref, e));
      return;
    }
    const r = e.ref < 0x1_0000_0000n ? this.reqs.get(Number(e.ref)) : undefined;
    if (r && e.ref !== 0n) {
      this.reqs.delete(Number(e.ref));
      clearTimeout(r.timer);
      r.reject(e);
      return;
    }
    this.emit("error", e);
  }

  private answer(req: number, body: Uint8Array): void {
    const p = this.reqs.get(req);
    if (!p) return;
    this.reqs.delete(req);
    clearTimeout(p.timer);
    p.resolve(body);
  }

  /** Sends a request built around a fresh request id and waits for the answer's body. */
  request(cmd: number, build: (req: number) => Uint8Array): Promise<Uint8Array> {
    this.nextReq = (this.nextReq % 0xffff_fffe) + 1;
    const req = this.nextReq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reqs.delete(req);
        reject(new TimeoutError(`${F.cmdName(cmd)} request`));
      }, this.c.requestTimeoutMs);
      this.reqs.set(req, { resolve, reject, timer });
      try {
        this.send(cmd, 0, build(req));
      } catch (e) {
        this.reqs.delete(req);
        clearTimeout(timer);
        reject(e);
      }
    });
  }

  /** Sends the note's PING and waits for its PONG. */
  ping(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new TimeoutError("ping")), this.c.timeoutMs);
      this.pongs.push({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      try {
        this.send(Cmd.Ping, 1, new Uint8Array(0));
      } catch (e) {
        clearTimeout(timer);
        reject(e);
      }
    });
  }

  /** A fresh client message id. */
  newCID(): bigint {
    return ++this.nextCID;
  }

  /**
   * Sends a MSG (or GROUP_MSG when group is set). QoS 0 resolves at once
   * with null; QoS 1 resolves with the ACK, or rejects with a SendError
   * (retryable or not) on an ERROR, a closed connection or no answer within
   * Config.sendTimeoutMs. Pass cid to resend a message with its original id.
   */
  sendMessage(to: bigint | number, content: Uint8Array | string, opts: { qos?: 0 | 1; group?: boolean; cid?: bigint } = {}): Promise<Acked | null> {
    const qos = opts.qos ?? 1;
    const cid = opts.cid ?? this.newCID();
    const data = typeof content === "string" ? F.utf8(content) : content;
    const body = F.msgBody({ from: this.user, to: BigInt(to), time: BigInt(this.c.now()), cid }, data);
    const cmd = opts.group ? Cmd.GroupMsg : Cmd.Msg;
    if (qos === 0) {
      this.send(cmd, 0, body);
      return Promise.resolve(null);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.sends.delete(cid);
        reject(new SendError(cid, new TimeoutError("waiting for the ACK")));
      }, this.c.sendTimeoutMs);
      this.sends.set(cid, { resolve, reject, timer });
      try {
        this.send(cmd, 1, body);
      } catch (e) {
        this.sends.delete(cid);
        clearTimeout(timer);
        reject(new SendError(cid, e));
      }
    }).then((b) => {
      const a = F.parseAck(b);
      return { cid: a.cid, mid: a.mid, peer: a.peer, status: STATUS[a.status] as Acked["status"] };
    });
  }

  /** Asks for a page of offline messages (they arrive as "message" events first); resolves with the answer. */
  async fetch(kind: number, cursor = 0n, count = 100): Promise<F.Fetch> {
    const b = await this.request(Cmd.Fetch, (req) => F.fetchBody({ req, kind, flags: 0, cursor, count }));
    return F.parseFetch(b);
  }

  private async lookup(cmd: number, target: bigint, json?: unknown): Promise<{ target: bigint; json: unknown }> {
    const js = json === undefined ? new Uint8Array(0) : F.utf8(F.stringifyJSON(json));
    const l = F.parseLookup(await this.request(cmd, (req) => F.lookupBody(req, target, js)));
    return { target: l.target, json: l.json.length > 0 ? F.parseJSON(l.json) : null };
  }

  /** A user's card (SIGNATURE); 0n is oneself. */
  async userCard(user: bigint): Promise<UserCard> {
    return (await this.lookup(Cmd.Signature, user)).json as UserCard;
  }

  /** Finds a user by exact name (SIGNATURE {"name"}); rejects with ServerError code 6 when unknown. */
  async findUser(name: string): Promise<UserCard> {
    return (await this.lookup(Cmd.Signature, 0n, { name })).json as UserCard;
  }

  /** A friend's card with the profile (FRIEND_INFO). */
  async friendInfo(user: bigint): Promise<UserCard> {
    return (await this.lookup(Cmd.FriendInfo, user)).json as UserCard;
  }

  /** The friends that are not offline (FRIENDS_ONLINE). */
  async friendsOnline(): Promise<Array<{ user: number | bigint; status: number; text?: string }>> {
    return ((await this.lookup(Cmd.FriendsOnline, 0n)).json ?? []) as Array<{ user: number; status: number; text?: string }>;
  }

  /** The current server list (SERVER_LIST), sorted as a client tries it. */
  async serverList(): Promise<Server[]> {
    return parseServers(((await this.lookup(Cmd.ServerList, 0n)).json ?? []) as Parameters<typeof parseServers>[0]);
  }

  /** Sets one's own signature and profile (PROFILE). */
  async setProfile(p: { signature?: string; profile?: unknown }): Promise<UserCard> {
    return (await this.lookup(Cmd.Profile, 0n, p)).json as UserCard;
  }

  /** Sets this session's status (PRESENCE): Status.Online, Away, Busy or Invisible, and a text. */
  setPresence(status: number, text = ""): void {
    this.send(Cmd.Presence, 0, F.presenceBody({ user: this.user, time: BigInt(Date.now()), status, text }));
  }

  /** A GROUP operation; resolves with the answer's group id and JSON. */
  async group(op: number, group: bigint, json?: unknown): Promise<{ group: bigint; json: unknown }> {
    const js = json === undefined ? new Uint8Array(0) : F.utf8(F.stringifyJSON(json));
    const g = F.parseGroup(await this.request(Cmd.Group, (req) => F.groupBody(req, op, group, js)));
    const out = { group: g.group, json: g.json.length > 0 ? F.parseJSON(g.json) : null };
    const j = out.json as { join_seq?: number | bigint; user?: number | bigint } | null;
    if ((op === F.GroupOp.Join || op === F.GroupOp.Create) && j) {
      this.dedupe.trackGroup(g.group, BigInt(j.join_seq ?? 0));
    }
    return out;
  }

  /** Creates a group (the caller owns it) and starts tracking its sequence. */
  async createGroup(name: string, open = false): Promise<bigint> {
    return (await this.group(F.GroupOp.Create, 0n, { name, open })).group;
  }

  /** Sends the terminal offline confirmation and closes. */
  bye(): void {
    this.close(true);
  }

}

/** A user's card (docs/protocol.md "User card"). */
export interface UserCard {
  user: number | bigint;
  name: string;
  signature: string;
  status?: number;
  text?: string;
  profile?: unknown;
}

/**
 * Checks an endpoint's certificate from the server list against the pinned
 * roots (role endpoint, certifying the key the list gives), then dials it
 * with the login's token: the way to reach an endpoint.
 */
export async function connect(config: Config, res: LoginResult, s: Server, opts: ConnOptions = {}): Promise<Conn> {
  const c = resolve(config);
  const cert = verifyCert(c.roots, s.cert, RoleEndpoint, c.now());
  if (cert.staticKey.length !== s.key.length || cert.staticKey.some((x, i) => x !== s.key[i])) {
    throw new HandshakeError("certificate: not the key the server list gives");
  }
  return Conn.dial(c, endpointURL(c.url, s), s.key, res.token, opts);
}
