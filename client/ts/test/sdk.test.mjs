// The SDK against a real myimd: register, login with the pinned root,
// friends and presence, QoS 1 both ways with acks and dedupe, offline
// messages, groups, lookups, files over HTTP, reconnects. Run over the
// WebSocket listener and over raw TCP (the same frames).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Session, HTTPClient, ServerError, Status, generateDeviceKey, login, connect } from "../dist/index.js";
import { startServer, hasWebSocket } from "./server.mjs";
import { tcpWire } from "./tcpwire.mjs";

const transports = hasWebSocket() ? ["ws", "tcp"] : ["tcp"];

function eventually(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = async () => {
      let v;
      try {
        v = await fn();
      } catch {}
      if (v) return resolve(v);
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

for (const transport of transports) {
  describe(`SDK over ${transport}`, () => {
    let srv;
    let http;
    let n = 0;
    const sessions = [];
    const config = (dev = generateDeviceKey()) =>
      transport === "ws"
        ? { url: `ws://${srv.addrs.ws}`, roots: srv.roots, device: dev }
        : { url: "tcp://myimd", roots: srv.roots, device: dev, openWire: tcpWire({ login: srv.addrs.login, endpoint: srv.addrs.endpoint }) };

    async function user(prefix) {
      const name = `${prefix}${++n}${transport}`;
      const password = `password-${name}`;
      const created = await http.register(name, password);
      const u = { name, password, id: BigInt(created.id), dev: generateDeviceKey(), got: [] };
      u.open = async () => {
        const s = new Session(config(u.dev), name, password);
        s.on("message", (m) => u.got.push(m));
        sessions.push(s);
        await s.start();
        u.s = s;
        u.api = http.withToken(() => s.token);
        return s;
      };
      await u.open();
      return u;
    }

    async function friends(a, b) {
      await a.api.requestFriend(b.id);
      await b.api.acceptFriend(a.id);
    }

    before(async () => {
      srv = await startServer();
      http = new HTTPClient(srv.http);
    });
    after(async () => {
      for (const s of sessions) s.close();
      await srv.stop();
    });

    test("a wrong password is a ServerError 13; an unpinned root fails the handshake", async () => {
      const a = await user("pw");
      await assert.rejects(login(config(), a.name, "wrong-password"), (e) => e instanceof ServerError && e.code === 13);
      const other = "5eed0001:irJLJ3OTSl3vKBmkkyrdB6X8YfdQ3560NV8RsFYArHM";
      await assert.rejects(login({ ...config(), roots: other }, a.name, a.password), /certificate: unknown root/);
    });

    test("QoS 1 both ways: DELIVERED acks, RECEIVED acks sent, a resend with the same CID shown once", async () => {
      const a = await user("alice");
      const b = await user("bob");
      await friends(a, b);
      const ack = await a.s.send(b.id, "hello bob");
      assert.equal(ack.status, "delivered");
      await eventually("bob's message", () => b.got.find((m) => m.text === "hello bob"));
      const back = await b.s.send(a.id, "hi alice");
      assert.equal(back.status, "delivered");
      await eventually("alice's message", () => a.got.find((m) => m.text === "hi alice"));
      const m = b.got.find((m) => m.text === "hello bob");
      assert.equal(m.from, a.id);
      assert.equal(m.kind, "p2p");
      // The same CID again: DUPLICATE, not shown twice.
      const dup = await a.s.conn.sendMessage(b.id, "hello bob", { cid: m.cid });
      assert.equal(dup.status, "duplicate");
      await a.s.send(b.id, "after");
      await eventually("the next message", () => b.got.find((x) => x.text === "after"));
      assert.equal(b.got.filter((x) => x.text === "hello bob").length, 1);
      // QoS 0 arrives too, with no ack.
      assert.equal(await a.s.send(b.id, "zero", { qos: 0 }), null);
      await eventually("the QoS 0 message", () => b.got.find((x) => x.text === "zero"));
    });

    test("presence and friends: online, away with text, offline", async () => {
      const a = await user("pa");
      const b = await user("pb");
      await friends(a, b);
      const seen = [];
      b.s.on("presence", (p) => seen.push(p));
      await eventually("a online for b", async () => (await b.s.conn.friendsOnline()).some((f) => BigInt(f.user) === a.id && f.status === Status.Online));
      a.s.conn.setPresence(Status.Away, "lunch");
      await eventually("away notify", () => seen.find((p) => p.user === a.id && p.status === Status.Away && p.text === "lunch"));
      const card = await b.s.conn.userCard(a.id);
      assert.equal(card.name, a.name);
      assert.equal(card.status, Status.Away);
      assert.equal(BigInt((await b.s.conn.findUser(a.name)).user), a.id);
      await a.s.conn.setProfile({ signature: "on holiday" });
      assert.equal((await b.s.conn.friendInfo(a.id)).signature, "on holiday");
      a.s.close();
      await eventually("offline notify", () => seen.find((p) => p.user === a.id && p.status === Status.Offline));
    });

    test("offline: messages sent while the recipient is away are STORED and fetched on return, in order, once", async () => {
      const a = await user("oa");
      const b = await user("ob");
      await friends(a, b);
      b.s.close();
      await eventually("b offline", async () => !(await a.s.conn.friendsOnline()).some((f) => BigInt(f.user) === b.id));
      for (let i = 0; i < 5; i++) assert.equal((await a.s.send(b.id, `away ${i}`)).status, "stored");
      b.got.length = 0;
      await b.open();
      await eventually("five offline messages", () => b.got.length >= 5);
      assert.deepEqual(b.got.map((m) => m.text), ["away 0", "away 1", "away 2", "away 3", "away 4"]);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(b.got.length, 5);
    });

    test("groups: create, invite, QoS 1 STORED acks, members receive in order, the sender's echo once", async () => {
      const a = await user("ga");
      const b = await user("gb");
      await friends(a, b);
      const g = await a.s.conn.createGroup("team");
      await a.api.inviteToGroup(g, b.id);
      for (let i = 0; i < 3; i++) assert.equal((await a.s.send(g, `g${i}`, { group: true })).status, "stored");
      await eventually("b has the group's messages", () => b.got.filter((m) => m.kind === "group").length >= 3);
      assert.deepEqual(b.got.filter((m) => m.kind === "group").map((m) => [m.text, m.mid]), [["g0", 1n], ["g1", 2n], ["g2", 3n]]);
      await b.s.send(g, "from b", { group: true });
      await eventually("a has b's", () => a.got.find((m) => m.text === "from b"));
      assert.equal(a.got.filter((m) => m.text === "g0").length, 1, "own echo shown once");
    });

    test("reconnect: a dropped connection comes back and a send made meanwhile is delivered once", async () => {
      const a = await user("ra");
      const b = await user("rb");
      await friends(a, b);
      const first = a.s.conn;
      first.close(); // as a network drop would
      const p = a.s.send(b.id, "through the gap");
      assert.equal((await p).status, "delivered");
      assert.notEqual(a.s.conn, first);
      assert.ok(a.s.renewals >= 1);
      await eventually("b got it", () => b.got.find((m) => m.text === "through the gap"));
      assert.equal(b.got.filter((m) => m.text === "through the gap").length, 1);
    });

    test("files over the HTTP API: upload, list, share, download", async () => {
      const a = await user("fa");
      const b = await user("fb");
      await friends(a, b);
      const data = new Uint8Array(100_000).map((_, i) => i * 7);
      const f = await a.api.upload("notes.bin", data);
      assert.equal(f.size, data.length);
      assert.ok((await a.api.files()).files.some((x) => x.id === f.id));
      await a.api.share(f.id, { user: b.id });
      assert.deepEqual(await b.api.download(f.id), data);
    });

    test("connect() checks the endpoint certificate against the server list's key", async () => {
      const a = await user("ca");
      const res = await login(config(a.dev), a.name, a.password);
      const s = res.servers[0];
      const bad = { ...s, key: s.key.map((x) => x ^ 1) };
      await assert.rejects(connect(config(a.dev), res, bad), /not the key the server list gives/);
      const c = await connect(config(a.dev), res, s);
      assert.equal(c.user, a.id);
      c.close(true);
    });
  });
}
