// Permits issued by the real server, verified with Node's crypto: what they cover (tool,
// operation, the exact params, after an edit), what breaks them (tampering, another key,
// expiry), and govern's use of them (verify, then the single start).

import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  type Action,
  ActionDenied,
  canonicalJson,
  ConflictError,
  ExecutionGovernorClient,
  Gate,
  govern,
  type JsonObject,
  type JWKS,
  type Logger,
  paramsHash,
  PermitActionMismatch,
  PermitArgumentsMismatch,
  PermitExpired,
  PermitKeys,
  PermitKeysUnavailable,
  PermitMalformed,
  PermitOperationMismatch,
  PermitSignatureInvalid,
  PermitToolMismatch,
  PermitUnknownKey,
  readPermit,
  thumbprint,
  verifyAction,
  verifyPermit,
} from "@faramesh/sdk";

import { FarameshServer, freePort, unique } from "./support/server.js";

let server: FarameshServer;
let agentKey: string;
let agent: ExecutionGovernorClient;
let person: ExecutionGovernorClient;
let jwks: JWKS & { keys: Array<Record<string, unknown>> };
const quiet: Logger = { warn: () => {}, info: () => {} };

before(async () => {
  server = await FarameshServer.start();
  agentKey = await server.createKey("agent");
  agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: agentKey });
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("approver") });
  jwks = (await agent.permitKeys()) as typeof jwks;
});

after(async () => {
  await server?.close();
});

// -- a key of our own, to make permits the server never signed ---------------------------------
const own = generateKeyPairSync("ed25519");
const ownX = String(own.publicKey.export({ format: "jwk" }).x);
const ownJwk = { kty: "OKP", crv: "Ed25519", x: ownX, kid: thumbprint(ownX), alg: "EdDSA", use: "sig" };

function b64(value: string | Buffer): string {
  return Buffer.from(value).toString("base64url");
}

function signPermit(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject = own.privateKey): string {
  const input = `${b64(JSON.stringify(header))}.${b64(canonicalJson(payload))}`;
  return `${input}.${b64(sign(null, Buffer.from(input), key))}`;
}

