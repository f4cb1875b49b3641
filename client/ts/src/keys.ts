/**
 * Transport keys of a session (docs/protocol.md "Sessions and sealing"):
 * one AES-256-GCM key and one 64-bit counter per direction; the counter is
 * the nonce and is never sent; the frame's header is the additional data.
 */
import { aesOpen, aesSeal, wipe } from "./crypto.js";
import { Cmd, type Frame, frameSize, putHeader } from "./frame.js";
import { CryptoError } from "./errors.js";

/** Rekey after this many frames or this long under one key; refuse past the hard limit. */
const REKEY_FRAMES = 1 << 20;
const REKEY_MS = 3_600_000;
const HARD_LIMIT = 1 << 24;
const REKEY_NONCE = 0xffffffffffffffffn;
const TAG = 16;

class Direction {
  n = 0n;
  used = 0;
  since: number;
  constructor(public key: Uint8Array, now: number) {
    this.since = now;
  }
  check(): void {
    if (this.used >= HARD_LIMIT) throw new CryptoError("too many frames under one key");
  }
  rekey(now: number): void {
    const next = aesSeal(this.key, REKEY_NONCE, new Uint8Array(0), new Uint8Array(32)).slice(0, 32);
    wipe(this.key);
    this.key = next;
    this.used = 0;
    this.since = now;
  }
}

/** Keys seals and opens the frames of one session. Not safe for concurrent use (JS is single-threaded). */
export class Keys {
  private send: Direction;
  private recv: Direction;
  constructor(sendKey: Uint8Array, recvKey: Uint8Array, now = Date.now()) {
    this.send = new Direction(sendKey.slice(), now);
    this.recv = new Direction(recvKey.slice(), now);
  }

  /** Seals a plaintext body into a whole frame. */
  seal(cmd: number, qos: number, body: Uint8Array): Uint8Array {
    const d = this.send;
    d.check();
    const { total } = frameSize(body.length + TAG);
    const out = new Uint8Array(total);
    const h = putHeader(out, cmd, qos, body.length + TAG);
    out.set(aesSeal(d.key, d.n, out.subarray(0, h), body), h);
    d.n++;
    d.used++;
    return out;
  }

  /** Opens a sealed frame and returns its plaintext body. Throws CryptoError. */
  open(f: Frame): Uint8Array {
    const d = this.recv;
    d.check();
    if (f.body.length < TAG) throw new CryptoError("sealed body shorter than its tag");
    const pt = aesOpen(d.key, d.n, f.header, f.body);
    d.n++;
    d.used++;
    return pt;
  }

  /** Whether the sending key is due for a REKEY. */
  needRekey(now = Date.now()): boolean {
    return this.send.used >= REKEY_FRAMES || now - this.send.since >= REKEY_MS;
  }

  /** Seals a REKEY under the current key and switches the sending direction. */
  sendRekey(now = Date.now()): Uint8Array {
    const f = this.seal(Cmd.Rekey, 0, new Uint8Array(0));
    this.send.rekey(now);
    return f;
  }

  /** Opens a received REKEY (its plaintext must be empty) and switches the receiving direction. */
  recvRekey(f: Frame, now = Date.now()): void {
    if (this.open(f).length !== 0) throw new CryptoError("rekey with a payload");
    this.recv.rekey(now);
  }

  /** The current sending key (tests read it to compare with the vectors). */
  get sendKey(): Uint8Array {
    return this.send.key;
  }
  get recvKey(): Uint8Array {
    return this.recv.key;
  }

  /** Overwrites both keys. */
  wipe(): void {
    wipe(this.send.key);
    wipe(this.recv.key);
  }
}
