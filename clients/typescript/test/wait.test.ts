// waitForDecision survives a real server restart (the draining server's 503 + Retry-After,
// then refused connections) and fails closed at its own deadline.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  ApprovalTimeout,
  ExecutionGovernorClient,
  FarameshConnectionError,
  NotFoundError,
  ServerUnavailable,
} from "@faramesh/sdk";

import { FarameshServer, unique } from "./support/server.js";

let server: FarameshServer;
let agentKey: string;
let person: ExecutionGovernorClient;

before(async () => {
  server = await FarameshServer.start();
  agentKey = await server.createKey("agent");
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("approver") });
});

after(async () => {
  await server?.close();
});

/** The real fetch, recording what each request to a wait got: a status, or the error thrown. */
function recording(log: string[]) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const path = new URL(String(input)).pathname;
    try {
      const response = await fetch(input, init);
      if (path.endsWith("/wait")) log.push(String(response.status));
      return response;
    } catch (err) {
      if (path.endsWith("/wait")) log.push("unreachable");
      throw err;
    }
  };
}

async function untilWaiting(id: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await person.getAction(id)).presence.agent_waiting) return;
    await sleep(25);
  }
  throw new Error("the agent's wait never reached the server");
}

describe("waitForDecision across a restart", () => {
  test("a wait open when the server stops is retried until the restarted server answers with the decision", async () => {
    const log: string[] = [];
    const agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: agentKey, fetch: recording(log) });
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("r") } });
    const waiting = agent.waitForDecision(action.id, { timeout: 120 });
    await untilWaiting(action.id);

    await server.stop(); // SIGTERM: the open wait is answered 503 + Retry-After, then nothing listens
    await sleep(300);
    await server.start(); // same port, same database
    await person.approve(action.id, { reason: "back again" });

    const decided = await waiting;
    assert.equal(decided.status, "approved");
    assert.equal(decided.id, action.id);
    assert.ok(log.includes("503"), `the draining server's 503 was retried: ${log.join(", ")}`);
    assert.ok(log.includes("unreachable"), `refused connections were retried: ${log.join(", ")}`);
    assert.equal(log.at(-1), "200");
  });

  test("503 answers to the wait are retried, honouring Retry-After", async () => {
    let refuse = 2;
    const seen: string[] = [];
    const agent = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) => {
        const path = new URL(String(input)).pathname;
        if (path.endsWith("/wait")) {
          seen.push(path);
          if (refuse-- > 0) {
            return Response.json(
              { detail: "restarting", error: { code: "server_draining", message: "x", field: null } },
              { status: 503, headers: { "Retry-After": "0" } },
            );
          }
        }
        return fetch(input, init);
      },
    });
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("w") } });
    await person.approve(action.id, { reason: "ok" });
    assert.equal((await agent.waitForDecision(action.id, { timeout: 30 })).status, "approved");
    assert.equal(seen.length, 3);
  });

  test("an error that retrying cannot fix is thrown at once", async () => {
    const agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: agentKey });
    await assert.rejects(agent.waitForDecision("no-such-action", { timeout: 30 }), NotFoundError);
  });

  test("a server that stays away until the deadline: ServerUnavailable, fail closed", async () => {
    const agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: agentKey });
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("d") } });
    await server.stop();
    try {
      const err = await agent.waitForDecision(action.id, { timeout: 1 }).catch((e: unknown) => e);
      assert.ok(err instanceof ServerUnavailable, `got ${String(err)}`);
      assert.ok(err instanceof ApprovalTimeout && err instanceof FarameshConnectionError);
      assert.equal(err.actionId, action.id);
      assert.ok(err.cause instanceof FarameshConnectionError);
      assert.match(err.message, /gave up at the deadline/);
    } finally {
      await server.start();
    }
    // Nothing was decided while it was away.
    assert.equal((await agent.getAction(action.id)).status, "pending_approval");
  });

  test("aborting a wait throws the signal's reason", async () => {
    const agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: agentKey });
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("a") } });
    const controller = new AbortController();
    const waiting = agent.waitForDecision(action.id, { timeout: 60, signal: controller.signal });
    await untilWaiting(action.id);
    controller.abort(new Error("tool timeout"));
    await assert.rejects(waiting, /tool timeout/);
  });
});