function payloadOf(permit: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(permit.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<string, unknown>;
}

async function allowedAction(params: JsonObject = { amount: 50, customer_id: "cus_1", n: unique("p") }): Promise<Action> {
  const action = await agent.submitAction({ tool: "refund", operation: "process", params });
  assert.equal(action.status, "allowed");
  return action;
}

describe("verifyPermit on the server's permits", () => {
  test("a permit covers its action's tool, operation and exact params; keys from a URL, a JWKS or the client", async () => {
    const action = await allowedAction();
    assert.ok(action.permit, "an allowed action carries a permit");
    const options = { tool: "refund", operation: "process", params: action.params };
    for (const keys of [`${server.url}/v1/permits/keys`, jwks, PermitKeys.fromLoader(() => agent.permitKeys())]) {
      const claims = await verifyPermit(action.permit, { ...options, keys });
      assert.equal(claims.actionId, action.id);
      assert.equal(claims.tool, "refund");
      assert.equal(claims.operation, "process");
      assert.equal(claims.status, "allowed");
      assert.equal(claims.requestHash, action.request_hash);
      assert.equal(claims.paramsHash, paramsHash(action.params));
      assert.deepEqual(claims.approvers, []);
      assert.equal(claims.kid, jwks.keys[0]?.kid);
      assert.ok(claims.expiresAt > claims.issuedAt);
    }
    // The same params in another key order, 50.0 for 50, and a fullwidth tool name (NFKC) all match.
    await verifyPermit(action.permit, {
      tool: "ｒｅｆｕｎｄ",
      operation: "process",
      params: { n: action.params.n ?? null, customer_id: "cus_1", amount: 50.0 },
      keys: jwks,
      actionId: action.id,
    });
    assert.deepEqual(readPermit(action.permit), await verifyAction(action, { ...options, keys: jwks }));
  });

  test("tampered arguments, another tool, operation or action are refused", async () => {
    const action = await allowedAction();
    const base = { tool: "refund", operation: "process", params: action.params, keys: jwks };
    const changed = await verifyPermit(action.permit, { ...base, params: { ...action.params, amount: 51 } }).catch((e: unknown) => e);
    assert.ok(changed instanceof PermitArgumentsMismatch);
    assert.equal(changed.reason, "arguments");
    assert.equal(changed.expected, paramsHash(action.params));
    assert.equal(changed.actual, paramsHash({ ...action.params, amount: 51 }));
    await assert.rejects(verifyPermit(action.permit, { ...base, params: { ...action.params, extra: true } }), PermitArgumentsMismatch);
    await assert.rejects(verifyPermit(action.permit, { ...base, params: { amount: Number.NaN } }), PermitArgumentsMismatch);
    await assert.rejects(verifyPermit(action.permit, { ...base, tool: "refunds" }), PermitToolMismatch);
    await assert.rejects(verifyPermit(action.permit, { ...base, operation: "void" }), PermitOperationMismatch);
    await assert.rejects(verifyPermit(action.permit, { ...base, actionId: "another" }), PermitActionMismatch);
  });

  test("an approval with edited params: the permit covers the edited params, not the submitted ones", async () => {
    const held = await agent.submitAction({ tool: "refund", operation: "process", params: { amount: 500, n: unique("e") } });
    assert.equal(held.permit, undefined, "a held action carries no permit");
    await assert.rejects(verifyAction(held, { tool: "refund", operation: "process", params: held.params, keys: jwks }), PermitMalformed);
    await person.approve(held.id, { params: { amount: 200, n: held.params.n ?? null } });
    const approved = await agent.getAction(held.id);
    assert.equal(approved.status, "approved");
    const base = { tool: "refund", operation: "process", keys: jwks };
    const claims = await verifyAction(approved, { ...base, params: approved.params });
    assert.equal(claims.status, "approved");
    assert.equal(claims.approvers.length, 1, "the approver's key id is bound");
    await assert.rejects(verifyAction(approved, { ...base, params: held.params }), PermitArgumentsMismatch);
    // Started: the permit is spent and no longer shown.
    const started = await agent.start(approved.id);
    assert.equal(started.status, "executing");
    assert.equal(started.permit, undefined);
    await assert.rejects(agent.start(approved.id), ConflictError);
  });

  test("an altered permit, a forged one and an unknown key are refused", async () => {
    const action = await allowedAction();
    const permit = action.permit!;
    const [head = "", body = "", sig = ""] = permit.split(".");
    const options = { tool: "refund", operation: "process", params: action.params, keys: jwks };

    // Claims changed (a bigger amount's hash) under the server's signature.
    const claims = payloadOf(permit);
    const swapped = `${head}.${b64(canonicalJson({ ...claims, params_hash: paramsHash({ ...action.params, amount: 5000 }) }))}.${sig}`;
    await assert.rejects(verifyPermit(swapped, { ...options, params: { ...action.params, amount: 5000 } }), PermitSignatureInvalid);
    // One character of the signature changed.
    const flipped = `${head}.${body}.${sig.slice(0, 10)}${sig[10] === "A" ? "B" : "A"}${sig.slice(11)}`;
    await assert.rejects(verifyPermit(flipped, options), PermitSignatureInvalid);
    // Signed by another key under the server's kid: a forgery.
    const forged = signPermit({ alg: "EdDSA", kid: jwks.keys[0]?.kid, typ: "JWT" }, claims);
    const err = await verifyPermit(forged, options).catch((e: unknown) => e);
    assert.ok(err instanceof PermitSignatureInvalid && !(err instanceof PermitUnknownKey));
    // Signed by a key the server does not publish.
    const unknown = await verifyPermit(signPermit({ alg: "EdDSA", kid: ownJwk.kid }, claims), options).catch((e: unknown) => e);
    assert.ok(unknown instanceof PermitUnknownKey);
    assert.equal(unknown.reason, "unknown_key");
    // ...which verifies against that key, so the check is the signature, not the kid alone.
    await verifyPermit(signPermit({ alg: "EdDSA", kid: ownJwk.kid }, claims), { ...options, keys: { keys: [ownJwk] } });

    for (const [bad, why] of [
      ["", /non-empty string/],
      ["a.b", /three dot-separated parts/],
      [`${b64(JSON.stringify({ alg: "HS256", kid: "k" }))}.${body}.${sig}`, /must be signed with EdDSA/],
      [`${b64(JSON.stringify({ alg: "none" }))}.${body}.`, /must be signed with EdDSA/],
      [`${b64(JSON.stringify({ alg: "EdDSA" }))}.${body}.${sig}`, /names no signing key/],
      [`${head}.!!!.${sig}`, /not base64url/],
    ] as const) {
      await assert.rejects(verifyPermit(bad, options), (e: unknown) => e instanceof PermitMalformed && why.test((e as Error).message));
    }
    const noIssuer = signPermit({ alg: "EdDSA", kid: ownJwk.kid }, { ...claims, iss: "someone" });
    await assert.rejects(verifyPermit(noIssuer, { ...options, keys: { keys: [ownJwk] } }), /not issued by faramesh/);
    const { exp: _, ...noExpiry } = claims;
    await assert.rejects(verifyPermit(signPermit({ alg: "EdDSA", kid: ownJwk.kid }, noExpiry), { ...options, keys: { keys: [ownJwk] } }), /no 'exp' claim/);
  });

  test("expiry: judged at `now`, with `leeway` for clock skew", async () => {
    const action = await allowedAction();
    const options = { tool: "refund", operation: "process", params: action.params, keys: jwks };
    const { expiresAt } = readPermit(action.permit!);
    await verifyPermit(action.permit, { ...options, now: expiresAt });
    const err = await verifyPermit(action.permit, { ...options, now: expiresAt + 30 }).catch((e: unknown) => e);
    assert.ok(err instanceof PermitExpired);
    assert.equal(err.expiredAt, expiresAt);
    assert.match(err.message, /expired 30s ago/);
    await verifyPermit(action.permit, { ...options, now: expiresAt + 30, leeway: 60 });
  });

  test("keys that cannot be had", async () => {
    const action = await allowedAction();
    const options = { tool: "refund", operation: "process", params: action.params };
    const nowhere = `http://127.0.0.1:${await freePort()}/v1/permits/keys`;
    await assert.rejects(verifyPermit(action.permit, { ...options, keys: nowhere }), PermitKeysUnavailable);
    await assert.rejects(verifyPermit(action.permit, { ...options, keys: { keys: [] } }), PermitKeysUnavailable);
    await assert.rejects(verifyPermit(action.permit, { ...options, keys: { keys: [{ kty: "RSA", n: "x", e: "AQAB" }] } }), PermitKeysUnavailable);
  });
});

describe("govern with permits", () => {
  test("govern verifies the permit and takes the single start before running", async () => {
    const bot = unique("start");
    const gate = new Gate({ tool: "refund", operation: "process", client: agent, context: { agent_id: bot } });
    const info = await gate.run({ amount: 10 }, async (_params, decided) => {
      // Running: the action is executing, under the permit that was checked.
      assert.equal((await agent.getAction(decided.action.id)).status, "executing");
      return decided;
    });
    assert.equal(info.permit?.actionId, info.action.id);
    assert.equal(info.permit?.paramsHash, paramsHash({ amount: 10 }));
    const events = (await agent.getActionEvents(info.action.id)).map((e) => e.event);
    assert.deepEqual(events, ["action.submitted", "action.started", "action.succeeded"]);
  });

  test("params changed on the way (the permit does not cover them): nothing runs, nothing starts", async () => {
    const bot = unique("mitm");
    // A proxy that changes the amount in the server's answer but cannot re-sign the permit.
    const meddling = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (init?.method !== "POST" || new URL(String(input)).pathname !== "/v1/actions") return response;
        const action = (await response.json()) as Action;
        return Response.json({ ...action, params: { ...action.params, amount: 99 } }, { status: response.status });
      },
    });
    let ran = false;
    const refund = govern(
      async (_: { amount: number }) => {
        ran = true;
      },
      { tool: "refund", operation: "process", client: meddling, context: { agent_id: bot } },
    );
    const err = await refund({ amount: 10 }).catch((e: unknown) => e);
    assert.ok(err instanceof ActionDenied, String(err));
    assert.ok(err.cause instanceof PermitArgumentsMismatch);
    assert.match(err.message, /^refund\.process not run: its permit does not allow this call \(the arguments differ/);
    assert.equal(ran, false);
    const [action] = (await person.listActions({ agentId: bot })).actions;
    assert.equal(action?.status, "allowed", "not started, not reported");
    assert.deepEqual(
      (await agent.getActionEvents(action!.id)).map((e) => e.event),
      ["action.submitted"],
    );
  });

  test("keys that do not hold the signing key: nothing runs", async () => {
    let ran = false;
    const refund = govern(
      async (_: { amount: number }) => {
        ran = true;
      },
      { tool: "refund", operation: "process", client: agent, permitKeys: { keys: [ownJwk] }, context: { agent_id: unique("k") } },
    );
    const err = await refund({ amount: 10 }).catch((e: unknown) => e);
    assert.ok(err instanceof ActionDenied && err.cause instanceof PermitUnknownKey);
    assert.equal(ran, false);
  });

  test("a key rotated since the keys were fetched: they are fetched once more", async () => {
    let served = 0;
    // The first answer publishes only a stale key; the next one the server's.
    const keys = PermitKeys.fromLoader(async () => (served++ === 0 ? { keys: [ownJwk] } : jwks));
    const gate = new Gate({ tool: "refund", operation: "process", client: agent, permitKeys: keys, context: { agent_id: unique("rot") } });
    assert.equal(await gate.run({ amount: 4 }, () => "ran"), "ran");
    assert.equal(served, 2);
  });

  test('without a permit on the answer: "auto" runs without a start, "require" refuses', async () => {
    const stripping = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (init?.method !== "POST" || new URL(String(input)).pathname !== "/v1/actions") return response;
        const { permit: _, permit_expires_at: __, ...action } = (await response.json()) as Action;
        return Response.json(action, { status: response.status });
      },
    });
    const auto = new Gate({ tool: "refund", operation: "process", client: stripping, context: { agent_id: unique("auto") } });
    const info = await auto.run({ amount: 2 }, (_p, decided) => decided);
    assert.equal(info.permit, undefined);
    assert.deepEqual(
      (await agent.getActionEvents(info.action.id)).map((e) => e.event),
      ["action.submitted", "action.succeeded"],
    );
    const strict = new Gate({ tool: "refund", operation: "process", client: stripping, permits: "require", context: { agent_id: unique("req") } });
    let ran = false;
    const err = await strict.run({ amount: 2 }, () => (ran = true)).catch((e: unknown) => e);
    assert.ok(err instanceof ActionDenied);
    assert.match(err.message, /carries no permit/);
    assert.equal(ran, false);
  });

  test("an expired permit is read again once: the server renews it", async () => {
    const bot = unique("renew");
    const reads: string[] = [];
    // The submit's answer carries an expired permit (signed by a key the gate also trusts).
    const staling = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agentKey,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        const path = new URL(String(input)).pathname;
        if (init?.method === "GET" || init?.method === undefined) reads.push(path);
        if (init?.method !== "POST" || path !== "/v1/actions") return response;
        const action = (await response.json()) as Action;
        const claims = payloadOf(action.permit!);
        const stale = signPermit({ alg: "EdDSA", kid: ownJwk.kid }, { ...claims, exp: Number(claims.iat) - 1 });
        return Response.json({ ...action, permit: stale }, { status: response.status });
      },
    });
    const keys = PermitKeys.fromJwks({ keys: [...jwks.keys, ownJwk] });
    const refund = govern(async ({ amount }: { amount: number }) => amount * 2, {
      tool: "refund",
      operation: "process",
      client: staling,
      permitKeys: keys,
      context: { agent_id: bot },
    });
    assert.equal(await refund({ amount: 21 }), 42);
    assert.equal(reads.filter((p) => p.startsWith("/v1/actions/")).length, 1, "the action was read once more");
  });

  test("two identical calls on one approval: exactly one runs", async () => {
    const bot = unique("race");
    const runs: string[] = [];
    const make = (name: string) =>
      govern(
        async (_: { amount: number }) => {
          runs.push(name);
          await sleep(50);
          return name;
        },
        { tool: "refund", operation: "process", client: agent, context: { agent_id: bot }, logger: quiet },
      );
    const first = make("first")({ amount: 700 }).then(
      (v) => ({ ok: v }),
      (e: unknown) => ({ err: e }),
    );
    const second = make("second")({ amount: 700 }).then(
      (v) => ({ ok: v }),
      (e: unknown) => ({ err: e }),
    );
    // Both wait on the same held action (the second re-attached to the first's).
    let held: Action | undefined;
    for (let i = 0; i < 400 && !held; i++) {
      const actions = (await person.listActions({ agentId: bot })).actions;
      if (actions.length === 1 && actions[0]?.presence.agent_waiting) held = actions[0];
      else await sleep(25);
    }
    assert.ok(held, "one held action");
    await person.approve(held.id);
    const outcomes = await Promise.all([first, second]);
    assert.equal(runs.length, 1, `ran: ${runs.join(", ")}`);
    const failures = outcomes.filter((o) => "err" in o).map((o) => (o as { err: unknown }).err);
    assert.equal(failures.length, 1);
    assert.ok(failures[0] instanceof ConflictError);
    assert.equal((await person.getAction(held.id)).status, "succeeded");
  });

  test("aborted after the approval but before the run: nothing runs, and the approved action is withdrawn (cancel)", async () => {
    const bot = unique("late");
    const controller = new AbortController();
    // The abort lands while the permit is being checked, after the decision arrived.
    const keys = PermitKeys.fromLoader(async () => {
      controller.abort(new Error("shutting down"));
      return jwks;
    });
    const gate = new Gate({ tool: "transfer_funds", operation: "send", client: agent, onAbandon: "cancel", permitKeys: keys, context: { agent_id: bot }, logger: quiet });
    let ran = false;
    const running = gate.run({ amount: 1 }, () => (ran = true), { signal: controller.signal }).catch((e: unknown) => e);
    let held: Action | undefined;
    for (let i = 0; i < 400 && !held; i++) {
      [held] = (await person.listActions({ agentId: bot, status: "pending_approval" })).actions;
      if (!held?.presence.agent_waiting) held = undefined;
      if (!held) await sleep(25);
    }
    await person.approve(held!.id);
    assert.match(String(await running), /shutting down/);
    assert.equal(ran, false);
    const after = await person.getAction(held!.id);
    assert.equal(after.status, "cancelled");
    assert.equal((await agent.getActionEvents(held!.id)).some((e) => e.event === "action.started"), false);
  });

  test("a long run keeps its execution lease alive with heartbeats", async () => {
    const short = await FarameshServer.start({ args: ["--execution-lease", "3s"] });
    try {
      const client = new ExecutionGovernorClient({ baseUrl: short.url, apiKey: await short.createKey("agent") });
      const gate = new Gate({ tool: "lookup_order", operation: "read", client, logger: quiet });
      const seen = await gate.run({ n: 1 }, async (_params, { action }) => {
        const first = (await client.getAction(action.id)).execution?.lease_expires_at;
        // Run until a heartbeat has moved the lease on (one is due every second here).
        for (let i = 0; i < 100; i++) {
          const now = await client.getAction(action.id);
          assert.equal(now.status, "executing");
          if (now.execution?.lease_expires_at !== first) return [first, now.execution?.lease_expires_at];
          await sleep(100);
        }
        return [first, first];
      });
      assert.ok(seen[0] && seen[1] && Date.parse(seen[1]) > Date.parse(seen[0]), `the lease moved on: ${seen.join(" -> ")}`);
    } finally {
      await short.close();
    }
  });

  test('permits: "off" runs without verifying or starting', async () => {
    const bot = unique("off");
    const gate = new Gate({ tool: "refund", operation: "process", client: agent, permits: "off", context: { agent_id: bot } });
    const info = await gate.run({ amount: 3 }, (_p, decided) => decided);
    assert.equal(info.permit, undefined);
    const events = (await agent.getActionEvents(info.action.id)).map((e) => e.event);
    assert.deepEqual(events, ["action.submitted", "action.succeeded"]);
  });
});
