// docs/typescript.md stays true: its marked examples are type-checked with the package (npm
// test's pretest compiles them from build/docs), and the ones that need no model run here,
// as plain Node programs, against a real server.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { ExecutionGovernorClient } from "@faramesh/sdk";

import { PACKAGE, script } from "./support/paths.js";
import { FarameshServer } from "./support/server.js";

const { examples } = await script<typeof import("../scripts/extract-docs.mjs")>("extract-docs.mjs");

let server: FarameshServer;
let agentKey: string;
let approverKey: string;
let person: ExecutionGovernorClient;

before(async () => {
  server = await FarameshServer.start();
  agentKey = await server.createKey("agent");
  approverKey = await server.createKey("approver");
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: approverKey });
});

after(async () => {
  await server?.close();
});

/** Run a compiled example as its own Node process; its output and exit code. */
async function runExample(name: string, whileRunning?: () => Promise<void>): Promise<{ code: number | null; out: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, FARAMESH_URL: server.url, FARAMESH_API_KEY: agentKey, APPROVER_KEY: approverKey };
  delete env.FARAMESH_BASE_URL;
  delete env.FARAMESH_TOKEN;
  const child = spawn(process.execPath, [join(PACKAGE, "build", "docs-js", `${name}.js`)], { env, cwd: PACKAGE });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await whileRunning?.();
  return { code: await exited, out };
}

test("every marked example was type-checked and compiled", () => {
  const found = examples();
  assert.deepEqual(
    found.map((e) => e.name),
    ["govern", "keep", "permit", "by-hand", "ai", "openai-agents"],
  );
  for (const example of found) assert.ok(existsSync(join(PACKAGE, "build", "docs-js", `${example.name}.js`)), example.name);
});

test("govern: the allowed call runs, the denied one does not", async () => {
  const { code, out } = await runExample("govern");
  assert.equal(code, 0, out);
  assert.match(out, /\{ refunded: 40, customer: 'cus_1' \}\ndenied: Agents may not delete users\n/);
});

test("onAbandon keep: the call made again after the approval runs once", async () => {
  const { code, out } = await runExample("keep");
  assert.equal(code, 0, out);
  assert.equal(out, "sent 20 to NL02\n");
  const actions = (await person.listActions({ agentId: "treasury-bot" })).actions;
  assert.deepEqual(
    actions.map((a) => a.status),
    ["succeeded"],
  );
});

test("verifyPermit, start, report", async () => {
  const { code, out } = await runExample("permit");
  assert.equal(code, 0, out);
  assert.match(out, /^may run [0-9a-f-]+ until \d{4}-\d\d-\d\dT/);
});

test("by hand: submit, wait woken by an approval, run, report", async () => {
  const { code, out } = await runExample("by-hand", async () => {
    for (let i = 0; i < 400; i++) {
      const [held] = (await person.listActions({ status: "pending_approval", tool: "refund" })).actions;
      if (held?.presence.agent_waiting) {
        await person.approve(held.id, { reason: "checked" });
        return;
      }
      await sleep(25);
    }
    throw new Error("the example never waited for a decision");
  });
  assert.equal(code, 0, out);
  assert.equal(out, "done approved { refunded: 150 }\n");
});
