// Builds the /chat page: chat/app.ts and the SDK bundled by esbuild,
// inlined into chat/index.html, written to web/chat/chat.html (committed,
// so that the server builds without Node). With --check it fails when the
// committed file differs from a fresh build.
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
export const out = fileURLToPath(new URL("../../../web/chat/chat.html", import.meta.url));

export async function buildChat() {
  const r = await build({
    entryPoints: [`${root}/chat/app.ts`],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    legalComments: "none",
    logLevel: "silent",
  });
  const js = new TextDecoder().decode(r.outputFiles[0].contents).replace(/<\/script/gi, "<\\/script").trim();
  const html = readFileSync(`${root}/chat/index.html`, "utf8");
  return html.replace("__MYIM_SCRIPT__", () => js);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const html = await buildChat();
  if (process.argv.includes("--check")) {
    let have = "";
    try {
      have = readFileSync(out, "utf8");
    } catch {}
    if (have !== html) {
      console.error(`${out} is not the build of client/ts/chat: run (cd client/ts && npm run chat) and commit it`);
      process.exit(1);
    }
    console.log("web/chat/chat.html matches a fresh build");
  } else {
    writeFileSync(out, html);
    console.log(`wrote ${out} (${(html.length / 1024).toFixed(1)} KB)`);
  }
}
