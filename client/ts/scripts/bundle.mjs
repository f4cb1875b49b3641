// Bundles the SDK as a browser would load it (esbuild, minified, ES module)
// and reports its gzipped size. With --check it fails past the budget.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

export const BUDGET = 40 * 1024;
const root = fileURLToPath(new URL("..", import.meta.url));

export async function bundleSize() {
  const r = await build({
    entryPoints: [`${root}/src/index.ts`],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const code = r.outputFiles[0].contents;
  return { raw: code.length, gzip: gzipSync(code, { level: 9 }).length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { raw, gzip } = await bundleSize();
  const kb = (n) => (n / 1024).toFixed(1) + " KB";
  console.log(`@myim/client bundle: ${kb(raw)} minified, ${kb(gzip)} gzipped (budget ${kb(BUDGET)})`);
  if (process.argv.includes("--check") && gzip > BUDGET) {
    console.error("bundle over budget");
    process.exit(1);
  }
}
