// Reads the vectors of docs/protocol.md, as session/vectors_test.go and
// frame/vectors_test.go do: "Vector:" + hex block (frames), "HS-Vector:" +
// hs-hex / hs-text block (handshakes), "Root-Pub:" + plain block.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { fromHex } from "../dist/frame.js";

export const protocolPath = fileURLToPath(new URL("../../../docs/protocol.md", import.meta.url));

export function readVectors(path = protocolPath) {
  const lines = readFileSync(path, "utf8").split("\n");
  const frames = new Map();
  const hs = new Map();
  const rootPub = new Map();
  for (let i = 0; i < lines.length; i++) {
    const m = /^(Vector|HS-Vector|Root-Pub): (\S+)$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (lines[j].trim() === "") j++;
    const fence = /^```(\S*)$/.exec(lines[j]);
    if (!fence) throw new Error(`${m[2]}: no block after the name`);
    const body = [];
    for (j++; lines[j] !== "```"; j++) body.push(lines[j]);
    const kind = fence[1];
    let value;
    if (kind === "hex" || kind === "hs-hex") value = fromHex(body.map((l) => l.replace(/#.*$/, "")).join(" "));
    else value = body.join("\n");
    if (m[1] === "Vector") {
      let fields = "";
      for (let k = j + 1; k < Math.min(j + 6, lines.length); k++) {
        if (lines[k].startsWith("Fields: ")) {
          fields = lines[k].slice(8);
          break;
        }
      }
      frames.set(m[2], { bytes: value, fields });
    } else if (m[1] === "HS-Vector") {
      hs.set(m[2], { kind, value });
    } else rootPub.set(m[2], value);
  }
  return { frames, hs, rootPub };
}
