/**
 * The primitives, all from the audited noble libraries: X25519, Ed25519ctx,
 * AES-256-GCM, SHA-256 and HMAC-SHA256. Nothing cryptographic is written here.
 */
import { x25519, ed25519, ed25519ctx } from "@noble/curves/ed25519.js";
import { gcm } from "@noble/ciphers/aes.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { CryptoError, HandshakeError } from "./errors.js";

export { sha256 };

export function hmacSHA256(key: Uint8Array, ...msg: Uint8Array[]): Uint8Array {
  const m = hmac.create(sha256, key);
  for (const p of msg) m.update(p);
  return m.digest();
}

/** Cryptographically random bytes (WebCrypto, in browsers and Node 20). */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  globalThis.crypto.getRandomValues(b);
  return b;
}

export function x25519Public(priv: Uint8Array): Uint8Array {
  return x25519.getPublicKey(priv);
}

/** X25519 with the all-zero result (a low-order peer key) refused. */
export function dh(priv: Uint8Array, pub: Uint8Array): Uint8Array {
  let out: Uint8Array;
  try {
    out = x25519.getSharedSecret(priv, pub);
  } catch (e) {
    throw new HandshakeError("bad public key", { cause: e });
  }
  let z = 0;
  for (const x of out) z |= x;
  if (z === 0) throw new HandshakeError("bad public key");
  return out;
}

/** The 12-byte AES-GCM nonce of Noise: 4 zero bytes and the counter, big-endian. */
export function nonce(n: bigint): Uint8Array {
  const b = new Uint8Array(12);
  new DataView(b.buffer).setBigUint64(4, n);
  return b;
}

export function aesSeal(key: Uint8Array, n: bigint, ad: Uint8Array, pt: Uint8Array): Uint8Array {
  return gcm(key, nonce(n), ad).encrypt(pt);
}

export function aesOpen(key: Uint8Array, n: bigint, ad: Uint8Array, ct: Uint8Array): Uint8Array {
  try {
    return gcm(key, nonce(n), ad).decrypt(ct);
  } catch {
    throw new CryptoError("message authentication failed");
  }
}

export function ed25519Public(seed: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(seed);
}

export function ed25519Sign(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  return ed25519.sign(msg, seed);
}

export function ed25519Verify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed25519.verify(sig, msg, pub);
  } catch {
    return false;
  }
}

/** Ed25519ctx (RFC 8032 §5.1) verification with a context string. */
export function ed25519ctxVerify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array, context: Uint8Array): boolean {
  try {
    return ed25519ctx.verify(sig, msg, pub, { context });
  } catch {
    return false;
  }
}

export function ed25519ctxSign(seed: Uint8Array, msg: Uint8Array, context: Uint8Array): Uint8Array {
  return ed25519ctx.sign(msg, seed, { context });
}

/** Overwrites a secret. */
export function wipe(b: Uint8Array | undefined): void {
  if (b) b.fill(0);
}
