/**
 * The frame layer of docs/protocol.md: Length (LEB128, self-inclusive,
 * minimal) + Cmd + QoS + body, and the fixed layouts of the bodies.
 * 64-bit ids are bigint; 32-bit request and server ids are number.
 */
import { FrameError } from "./errors.js";

/** Command codes. */
export const Cmd = {
  Ping: 0x01,
  Pong: 0x02,
  Msg: 0x03,
  GroupMsg: 0x04,
  Bye: 0x05,
  Presence: 0x06,
  File: 0x07,
  FileServer: 0x08,
  Fetch: 0x09,
  Signature: 0x0a,
  FriendInfo: 0x0b,
  FriendsOnline: 0x0c,
  FriendNotify: 0x0d,
  ServerList: 0x0e,
  Ack: 0x0f,
  Error: 0x10,
  Handshake: 0x11,
  Auth: 0x12,
  Rekey: 0x13,
  Notice: 0x14,
  Group: 0x15,
  Profile: 0x16,
} as const;
export type CmdCode = (typeof Cmd)[keyof typeof Cmd];

const CMD_LIMIT = 0x17;

/** Size of each command's fixed fields (check 8 of "Errors"). */
const MIN_BODY = [0, 0, 0, 48, 48, 0, 17, 65, 21, 16, 12, 12, 12, 17, 12, 25, 10, 32, 0, 0, 2, 13, 12];

export const MsgHeaderLen = 48;
export const AckLen = 25;
export const FetchLen = 16;
export const LookupLen = 12;
export const ErrorLen = 10;
export const GroupLen = 13;
export const PresenceLen = 17;
export const FileServerLen = 21;
export const NoticeLen = 2;

/** The server's default cap on a frame (1 MiB); the largest a 4-byte Length holds. */
export const DefaultMaxFrame = 1 << 20;
export const MaxEncodable = (1 << 28) - 1;

/** ACK statuses. */
export const AckStatus = { Delivered: 0, Stored: 1, Received: 2, Duplicate: 3, GroupRead: 4 } as const;
/** PRESENCE and FRIEND_NOTIFY statuses. */
export const Status = { Offline: 0, Online: 1, Away: 2, Busy: 3, Invisible: 4 } as const;
/** FETCH kinds and the answer's flag. */
export const FetchKind = { P2P: 0, Group: 1 } as const;
export const FetchMore = 1;
/** NOTICE codes. */
export const Notice = { NewDevice: 1, Move: 2, Kicked: 3 } as const;
/** GROUP operations. */
export const GroupOp = {
  Create: 1, Join: 2, Leave: 3, Members: 4, List: 5, Invite: 6, Remove: 7, Open: 8, Role: 9,
} as const;

/** The name of a command, for logs. */
export function cmdName(c: number): string {
  // GroupMsg -> GROUP_MSG, as docs/protocol.md names them.
  for (const [k, v] of Object.entries(Cmd)) if (v === c) return k.replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
  return `CMD(${c})`;
}

/** Whether a command's body is sealed once a session has keys. */
export function sealed(c: number): boolean {
  return c !== Cmd.Ping && c !== Cmd.Pong && c !== Cmd.Handshake;
}

/** The Length field's width and the whole frame's size for a body of bodyLen bytes. */
export function frameSize(bodyLen: number): { n: number; total: number } {
  for (let n = 1; n <= 4; n++) {
    const total = bodyLen + 2 + n;
    if (total < 2 ** (7 * n)) return { n, total };
  }
  throw new FrameError("content-too-large", "content too large to encode");
}

