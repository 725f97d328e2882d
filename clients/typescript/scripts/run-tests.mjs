// `npm test`: Node's own test runner over the compiled tests (pretest builds the package and
// compiles test/ to build/test). Files run one at a time: each starts its own real server,
// and this machine's cores are shared.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "build", "test");
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".test.js") || f.endsWith(".test.cjs"))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort()
  .map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no test files in ${dir}`);
  process.exit(1);
}
const run = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...files], { stdio: "inherit" });
process.exit(run.status ?? 1);
