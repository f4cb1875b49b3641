/**
 * Noise (revision 34) with the one suite MyIM speaks, 25519_AESGCM_SHA256,
 * and its two patterns: XX for the login service, IK for endpoints. Both
 * sides are here so that the handshake vectors can be reproduced.
 */
import { aesOpen, aesSeal, dh, hmacSHA256, randomBytes, sha256, wipe, x25519Public } from "./crypto.js";
import { concat, utf8 } from "./frame.js";
import { HandshakeError } from "./errors.js";

type Token = "e" | "s" | "ee" | "es" | "se" | "ss";

/** A handshake pattern: pre-messages known in advance and the message tokens. */
interface Pattern {
  name: string;
  /** The responder's static key is known to the initiator before message 1. */
  preResponderStatic: boolean;
  messages: Token[][];
}

export const XX: Pattern = { name: "XX", preResponderStatic: false, messages: [["e"], ["e", "ee", "s", "es"], ["s", "se"]] };
export const IK: Pattern = { name: "IK", preResponderStatic: true, messages: [["e", "es", "s", "ss"], ["e", "ee", "se"]] };

const EMPTY = new Uint8Array(0);

function hkdf(ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmacSHA256(ck, ikm);
  const o1 = hmacSHA256(temp, Uint8Array.of(1));
  const o2 = hmacSHA256(temp, o1, Uint8Array.of(2));
  wipe(temp);
  return [o1, o2];
}

export interface HandshakeOptions {
  pattern: Pattern;
  initiator: boolean;
  prologue: Uint8Array;
  /** The local static private key (X25519, 32 bytes). */
  static: Uint8Array;
  /** The peer's static public key, when known in advance (IK initiator). */
  remoteStatic?: Uint8Array;
  /** Ephemeral private key; random when not given (tests fix it). */
  ephemeral?: Uint8Array;
}

/** The result of a completed handshake. */
export interface Split {
  /** Initiator to responder key. */
  c2s: Uint8Array;
  /** Responder to initiator key. */
  s2c: Uint8Array;
  /** The final handshake hash: the channel binding. */
  hash: Uint8Array;
}

/**
 * HandshakeState drives one Noise handshake. It does no I/O: write and read
 * take and give Noise messages (HANDSHAKE frame bodies). Not reusable after
 * a failure.
 */
export class HandshakeState {
  private ck: Uint8Array;
  private h: Uint8Array;
  private k: Uint8Array | null = null;
  private n = 0n;
  private readonly p: Pattern;
  private readonly initiator: boolean;
  private readonly s: Uint8Array;
  private readonly sPub: Uint8Array;
  private e: Uint8Array | null = null;
  private rs: Uint8Array | null;
  private re: Uint8Array | null = null;
  private fixedE?: Uint8Array;
  private idx = 0;
  private failed = false;

  constructor(o: HandshakeOptions) {
    this.p = o.pattern;
    this.initiator = o.initiator;
    this.s = o.static;
    this.sPub = x25519Public(o.static);
    this.rs = o.remoteStatic ?? null;
    this.fixedE = o.ephemeral;
    const name = utf8(`Noise_${o.pattern.name}_25519_AESGCM_SHA256`);
    this.h = new Uint8Array(32);
    this.h.set(name);
    this.ck = this.h.slice();
    this.mixHash(o.prologue);
    if (o.pattern.preResponderStatic) {
      const pub = o.initiator ? this.rs : this.sPub;
      if (!pub || pub.length !== 32) throw new HandshakeError("responder static key required");
      this.mixHash(pub);
    }
  }

  /** Whether the next message is ours to write. */
  get myTurn(): boolean {
    return (this.idx % 2 === 0) === this.initiator;
  }

  get complete(): boolean {
    return this.idx === this.p.messages.length;
  }

  /** The peer's static public key, once received (or given). */
  get remoteStatic(): Uint8Array | null {
    return this.rs;
  }

