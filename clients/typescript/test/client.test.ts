// The client against a real server: the seed's flow (submit, wait woken by an approval,
// execute, report) from plain Node, and every other call.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { type Action, type ActionEvent, ExecutionGovernorClient, requestHash } from "@faramesh/sdk";

import { FarameshServer, unique } from "./support/server.js";

let server: FarameshServer;
let agent: ExecutionGovernorClient;
let person: ExecutionGovernorClient;

before(async () => {
  server = await FarameshServer.start();
  agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("agent") });
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("approver") });
});

after(async () => {
  await server?.close();
});

describe("the seed's flow", () => {
  test("an allowed action runs and its result is recorded", async () => {
    const action = await agent.submitAction({ tool: "refund", operation: "process", params: { amount: 50 } });
    assert.equal(action.status, "allowed");
    assert.equal(action.decision, "allow");
    assert.equal(action.reason, "Small refunds allowed");
    assert.equal(action.reattached, false);
    const done = await agent.reportResult(action.id, { success: true, result: { refund_id: "r_1" } });
    assert.equal(done.status, "succeeded");
    assert.deepEqual((await agent.getAction(action.id)).result, { refund_id: "r_1" });
  });

  test("a held action waits, is woken by an approval, runs with the approved params, and reports", async () => {
    const action = await agent.submitAction({
      tool: "refund",
      operation: "process",
      params: { amount: 150, customer_id: "cus_42" },
      context: { agent_id: unique("seed") },
    });
    assert.equal(action.status, "pending_approval");
    assert.equal(action.reason, "Large refunds need approval");
    assert.equal(action.risk_level, "high");
    assert.ok(action.approval?.expires_at, "a held action carries its expiry");

    const waiting = agent.waitForDecision(action.id, { timeout: 60 });
    // The wait is a long-poll: it is still open when the person decides.
    const pending = await agent.getAction(action.id);
    assert.equal(pending.status, "pending_approval");
    await person.approve(action.id, { reason: "ok, but less", params: { amount: 120, customer_id: "cus_42" } });
    const decided = await waiting;
    assert.equal(decided.status, "approved");
    assert.deepEqual(decided.params, { amount: 120, customer_id: "cus_42" });
    assert.deepEqual(decided.original_params, { amount: 150, customer_id: "cus_42" });

    const done = await agent.reportResult(decided.id, { success: true, result: { refunded: decided.params.amount } });
    assert.equal(done.status, "succeeded");
  });

  test("a denied action is an answer, not an error", async () => {
    const action = await agent.submitAction({ tool: "user_management", operation: "delete", params: { user_id: "u1" } });
    assert.equal(action.status, "denied");
    assert.equal(action.reason, "Agents may not delete users");
  });

  test("a person's denial reaches the waiting agent with its reason", async () => {
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("d") } });
    const waiting = agent.waitForDecision(action.id, { timeout: 60 });
    await person.deny(action.id, { reason: "not today" });
    const decided = await waiting;
    assert.equal(decided.status, "denied");
    assert.equal(decided.reason, "not today");
  });

  test("a wait that runs out returns the action still pending", async () => {
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("t") } });
    const answer = await agent.waitForDecision(action.id, { timeout: 0.2 });
    assert.equal(answer.status, "pending_approval");
    assert.equal(answer.id, action.id);
  });

  test("a failure is reported as failed", async () => {
    const action = await agent.submitAction({ tool: "lookup_order", operation: "read", params: { id: "A7" } });
    const done = await agent.reportResult(action.id, { success: false, error: "the order service timed out" });
    assert.equal(done.status, "failed");
    assert.equal(done.error, "the order service timed out");
  });
});

describe("re-attach and idempotency", () => {
  test("an identical held submit re-attaches; reattach: false asks anew", async () => {
    const params = { amount: 500, order: unique("o") };
    const first = await agent.submitAction({ tool: "refund", operation: "process", params });
    assert.equal(first.reattached, false);
    const again = await agent.submitAction({ tool: "refund", operation: "process", params });
    assert.equal(again.id, first.id);
    assert.equal(again.reattached, true);
    const fresh = await agent.submitAction({ tool: "refund", operation: "process", params, reattach: false });
    assert.notEqual(fresh.id, first.id);
    assert.equal(fresh.reattached, false);
  });

  test("the same Idempotency-Key returns the same action", async () => {
    const key = unique("idem");
    const params = { amount: 5, n: unique("i") };
    const a = await agent.submitAction({ tool: "refund", operation: "process", params, idempotencyKey: key });
    const b = await agent.submitAction({ tool: "refund", operation: "process", params, idempotencyKey: key });
    assert.equal(a.id, b.id);
  });

  test("request_hash is what requestHash computes from what was sent", async () => {
    const params = { amount: 12.5, note: "café ☕", nested: { b: [1, 2.0, -0.25], a: null } };
    const context = { agent_id: unique("hash"), 𝒳: 1, z: "ok" };
    const action = await agent.submitAction({ tool: "refund", operation: "process", params, context });
    assert.equal(
      requestHash({ agentId: action.agent_id, tool: "refund", operation: "process", params, context }),
      action.request_hash,
    );
  });
});

describe("cancel", () => {
  test("the submitting agent withdraws a held action; approving it afterwards is refused", async () => {
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("c") } });
    const cancelled = await agent.cancel(action.id, { reason: "the user left" });
    assert.equal(cancelled.status, "cancelled");
    await assert.rejects(person.approve(action.id), { name: "ConflictError", statusCode: 409 });
  });
});

