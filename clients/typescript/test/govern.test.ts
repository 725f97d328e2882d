// govern(): the function runs only when allowed or approved, with the approved arguments, and
// its result is reported; refusals, timeouts, aborts and outages never run it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  type Action,
  ActionDenied,
  ApprovalTimeout,
  ExecutionGovernorClient,
  FarameshConnectionError,
  Gate,
  govern,
  type Logger,
  ServerUnavailable,
} from "@faramesh/sdk";

import { FarameshServer, freePort, unique } from "./support/server.js";

let server: FarameshServer;
let agentKey: string;
let client: ExecutionGovernorClient;
let person: ExecutionGovernorClient;

before(async () => {
  server = await FarameshServer.start();
  agentKey = await server.createKey("agent");
  client = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: agentKey });
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("approver") });
});

after(async () => {
  await server?.close();
});

class Notes implements Logger {
  warnings: string[] = [];
  infos: string[] = [];
  warn(message: string): void {
    this.warnings.push(message);
  }
  info(message: string): void {
    this.infos.push(message);
  }
}

/** The agent's actions, newest first, as a person sees them. */
async function actionsOf(agentId: string): Promise<Action[]> {
  return (await person.listActions({ agentId })).actions;
}

/** The agent's held action, once its governed call is waiting on it. */
async function heldFor(agentId: string): Promise<Action> {
  for (let i = 0; i < 400; i++) {
    const [held] = (await person.listActions({ agentId, status: "pending_approval" })).actions;
    if (held?.presence.agent_waiting) return held;
    await sleep(25);
  }
  throw new Error(`no held action for ${agentId}`);
}

