import { test } from "node:test";
import assert from "node:assert/strict";
import * as F from "../dist/frame.js";
import { HandshakeState, XX, IK } from "../dist/noise.js";
import { Keys } from "../dist/keys.js";
import { PrologueXX, PrologueIK } from "../dist/login.js";
import * as C from "../dist/credentials.js";
import { sha256, x25519Public, ed25519Public, ed25519Sign, ed25519ctxSign } from "../dist/crypto.js";
import { readVectors } from "./docvectors.mjs";

const { hs, rootPub, frames } = readVectors();
const used = new Set();
function v(name) {
  const x = hs.get(name);
  assert.ok(x, `vector ${name} missing from docs/protocol.md`);
  used.add(name);
  return x.value;
}
const input = (label, n = 32) => sha256(F.utf8(`MYIM handshake vector ${label}`)).slice(0, n);

const NOW_MS = 1767225600000;
const NOW = NOW_MS / 1000;
const rootSeed = input("root-seed");
const tokenSeed = input("token-key-seed");
const nodeStatic = input("node-static");
const device = input("device-static");
const eph = {
  lc: input("login-client-ephemeral"),
  ls: input("login-server-ephemeral"),
  ec: input("endpoint-client-ephemeral"),
  es: input("endpoint-server-ephemeral"),
};
const roots = [{ keyId: 0x5eed0001, publicKey: ed25519Public(rootSeed) }];

function cert(role) {
  const b = new Uint8Array(122);
  const d = new DataView(b.buffer);
  b[0] = 1;
  b[1] = role;
  d.setUint32(2, 0x5eed0001);
  d.setUint32(6, 1);
  b.set(x25519Public(nodeStatic), 10);
  d.setBigInt64(42, BigInt(NOW));
  d.setBigInt64(50, BigInt(NOW + 30 * 86400));
  b.set(ed25519ctxSign(rootSeed, b.subarray(0, 58), F.utf8("MYIM node certificate v1")), 58);
  return b;
}

function token() {
  const header = v("token-header");
  const claims = JSON.parse(v("token-claims"));
  claims.jti = C.base64urlEncode(input("token-id", 16));
  claims.dk = C.base64urlEncode(sha256(x25519Public(device)));
  const body = `${C.base64urlEncode(F.utf8(header))}.${C.base64urlEncode(F.utf8(JSON.stringify(claims)))}`;
  assert.equal(JSON.stringify(claims), v("token-claims"));
  return `${body}.${C.base64urlEncode(ed25519Sign(tokenSeed, F.utf8(body)))}`;
}

test("fixed inputs, prologues, root.pub", () => {
  for (const [name, got] of [
    ["input-root-seed", rootSeed],
    ["input-root-public", ed25519Public(rootSeed)],
    ["input-token-key-seed", tokenSeed],
    ["input-token-key-public", ed25519Public(tokenSeed)],
    ["input-node-static-private", nodeStatic],
    ["input-node-static-public", x25519Public(nodeStatic)],
    ["input-device-static-private", device],
    ["input-device-static-public", x25519Public(device)],
    ["input-login-client-ephemeral", eph.lc],
    ["input-login-server-ephemeral", eph.ls],
    ["input-endpoint-client-ephemeral", eph.ec],
    ["input-endpoint-server-ephemeral", eph.es],
    ["input-token-id", input("token-id", 16)],
    ["prologue-xx", PrologueXX],
    ["prologue-ik", PrologueIK],
  ]) assert.deepEqual(got, v(name), name);
  const line = rootPub.get("vector-root");
  assert.deepEqual(C.parseRootKeys(line), roots);
  assert.equal(C.formatRootKey(roots[0]), line);
  assert.throws(() => C.parseRootKeys("5eed0001:irJLJ3OTSl3vKBmkkyrdB6X8YfdQ3560NV8RsFYArHM="));
});

test("certificates, token, LoginRequest, Accepted", () => {
  assert.deepEqual(cert(1), v("cert-login"));
  assert.deepEqual(cert(2), v("cert-endpoint"));
  const c = C.verifyCert(roots, v("cert-endpoint"), C.RoleEndpoint, NOW_MS);
  assert.deepEqual(c.staticKey, x25519Public(nodeStatic));
  assert.throws(() => C.verifyCert(roots, v("cert-endpoint"), C.RoleLogin, NOW_MS), /wrong role/);
  assert.throws(() => C.verifyCert(roots, v("cert-endpoint"), C.RoleEndpoint, NOW_MS + 40 * 86400e3), /expired/);
  const bad = v("cert-login").slice();
  bad[20] ^= 1;
  assert.throws(() => C.verifyCert(roots, bad, C.RoleLogin, NOW_MS), /signature/);
  assert.equal(token(), v("token"));
  assert.equal(C.tokenClaims(v("token")).sub, "1");
  const req = C.encodeLoginRequest({ name: "alice", password: "correct horse battery staple", fingerprint: C.fingerprint("machine-1", "app-salt"), deviceName: "laptop" });
  assert.deepEqual(req, v("login-request"));
  assert.deepEqual(C.encodeAccepted({ userId: 1n, serverTime: BigInt(NOW_MS) }), v("accepted"));
  assert.deepEqual(C.parseAccepted(v("accepted")), { userId: 1n, serverTime: BigInt(NOW_MS) });
});

