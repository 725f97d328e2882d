// A real Faramesh server for the tests: this repository's Python server (`faramesh serve`)
// in a subprocess, on a free port, with a fresh SQLite database and a policy file. Its
// output is kept and shown when it fails to start. Keys are created through the admin key
// the server prints at first start, as tests/conftest.py's ServerProcess does.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { type ContractScript, script } from "./paths.js";

const { cleanEnv, python } = await script<ContractScript>("contract.mjs");

export const POLICY = `
default: deny
rules:
  - match: {tool: "refund", operation: "process", amount_lte: 100}
    allow: true
    reason: "Small refunds allowed"
  - match: {tool: "refund", operation: "process", amount_gt: 100}
    require_approval: true
    reason: "Large refunds need approval"
    risk: high
  - match: {tool: "user_management", operation: "delete"}
    deny: true
    reason: "Agents may not delete users"
  - match: {tool: "lookup_order"}
    allow: true
    reason: "Reads are fine"
  - match: {tool: "transfer_funds"}
    require_approval: true
    reason: "Transfers need a person"
  - match: {tool: "wipe_database"}
    deny: true
    reason: "Never wipe the database"
`;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  policy?: string;
  /** More `faramesh serve` options, e.g. ["--rate-limit", "2/m"]. */
  args?: string[];
}

export class FarameshServer {
  readonly dir: string;
  readonly database: string;
  readonly policyFile: string;
  readonly args: string[];
  port = 0;
  adminKey: string | undefined;
  output: string[] = [];
  #proc: ChildProcess | undefined;

  private constructor(options: ServerOptions) {
    this.dir = mkdtempSync(join(tmpdir(), "faramesh-ts-"));
    this.database = `sqlite:///${join(this.dir, "faramesh.db")}`;
    this.policyFile = join(this.dir, "policy.yaml");
    writeFileSync(this.policyFile, options.policy ?? POLICY);
    this.args = options.args ?? [];
  }

  static async start(options: ServerOptions = {}): Promise<FarameshServer> {
    const server = new FarameshServer(options);
    server.port = await freePort();
    await server.start();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Start (or start again, on the same port and database). */
  async start(timeoutMs = 30_000): Promise<void> {
    const args = ["-m", "faramesh.cli.main", "serve", "--port", String(this.port), "--database-url", this.database];
    args.push("--policy", this.policyFile, ...this.args);
    const proc = spawn(python(), args, { cwd: this.dir, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    this.#proc = proc;
    proc.stdout?.setEncoding("utf8").on("data", (chunk: string) => this.output.push(chunk));
    proc.stderr?.setEncoding("utf8").on("data", (chunk: string) => this.output.push(chunk));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        const r = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) {
          await this.#readAdminKey();
          return;
        }
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    await this.stop();
    throw new Error(`the Faramesh server did not start:\n${this.output.join("")}`);
  }

  async #readAdminKey(): Promise<void> {
    for (let i = 0; i < 100 && !this.adminKey; i++) {
      const match = /^\s+(fm_\S+)\s*$/m.exec(this.output.join(""));
      if (match) this.adminKey = match[1];
      else await sleep(20);
    }
  }

  /** SIGTERM (the server drains: open waits get 503 + Retry-After), then wait for it to exit. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGTERM");
    const killed = await Promise.race([exited.then(() => false), sleep(10_000).then(() => true)]);
    if (killed) {
      proc.kill("SIGKILL");
      await exited;
    }
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A fresh key, created through the admin API. */
  async createKey(role: "agent" | "approver" | "admin", options: { agentId?: string; name?: string } = {}): Promise<string> {
    if (!this.adminKey) throw new Error(`no admin key in the server's output:\n${this.output.join("")}`);
    const body: Record<string, unknown> = { role, name: options.name ?? `ts ${role}` };
    if (options.agentId !== undefined) body.agent_id = options.agentId;
    const r = await fetch(`${this.url}/v1/keys`, {
      method: "POST",
      headers: { Authorization: `Bearer ${this.adminKey}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (r.status !== 201) throw new Error(`creating a key failed: ${r.status} ${await r.text()}`);
    return ((await r.json()) as { key: string }).key;
  }
}

/** A short unique suffix, so tests on one server do not see each other's actions. */
export function unique(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}
