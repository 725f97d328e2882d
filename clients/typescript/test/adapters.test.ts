// The adapters with the real packages: Vercel AI SDK tools run by generateText, and OpenAI
// Agents SDK function tools run by the Runner, each driven by a scripted model (no network
// model), against a real Faramesh server.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { type Model, type ModelRequest, type ModelResponse, Agent, run, setTracingDisabled, tool as agentTool, Usage } from "@openai/agents";
import { generateText, stepCountIs, tool as aiTool } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { z } from "zod";

import { type Action, ExecutionGovernorClient, type Logger } from "@faramesh/sdk";
import { governTool, governTools } from "@faramesh/sdk/ai";
import { governFunctionTool, governFunctionTools } from "@faramesh/sdk/openai-agents";

import { FarameshServer, unique } from "./support/server.js";

setTracingDisabled(true); // the Agents SDK would export traces to OpenAI otherwise

let server: FarameshServer;
let client: ExecutionGovernorClient;
let person: ExecutionGovernorClient;
const quiet: Logger = { warn: () => {}, info: () => {} };

before(async () => {
  server = await FarameshServer.start();
  client = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("agent") });
  person = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("approver") });
});

after(async () => {
  await server?.close();
});

async function actionsOf(agentId: string): Promise<Action[]> {
  return (await person.listActions({ agentId })).actions;
}

/** The action's status once it is `expected` (a cancel after an abort finishes in the background), or as last seen. */
async function statusBecomes(id: string, expected: string): Promise<string> {
  let status = "";
  for (let i = 0; i < 200 && status !== expected; i++) {
    if (i) await sleep(25);
    status = (await person.getAction(id)).status;
  }
  return status;
}

async function heldFor(agentId: string): Promise<Action> {
  for (let i = 0; i < 400; i++) {
    const [held] = (await person.listActions({ agentId, status: "pending_approval" })).actions;
    if (held?.presence.agent_waiting) return held;
    await sleep(25);
  }
  throw new Error(`no held action for ${agentId}`);
}

// -- Vercel AI SDK -------------------------------------------------------------------------------
const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 1, text: 1, reasoning: 0 },
};

/** A model that calls the given tools in its first step and then says "done". */
function scriptedAIModel(calls: Array<{ name: string; input: unknown }>) {
  const prompts: unknown[] = [];
  const model = new MockLanguageModelV3({
    doGenerate: async (options) => {
      prompts.push(options.prompt);
      if (prompts.length === 1) {
        return {
          content: calls.map((c, i) => ({ type: "tool-call" as const, toolCallId: `call_${i}`, toolName: c.name, input: JSON.stringify(c.input) })),
          finishReason: { unified: "tool-calls" as const, raw: undefined },
          usage,
          warnings: [],
        };
      }
      return { content: [{ type: "text" as const, text: "done" }], finishReason: { unified: "stop" as const, raw: undefined }, usage, warnings: [] };
    },
  });
  return { model, prompts };
}

