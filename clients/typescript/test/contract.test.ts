// The answer types against the real server. OpenAPI does not describe the answers, so this
// checks them on the wire: every field the server sends in an action must be declared in
// `Action` (ACTION_FIELDS, which test/types.test.ts ties to the type), and every field the
// type says is always there must be there, in actions of every status and for every role.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  ACTION_FIELDS,
  type Action,
  type ActionEvent,
  ExecutionGovernorClient,
  OPTIONAL_ACTION_FIELDS,
  STATUSES,
} from "@faramesh/sdk";

import { FarameshServer, unique } from "./support/server.js";

let server: FarameshServer;
let agent: ExecutionGovernorClient;
let person: ExecutionGovernorClient;

before(async () => {
  // A short execution lease, so a started action's outcome becomes unknown quickly.
  server = await FarameshServer.start({ args: ["--execution-lease", "1s"] });
  agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("agent") });
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("approver") });
});

after(async () => {
  await server?.close();
});

const declared = new Set<string>(ACTION_FIELDS);
const optional = new Set<string>(OPTIONAL_ACTION_FIELDS);

function checkAction(action: Action, where: string): void {
  const sent = Object.keys(action);
  const unknown = sent.filter((k) => !declared.has(k));
  assert.deepEqual(unknown, [], `${where}: the server sends fields the Action type does not declare`);
  const missing = ACTION_FIELDS.filter((k) => !optional.has(k) && !(k in action));
  assert.deepEqual(missing, [], `${where}: the Action type promises fields the server did not send`);
  assert.ok((STATUSES as readonly string[]).includes(action.status), `${where}: status ${action.status}`);
  assert.ok(["allow", "deny", "require_approval"].includes(action.decision), `${where}: decision ${action.decision}`);
  assert.deepEqual(Object.keys(action.presence).sort(), ["agent_seen_at", "agent_waiting"]);
  const runnable = action.status === "allowed" || action.status === "approved";
  assert.equal(typeof action.permit === "string", runnable, `${where}: a permit exactly while it may run`);
  if (action.execution) assert.deepEqual(Object.keys(action.execution).sort(), ["lease_expires_at", "started_at"], where);
  if (action.approval) {
    const keys = Object.keys(action.approval).filter((k) => k !== "counted");
    assert.deepEqual(keys.sort(), ["approvers", "expires_at", "lapses_at", "picked_up_at", "quorum"], where);
  }
}

test("actions of every status, as agents and approvers see them, have exactly the declared fields", async () => {
  const seen = new Map<string, Action>();
  const note = (where: string, action: Action) => {
    checkAction(action, where);
    seen.set(`${where}:${action.status}`, action);
  };

  const allowed = await agent.submitAction({ tool: "lookup_order", operation: "read", params: { n: unique("a") } });
  note("submit", allowed);
  note("result", await agent.reportResult(allowed.id, { success: true, result: { ok: 1 } }));

  const held = await agent.submitAction({ tool: "refund", operation: "process", params: { amount: 500, n: unique("h") } });
  note("submit", held);
  const again = await agent.submitAction({ tool: "refund", operation: "process", params: held.params });
  assert.equal(again.reattached, true);
  note("reattached", again);
  const asApprover = await person.getAction(held.id);
  assert.equal(typeof asApprover.approval_token, "string", "approvers see the approval token of a pending action");
  note("approver", asApprover);
  const approved = await person.approve(held.id, { params: { amount: 300, n: held.params.n ?? null } });
  note("approve", approved);
  note("wait", await agent.waitForDecision(held.id, { timeout: 5 }));
  note("failed", await agent.reportResult(held.id, { success: false, error: "declined by the bank" }));

  note("denied", await agent.submitAction({ tool: "wipe_database", operation: "run", params: { n: unique("d") } }));
  const toDeny = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("p") } });
  note("deny", await person.deny(toDeny.id, { reason: "no" }));
  const toCancel = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("c") } });
  note("cancel", await agent.cancel(toCancel.id));

  const started = await agent.submitAction({ tool: "lookup_order", operation: "read", params: { n: unique("s") } });
  const executing = await agent.start(started.id);
  note("start", executing);
  assert.ok(executing.execution?.lease_expires_at);
  for (let i = 0; i < 400; i++) {
    const now = await agent.getAction(started.id);
    if (now.status === "outcome_unknown") {
      note("lease", now);
      break;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  note("reconcile", await person.reconcile(started.id, { outcome: "failed", reason: "no record of it" }));

  for (const page of [await agent.listActions({ limit: 20 }), await person.listActions({ limit: 20 })]) {
    assert.deepEqual(Object.keys(page).sort(), ["actions", "next_cursor"]);
    for (const action of page.actions) note("list", action);
  }

  const statuses = new Set([...seen.values()].map((a) => a.status));
  assert.deepEqual([...statuses].sort(), [...STATUSES].sort(), "every status was checked");
});

test("events carry type, seq, action_id, status and a declared action", async () => {
  const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("e") } });
  await person.approve(action.id);
  const events: ActionEvent[] = [];
  const controller = new AbortController();
  for await (const event of person.streamEvents({ lastEventId: "0", signal: controller.signal })) {
    if (event.action_id !== action.id) continue;
    events.push(event);
    if (event.type === "action.approved") break;
  }
  for (const event of events) {
    assert.deepEqual(Object.keys(event).sort(), ["action", "action_id", "seq", "status", "type"]);
    checkAction(event.action, `event ${event.type}`);
  }
  assert.ok(events.some((e) => e.action.approvals !== undefined), "events list the votes");

  const audit = await agent.getActionEvents(action.id);
  for (const record of audit) {
    for (const key of ["seq", "event", "action_id", "actor", "at", "ts", "data", "prev_hash", "hash"]) {
      assert.ok(key in record, `audit records carry ${key}`);
    }
  }
});

test("decide answers with the declared fields", async () => {
  const answer = await agent.decide({ tool: "refund", operation: "process", params: { amount: 1 } });
  for (const key of ["decision", "reason", "risk_level", "rule_id", "policy_hash", "request_hash", "agent_id"]) {
    assert.ok(key in answer, `decide answers carry ${key}`);
  }
});
