// Type tests: these lines are checked by tsc when `npm test` compiles the tests, so a type that
// drifts (from the server's schema, or from the runtime field lists) fails the build. The
// runtime test below only keeps the lists themselves honest.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ACTION_FIELDS,
  type Action,
  type ErrorCode,
  ExecutionGovernorClient,
  type GateOptions,
  govern,
  type OnAbandon,
  type Operations,
  OPTIONAL_ACTION_FIELDS,
  type Status,
  STATUSES,
} from "@faramesh/sdk";
import { governTool } from "@faramesh/sdk/ai";
import { governFunctionTool } from "@faramesh/sdk/openai-agents";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | undefined {
  return undefined;
}
type OptionalKeys<T> = { [K in keyof T]-?: Record<string, never> extends Pick<T, K> ? K : never }[keyof T];

// The runtime lists are the type's keys, exactly.
expectType<Equal<keyof Action, (typeof ACTION_FIELDS)[number]>>();
expectType<Equal<OptionalKeys<Action>, (typeof OPTIONAL_ACTION_FIELDS)[number]>>();
expectType<Equal<Status, (typeof STATUSES)[number]>>();
expectType<Equal<Awaited<ReturnType<ExecutionGovernorClient["submitAction"]>>, Action>>();
expectType<Equal<Action["reattached"], boolean | undefined>>();

// Request types come from the server's schema.
expectType<Equal<Operations["POST /v1/actions"]["body"]["reattach"], boolean | undefined>>();
expectType<Equal<Operations["GET /v1/actions/{action_id}/wait"]["query"], { timeout?: number }>>();
expectType<Equal<Operations["POST /v1/actions/{action_id}/result"]["body"]["success"], boolean>>();
expectType<Equal<Extract<ErrorCode, "invalid_transition" | "rate_limited">, "invalid_transition" | "rate_limited">>();
expectType<Equal<OnAbandon, "keep" | "cancel">>();
expectType<Equal<GateOptions["onAbandon"], OnAbandon | undefined>>();

// govern keeps the function's parameters and awaits its result.
const refund = govern(async (args: { amount: number; customer_id: string }) => ({ id: `r_${args.amount}` }), { tool: "refund" });
expectType<Equal<Parameters<typeof refund>, [args: { amount: number; customer_id: string }]>>();
expectType<Equal<ReturnType<typeof refund>, Promise<{ id: string }>>>();
const syncOne = govern((args: { n: number }) => args.n * 2, { tool: "double" });
expectType<Equal<ReturnType<typeof syncOne>, Promise<number>>>();

// The adapters give back the tool's own type.
const aiLike = { description: "d", inputSchema: {}, execute: async (input: { a: number }) => input.a };
expectType<Equal<ReturnType<typeof governTool<typeof aiLike>>, typeof aiLike>>();
const agentLike = { type: "function" as const, name: "n", invoke: async (_ctx: unknown, _input: string) => "out", extra: 1 };
expectType<Equal<ReturnType<typeof governFunctionTool<typeof agentLike>>, typeof agentLike>>();

// What must not compile.
function neverCalled(client: ExecutionGovernorClient): void {
  // @ts-expect-error tool and operation are required
  void client.submitAction({ params: { amount: 1 } });
  // @ts-expect-error params are JSON
  void client.submitAction({ tool: "t", operation: "o", params: { when: new Date() } });
  // @ts-expect-error a status the server does not have
  void client.listActions({ status: "approvedish" });
  // @ts-expect-error onAbandon is "keep" or "cancel"
  govern(() => 1, { tool: "t", onAbandon: "drop" });
  // @ts-expect-error success is required in a result report
  void client.reportResult("id", { result: 1 });
}
void neverCalled;

test("the field lists have no duplicates, and the optional ones are fields", () => {
  assert.equal(new Set(ACTION_FIELDS).size, ACTION_FIELDS.length);
  for (const field of OPTIONAL_ACTION_FIELDS) assert.ok((ACTION_FIELDS as readonly string[]).includes(field));
});
