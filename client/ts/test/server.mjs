// Starts a real myimd for the tests: built once from the repository into a
// temporary binary, run on loopback with every listener on a random port and
// a temporary data directory, stopped (by its pid) when the test ends.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const repo = fileURLToPath(new URL("../../..", import.meta.url));
let binary = null;

function build() {
  if (binary) return binary;
  const prebuilt = fileURLToPath(new URL("./.bin/myimd", import.meta.url));
  if (existsSync(prebuilt)) return (binary = prebuilt);
  const dir = mkdtempSync(join(tmpdir(), "myimd-bin-"));
  binary = join(dir, "myimd");
  execFileSync("go", ["build", "-o", binary, "./cmd/myimd"], { cwd: repo, stdio: ["ignore", "inherit", "inherit"] });
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return binary;
}

/** Runs a myimd subcommand (cluster init, cluster token) and returns its output. */
export function myimd(...args) {
  return execFileSync(build(), args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Whether this myimd has a WebSocket listener (--ws-addr). */
export function hasWebSocket() {
  const help = spawnSyncHelp();
  return help.includes("--ws-addr");
}

let help = null;
function spawnSyncHelp() {
  if (help === null) {
    const r = spawnSync(build(), ["--help"], { encoding: "utf8" });
    help = `${r.stdout}${r.stderr}`;
  }
  return help;
}

/**
 * Starts myimd; resolves with its addresses ({http, login, endpoint, ws,
 * admin}), its root.pub text and stop(). extra are more flags.
 */
export async function startServer(t, extra = [], opts = {}) {
  const bin = build();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "myimd-data-"));
  const args = ["--data-dir", dir, "--endpoint-addr", "127.0.0.1:0", "--login-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
    "--center-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--shutdown-grace", "2s", ...extra];
  if (hasWebSocket()) args.push("--ws-addr", "127.0.0.1:0");
  const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  p.stderr.on("data", (b) => (stderr += b));
  const addrs = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`myimd did not start: ${stderr}`)), 20000);
    const rl = createInterface({ input: p.stdout });
    rl.on("line", (line) => {
      const m = /^\s+(\w+)\s+listening on (\S+)/.exec(line);
      if (m) addrs[m[1]] = m[2];
      if (/^\s+data\s/.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    p.once("exit", (code) => reject(new Error(`myimd exited ${code}: ${stderr}`)));
  });
  p.stdout.resume();
  const stop = async () => {
    if (p.exitCode === null) {
      const done = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      const t2 = setTimeout(() => p.kill("SIGKILL"), 5000);
      await done;
      clearTimeout(t2);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  t?.after?.(stop);
  const rootPub = join(dir, "root.pub");
  return { addrs, roots: existsSync(rootPub) ? readFileSync(rootPub, "utf8") : "", dir, stop, http: `http://${addrs.http}`, stderr: () => stderr };
}
