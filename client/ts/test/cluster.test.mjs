// Two endpoints in one cluster (Redis routing): the server list carries
// each endpoint's WebSocket listener, a browser-style session follows a
// move notice (the operator drains its endpoint) to the other endpoint,
// and messages flow on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Session, HTTPClient, MovedError, generateDeviceKey, login } from "../dist/index.js";
import { startServer, myimd, hasWebSocket } from "./server.mjs";

const redis = process.env.MYIM_TEST_REDIS_ADDR ?? "127.0.0.1:6379";
const secret = "admin-secret-for-the-test";

async function eventually(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    let v;
    try {
      v = await fn();
    } catch {}
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a session follows a move notice to the other endpoint of the server list", { timeout: 120000 }, async (t) => {
  assert.ok(hasWebSocket(), "myimd has no --ws-addr");
  const prefix = `myim-ts-${process.pid}-${Date.now()}:`;
  const dir1 = mkdtempSync(join(tmpdir(), "myimd-cluster-"));
  myimd("cluster", "init", "--data-dir", dir1, "--server-id", "1");
  const tokenDir = mkdtempSync(join(tmpdir(), "myimd-join-"));
  t.after(() => rmSync(tokenDir, { recursive: true, force: true }));
  const tokenFile = join(tokenDir, "join");
  writeFileSync(tokenFile, myimd("cluster", "token", "--data-dir", dir1, "--role", "endpoint", "--node", "2"), { mode: 0o600 });
  const common = ["--redis-addr", redis, "--redis-prefix", prefix, "--admin-secret", secret];
  const first = await startServer(t, ["--server-id", "1", "--join-addr", "127.0.0.1:0", ...common], { dir: dir1 });
  const second = await startServer(t, ["--role", "endpoint", "--server-id", "2", "--join-file", tokenFile,
    "--join-url", `https://${first.addrs.join}`, "--center-link", first.addrs.center, ...common]);
  const http = new HTTPClient(first.http);
  const cfg = () => ({ url: `ws://${first.addrs.ws}`, roots: first.roots, device: generateDeviceKey() });
  for (const n of ["mia", "max"]) await http.register(n, `password-${n}`);

  // Both endpoints, each with its WebSocket listener, in the server list.
  const res = await eventually("both endpoints listed", async () => {
    const r = await login(cfg(), "mia", "password-mia");
    return r.servers.length === 2 && r;
  });
  const ws = { 1: first.addrs.ws, 2: second.addrs.ws };
  for (const s of res.servers) assert.equal(s.ws.replace(/^.*:/, ""), ws[s.id].replace(/^.*:/, ""), `server ${s.id}`);

  const mia = new Session(cfg(), "mia", "password-mia");
  const max = new Session(cfg(), "max", "password-max");
  t.after(() => {
    mia.close();
    max.close();
  });
  const got = [];
  max.on("message", (m) => got.push(m.text));
  const moves = [];
  mia.on("disconnected", (e) => moves.push(e));
  await mia.start();
  await max.start();
  assert.equal((await mia.send(max.user, "before the move")).status, "delivered");

  // The operator drains mia's endpoint: NOTICE move, and the session goes to the other one.
  const from = mia.server.id;
  const admin = from === 1 ? first.addrs.admin : second.addrs.admin;
  const r = await fetch(`http://${admin}/v1/admin/drain`, { method: "POST", headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(r.status, 200);
  await eventually("mia on the other endpoint", () => mia.conn && mia.server && mia.server.id !== from);
  assert.ok(moves.some((e) => e instanceof MovedError), `disconnects: ${moves.map(String)}`);
  assert.equal((await mia.send(max.user, "after the move")).status, "delivered");
  await eventually("both messages", () => got.includes("after the move"));
  assert.deepEqual(got, ["before the move", "after the move"]);
});