/** Writes the header (Length, Cmd, QoS) of a frame with a bodyLen-byte body into dst; returns its size. */
export function putHeader(dst: Uint8Array, cmd: number, qos: number, bodyLen: number): number {
  const { n, total } = frameSize(bodyLen);
  let v = total;
  for (let i = 0; i < n - 1; i++) {
    dst[i] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  dst[n - 1] = v;
  dst[n] = cmd;
  dst[n + 1] = qos;
  return n + 2;
}

/** Encodes a whole plaintext frame. */
export function encode(cmd: number, qos: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const { total } = frameSize(body.length);
  const out = new Uint8Array(total);
  const h = putHeader(out, cmd, qos, body.length);
  out.set(body, h);
  return out;
}

/** A decoded frame. Views point into the buffer it was read from. */
export interface Frame {
  cmd: number;
  qos: number;
  /** Length + Cmd + QoS: the additional data of a sealed frame. */
  header: Uint8Array;
  body: Uint8Array;
  /** The whole frame. */
  raw: Uint8Array;
}

/**
 * Reads the Length at the start of b. Returns null while the Length is
 * incomplete; throws a FrameError for checks 1 to 5.
 */
export function readLength(b: Uint8Array, max = DefaultMaxFrame): { n: number; total: number } | null {
  let v = 0;
  for (let i = 0; i < 4; i++) {
    if (i >= b.length) return null;
    const c = b[i]!;
    v += (c & 0x7f) * 2 ** (7 * i);
    if (c & 0x80) continue;
    const n = i + 1;
    if (n > 1 && c === 0) throw new FrameError("non-minimal", "non-minimal length encoding");
    if (v < n + 2) throw new FrameError("too-small", "length too small for cmd and qos");
    if (v > max) throw new FrameError("too-large", "length exceeds maximum");
    if (n > 1 && v - n - 2 + 2 + (n - 1) < 2 ** (7 * (n - 1))) {
      throw new FrameError("non-minimal", "non-minimal length encoding");
    }
    return { n, total: v };
  }
  throw new FrameError("length-overflow", "length varint longer than 4 bytes");
}

/**
 * Takes the frame at the start of b: null when it has not fully arrived,
 * else the frame (checks 1 to 7; check 8 runs on the plaintext, see checkBody).
 */
export function next(b: Uint8Array, max = DefaultMaxFrame): Frame | null {
  const l = readLength(b, max);
  if (l === null || b.length < l.total) return null;
  const raw = b.subarray(0, l.total);
  const cmd = raw[l.n]!;
  const qos = raw[l.n + 1]!;
  if (cmd === 0 || cmd >= CMD_LIMIT) throw new FrameError("unknown-cmd", "unknown command");
  if (qos > 1) throw new FrameError("bad-qos", "qos must be 0 or 1");
  return { cmd, qos, header: raw.subarray(0, l.n + 2), body: raw.subarray(l.n + 2), raw };
}

/** Decodes exactly one whole frame, checking its plaintext body too. */
export function decode(b: Uint8Array, max = DefaultMaxFrame): Frame {
  const f = next(b, max);
  if (f === null) throw new FrameError("truncated", "truncated frame");
  if (f.raw.length !== b.length) throw new FrameError("truncated", "trailing bytes after frame");
  checkBody(f.cmd, f.body);
  return f;
}

/** Check 8: the body holds the command's fixed fields. */
export function checkBody(cmd: number, body: Uint8Array): void {
  if (body.length < (MIN_BODY[cmd] ?? 0)) throw new FrameError("short-body", "body too short for command");
}

/**
 * FrameReader splits a byte stream (or a series of WebSocket messages) into
 * frames, whatever the split. Frames returned are copies, valid forever.
 */
export class FrameReader {
  private buf: Uint8Array = new Uint8Array(0);
  constructor(private readonly max = DefaultMaxFrame) {}
  /** Appends bytes and returns every frame now complete. Throws FrameError. */
  push(chunk: Uint8Array): Frame[] {
    let b: Uint8Array;
    if (this.buf.length === 0) b = chunk.slice();
    else {
      b = new Uint8Array(this.buf.length + chunk.length);
      b.set(this.buf);
      b.set(chunk, this.buf.length);
    }
    const out: Frame[] = [];
    let off = 0;
    for (;;) {
      const f = next(b.subarray(off), this.max);
      if (f === null) break;
      out.push(f);
      off += f.raw.length;
    }
    this.buf = b.subarray(off);
    return out;
  }
}

// --- bodies ---------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();
export const utf8 = (s: string): Uint8Array => enc.encode(s);
export const text = (b: Uint8Array): string => dec.decode(b);

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
export { concat };

/** The 48-byte header of MSG, GROUP_MSG and FILE. */
export interface MsgHeader {
  from: bigint;
  to: bigint;
  time: bigint;
  cid: bigint;
  srv?: number;
  mid?: bigint;
  dsrv?: number;
}

/** A MSG or GROUP_MSG body, parsed. */
export interface Msg extends Required<MsgHeader> {
  content: Uint8Array;
}

export function msgBody(h: MsgHeader, content: Uint8Array): Uint8Array {
  const b = new Uint8Array(MsgHeaderLen + content.length);
  const v = view(b);
  v.setBigUint64(0, h.from);
  v.setBigUint64(8, h.to);
  v.setBigInt64(16, h.time);
  v.setBigUint64(24, h.cid);
  v.setUint32(32, h.srv ?? 0);
  v.setBigUint64(36, h.mid ?? 0n);
  v.setUint32(44, h.dsrv ?? 0);
  b.set(content, MsgHeaderLen);
  return b;
}

export function parseMsg(b: Uint8Array): Msg {
  const v = view(b);
  return {
    from: v.getBigUint64(0),
    to: v.getBigUint64(8),
    time: v.getBigInt64(16),
    cid: v.getBigUint64(24),
    srv: v.getUint32(32),
    mid: v.getBigUint64(36),
    dsrv: v.getUint32(44),
    content: b.subarray(MsgHeaderLen),
  };
}

export interface Ack {
  cid: bigint;
  mid: bigint;
  peer: bigint;
  status: number;
}

export function ackBody(a: Ack): Uint8Array {
  const b = new Uint8Array(AckLen);
  const v = view(b);
  v.setBigUint64(0, a.cid);
  v.setBigUint64(8, a.mid);
  v.setBigUint64(16, a.peer);
  b[24] = a.status;
  return b;
}

export function parseAck(b: Uint8Array): Ack {
  const v = view(b);
  return { cid: v.getBigUint64(0), mid: v.getBigUint64(8), peer: v.getBigUint64(16), status: b[24]! };
}

export interface Fetch {
  req: number;
  kind: number;
  flags: number;
  cursor: bigint;
  count: number;
}

export function fetchBody(f: Fetch): Uint8Array {
  const b = new Uint8Array(FetchLen);
  const v = view(b);
  v.setUint32(0, f.req);
  b[4] = f.kind;
  b[5] = f.flags;
  v.setBigUint64(6, f.cursor);
  v.setUint16(14, f.count);
  return b;
}

export function parseFetch(b: Uint8Array): Fetch {
  const v = view(b);
  return { req: v.getUint32(0), kind: b[4]!, flags: b[5]!, cursor: v.getBigUint64(6), count: v.getUint16(14) };
}

/** SIGNATURE, FRIEND_INFO, FRIENDS_ONLINE, SERVER_LIST and PROFILE bodies. */
export interface Lookup {
  req: number;
  target: bigint;
  json: Uint8Array;
}

export function lookupBody(req: number, target: bigint, json: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(LookupLen + json.length);
  const v = view(b);
  v.setUint32(0, req);
  v.setBigUint64(4, target);
  b.set(json, LookupLen);
  return b;
}

export function parseLookup(b: Uint8Array): Lookup {
  const v = view(b);
  return { req: v.getUint32(0), target: v.getBigUint64(4), json: b.subarray(LookupLen) };
}

export interface Group {
  req: number;
  op: number;
  group: bigint;
  json: Uint8Array;
}

export function groupBody(req: number, op: number, group: bigint, json: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(GroupLen + json.length);
  const v = view(b);
  v.setUint32(0, req);
  b[4] = op;
  v.setBigUint64(5, group);
  b.set(json, GroupLen);
  return b;
}

export function parseGroup(b: Uint8Array): Group {
  const v = view(b);
  return { req: v.getUint32(0), op: b[4]!, group: v.getBigUint64(5), json: b.subarray(GroupLen) };
}

/** PRESENCE and FRIEND_NOTIFY bodies. */
export interface Presence {
  user: bigint;
  time: bigint;
  status: number;
  text: string;
}

export function presenceBody(p: Presence): Uint8Array {
  const t = utf8(p.text);
  const b = new Uint8Array(PresenceLen + t.length);
  const v = view(b);
  v.setBigUint64(0, p.user);
  v.setBigInt64(8, p.time);
  b[16] = p.status;
  b.set(t, PresenceLen);
  return b;
}

export function parsePresence(b: Uint8Array): Presence {
  const v = view(b);
  return { user: v.getBigUint64(0), time: v.getBigInt64(8), status: b[16]!, text: text(b.subarray(PresenceLen)) };
}

export interface ErrorBody {
  code: number;
  ref: bigint;
  text: string;
}

export function errorBody(e: ErrorBody): Uint8Array {
  const t = utf8(e.text);
  const b = new Uint8Array(ErrorLen + t.length);
  const v = view(b);
  v.setUint16(0, e.code);
  v.setBigUint64(2, e.ref);
  b.set(t, ErrorLen);
  return b;
}

export function parseError(b: Uint8Array): ErrorBody {
  const v = view(b);
  return { code: v.getUint16(0), ref: v.getBigUint64(2), text: text(b.subarray(ErrorLen)) };
}

export function noticeBody(code: number, json: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(NoticeLen + json.length);
  view(b).setUint16(0, code);
  b.set(json, NoticeLen);
  return b;
}

export function parseNotice(b: Uint8Array): { code: number; json: Uint8Array } {
  return { code: view(b).getUint16(0), json: b.subarray(NoticeLen) };
}

export interface FileServer {
  req: number;
  op: number;
  file: bigint;
  offset: bigint;
  data: Uint8Array;
}

export function fileServerBody(f: FileServer): Uint8Array {
  const b = new Uint8Array(FileServerLen + f.data.length);
  const v = view(b);
  v.setUint32(0, f.req);
  b[4] = f.op;
  v.setBigUint64(5, f.file);
  v.setBigUint64(13, f.offset);
  b.set(f.data, FileServerLen);
  return b;
}

export function parseFileServer(b: Uint8Array): FileServer {
  const v = view(b);
  return { req: v.getUint32(0), op: b[4]!, file: v.getBigUint64(5), offset: v.getBigUint64(13), data: b.subarray(FileServerLen) };
}

/** FILE frames: a MSG header, then Op, Xfer, Offset and data. */
export interface FileFrame extends Msg {
  op: number;
  xfer: bigint;
  offset: bigint;
  data: Uint8Array;
}

export function fileBody(h: MsgHeader, op: number, xfer: bigint, offset: bigint, data: Uint8Array): Uint8Array {
  const tail = new Uint8Array(17 + data.length);
  const v = view(tail);
  tail[0] = op;
  v.setBigUint64(1, xfer);
  v.setBigUint64(9, offset);
  tail.set(data, 17);
  return msgBody(h, tail);
}

export function parseFile(b: Uint8Array): FileFrame {
  const m = parseMsg(b);
  const v = view(b);
  return { ...m, op: b[48]!, xfer: v.getBigUint64(49), offset: v.getBigUint64(57), data: b.subarray(65) };
}

/**
 * Parses JSON from the server keeping integers past 2^53 exact: they come
 * back as bigint. Smaller integers stay numbers.
 */
export function parseJSON<T = unknown>(b: Uint8Array | string): T {
  const s = typeof b === "string" ? b : text(b);
  const marked = s.replace(/([:,[]\s*)(\d{16,})(?=\s*[,\]}])/g, '$1"\\u0000big:$2"');
  return JSON.parse(marked, (_k, v) =>
    typeof v === "string" && v.startsWith("\u0000big:") ? toInt(v.slice(5)) : v,
  ) as T;
}

function toInt(s: string): number | bigint {
  const n = BigInt(s);
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** JSON.stringify that writes bigint as a JSON number. */
export function stringifyJSON(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `\u0000big:${x}` : x)).replace(
    /"\\u0000big:(\d+)"/g,
    "$1",
  );
}

/** Hex helpers, for logs and tests. */
export function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(s: string): Uint8Array {
  const t = s.replace(/[^0-9a-fA-F]/g, "");
  const out = new Uint8Array(t.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return out;
}
