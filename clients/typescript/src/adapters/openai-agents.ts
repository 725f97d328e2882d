// Govern OpenAI Agents SDK function tools (`tool()` from `@openai/agents`). No import of the
// SDK: a function tool is an object with `type: "function"`, a `name` and
// `invoke(runContext, input, details)`, and that is all this needs.
//
//   import { tool } from "@openai/agents";
//   import { governFunctionTool } from "@faramesh/sdk/openai-agents";
//   const refund = governFunctionTool(tool({ name: "refund", parameters, execute }), { operation: "process" });
//
// The governed copy keeps the name, description and JSON schema. Each call is submitted with
// the model's arguments as `params`; the tool runs only when allowed or approved (with the
// approved arguments) and its output or error is reported. A denial or an approval timeout
// is returned to the model as the tool's output ("Not permitted by Faramesh: …"), so the run
// goes on. The SDK's own tool timeout (`timeoutMs`) aborts the call's signal: the held
// action is then kept or cancelled per `onAbandon`.

import { ActionDenied, ApprovalTimeout } from "../errors.js";
import { Gate, type GateOptions } from "../gate.js";

/** The part of an Agents SDK function tool this adapter touches. */
export interface FunctionToolLike {
  type: "function";
  name: string;
  invoke: (runContext: any, input: string, details?: any) => Promise<unknown>;
}

export interface GovernFunctionToolOptions extends Omit<GateOptions, "tool"> {
  /** The Faramesh tool name (default: the function tool's name). */
  toolName?: string;
}

export function refusal(message: string): string {
  return `Not permitted by Faramesh: ${message}. The tool was not run.`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A copy of `functionTool` whose every call is governed by Faramesh. */
export function governFunctionTool<T extends FunctionToolLike>(functionTool: T, options: GovernFunctionToolOptions = {}): T {
  if (functionTool?.type !== "function" || typeof functionTool.invoke !== "function") {
    throw new TypeError("governFunctionTool takes a function tool (from tool() of @openai/agents)");
  }
  const { toolName, ...gateOptions } = options;
  const gate = new Gate({ ...gateOptions, tool: toolName ?? functionTool.name });
  const invoke = functionTool.invoke;

  async function governed(runContext: unknown, input: string, details?: { signal?: AbortSignal }): Promise<unknown> {
    let params: unknown;
    try {
      params = input.trim() ? JSON.parse(input) : {};
    } catch (err) {
      return refusal(`the arguments are not valid JSON (${(err as Error).message})`);
    }
    if (!isPlainObject(params)) return refusal("the arguments are not a JSON object");
    try {
      return await gate.run(
        params,
        // Unedited, the tool gets the model's own text: exactly what the policy judged.
        (decided, { edited }) => invoke.call(functionTool, runContext, edited ? JSON.stringify(decided) : input, details),
        { signal: details?.signal },
      );
    } catch (err) {
      if (err instanceof ActionDenied || err instanceof ApprovalTimeout) return refusal(err.message);
      throw err;
    }
  }

  return Object.assign(Object.create(Object.getPrototypeOf(functionTool) as object | null) as T, functionTool, {
    invoke: governed,
  });
}

/** `governFunctionTool` for each tool, with the same options. */
export function governFunctionTools<T extends FunctionToolLike>(tools: readonly T[], options: GovernFunctionToolOptions = {}): T[] {
  return tools.map((t) => governFunctionTool(t, options));
}
