import { test } from "node:test";
import assert from "node:assert/strict";
import * as F from "../dist/frame.js";
import { FrameError } from "../dist/errors.js";
import { readVectors } from "./docvectors.mjs";

const { frames } = readVectors();

function fields(s) {
  const out = {};
  const j = s.indexOf("json=");
  if (j >= 0) {
    out.json = s.slice(j + 5, s.lastIndexOf("}") + 1);
    s = s.slice(0, j);
  }
  for (const m of s.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"(?:×\d+)?|\S+)/g)) out[m[1]] = m[2];
  return out;
}

function str(v) {
  const m = /^"(.*)"(?:×(\d+))?$/.exec(v);
  return m[2] ? m[1].repeat(Number(m[2])) : m[1];
}

test("every frame vector of docs/protocol.md decodes and re-encodes byte for byte", () => {
  assert.ok(frames.size >= 39, `only ${frames.size} vectors found`);
  for (const [name, { bytes, fields: fs }] of frames) {
    const f = F.decode(bytes);
    const want = fields(fs);
    assert.equal(F.cmdName(f.cmd), want.cmd, name);
    assert.equal(f.qos, Number(want.qos), name);
    assert.deepEqual(F.encode(f.cmd, f.qos, f.body), bytes, name);
    // Split anywhere, fed whole or byte by byte: the same frame.
    const r = new F.FrameReader();
    const got = [];
    for (let i = 0; i < bytes.length; i++) got.push(...r.push(bytes.subarray(i, i + 1)));
    assert.equal(got.length, 1, name);
    assert.deepEqual(got[0].raw, bytes, name);
  }
});

test("typed builders produce the vectors from their Fields lines", () => {
  let built = 0;
  for (const [name, { bytes, fields: fs }] of frames) {
    const w = fields(fs);
    const qos = Number(w.qos);
    let body;
    switch (w.cmd) {
      case "MSG":
      case "GROUP_MSG": {
        body = F.msgBody(
          { from: BigInt(w.from), to: BigInt(w.to), time: BigInt(w.time), cid: BigInt(w.cid), srv: Number(w.srv), mid: BigInt(w.mid), dsrv: Number(w.dsrv) },
          F.utf8(str(w.content)),
        );
        const m = F.parseMsg(F.decode(bytes).body);
        assert.equal(m.mid, BigInt(w.mid), name);
        break;
      }
      case "ACK":
        body = F.ackBody({ cid: BigInt(w.cid), mid: BigInt(w.mid), peer: BigInt(w.peer), status: Number(w.status) });
        assert.deepEqual(F.parseAck(F.decode(bytes).body).peer, BigInt(w.peer), name);
        break;
      case "FETCH":
        body = F.fetchBody({ req: Number(w.req), kind: Number(w.kind), flags: Number(w.flags), cursor: BigInt(w.cursor), count: Number(w.count) });
        break;
      case "SIGNATURE":
      case "FRIEND_INFO":
      case "FRIENDS_ONLINE":
      case "SERVER_LIST":
      case "PROFILE":
        body = F.lookupBody(Number(w.req), BigInt(w.target), w.json ? F.utf8(w.json) : undefined);
        break;
      case "GROUP":
        body = F.groupBody(Number(w.req), Number(w.op), BigInt(w.group), w.json ? F.utf8(w.json) : undefined);
        break;
      case "PRESENCE":
      case "FRIEND_NOTIFY":
        body = F.presenceBody({ user: BigInt(w.user), time: BigInt(w.time), status: Number(w.status), text: w.text ? str(w.text) : "" });
        break;
      case "ERROR":
        body = F.errorBody({ code: Number(w.code), ref: BigInt(w.ref), text: str(w.text) });
        break;
      case "FILE":
        body = F.fileBody({ from: BigInt(w.from), to: BigInt(w.to), time: BigInt(w.time), cid: BigInt(w.cid) }, Number(w.op), BigInt(w.xfer), BigInt(w.offset), w.data ? F.utf8(str(w.data)) : new Uint8Array(0));
        break;
      case "FILE_SERVER":
        body = F.fileServerBody({ req: Number(w.req), op: Number(w.op), file: BigInt(w.fileid), offset: BigInt(w.offset), data: new Uint8Array(0) });
        break;
      case "NOTICE":
        body = F.noticeBody(Number(w.code), F.utf8(w.json));
        break;
      case "AUTH":
        body = F.utf8(w.json);
        break;
      default:
        continue;
    }
    if (w.json && /shortened/.test(fs)) continue;
    const cmd = F.Cmd[Object.keys(F.Cmd).find((k) => k.toUpperCase() === w.cmd.replace(/_/g, ""))];
    assert.deepEqual(F.encode(cmd, qos, body), bytes, name);
    built++;
  }
  assert.ok(built >= 30, `built ${built}`);
});

test("the Errors table's examples fail with their reasons, in order", () => {
  const cases = [
    ["80 80 80 80 08", "length-overflow"],
    ["83 00 01 01", "non-minimal"],
    ["02", "too-small"],
    ["81 80 40", "too-large"],
    ["80 01" + " 00".repeat(126), "non-minimal"],
    ["03 17 00", "unknown-cmd"],
    ["03 01 02", "bad-qos"],
    ["03 03 00", "short-body"],
  ];
  for (const [h, reason] of cases) {
    assert.throws(() => F.decode(F.fromHex(h)), (e) => e instanceof FrameError && e.reason === reason, h);
  }
  // A frame that has not fully arrived is not an error on a stream.
  assert.equal(F.next(F.fromHex("35 03 01 00")), null);
  assert.equal(F.next(F.fromHex("81")), null);
});

test("Length boundaries: 124/125 and 16379/16380 byte bodies", () => {
  assert.deepEqual(F.encode(3, 0, new Uint8Array(124)).subarray(0, 1), Uint8Array.of(0x7f));
  assert.deepEqual(F.encode(3, 0, new Uint8Array(125)).subarray(0, 2), Uint8Array.of(0x81, 0x01));
  assert.deepEqual(F.encode(3, 0, new Uint8Array(16379)).subarray(0, 2), Uint8Array.of(0xff, 0x7f));
  assert.deepEqual(F.encode(3, 0, new Uint8Array(16380)).subarray(0, 3), Uint8Array.of(0x81, 0x80, 0x01));
  assert.deepEqual(F.readLength(F.fromHex("80 80 40")), { n: 3, total: 1 << 20 });
});

test("JSON ids past 2^53 stay exact", () => {
  const v = F.parseJSON('{"user": 18446744073709551615, "small": 7, "s": "12345678901234567890"}');
  assert.equal(v.user, 18446744073709551615n);
  assert.equal(v.small, 7);
  assert.equal(v.s, "12345678901234567890");
  assert.equal(F.stringifyJSON({ a: 18446744073709551615n, b: 1 }), '{"a":18446744073709551615,"b":1}');
});
