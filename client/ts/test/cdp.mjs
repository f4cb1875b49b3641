// A minimal Chrome DevTools Protocol driver: starts headless Chromium on a
// random loopback port and drives pages in separate browser contexts. No
// dependency beyond Node's WebSocket.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const haveChromium = () => existsSync(chromiumPath);

export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "myim-chromium-"));
  const proc = spawn(chromiumPath, ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    `--user-data-dir=${profile}`, "about:blank"], { stdio: ["ignore", "ignore", "pipe"] });
  const url = await new Promise((resolve, reject) => {
    let err = "";
    const t = setTimeout(() => reject(new Error(`chromium did not start: ${err}`)), 30000);
    proc.stderr.on("data", (b) => {
      err += b;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.once("exit", (c) => reject(new Error(`chromium exited ${c}: ${err}`)));
  });
  const ws = new WebSocket(url);
  await new Promise((r, j) => {
    ws.onopen = r;
    ws.onerror = j;
  });
  const b = new Browser(ws);
  b.close = async () => {
    try {
      await b.send("Browser.close");
    } catch {}
    ws.close();
    if (proc.exitCode === null) {
      const done = new Promise((r) => proc.once("exit", r));
      const k = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await done;
      clearTimeout(k);
    }
    rmSync(profile, { recursive: true, force: true });
  };
  return b;
}

class Browser {
  constructor(ws) {
    this.ws = ws;
    this.id = 0;
    this.calls = new Map();
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.id === undefined) return;
      const c = this.calls.get(m.id);
      if (!c) return;
      this.calls.delete(m.id);
      if (m.error) c.reject(new Error(`${c.method}: ${m.error.message}`));
      else c.resolve(m.result);
    };
  }
  send(method, params = {}, sessionId) {
    const id = ++this.id;
    this.ws.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((resolve, reject) => this.calls.set(id, { resolve, reject, method }));
  }
  /** A fresh browser context: its own storage, like another person's browser. */
  async context() {
    const { browserContextId } = await this.send("Target.createBrowserContext");
    return browserContextId;
  }
  async page(contextId, url, width = 720, height = 640) {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank", browserContextId: contextId, width, height });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const p = new Page(this, targetId, sessionId);
    await p.send("Page.enable");
    await p.send("Runtime.enable");
    await p.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
    if (url) await p.goto(url);
    return p;
  }
}

class Page {
  constructor(b, targetId, sessionId) {
    this.b = b;
    this.targetId = targetId;
    this.sessionId = sessionId;
  }
  send(method, params) {
    return this.b.send(method, params, this.sessionId);
  }
  async goto(url) {
    await this.send("Page.navigate", { url });
    await this.waitFor("document.readyState === 'complete'");
  }
  /** Evaluates an expression in the page (promises awaited) and returns its value. */
  async eval(expr) {
    const r = await this.send("Runtime.evaluate", { expression: expr, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`${expr}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }
  /** Waits until expr is truthy in the page. */
  async waitFor(expr, ms = 20000) {
    const end = Date.now() + ms;
    for (;;) {
      let v;
      try {
        v = await this.eval(expr);
      } catch {}
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${expr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async type(selector, text) {
    await this.eval(`(() => { const e = document.querySelector(${JSON.stringify(selector)}); e.value = ${JSON.stringify(text)}; e.dispatchEvent(new Event("input")); })()`);
  }
  async click(selector) {
    await this.eval(`document.querySelector(${JSON.stringify(selector)}).click()`);
  }
  async screenshot() {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    return data;
  }
  async close() {
    await this.b.send("Target.closeTarget", { targetId: this.targetId });
  }
}
