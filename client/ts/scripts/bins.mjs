// Builds the Go programs the tests run (myimd, and the Go SDK peer of the
// browser test) once, into test/.bin, so that parallel test files share them.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../../..", import.meta.url));
const bin = fileURLToPath(new URL("../test/.bin", import.meta.url));
for (const [out, pkg] of [["myimd", "./cmd/myimd"], ["gopeer", "./client/ts/test/gopeer"]]) {
  execFileSync("go", ["build", "-o", `${bin}/${out}`, pkg], { cwd: repo, stdio: "inherit" });
}