test("login: Noise XX, both sides, every message, keys and the sealed answers", () => {
  const cl = new HandshakeState({ pattern: XX, initiator: true, prologue: PrologueXX, static: device, ephemeral: eph.lc });
  const sv = new HandshakeState({ pattern: XX, initiator: false, prologue: PrologueXX, static: nodeStatic, ephemeral: eph.ls });
  const m1 = F.encode(F.Cmd.Handshake, 0, cl.write());
  assert.deepEqual(m1, v("login-msg1"));
  assert.equal(sv.read(F.decode(v("login-msg1")).body).length, 0);
  assert.deepEqual(F.encode(F.Cmd.Handshake, 0, sv.write(cert(1))), v("login-msg2"));
  const got = cl.read(F.decode(v("login-msg2")).body);
  assert.deepEqual(C.verifyCert(roots, got, C.RoleLogin, NOW_MS).staticKey, cl.remoteStatic);
  assert.deepEqual(F.encode(F.Cmd.Handshake, 0, cl.write(v("login-request"))), v("login-msg3"));
  assert.deepEqual(sv.read(F.decode(v("login-msg3")).body), v("login-request"));
  assert.deepEqual(sv.remoteStatic, x25519Public(device));
  const a = cl.split();
  const b = sv.split();
  assert.deepEqual(a, b);
  assert.deepEqual(a.hash, v("login-handshake-hash"));
  assert.deepEqual(a.c2s, v("login-key-c2s"));
  assert.deepEqual(a.s2c, v("login-key-s2c"));
  const reply = v("login-reply");
  assert.deepEqual(new Keys(b.s2c, b.c2s).seal(F.Cmd.Auth, 0, F.utf8(reply)), v("login-auth"));
  assert.equal(F.text(new Keys(a.c2s, a.s2c).open(F.decode(v("login-auth")))), reply);
  const eb = F.errorBody({ code: 13, ref: 0n, text: "wrong name or password" });
  assert.deepEqual(new Keys(b.s2c, b.c2s).seal(F.Cmd.Error, 0, eb), v("login-error"));
  const opened = F.parseError(new Keys(a.c2s, a.s2c).open(F.decode(v("login-error"))));
  assert.equal(opened.code, 13);
  assert.deepEqual(JSON.parse(reply).servers[0].cert, C.base64Encode(cert(2)));
});

test("endpoint: Noise IK, both sides, then sealed frames, REKEY and both directions' counters", () => {
  const tok = v("token");
  const cl = new HandshakeState({ pattern: IK, initiator: true, prologue: PrologueIK, static: device, remoteStatic: x25519Public(nodeStatic), ephemeral: eph.ec });
  const sv = new HandshakeState({ pattern: IK, initiator: false, prologue: PrologueIK, static: nodeStatic, ephemeral: eph.es });
  assert.deepEqual(F.encode(F.Cmd.Handshake, 0, cl.write(F.utf8(tok))), v("endpoint-msg1"));
  assert.equal(F.text(sv.read(F.decode(v("endpoint-msg1")).body)), tok);
  assert.deepEqual(F.encode(F.Cmd.Handshake, 0, sv.write(v("accepted"))), v("endpoint-msg2"));
  assert.deepEqual(C.parseAccepted(cl.read(F.decode(v("endpoint-msg2")).body)).userId, 1n);
  const a = cl.split();
  assert.deepEqual(a, sv.split());
  assert.deepEqual(a.hash, v("endpoint-handshake-hash"));
  assert.deepEqual(a.c2s, v("endpoint-key-c2s"));
  assert.deepEqual(a.s2c, v("endpoint-key-s2c"));

  const client = new Keys(a.c2s, a.s2c);
  const server = new Keys(a.s2c, a.c2s);
  const msg = F.decode(frames.get("msg-u-s").bytes);
  assert.deepEqual(client.seal(msg.cmd, msg.qos, msg.body), v("session-msg"));
  assert.deepEqual(client.sendRekey(), v("session-rekey"));
  assert.deepEqual(client.sendKey, v("endpoint-key-c2s-rekeyed"));
  const gm = F.decode(frames.get("group-msg-u-s").bytes);
  assert.deepEqual(client.seal(gm.cmd, gm.qos, gm.body), v("session-group-msg"));
  const ack = F.decode(frames.get("ack-stored").bytes);
  assert.deepEqual(server.seal(ack.cmd, ack.qos, ack.body), v("session-ack"));
  // The receiving sides accept the documented bytes.
  assert.deepEqual(server.open(F.decode(v("session-msg"))), msg.body);
  server.recvRekey(F.decode(v("session-rekey")));
  assert.deepEqual(server.recvKey, v("endpoint-key-c2s-rekeyed"));
  assert.deepEqual(server.open(F.decode(v("session-group-msg"))), gm.body);
  assert.deepEqual(client.open(F.decode(v("session-ack"))), ack.body);
  // A replayed frame fails: the counter moved on.
  assert.throws(() => client.open(F.decode(v("session-ack"))), /authentication/);
});

test("handshake failures: tampered message, out of turn", () => {
  const cl = new HandshakeState({ pattern: XX, initiator: true, prologue: PrologueXX, static: device, ephemeral: eph.lc });
  cl.write();
  assert.throws(() => cl.write(), /out of turn/);
  const m2 = F.decode(v("login-msg2")).body.slice();
  m2[40] ^= 1;
  assert.throws(() => cl.read(m2), /bad handshake message/);
  assert.throws(() => cl.read(F.decode(v("login-msg2")).body), /failed earlier/);
});

test("every HS-Vector of docs/protocol.md is checked", () => {
  const missing = [...hs.keys()].filter((k) => !used.has(k));
  assert.deepEqual(missing, []);
});