  private mixHash(d: Uint8Array): void {
    this.h = sha256(concat(this.h, d));
  }

  private mixKey(ikm: Uint8Array): void {
    const [ck, k] = hkdf(this.ck, ikm);
    wipe(this.ck);
    this.ck = ck;
    this.k = k;
    this.n = 0n;
  }

  private encryptAndHash(pt: Uint8Array): Uint8Array {
    const ct = this.k ? aesSeal(this.k, this.n++, this.h, pt) : pt.slice();
    this.mixHash(ct);
    return ct;
  }

  private decryptAndHash(ct: Uint8Array): Uint8Array {
    let pt: Uint8Array;
    try {
      pt = this.k ? aesOpen(this.k, this.n, this.h, ct) : ct.slice();
    } catch (e) {
      throw new HandshakeError("bad handshake message", { cause: e });
    }
    if (this.k) this.n++;
    this.mixHash(ct);
    return pt;
  }

  private dhToken(t: Token): Uint8Array {
    const me = this.initiator;
    switch (t) {
      case "ee":
        return dh(this.e!, this.re!);
      case "es":
        return me ? dh(this.e!, this.rs!) : dh(this.s, this.re!);
      case "se":
        return me ? dh(this.s, this.re!) : dh(this.e!, this.rs!);
      case "ss":
        return dh(this.s, this.rs!);
      default:
        throw new HandshakeError("bad token");
    }
  }

  private guard(write: boolean): Token[] {
    if (this.failed) throw new HandshakeError("handshake failed earlier");
    if (this.complete) throw new HandshakeError("handshake already complete");
    if (this.myTurn !== write) throw new HandshakeError("handshake message out of turn");
    return this.p.messages[this.idx]!;
  }

  /** Writes the next message with payload. */
  write(payload: Uint8Array = EMPTY): Uint8Array {
    const tokens = this.guard(true);
    const parts: Uint8Array[] = [];
    for (const t of tokens) {
      if (t === "e") {
        this.e = this.fixedE ?? randomBytes(32);
        const pub = x25519Public(this.e);
        parts.push(pub);
        this.mixHash(pub);
      } else if (t === "s") {
        parts.push(this.encryptAndHash(this.sPub));
      } else {
        this.mixKey(this.dhToken(t));
      }
    }
    parts.push(this.encryptAndHash(payload));
    this.idx++;
    return concat(...parts);
  }

  /** Reads the peer's next message and returns its payload. */
  read(msg: Uint8Array): Uint8Array {
    const tokens = this.guard(false);
    try {
      let off = 0;
      const take = (n: number): Uint8Array => {
        if (msg.length - off < n) throw new HandshakeError("handshake message too short");
        const b = msg.subarray(off, off + n);
        off += n;
        return b;
      };
      for (const t of tokens) {
        if (t === "e") {
          this.re = take(32).slice();
          this.mixHash(this.re);
        } else if (t === "s") {
          this.rs = this.decryptAndHash(take(this.k ? 48 : 32));
        } else {
          this.mixKey(this.dhToken(t));
        }
      }
      const rest = msg.subarray(off);
      if (this.k && rest.length < 16) throw new HandshakeError("handshake message too short");
      const payload = this.decryptAndHash(rest);
      this.idx++;
      return payload;
    } catch (e) {
      this.failed = true;
      throw e instanceof HandshakeError ? e : new HandshakeError("bad handshake message", { cause: e });
    }
  }

  /** The transport keys; valid once complete. Wipes the handshake's secrets. */
  split(): Split {
    if (!this.complete) throw new HandshakeError("handshake not complete");
    const [c2s, s2c] = hkdf(this.ck, EMPTY);
    const out = { c2s, s2c, hash: this.h.slice() };
    wipe(this.ck);
    wipe(this.k ?? undefined);
    if (!this.fixedE) wipe(this.e ?? undefined);
    return out;
  }
}