describe("Vercel AI SDK tools", () => {
  test("generateText runs an allowed tool, and a denied one becomes the tool's error for the model", async () => {
    const bot = unique("ai");
    const ran: string[] = [];
    const tools = governTools(
      {
        lookup_order: aiTool({
          description: "Look up an order by id.",
          inputSchema: z.object({ order_id: z.string() }),
          execute: async ({ order_id }) => {
            ran.push(`lookup ${order_id}`);
            return `order ${order_id}: shipped`;
          },
        }),
        wipe_database: aiTool({
          description: "Delete every row in the database.",
          inputSchema: z.object({ confirm: z.boolean() }),
          execute: async () => {
            ran.push("wipe");
            return "wiped";
          },
        }),
      },
      { client, context: { agent_id: bot } },
    );
    assert.equal(tools.lookup_order.description, "Look up an order by id.", "the governed tool keeps its description");
    const { model, prompts } = scriptedAIModel([
      { name: "lookup_order", input: { order_id: "A7" } },
      { name: "wipe_database", input: { confirm: true } },
    ]);
    const result = await generateText({ model, tools, prompt: "Where is A7? Then wipe.", stopWhen: stepCountIs(3) });
    assert.equal(result.text, "done");
    assert.deepEqual(ran, ["lookup A7"]);

    // What the model saw in its second step: the output, and the refusal as the tool's error.
    const toolMessage = (prompts[1] as Array<{ role: string; content: unknown }>).find((m) => m.role === "tool");
    const outputs = (toolMessage?.content as Array<{ toolName: string; output: { type: string; value: unknown } }>).map((p) => [
      p.toolName,
      p.output.type,
      p.output.value,
    ]);
    assert.deepEqual(outputs[0], ["lookup_order", "text", "order A7: shipped"]);
    assert.equal(outputs[1]?.[0], "wipe_database");
    assert.equal(outputs[1]?.[1], "error-text");
    assert.match(String(outputs[1]?.[2]), /^wipe_database\.invoke denied: Never wipe the database \(action /);

    const actions = await actionsOf(bot);
    assert.deepEqual(actions.map((a) => [a.tool, a.status]).sort(), [
      ["lookup_order", "succeeded"],
      ["wipe_database", "denied"],
    ]);
    assert.equal(actions.find((a) => a.tool === "lookup_order")?.result, "order A7: shipped");
  });

  test("a held tool call waits for the person and runs with the approved input", async () => {
    const bot = unique("aiheld");
    const amounts: number[] = [];
    const refund = governTool(
      aiTool({
        description: "Refund a customer.",
        inputSchema: z.object({ amount: z.number(), customer_id: z.string() }),
        execute: async ({ amount, customer_id }) => {
          amounts.push(amount);
          return { refunded: amount, customer_id };
        },
      }),
      { tool: "refund", operation: "process", client, context: { agent_id: bot } },
    );
    const { model } = scriptedAIModel([{ name: "refund", input: { amount: 150, customer_id: "cus_42" } }]);
    const running = generateText({ model, tools: { refund }, prompt: "refund", stopWhen: stepCountIs(3) });
    const held = await heldFor(bot);
    await person.approve(held.id, { params: { amount: 100, customer_id: "cus_42" } });
    const result = await running;
    assert.deepEqual(amounts, [100]);
    assert.deepEqual(result.steps[0]?.toolResults[0]?.output, { refunded: 100, customer_id: "cus_42" });
    assert.equal((await person.getAction(held.id)).status, "succeeded");
  });

  test("aborting the generation abandons the held call (onAbandon: cancel)", async () => {
    const bot = unique("aiabort");
    let ran = false;
    const transfer = governTool(
      aiTool({
        description: "Transfer money.",
        inputSchema: z.object({ amount: z.number() }),
        execute: async () => {
          ran = true;
          return "sent";
        },
      }),
      { tool: "transfer_funds", operation: "send", client, onAbandon: "cancel", context: { agent_id: bot }, logger: quiet },
    );
    const controller = new AbortController();
    const { model } = scriptedAIModel([{ name: "transfer_funds", input: { amount: 20 } }]);
    const running = generateText({ model, tools: { transfer_funds: transfer }, prompt: "send", abortSignal: controller.signal }).catch(
      (e: unknown) => e,
    );
    const held = await heldFor(bot);
    controller.abort(new Error("the user closed the chat"));
    await running;
    assert.equal(await statusBecomes(held.id, "cancelled"), "cancelled");
    assert.equal(ran, false);
  });

  test("a tool without execute is refused", () => {
    assert.throws(() => governTool({ description: "client-side" } as { execute?: () => unknown }, { tool: "x" }), /no execute function/);
  });
});

// -- OpenAI Agents SDK ---------------------------------------------------------------------------
/** A model that calls the given function tools in its first turn and then answers "done". */
function scriptedAgentModel(calls: Array<{ name: string; args: unknown }>): { model: Model; requests: ModelRequest[] } {
  const requests: ModelRequest[] = [];
  const model: Model = {
    async getResponse(request: ModelRequest): Promise<ModelResponse> {
      requests.push(request);
      if (requests.length === 1) {
        return {
          usage: new Usage(),
          output: calls.map((c, i) => ({
            type: "function_call" as const,
            callId: `call_${i}`,
            name: c.name,
            arguments: JSON.stringify(c.args),
            status: "completed" as const,
          })),
        };
      }
      return {
        usage: new Usage(),
        output: [{ type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "done" }] }],
      };
    },
    getStreamedResponse(): AsyncIterable<never> {
      throw new Error("not used");
    },
  };
  return { model, requests };
}

function toolOutputs(request: ModelRequest | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const items = Array.isArray(request?.input) ? request.input : [];
  for (const item of items as Array<{ type?: string; name?: string; output?: { text?: string } }>) {
    if (item.type === "function_call_result" && item.name) out[item.name] = item.output?.text ?? "";
  }
  return out;
}