describe("govern", () => {
  test("an allowed call runs once and its value is reported", async () => {
    const bot = unique("allow");
    const calls: unknown[] = [];
    const refund = govern(
      async ({ amount, customer_id }: { amount: number; customer_id: string }) => {
        calls.push([amount, customer_id]);
        return { refunded: amount, customer: customer_id };
      },
      { tool: "refund", operation: "process", client, context: { agent_id: bot } },
    );
    assert.deepEqual(await refund({ amount: 40, customer_id: "cus_1" }), { refunded: 40, customer: "cus_1" });
    assert.deepEqual(calls, [[40, "cus_1"]]);
    const [action] = await actionsOf(bot);
    assert.equal(action?.status, "succeeded");
    assert.deepEqual(action?.params, { amount: 40, customer_id: "cus_1" });
    assert.deepEqual(action?.result, { refunded: 40, customer: "cus_1" });
    assert.equal(refund.gate.label, "refund.process");
  });

  test("a policy denial throws ActionDenied and the function never runs", async () => {
    const bot = unique("deny");
    let ran = false;
    const deleteUser = govern(
      ({ user_id }: { user_id: string }) => {
        ran = Boolean(user_id);
      },
      { tool: "user_management", operation: "delete", client, context: { agent_id: bot } },
    );
    const err = await deleteUser({ user_id: "u_1" }).catch((e: unknown) => e);
    assert.ok(err instanceof ActionDenied);
    assert.equal(err.reason, "Agents may not delete users");
    assert.equal(err.status, "denied");
    assert.match(err.message, /^user_management\.delete denied: Agents may not delete users \(action /);
    assert.equal(ran, false);
    const [action] = await actionsOf(bot);
    assert.equal(action?.status, "denied");
  });

  test("a held call waits; an approval with edited params runs the function with them", async () => {
    const bot = unique("edit");
    const calls: number[] = [];
    const refund = govern(
      async ({ amount }: { amount: number; customer_id: string }) => {
        calls.push(amount);
        return `refunded ${amount}`;
      },
      { tool: "refund", operation: "process", client, context: { agent_id: bot } },
    );
    const running = refund({ amount: 150, customer_id: "cus_42" });
    const held = await heldFor(bot);
    assert.deepEqual(calls, [], "nothing runs while the action is held");
    await person.approve(held.id, { reason: "smaller", params: { amount: 120, customer_id: "cus_42" } });
    assert.equal(await running, "refunded 120");
    assert.deepEqual(calls, [120]);
    const done = await person.getAction(held.id);
    assert.equal(done.status, "succeeded");
    assert.equal(done.result, "refunded 120");
    assert.deepEqual(done.original_params, { amount: 150, customer_id: "cus_42" });
  });

  test("a person's denial throws ActionDenied with the person's reason", async () => {
    const bot = unique("pdeny");
    let ran = false;
    const transfer = govern(
      async (_: { amount: number }) => {
        ran = true;
      },
      { tool: "transfer_funds", operation: "send", client, context: { agent_id: bot } },
    );
    const running = transfer({ amount: 10 }).catch((e: unknown) => e);
    const held = await heldFor(bot);
    await person.deny(held.id, { reason: "not today" });
    const err = await running;
    assert.ok(err instanceof ActionDenied);
    assert.equal(err.reason, "not today");
    assert.equal(ran, false);
  });

  test("an exception is reported as failed and thrown again", async () => {
    const bot = unique("boom");
    const lookup = govern(
      async (_: { order_id: string }) => {
        throw new RangeError("the order service is down");
      },
      { tool: "lookup_order", client, context: { agent_id: bot } },
    );
    await assert.rejects(lookup({ order_id: "A7" }), RangeError);
    const [action] = await actionsOf(bot);
    assert.equal(action?.status, "failed");
    assert.equal(action?.error, "RangeError: the order service is down");
    assert.equal(action?.operation, "invoke");
  });

  test("arguments that are not plain JSON are refused before anything is submitted", async () => {
    const bot = unique("json");
    const lookup = govern(async (_: { when: unknown }) => "ran", { tool: "lookup_order", client, context: { agent_id: bot } });
    await assert.rejects(lookup({ when: new Date() }), /params\.when is a Date, which is not plain JSON/);
    await assert.rejects(lookup({ when: Number.NaN }), /params\.when is NaN/);
    const positional = govern(async (a: number, b: number) => a + b, { tool: "lookup_order", client, context: { agent_id: bot } });
    await assert.rejects(positional(1, 2), /one plain object of named arguments/);
    assert.deepEqual(await actionsOf(bot), []);
  });

  test("positional arguments with toParams / fromParams; an edit with no fromParams fails closed", async () => {
    const bot = unique("pos");
    const calls: unknown[] = [];
    const refund = govern(
      async (customer: string, amount: number) => {
        calls.push([customer, amount]);
        return amount;
      },
      {
        tool: "refund",
        operation: "process",
        client,
        context: { agent_id: bot },
        toParams: (customer, amount) => ({ customer, amount }),
        fromParams: (p, [customer]): [string, number] => [String(p.customer ?? customer), Number(p.amount)],
      },
    );
    assert.equal(await refund("cus_1", 30), 30);
    const running = refund("cus_2", 300);
    await person.approve((await heldFor(bot)).id, { params: { customer: "cus_2", amount: 200 } });
    assert.equal(await running, 200);
    assert.deepEqual(calls, [
      ["cus_1", 30],
      ["cus_2", 200],
    ]);

    const oneWay = govern(
      async (customer: string, amount: number) => {
        calls.push(["oneWay", customer, amount]);
      },
      { tool: "refund", operation: "process", client, context: { agent_id: bot }, toParams: (customer, amount) => ({ customer, amount }) },
    );
    const blocked = oneWay("cus_3", 500).catch((e: unknown) => e);
    const held = await heldFor(bot);
    await person.approve(held.id, { params: { customer: "cus_3", amount: 100 } });
    const err = await blocked;
    assert.ok(err instanceof TypeError && /no fromParams/.test(err.message));
    assert.equal(calls.length, 2, "the function did not run");
    assert.equal((await person.getAction(held.id)).status, "failed");
  });

  test("`this` is passed through", async () => {
    const bot = unique("this");
    const account = {
      owner: "cus_9",
      lookup: govern(
        function (this: { owner: string }, _: { order_id: string }) {
          return this.owner;
        },
        { tool: "lookup_order", client, context: { agent_id: bot } },
      ),
    };
    assert.equal(await account.lookup({ order_id: "A1" }), "cus_9");
  });
});

describe("when the caller stops waiting", () => {
  test('onAbandon "keep": the timeout leaves the action held; the same call made again picks up the approval and runs once', async () => {
    const bot = unique("keep");
    const notes = new Notes();
    const calls: number[] = [];
    const transfer = govern(
      async ({ amount }: { amount: number; to: string }) => {
        calls.push(amount);
        return "sent";
      },
      { tool: "transfer_funds", operation: "send", client, timeout: 0.5, context: { agent_id: bot }, logger: notes },
    );
    const err = await transfer({ amount: 20, to: "NL02" }).catch((e: unknown) => e);
    assert.ok(err instanceof ApprovalTimeout && !(err instanceof ServerUnavailable));
    assert.match(err.message, /no decision within 0\.5s/);
    assert.match(err.message, /It stays held \(onAbandon="keep"\)/);
    assert.equal(err.action?.status, "pending_approval");
    assert.match(notes.warnings.join("\n"), /it stays held, and the same call made again re-attaches to it/);
    assert.deepEqual(calls, []);

    await person.approve(err.actionId!, { reason: "go ahead" });
    assert.equal(await transfer({ amount: 20, to: "NL02" }), "sent");
    assert.deepEqual(calls, [20]);
    const actions = await actionsOf(bot);
    assert.equal(actions.length, 1, "the retry re-attached instead of asking again");
    assert.equal(actions[0]?.status, "succeeded");
  });

  test("Gate.run tells the code that the action was re-attached", async () => {
    const bot = unique("gate");
    const gate = new Gate({ tool: "transfer_funds", operation: "send", client, timeout: 0.3, context: { agent_id: bot }, logger: new Notes() });
    const first = await gate.run({ amount: 5 }, () => "never").catch((e: unknown) => e);
    assert.ok(first instanceof ApprovalTimeout);
    await person.approve(first.actionId!);
    const info = await gate.run({ amount: 5 }, (params, decided) => decided);
    assert.equal(info.reattached, true);
    assert.equal(info.edited, false);
    assert.equal(info.action.id, first.actionId);
    assert.deepEqual(info.params, { amount: 5 });
  });

  test('onAbandon "cancel": the timeout withdraws the action', async () => {
    const bot = unique("cancel");
    let ran = false;
    const transfer = govern(
      async (_: { amount: number }) => {
        ran = true;
      },
      { tool: "transfer_funds", operation: "send", client, timeout: 0.5, onAbandon: "cancel", context: { agent_id: bot }, logger: new Notes() },
    );
    const err = await transfer({ amount: 20 }).catch((e: unknown) => e);
    assert.ok(err instanceof ApprovalTimeout);
    assert.match(err.message, /It was cancelled \(onAbandon="cancel"\)/);
    assert.equal(err.action?.status, "cancelled");
    const [action] = await actionsOf(bot);
    assert.equal(action?.status, "cancelled");
    assert.match(action?.decision_reason ?? "", /The agent stopped waiting: no decision within 0\.5s/);
    await assert.rejects(person.approve(action!.id), { statusCode: 409 });
    assert.equal(ran, false);
  });

  test("an aborted call abandons the held action per onAbandon and throws the signal's reason", async () => {
    const bot = unique("abort");
    const controller = new AbortController();
    let ran = false;
    const transfer = govern(
      async (_: { amount: number }) => {
        ran = true;
      },
      { tool: "transfer_funds", operation: "send", client, onAbandon: "cancel", signal: controller.signal, context: { agent_id: bot }, logger: new Notes() },
    );
    const running = transfer({ amount: 7 }).catch((e: unknown) => e);
    const held = await heldFor(bot);
    const reason = new Error("the framework's tool timeout");
    controller.abort(reason);
    assert.equal(await running, reason);
    const after = await person.getAction(held.id);
    assert.equal(after.status, "cancelled");
    assert.match(after.decision_reason ?? "", /the call was aborted/);
    assert.equal(ran, false);
  });

  test("an aborted call keeps the held action by default", async () => {
    const bot = unique("race");
    const controller = new AbortController();
    const notes = new Notes();
    const transfer = govern(async (_: { amount: number }) => "ran", {
      tool: "transfer_funds",
      operation: "send",
      client,
      signal: controller.signal,
      context: { agent_id: bot },
      logger: notes,
    });
    const running = transfer({ amount: 8 }).catch((e: unknown) => e);
    const held = await heldFor(bot);
    controller.abort();
    assert.equal(((await running) as Error).name, "AbortError");
    assert.equal((await person.getAction(held.id)).status, "pending_approval");
    assert.match(notes.warnings.join("\n"), /the call was aborted/);
  });
});

describe("outages", () => {
  test("an unreachable server until the deadline: ServerUnavailable, nothing runs", async () => {
    const port = await freePort();
    let ran = false;
    const refund = govern(
      async (_: { amount: number }) => {
        ran = true;
      },
      { tool: "refund", operation: "process", client: new ExecutionGovernorClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "fm_x" }), timeout: 1 },
    );
    const err = await refund({ amount: 1 }).catch((e: unknown) => e);
    assert.ok(err instanceof ServerUnavailable);
    assert.ok(err instanceof FarameshConnectionError);
    assert.match(err.message, /refund\.process: submitting: gave up at the deadline/);
    assert.equal(ran, false);
  });

  test("a submit whose answer was lost is retried with the same Idempotency-Key: one action, one run", async () => {
    const bot = unique("lost");
    const keys: string[] = [];
    let lose = 1;
    const flaky = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (init?.method === "POST" && new URL(String(input)).pathname === "/v1/actions") {
          keys.push(new Headers(init.headers).get("Idempotency-Key") ?? "");
          if (lose-- > 0) {
            await response.text();
            throw new TypeError("fetch failed", { cause: new Error("connection reset while reading the answer") });
          }
        }
        return response;
      },
    });
    const calls: number[] = [];
    const refund = govern(
      async ({ amount }: { amount: number }) => {
        calls.push(amount);
        return "ok";
      },
      { tool: "refund", operation: "process", client: flaky, timeout: 30, context: { agent_id: bot } },
    );
    assert.equal(await refund({ amount: 5 }), "ok");
    assert.deepEqual(calls, [5]);
    assert.equal(keys.length, 2);
    assert.equal(keys[0], keys[1]);
    assert.match(keys[0] ?? "", /^[0-9a-f]{32}$/);
    const actions = await actionsOf(bot);
    assert.equal(actions.length, 1);
    assert.equal(actions[0]?.status, "succeeded");
  });

  test("a result report whose answer was lost counts as reported; a report that never gets through is logged, not thrown", async () => {
    const bot = unique("report");
    let lose = 1;
    const notes = new Notes();
    const flaky = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (new URL(String(input)).pathname.endsWith("/result") && lose-- > 0) {
          await response.text();
          throw new TypeError("fetch failed");
        }
        return response;
      },
    });
    const lookup = govern(async (_: { n: number }) => "found", { tool: "lookup_order", client: flaky, context: { agent_id: bot }, logger: notes });
    assert.equal(await lookup({ n: 1 }), "found");
    assert.deepEqual(notes.warnings, []);
    assert.equal((await actionsOf(bot))[0]?.status, "succeeded");

    // The server refuses the report for good (another key reported first): logged, value returned.
    const refusing = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) =>
        new URL(String(input)).pathname.endsWith("/result")
          ? Response.json({ detail: "nope", error: { code: "forbidden", message: "nope", field: null } }, { status: 403 })
          : fetch(input, init),
    });
    const again = govern(async (_: { n: number }) => "still found", { tool: "lookup_order", client: refusing, context: { agent_id: bot }, logger: notes });
    assert.equal(await again({ n: 2 }), "still found");
    assert.match(notes.warnings.join("\n"), /could not report the result of action .*: PermissionDeniedError: nope/);
  });
});
