// Govern Vercel AI SDK tools (`tool()` from the `ai` package). No import of `ai`: a tool is
// an object whose `execute(input, options)` runs it, and that is all this needs.
//
//   import { tool } from "ai";
//   import { governTool } from "@faramesh/sdk/ai";
//   const refund = governTool(tool({ description, inputSchema, execute }), { tool: "refund", operation: "process" });
//
// The governed copy keeps the description and schemas. Each call is submitted with the
// model's input as `params`; `execute` runs only when allowed or approved (with the approved,
// possibly edited, input), and its output or error is reported. A refusal throws
// ActionDenied / ApprovalTimeout from `execute`, which the AI SDK hands to the model as the
// tool's error, so the run goes on. The call's `abortSignal` abandons a held action per `onAbandon`.

import { Gate, type GateOptions } from "../gate.js";

/** The part of an AI SDK tool this adapter touches. */
export interface ExecutableTool {
  execute?: (input: any, options: any) => unknown;
}

export interface GovernToolOptions extends Omit<GateOptions, "tool"> {
  /** The Faramesh tool name (AI SDK tools are named by their key in `tools`). */
  tool: string;
}

function isAsyncIterable(value: unknown): boolean {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

/** A copy of `aiTool` whose every call is governed by Faramesh. */
export function governTool<T extends ExecutableTool>(aiTool: T, options: GovernToolOptions): T {
  const execute = aiTool.execute;
  if (typeof execute !== "function") {
    throw new TypeError(`governTool: ${options.tool} has no execute function; a tool the client runs itself cannot be governed here`);
  }
  const gate = new Gate(options);
  const governed = async (input: unknown, callOptions?: { abortSignal?: AbortSignal }) =>
    gate.run(
      input,
      async (decided, { edited }) => {
        const value = await execute.call(aiTool, edited ? decided : input, callOptions);
        if (isAsyncIterable(value)) {
          // Nothing ran yet (a generator starts when read); its result would be reported before it exists.
          throw new TypeError(`${gate.label}: streaming tools (execute returning an async iterable) cannot be governed`);
        }
        return value;
      },
      { signal: callOptions?.abortSignal },
    );
  return Object.assign(Object.create(Object.getPrototypeOf(aiTool) as object | null) as T, aiTool, { execute: governed });
}

/** `governTool` for each tool of a `tools` record, each under its key as the Faramesh tool name. */
export function governTools<R extends Record<string, ExecutableTool>>(
  tools: R,
  options: Omit<GovernToolOptions, "tool"> = {},
): R {
  const out: Record<string, ExecutableTool> = {};
  for (const [name, t] of Object.entries(tools)) out[name] = governTool(t, { ...options, tool: name });
  return out as R;
}