describe("OpenAI Agents SDK function tools", () => {
  test("the Runner runs an allowed tool; a denial is returned to the model as the tool's output", async () => {
    const bot = unique("agents");
    const ran: string[] = [];
    const tools = governFunctionTools(
      [
        agentTool({
          name: "lookup_order",
          description: "Look up an order by id.",
          parameters: z.object({ order_id: z.string() }),
          execute: async ({ order_id }) => {
            ran.push(order_id);
            return `order ${order_id}: shipped`;
          },
        }),
        agentTool({
          name: "wipe_database",
          description: "Delete every row.",
          parameters: z.object({ confirm: z.boolean() }),
          execute: async () => {
            ran.push("wipe");
            return "wiped";
          },
        }),
      ],
      { client, context: { agent_id: bot } },
    );
    assert.equal(tools[0]?.name, "lookup_order");
    assert.deepEqual(tools[0]?.parameters, agentTool({ name: "x", description: "", parameters: z.object({ order_id: z.string() }), execute: () => "" }).parameters);
    const { model, requests } = scriptedAgentModel([
      { name: "lookup_order", args: { order_id: "A7" } },
      { name: "wipe_database", args: { confirm: true } },
    ]);
    const result = await run(new Agent({ name: "support", instructions: "Help.", model, tools }), "Where is A7? Then wipe.");
    assert.equal(result.finalOutput, "done");
    assert.deepEqual(ran, ["A7"]);
    const outputs = toolOutputs(requests[1]);
    assert.equal(outputs.lookup_order, "order A7: shipped");
    assert.match(outputs.wipe_database ?? "", /^Not permitted by Faramesh: wipe_database\.invoke denied: Never wipe the database .*The tool was not run\.$/);
    const actions = await actionsOf(bot);
    assert.deepEqual(actions.map((a) => [a.tool, a.status]).sort(), [
      ["lookup_order", "succeeded"],
      ["wipe_database", "denied"],
    ]);
  });

  test("a held call waits inside the tool call; the approved (edited) arguments are what the tool gets", async () => {
    const bot = unique("agentsheld");
    const seen: unknown[] = [];
    const transfer = governFunctionTool(
      agentTool({
        name: "transfer_funds",
        description: "Transfer money.",
        parameters: z.object({ amount: z.number(), to_account: z.string() }),
        execute: async (args) => {
          seen.push(args);
          return `sent ${args.amount} to ${args.to_account}`;
        },
      }),
      { operation: "send", client, context: { agent_id: bot } },
    );
    const { model, requests } = scriptedAgentModel([{ name: "transfer_funds", args: { amount: 50, to_account: "NL02" } }]);
    const running = run(new Agent({ name: "bank", instructions: "Help.", model, tools: [transfer] }), "send 50");
    const held = await heldFor(bot);
    await person.approve(held.id, { params: { amount: 20, to_account: "NL02" } });
    await running;
    assert.deepEqual(seen, [{ amount: 20, to_account: "NL02" }]);
    assert.equal(toolOutputs(requests[1]).transfer_funds, "sent 20 to NL02");
    assert.equal((await person.getAction(held.id)).status, "succeeded");
  });

  test("the SDK's tool timeout abandons the held call: kept by default, cancelled on request", async () => {
    for (const onAbandon of ["keep", "cancel"] as const) {
      const bot = unique(`agents${onAbandon}`);
      let ran = false;
      const transfer = governFunctionTool(
        agentTool({
          name: "transfer_funds",
          description: "Transfer money.",
          parameters: z.object({ amount: z.number() }),
          timeoutMs: 700,
          execute: async () => {
            ran = true;
            return "sent";
          },
        }),
        { operation: "send", client, onAbandon, context: { agent_id: bot }, logger: quiet },
      );
      const { model, requests } = scriptedAgentModel([{ name: "transfer_funds", args: { amount: 5 } }]);
      await run(new Agent({ name: "bank", instructions: "Help.", model, tools: [transfer] }), "send");
      assert.equal(ran, false);
      assert.match(toolOutputs(requests[1]).transfer_funds ?? "", /timed out/);
      // The SDK answers the model at its timeout; the cancel follows in the background.
      const [action] = await actionsOf(bot);
      const expected = onAbandon === "keep" ? "pending_approval" : "cancelled";
      assert.equal(await statusBecomes(action!.id, expected), expected);
    }
  });

  test("arguments that are not a JSON object are refused without submitting", async () => {
    const bot = unique("agentsbad");
    const governed = governFunctionTool(
      agentTool({ name: "lookup_order", description: "x", parameters: z.object({ id: z.string() }), execute: async () => "ran" }),
      { client, context: { agent_id: bot } },
    );
    assert.match(String(await governed.invoke({} as never, "[1, 2]")), /^Not permitted by Faramesh: the arguments are not a JSON object/);
    assert.match(String(await governed.invoke({} as never, "{oops")), /not valid JSON/);
    assert.deepEqual(await actionsOf(bot), []);
  });
});
