// Writes the TypeScript examples of docs/typescript.md marked `<!-- docs-example: NAME -->`
// to build/docs/NAME.ts, where tsconfig.docs.json type-checks and compiles them and
// test/docs.test.ts runs them against a real server ("(type-check)" ones need a real model
// and are only compiled).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const DOC = join(root, "..", "..", "docs", "typescript.md");
const out = join(root, "build", "docs");

/** [{name, run, code}] for each marked example. */
export function examples(text = readFileSync(DOC, "utf8")) {
  const found = [];
  const pattern = /<!-- docs-example: ([a-z0-9-]+)( \(type-check\))? -->\n```ts\n([\s\S]*?)```/g;
  for (const match of text.matchAll(pattern)) found.push({ name: match[1], run: !match[2], code: match[3] });
  return found;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const example of examples()) {
    // `export {}` makes each file a module of its own (top-level await, no shared names).
    writeFileSync(join(out, `${example.name}.ts`), `${example.code}\nexport {};\n`);
  }
}