describe("reading", () => {
  test("listActions pages with next_cursor and filters; iterActions follows the cursor", async () => {
    const bot = unique("lister");
    const keyed = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("agent", { agentId: bot }) });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await keyed.submitAction({ tool: "lookup_order", operation: "read", params: { i } })).id);
    }
    const first = await keyed.listActions({ agentId: bot, limit: 2 });
    assert.equal(first.actions.length, 2);
    assert.ok(first.next_cursor);
    const second = await keyed.listActions({ agentId: bot, limit: 2, cursor: first.next_cursor });
    assert.equal(second.actions.length, 2);
    assert.deepEqual(
      [...first.actions, ...second.actions].map((a) => a.id),
      ids.slice(1).reverse(),
    );
    const all: Action[] = [];
    for await (const a of keyed.iterActions({ agentId: bot, limit: 2, status: "allowed" })) all.push(a);
    assert.deepEqual(
      all.map((a) => a.id),
      [...ids].reverse(),
    );
    assert.equal((await keyed.listActions({ agentId: bot, status: "denied" })).actions.length, 0);
  });

  test("getActionEvents returns the audit trail", async () => {
    const action = await agent.submitAction({ tool: "lookup_order", operation: "read", params: { n: unique("e") } });
    await agent.reportResult(action.id, { success: true });
    const events = await agent.getActionEvents(action.id);
    assert.deepEqual(
      events.map((e) => e.event),
      ["action.submitted", "action.succeeded"],
    );
    assert.ok(events.every((e) => e.action_id === action.id && typeof e.hash === "string"));
  });

  test("decide is a dry run: nothing is recorded", async () => {
    const bot = unique("dry");
    const answer = await agent.decide({ tool: "refund", operation: "process", params: { amount: 150 }, context: { agent_id: bot } });
    assert.equal(answer.decision, "require_approval");
    assert.equal((await agent.listActions({ agentId: bot })).actions.length, 0);
  });

  test("getPolicy and health", async () => {
    const policy = await person.getPolicy();
    assert.equal(typeof policy.hash, "string");
    assert.equal((await agent.health()).status, "ok");
  });
});

describe("streamEvents", () => {
  test("replays from lastEventId, then follows live changes", async () => {
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("s") } });
    const seen: ActionEvent[] = [];
    const controller = new AbortController();
    const reading = (async () => {
      for await (const event of person.streamEvents({ lastEventId: "0", signal: controller.signal })) {
        if (event.action_id !== action.id) continue;
        seen.push(event);
        if (event.type === "action.approved") return;
      }
    })();
    // The replay shows the submission; approving it afterwards arrives live.
    while (!seen.some((e) => e.type === "action.created")) await new Promise((r) => setTimeout(r, 20));
    await person.approve(action.id, { reason: "fine" });
    await reading;
    assert.deepEqual(
      seen.map((e) => [e.type, e.status]),
      [
        ["action.created", "pending_approval"],
        ["action.approved", "approved"],
      ],
    );
    assert.ok(seen.every((e) => typeof e.seq === "number" && e.action.id === action.id));
    controller.abort();
  });

  test("leaving the loop closes the stream, and aborting ends it with the signal's reason", async () => {
    const controller = new AbortController();
    const stream = person.streamEvents({ lastEventId: "0", signal: controller.signal });
    const first = await stream.next();
    assert.equal(first.done, false);
    controller.abort(new Error("stop reading"));
    await assert.rejects(stream.next(), /stop reading/);
  });
});

describe("configuration", () => {
  const saved = { ...process.env };
  after(() => {
    for (const name of ["FARAMESH_URL", "FARAMESH_BASE_URL", "FARAMESH_API_KEY", "FARAMESH_TOKEN"]) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  test("FARAMESH_URL and FARAMESH_API_KEY, or the published faramesh-sdk's FARAMESH_BASE_URL and FARAMESH_TOKEN", async () => {
    const key = await server.createKey("agent");
    delete process.env.FARAMESH_URL;
    delete process.env.FARAMESH_API_KEY;
    process.env.FARAMESH_BASE_URL = `${server.url}/`;
    process.env.FARAMESH_TOKEN = key;
    const legacy = new ExecutionGovernorClient();
    assert.equal(legacy.baseUrl, server.url);
    assert.equal((await legacy.submitAction({ tool: "lookup_order", operation: "read" })).status, "allowed");

    // FARAMESH_URL and FARAMESH_API_KEY win over the aliases; options win over both.
    process.env.FARAMESH_URL = server.url;
    process.env.FARAMESH_BASE_URL = "http://127.0.0.1:9";
    process.env.FARAMESH_API_KEY = key;
    process.env.FARAMESH_TOKEN = "fm_wrong";
    const current = new ExecutionGovernorClient();
    assert.equal(current.baseUrl, server.url);
    assert.equal(current.apiKey, key);
    assert.equal((await current.submitAction({ tool: "lookup_order", operation: "read" })).status, "allowed");
    const explicit = new ExecutionGovernorClient({ baseUrl: "http://127.0.0.1:1", apiKey: "fm_x", timeout: 3 });
    assert.deepEqual([explicit.baseUrl, explicit.apiKey, explicit.timeout], ["http://127.0.0.1:1", "fm_x", 3]);

    delete process.env.FARAMESH_URL;
    delete process.env.FARAMESH_BASE_URL;
    assert.equal(new ExecutionGovernorClient().baseUrl, "http://127.0.0.1:8000");
  });
});
