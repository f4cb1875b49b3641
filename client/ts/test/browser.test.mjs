// The /chat page in headless Chromium against a real myimd: two browser
// contexts register, befriend, exchange QoS 1 messages both ways with
// delivered ticks; one closes and, back, finds what was sent meanwhile; a
// Go SDK client talks to a browser in the same test. With
// MYIM_CHAT_SCREENSHOT set, the two chats side by side are saved there
// (docs/chat.png is made this way).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startServer, hasWebSocket } from "./server.mjs";
import { launch, haveChromium } from "./cdp.mjs";

const repo = fileURLToPath(new URL("../../..", import.meta.url));

/** Starts the Go SDK peer (test/gopeer) and returns a line-protocol handle. */
function goPeer(t, srv) {
  const dir = mkdtempSync(join(tmpdir(), "gopeer-"));
  let bin = fileURLToPath(new URL("./.bin/gopeer", import.meta.url));
  if (!existsSync(bin)) {
    bin = join(dir, "gopeer");
    execFileSync("go", ["build", "-o", bin, "./client/ts/test/gopeer"], { cwd: repo, stdio: ["ignore", "inherit", "inherit"] });
  }
  const p = spawn(bin, ["-login", srv.addrs.login, "-http", srv.http, "-roots", join(srv.dir, "root.pub")], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = [];
  let wake = null;
  createInterface({ input: p.stdout }).on("line", (l) => {
    lines.push(l);
    wake?.();
  });
  t.after(() => {
    p.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  const next = async (pred, ms = 20000) => {
    const end = Date.now() + ms;
    for (;;) {
      const i = lines.findIndex(pred);
      if (i >= 0) return lines.splice(i, 1)[0];
      if (Date.now() > end) throw new Error(`gopeer: no matching line in ${JSON.stringify(lines)}`);
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  };
  return {
    async do(cmd) {
      p.stdin.write(cmd + "\n");
      const l = await next((l) => /^(ok|acked|error)/.test(l));
      if (l.startsWith("error")) throw new Error(`gopeer ${cmd}: ${l}`);
      return l;
    },
    msg: (text) => next((l) => l.startsWith("msg ") && l.endsWith(` ${text}`)),
  };
}

const S = JSON.stringify;

async function enter(page, name, password, register) {
  await page.type("#name", name);
  await page.type("#password", password);
  await page.click(register ? "#do-register" : "#do-login");
  try {
    await page.waitFor(`getComputedStyle(document.getElementById("app")).display === "flex"`);
  } catch (e) {
    throw new Error(`${name}: ${await page.eval(`document.getElementById("error").textContent`)}`, { cause: e });
  }
}

const peer = (name) => `li.peer[data-name=${S(name)}]`;

async function openChat(page, name) {
  await page.waitFor(`document.querySelector(${S(peer(name))})`);
  await page.click(peer(name));
}

async function say(page, text) {
  await page.type("#text", text);
  await page.click("#send");
}

/** The tick of our last line with this text. */
const tickOf = (text) =>
  `[...document.querySelectorAll("#log .msg[data-dir=out]")].filter(m => m.querySelector(".text").textContent === ${S(text)}).map(m => m.querySelector(".tick").dataset.tick).pop()`;

const shows = (text, dir = "in") =>
  `[...document.querySelectorAll("#log .msg[data-dir=${dir}] .text")].some(e => e.textContent === ${S(text)})`;

async function accept(page, name) {
  const sel = `li.request[data-name=${S(name)}] button`;
  await page.waitFor(`document.querySelector(${S(sel)})`);
  await page.click(sel);
}

test("two browsers and a Go client chat through /chat", { skip: !haveChromium() && process.env.CI !== "true" && "no chromium (under CI=true this fails)", timeout: 180000 }, async (t) => {
  assert.ok(hasWebSocket(), "myimd has no --ws-addr");
  const t0 = Date.now();
  const mark = (what) => t.diagnostic(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const srv = await startServer(t);
  mark("myimd up");
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    mark("browser closed");
  });
  mark("chromium up");
  const url = `${srv.http}/chat`;
  const ann = await browser.page(await browser.context(), url);
  const benCtx = await browser.context();
  let ben = await browser.page(benCtx, url);

  mark("pages loaded");
  await enter(ann, "ann", "password-ann", true);
  mark("ann in");
  await enter(ben, "ben", "password-ben", true);

  mark("registered");
  // Befriend: ann asks by name, ben accepts; each sees the other online.
  await ann.type("#friend-name", "ben");
  await ann.click("#add-friend");
  await accept(ben, "ann");
  await ann.waitFor(`document.querySelector(${S(peer("ben") + " .dot[data-status='1']")})`);
  await ben.waitFor(`document.querySelector(${S(peer("ann") + " .dot[data-status='1']")})`);

  mark("friends");
  // QoS 1 both ways, with delivered ticks.
  await openChat(ann, "ben");
  await openChat(ben, "ann");
  await say(ann, "hi ben, this is the browser");
  await ann.waitFor(`${tickOf("hi ben, this is the browser")} === "delivered"`);
  await ben.waitFor(shows("hi ben, this is the browser"));
  await say(ben, "hello ann, over WebSocket too");
  await ben.waitFor(`${tickOf("hello ann, over WebSocket too")} === "delivered"`);
  await ann.waitFor(shows("hello ann, over WebSocket too"));

  mark("browsers exchanged");
  // A Go SDK client (TCP) and the browsers.
  await fetch(`${srv.http}/v1/users`, { method: "POST", body: S({ name: "gus", password: "password-gus" }) });
  const gus = goPeer(t, srv);
  await gus.do("login gus password-gus");
  await gus.do("befriend ann");
  await gus.do("befriend ben");
  await accept(ann, "gus");
  await accept(ben, "gus");
  assert.equal(await gus.do("send ann hello from the Go SDK"), "acked delivered");
  await openChat(ann, "gus");
  await ann.waitFor(shows("hello from the Go SDK"));
  await say(ann, "hello Go, from Chromium");
  await ann.waitFor(`${tickOf("hello Go, from Chromium")} === "delivered"`);
  await gus.msg("hello Go, from Chromium");
  await openChat(ann, "ben");

  mark("go client done");
  // ben closes; what ann and gus send meanwhile is stored, and shown when ben is back.
  await ben.close();
  await ann.waitFor(`document.querySelector(${S(peer("ben") + " .dot[data-status='0']")})`);
  await say(ann, "are you there, ben?");
  await ann.waitFor(`${tickOf("are you there, ben?")} === "stored"`);
  await say(ann, "I'll wait");
  await ann.waitFor(`${tickOf("I'll wait")} === "stored"`);
  assert.equal(await gus.do("send ben sent while you were out"), "acked stored");

  mark("offline sends done");
  ben = await browser.page(benCtx, url);
  await enter(ben, "ben", "password-ben", false);
  await openChat(ben, "ann");
  await ben.waitFor(shows("I'll wait"));
  await ben.waitFor(`document.querySelector("#log .away")`);
  const order = await ben.eval(`[...document.querySelectorAll("#log .msg[data-dir=in] .text")].map(e => e.textContent)`);
  assert.deepEqual(order, ["are you there, ben?", "I'll wait"]);
  await say(ben, "back now");
  await ann.waitFor(shows("back now"));
  await ben.waitFor(`${tickOf("back now")} === "delivered"`);
  await openChat(ben, "gus");
  await ben.waitFor(shows("sent while you were out"));

  mark("ben back");
  // A group: ann creates it and invites ben; QoS 1 both ways, stored in the group's log.
  await ann.type("#group-name", "weekend");
  await ann.click("#add-group");
  await ann.waitFor(`document.querySelector(${S(peer("weekend") + ".active")})`);
  await ann.type("#invite-name", "ben");
  await ann.click("#invite");
  await ann.waitFor(`document.getElementById("side-note").textContent === "ben is in weekend"`);
  await say(ann, "pizza on saturday?");
  await ann.waitFor(`${tickOf("pizza on saturday?")} === "stored"`);
  await openChat(ben, "weekend");
  await ben.waitFor(shows("pizza on saturday?"));
  await say(ben, "yes!");
  await ben.waitFor(`${tickOf("yes!")} === "stored"`);
  await ann.waitFor(shows("yes!"));
  assert.equal(await ann.eval(`document.querySelectorAll("#log .msg").length`), 2, "ann's own echo is shown once");
  await openChat(ann, "ben");
  await openChat(ben, "ann");

  mark("group done");
  const shot = process.env.MYIM_CHAT_SCREENSHOT;
  if (shot) {
    const [a, b] = [await ann.screenshot(), await ben.screenshot()];
    const both = await browser.page(await browser.context(), null, 1456, 640);
    await both.send("Page.setDocumentContent", {
      frameId: (await both.send("Page.getFrameTree")).frameTree.frame.id,
      html: `<body style="margin:0;display:flex;gap:16px;background:#c9d1dd"><img src="data:image/png;base64,${a}"><img src="data:image/png;base64,${b}"></body>`,
    });
    await both.waitFor(`[...document.images].every(i => i.complete && i.naturalWidth > 0)`);
    writeFileSync(shot, Buffer.from(await both.screenshot(), "base64"));
  }
});
